"""Every service is declared once (fenlei.services) and every consumer of that registry
knows every service: the local mesh, the sidecars' policy, the gateway's routes and
authorisation, the reflection catalog, the client, the stage streams, the Kubernetes
generator and the Istio files. A service missing from any of them fails here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from fenlei import client, kubernetes, services
from fenlei.gateway import config as gateway_config
from fenlei.runtime.stages import StageStreams
from fenlei.sidecar.control import CALLS, ControlPlane, Topology
from fenlei.sidecar.policy import load

REPO = Path(__file__).resolve().parents[1]
ISTIO = REPO / "mesh" / "istio"


def _methods(workload: services.Workload) -> set[str]:
    return {f"/{service.full_name}/{method.name}" for service in workload.contract for method in service.methods}


def test_names_are_unique_and_calls_name_workloads() -> None:
    names = [w.name for w in services.WORKLOADS]
    assert len(names) == len(set(names))
    for workload in services.WORKLOADS:
        for callee in workload.calls:
            assert callee in services.BY_NAME, (workload.name, callee)
    assert [w.name for w in services.STAGES] == ["segmenter", "preprocessor", "features", "classifier"]
    assert all(stage.stream in _methods(stage) for stage in services.STAGES)


def test_the_local_mesh_runs_every_workload_behind_a_sidecar(tmp_path_factory: pytest.TempPathFactory) -> None:
    topology = Topology.plan({})
    assert {instance.service for instance in topology.instances} == {w.name for w in services.WORKLOADS}
    # every proxy fronts an instance: no sidecar runs without an app behind it
    assert set(ControlPlane(tmp_path_factory.mktemp("m")).sidecars(topology)) == {instance.name for instance in topology.instances}
    for workload in services.WORKLOADS:
        assert tuple(CALLS.get(workload.name, ())) == workload.calls
    assert set(CALLS["gateway"]) == {*(w.name for w in services.PUBLIC), services.CATALOG.name}


def test_the_gateway_routes_and_authorises_every_public_method() -> None:
    settings = gateway_config.GatewaySettings()
    table = gateway_config.route_table(settings)
    routed = {route["match"].get("path"): route["route"]["cluster"] for route in table["virtual_hosts"][0]["routes"] if "route" in route}
    methods = {m.path: m for m in gateway_config.public_methods()}
    for workload in services.PUBLIC:
        for path in _methods(workload):
            assert routed.get(path) == workload.name, path
            assert methods[path].service == workload.name
    assert routed[gateway_config.REFLECTION_INFO] == services.CATALOG.name
    bootstrap = gateway_config.build(settings, {name: "127.0.0.1:1" for name in services.GATEWAY_CALLS})
    [manager] = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
    [transcoder] = [f for f in manager["typed_config"]["http_filters"] if f["name"].endswith("grpc_json_transcoder")]
    assert set(transcoder["typed_config"]["services"]) == {name for w in services.PUBLIC for name in w.grpc_names}
    assert {c["name"] for c in bootstrap["static_resources"]["clusters"]} == set(services.GATEWAY_CALLS)


def test_the_catalog_describes_and_the_client_reaches_every_public_service() -> None:
    from fenlei.gateway import catalog

    described = set(catalog.register(None, None).described)  # type: ignore[arg-type]
    public = {name for w in services.PUBLIC for name in w.grpc_names}
    assert described == public
    assert {full_name for full_name, _ in client.SERVICES.values()} == public
    for full_name, stub in client.SERVICES.values():
        assert stub.__name__ == full_name.rsplit(".", 1)[1] + "Stub"


def test_the_stage_streams_open_a_stream_to_every_stage() -> None:
    async def opened() -> set[str]:
        streams = StageStreams({stage.name: f"unix:/tmp/{stage.name}.sock" for stage in services.STAGES})
        await streams.close()
        return set(streams.channels)

    assert asyncio.run(opened()) == {stage.name for stage in services.STAGES}


def test_kubernetes_has_every_workload() -> None:
    files = kubernetes.render()
    base = yaml.safe_load(files["base/kustomization.yaml"].split("\n", 2)[2])
    for workload in services.WORKLOADS:
        assert f"{workload.name}.yaml" in base["resources"]
        kinds = {d["kind"] for d in yaml.safe_load_all(files[f"base/{workload.name}.yaml"])}
        assert kinds >= {"ServiceAccount", "Service", "Deployment"}, workload.name
    gateway = yaml.safe_load(files["gateway/envoy.yaml"])
    assert {c["name"] for c in gateway["static_resources"]["clusters"]} == {*services.GATEWAY_CALLS, "console"}  # and the console's Envoy


def test_the_istio_policy_covers_every_server() -> None:
    policy = load(
        [ISTIO / name for name in ("destination-rule-all-mtls.yaml", "virtual-service-all-v1.yaml", "authorization-policies.yaml")]
    )
    for workload in services.WORKLOADS:
        assert workload.name in policy.destination_rules, workload.name
        assert workload.name in policy.virtual_services, workload.name
        assert workload.name in policy.authorization, workload.name


def test_the_local_mesh_runs_a_single_writer_once(tmp_path) -> None:
    """A second instance of the registry, datasets or jobs would be a second writer of its
    database (and for the jobs a second queue, starting a queued job twice): refused before
    anything starts."""
    from fenlei.local.mesh import LocalMesh, MeshError

    writers = [w.name for w in services.WORKLOADS if w.single_writer]
    assert {"registry", "datasets", "jobs"} <= set(writers)
    for writer in writers:
        for versions in (["v1", "v1"], ["v1", "v2"]):
            with pytest.raises(MeshError, match=f"{writer} is the only writer of its database, so it runs one instance, not 2"):
                # without sidecars: were the check gone, the refusal of replicas without sidecars would
                # come instead (failing the match), never a mesh started by a test that does not stop it
                LocalMesh(tmp_path).up(versions={writer: versions}, sidecars=False)
    assert not (tmp_path / "run").exists()
