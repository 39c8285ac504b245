"""The inbound side of a real sidecar, built from the repository's policy (mesh/istio) as
`fenlei up` builds it: the registry's sidecar lets each workload call only what it needs
(mutual TLS proves who calls), and the app behind it learns the caller's SPIFFE id, never
one a caller claims. The app is a gRPC server of the test's own that records each call."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from testkit import recording_server, wait_for

from fenlei.envoy.admin import Admin
from fenlei.envoy.binary import envoy_command
from fenlei.envoy.config import write_bootstrap, write_resources
from fenlei.runtime.rpc import CLIENT_CERT_HEADER, SUBJECT_HEADER
from fenlei.sidecar import xds
from fenlei.sidecar.ca import spiffe_id
from fenlei.sidecar.control import ControlPlane

TIMEOUT = 30.0  # a hang guard
REGISTRY = "/fenlei.v1.ModelRegistry/"
EXPERIMENTS = "/fenlei.v1.Experiments/"
ROUTING = "/fenlei.v1.ExperimentRouting/"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("m")
    control = ControlPlane(home)
    instance = xds.Instance("registry", "v1", 0, 0)
    app_socket = control.app_socket(instance)
    app_socket.parent.mkdir(parents=True)
    directory = control.proxy_directory(instance.name)
    bootstrap = write_bootstrap(
        directory,
        xds.sidecar_bootstrap(
            instance.name, directory, control.identity("registry"), control.ca.root, inbound=(0, app_socket), outbound=()
        ),
    )
    write_resources(directory, 1, "rds", [xds.inbound_routes(control.policy(), instance)], "rds-inbound.json")
    write_resources(directory, 1, "cds", [], "cds.json")
    admin_file = home / "admin.txt"
    with recording_server(f"unix:{app_socket}") as (_, recorder), open(home / "envoy.log", "ab") as log:
        envoy = subprocess.Popen(envoy_command(bootstrap, admin_file, workers=1), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            admin = wait_for(
                lambda: (
                    envoy.poll() is None
                    and admin_file.exists()
                    and Admin(admin_file.read_text().strip()).ready()
                    and admin_file.read_text().strip()
                ),
                "the registry's sidecar",
                TIMEOUT,
            )
            yield SimpleNamespace(control=control, port=Admin(admin).listener_port("inbound"), recorder=recorder, log=home / "envoy.log")
        finally:
            envoy.terminate()
            envoy.wait(timeout=TIMEOUT)


def call(registry: SimpleNamespace, account: str, path: str, metadata: list[tuple[str, str]] | None = None) -> grpc.StatusCode:
    """Calls the registry's sidecar over mutual TLS as workload `account`."""
    identity = registry.control.identity(account)
    credentials = grpc.ssl_channel_credentials(
        Path(registry.control.ca.root).read_bytes(), identity.key.read_bytes(), identity.cert.read_bytes()
    )
    with grpc.secure_channel(f"127.0.0.1:{registry.port}", credentials, options=[("grpc.ssl_target_name_override", "registry")]) as channel:
        try:
            channel.unary_unary(path)(b"", metadata=metadata or [], timeout=TIMEOUT)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[attr-defined]  # a call's error is also its status
    return grpc.StatusCode.OK


OK, DENIED = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "account, path, status",
    [
        ("gateway", REGISTRY + "SetAlias", OK),
        ("gateway", REGISTRY + "RegisterVersion", OK),
        ("gateway", EXPERIMENTS + "SendFeedback", OK),
        ("gateway", ROUTING + "AssignArm", DENIED),  # mesh-internal: no caller outside may reach it
        ("gateway", ROUTING + "RecordPredictions", DENIED),
        ("pipeline", ROUTING + "AssignArm", OK),
        ("pipeline", ROUTING + "RecordPredictions", OK),
        ("pipeline", REGISTRY + "SetAlias", DENIED),
        ("trainer", REGISTRY + "RegisterVersion", DENIED),  # a workload no more: training runs in the jobs service
        ("jobs", REGISTRY + "RegisterVersion", OK),  # a job registers what it trained
        ("jobs", REGISTRY + "GetVersion", OK),
        ("jobs", REGISTRY + "SetAlias", DENIED),
        ("jobs", REGISTRY + "DeleteVersion", DENIED),
        ("jobs", ROUTING + "AssignArm", DENIED),
        ("datasets", REGISTRY + "RegisterVersion", DENIED),
        ("classifier", REGISTRY + "RegisterVersion", DENIED),
    ],
)
def test_each_workload_may_call_only_its_part_of_the_registry(registry, account, path, status) -> None:
    assert call(registry, account, path) == status, registry.log.read_text(errors="replace")[-2000:]


def test_the_app_learns_the_callers_spiffe_id_never_a_claimed_one(registry) -> None:
    forged = f"By={spiffe_id('registry')};URI={spiffe_id('gateway')}"
    assert call(registry, "pipeline", ROUTING + "AssignArm", [(CLIENT_CERT_HEADER, forged)]) == OK
    seen = registry.recorder.last()
    [certificate] = seen.client_certificates
    assert f"URI={spiffe_id('pipeline')}" in certificate and spiffe_id("gateway") not in certificate
    assert seen.caller == spiffe_id("pipeline")
    # A subject passes on from a mesh workload (a training job names the person who created it),
    # recorded with the workload that vouches for it.
    assert call(registry, "jobs", REGISTRY + "RegisterVersion", [(SUBJECT_HEADER, "alice")]) == OK
    assert registry.recorder.last().caller == f"alice via {spiffe_id('jobs')}"
