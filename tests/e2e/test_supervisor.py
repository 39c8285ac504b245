"""The local mesh's supervisor, on meshes of their own: a recorded pid that is no longer
ours is never signalled, a running mesh keeps the settings it was started with, names
of services are checked, and `fenlei down` drains from the front (an in-flight stream
through the gateway ends OK, the logs hold no errors, no run file or socket is left)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from fenlei.local.mesh import LocalMesh
from fenlei.local.state import Files, MeshState, ProcessIdentity, ProcessRecord
from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc

pytestmark = pytest.mark.xdist_group("own_sidecar_mesh")  # meshes with sidecars of its own: one such module at a time (inotify)

REPO = Path(__file__).resolve().parents[2]


def test_a_service_name_no_mesh_has_is_refused_before_anything_starts(tmp_path, tools) -> None:
    for flags in (["--replicas", "clasifier=2"], ["--canary", "pipelin"]):
        up = tools.cli(tmp_path, "up", *flags, timeout=60)
        assert up.returncode == 2, up.stdout + up.stderr
        assert flags[1].split("=")[0] in up.stderr and "classifier" in up.stderr, up.stderr
    without = tools.cli(tmp_path, "up", "--no-sidecars", "--replicas", "classifier=2", timeout=60)
    assert without.returncode == 2 and "sidecars" in without.stderr, without.stderr
    assert not (tmp_path / "run" / "mesh.json").exists()


def test_a_stale_pid_is_never_signalled(tmp_path, tools) -> None:
    """After a crash or a reboot the state file names pids that now belong to strangers."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        real = ProcessIdentity.of(stranger.pid)
        assert real is not None
        recorded = ProcessIdentity(stranger.pid, real.start_ticks - 1, (sys.executable, "-m", "fenlei.local.supervisor", str(tmp_path)))
        stale = MeshState(supervisor=recorded, phase="ready")
        stale.processes["classifier"] = ProcessRecord("classifier", "app", "classifier", identity=recorded, address="127.0.0.1:1")
        Files(tmp_path).write_state(stale)

        status = tools.cli(tmp_path, "status", "--json", timeout=60)
        assert status.returncode == 1 and json.loads(status.stdout)["classifier"]["status"] == "DOWN", status.stdout
        down = tools.cli(tmp_path, "down", timeout=60)
        assert down.returncode == 0 and "nothing was running" in down.stdout, down.stdout + down.stderr
        Files(tmp_path).write_state(stale)
        up = tools.cli(tmp_path, "up", "--no-sidecars", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert stranger.poll() is None, "fenlei signalled a process it did not start"
    finally:
        tools.stop_mesh(tmp_path)
        stranger.kill()
        stranger.wait()


def test_a_running_mesh_keeps_the_settings_it_was_started_with(tmp_path_factory, tools) -> None:
    """`fenlei mesh apply` from a shell without the FENLEI_GATEWAY_* variables of `up`."""
    home = tmp_path_factory.mktemp("mesh")  # short: Unix socket paths have a limit
    env = {**os.environ, "FENLEI_HOME": str(home), "FENLEI_GATEWAY_PORT": "0", "FENLEI_GATEWAY_RATE_LIMIT_PER_SECOND": "333"}
    watchdog = tools.start_watchdog(home)
    try:
        up = subprocess.run([sys.executable, "-m", "fenlei.cli", "up"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        routes = home / "mesh" / "proxies" / "gateway" / "rds-gateway.json"

        def rates() -> set[int]:
            """The refill of every token bucket in the gateway's routes."""
            found: set[int] = set()

            def walk(value: object) -> None:
                if isinstance(value, dict):
                    found.update([value["tokens_per_fill"]] if "tokens_per_fill" in value else [])
                    for inner in value.values():
                        walk(inner)
                elif isinstance(value, list):
                    for inner in value:
                        walk(inner)

            walk(json.loads(routes.read_text()))
            return found

        assert rates() == {333}
        applied = tools.cli(home, "mesh", "apply", REPO / "mesh" / "istio" / "fault-delay-classifier.yaml", timeout=120)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "FENLEI_GATEWAY_RATE_LIMIT_PER_SECOND" not in os.environ
        assert rates() == {333}
        assert "scenarios in effect: fault-delay-classifier.yaml" in applied.stdout

        again = tools.cli(home, "mesh", "apply", REPO / "mesh" / "istio" / "virtual-service-all-v1.yaml", timeout=120)
        assert "scenarios in effect: virtual-service-all-v1.yaml;" in again.stdout, again.stdout  # the delay file was replaced
        envoy_filter = tools.cli(home, "mesh", "apply", REPO / "mesh" / "istio" / "gateway.yaml", timeout=120)
        assert envoy_filter.returncode == 2 and "EnvoyFilter ingress-grpc-json-transcoder" in envoy_filter.stderr, envoy_filter.stderr
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()


def test_down_drains_from_the_front(tmp_path_factory, mesh, tools) -> None:
    home = tmp_path_factory.mktemp("mesh")
    tools.copy_models(mesh, home)  # the session mesh's model, without training it again
    watchdog = tools.start_watchdog(home)
    try:
        up = tools.cli(home, "up", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        mesh = LocalMesh(home)
        token = mesh.authority().mint("viewer")
        channel = grpc.insecure_channel(mesh.address("gateway"))
        requests: queue.Queue[pipeline_pb2.ClassifyStreamRequest | None] = queue.Queue()
        call = pipeline_pb2_grpc.PipelineStub(channel).ClassifyStream(
            iter(requests.get, None), metadata=[("authorization", f"Bearer {token}")], timeout=120
        )

        def ask(index: int) -> None:
            requests.put(
                pipeline_pb2.ClassifyStreamRequest(documents=[common_pb2.Document(id=str(index), text="质量很好")], model=tools.MODEL)
            )

        ask(0)
        answers = [next(call)]  # the stream is open and in flight
        pids = [entry["pid"] for entry in tools.read_state(home).values()]
        down = subprocess.Popen([sys.executable, "-m", "fenlei.cli", "down"], env={**os.environ, "FENLEI_HOME": str(home)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        tools.wait_for(lambda: LocalMesh(home).state() is None or LocalMesh(home).state().phase == "stopping", "the drain to begin")
        for index in range(1, 4):  # the stream keeps working while the mesh drains
            ask(index)
            answers.append(next(call))
        requests.put(None)
        answers += list(call)
        assert call.code() == grpc.StatusCode.OK
        assert [a.predictions[0].id for a in answers] == ["0", "1", "2", "3"]
        out, err = down.communicate(timeout=180)
        assert down.returncode == 0, out + err
        channel.close()

        assert not [pid for pid in pids if tools.alive(pid)], "processes left after `fenlei down`"
        assert not list((home / "run").iterdir()), list((home / "run").iterdir())
        assert not [*home.glob("mesh/apps/*.sock"), *home.glob("mesh/proxies/*/*.sock")]
        for log in (home / "logs").glob("*.log"):
            text = log.read_text(errors="replace")
            assert "Traceback" not in text and '"level": "ERROR"' not in text and "[error]" not in text, f"{log.name}:\n{text[-2000:]}"
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()


def test_a_killed_supervisor_takes_its_processes_with_it(tmp_path, tools) -> None:
    home = tmp_path / "home"
    watchdog = tools.start_watchdog(home)
    try:
        up = tools.cli(home, "up", "--no-sidecars", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        state = LocalMesh(home).state()
        assert state and state.supervisor
        pids = [entry["pid"] for entry in tools.read_state(home).values()]
        os.kill(state.supervisor.pid, signal.SIGKILL)
        tools.wait_for(lambda: not any(tools.alive(pid) for pid in pids), "the services to stop with their supervisor")
        status = tools.cli(home, "status", timeout=60)
        assert status.returncode == 1
        again = tools.cli(home, "up", "--no-sidecars", timeout=300)  # starts afresh over the stale state
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()
