"""Destructive cases, each on processes of its own: SIGTERM to a busy service (health
flips to NOT_SERVING, the in-flight stream completes, new calls are refused, the process
exits), and a whole mesh's up → status → down."""

from __future__ import annotations

import json
import os
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc, segmenter_pb2, segmenter_pb2_grpc

TIMEOUT = 30  # a hang guard, not a speed requirement
TEXTS = ["姚明率领火箭队击败湖人", "沪指放量大涨 券商股集体涨停", "教育部公布高考招生新政策", "新款网络游戏公测开启"]


def documents(prefix: str, count: int) -> list[common_pb2.Document]:
    return [common_pb2.Document(id=f"{prefix}-{i}", text=TEXTS[i % len(TEXTS)]) for i in range(count)]


def refused(call) -> bool:
    """True once a new call is refused with UNAVAILABLE; False while it is still accepted."""
    try:
        call()
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return True
        raise
    return False


def sigterm_while_streaming(tools, process, stub_class, stream_method: str, request, items, new_call) -> None:
    """The shared scenario: a stream is in progress when SIGTERM arrives."""
    watch_channel = grpc.insecure_channel(process.address)
    stream_channel = grpc.insecure_channel(process.address)
    requests = tools.RequestQueue()
    try:
        watch = health_pb2_grpc.HealthStub(watch_channel).Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        call = getattr(stub_class(stream_channel), stream_method)(iter(requests), timeout=TIMEOUT)
        sent = [request(documents("before", 5))]
        requests.put(sent[0])
        answers = [next(call)]  # the stream is open and has answered once: it is in flight
        # a big message goes out right before the signal, so the service is busy with it
        sent.append(request(documents("busy", 2000)))
        requests.put(sent[-1])
        os.kill(process.pid, signal.SIGTERM)

        # health flips to NOT_SERVING for every watcher
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        # new calls are refused (once the server stops accepting, right after the flip)
        tools.wait_for(lambda: refused(new_call), "new calls to be refused with UNAVAILABLE")

        # the in-flight stream still works: it answers the busy message and one more
        sent.append(request(documents("after", 7)))
        requests.put(sent[-1])
        requests.close()
        answers.extend(call)
        assert call.code() == grpc.StatusCode.OK, call.details()
        assert [[item.id for item in items(a)] for a in answers] == [[d.id for d in r.documents] for r in sent]

        # and then the process exits, cleanly
        assert process.popen.wait(timeout=TIMEOUT) == 0, process.log_text()
        log = process.log_text()
        assert "draining" in log, log
    finally:
        requests.close()
        watch_channel.close()
        stream_channel.close()


def test_sigterm_drains_a_busy_pipeline(mesh, tools, dedicated_pipeline) -> None:
    """A dedicated pipeline process in front of the session mesh's stages."""
    process = dedicated_pipeline(FENLEI_PIPELINE_GRACE_SECONDS=str(TIMEOUT))

    def new_call():
        with grpc.insecure_channel(process.address) as channel:
            pipeline_pb2_grpc.PipelineStub(channel).Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews"), timeout=10)

    sigterm_while_streaming(
        tools,
        process,
        pipeline_pb2_grpc.PipelineStub,
        "ClassifyStream",
        lambda docs: pipeline_pb2.ClassifyStreamRequest(documents=docs, model="reviews", top_k=1),
        lambda response: response.predictions,
        new_call,
    )
    # the shared stages never noticed
    answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews"), timeout=TIMEOUT)
    assert answer.labels


def test_sigterm_drains_a_busy_stage(tools, spawn_service) -> None:
    """A dedicated segmenter: a stage drains the same way (it needs no model)."""
    process = spawn_service("segmenter", env={"FENLEI_SEGMENTER_GRACE_SECONDS": str(TIMEOUT)})

    def new_call():
        with grpc.insecure_channel(process.address) as channel:
            segmenter_pb2_grpc.SegmenterStub(channel).Segment(segmenter_pb2.SegmentRequest(documents=documents("new", 1)), timeout=10)

    sigterm_while_streaming(
        tools,
        process,
        segmenter_pb2_grpc.SegmenterStub,
        "SegmentStream",
        lambda docs: segmenter_pb2.SegmentStreamRequest(documents=docs),
        lambda response: response.documents,
        new_call,
    )


def test_up_status_down(tmp_path, tools) -> None:
    """A mesh of its own: status before up, up (twice), a service killed, down."""
    home = tmp_path / "home"
    watchdog = tools.start_watchdog(home)
    try:
        before = tools.cli(home, "status", timeout=60)
        assert before.returncode != 0 and "not running" in before.stdout, before.stdout + before.stderr

        up = tools.cli(home, "up", "--no-mesh", timeout=300)  # the old name of --no-sidecars still works, with a notice
        assert up.returncode == 0, up.stdout + up.stderr
        assert "--no-mesh is now called --no-sidecars" in up.stderr and "without sidecars" in up.stdout, up.stderr
        state = tools.read_state(home)
        assert sorted(state) == sorted(tools.PROCESSES)
        for service, entry in state.items():
            assert f"{service}" in up.stdout and entry["address"] in up.stdout
            assert tools.alive(entry["pid"])
            if service != "gateway":  # Envoy; its readiness comes from its admin interface
                assert json.loads((home / "run" / f"{service}.json").read_text())["pid"] == entry["pid"]
        assert "fenlei down" in up.stdout  # says how to stop it

        again = tools.cli(home, "up", "--no-sidecars", timeout=300)  # already up: the same processes, no second mesh
        assert again.returncode == 0 and tools.read_state(home) == state, again.stdout + again.stderr

        status = tools.cli(home, "status", "--json", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert {s: e["status"] for s, e in json.loads(status.stdout).items()} == {s: "SERVING" for s in tools.PROCESSES}

        # one service that does not answer (stopped, so nothing restarts it): status says which, and fails
        os.kill(state["classifier"]["pid"], signal.SIGSTOP)
        try:
            degraded = tools.cli(home, "status", "--json", timeout=60)
        finally:
            os.kill(state["classifier"]["pid"], signal.SIGCONT)
        assert degraded.returncode != 0
        report = json.loads(degraded.stdout)
        assert report["classifier"]["status"].startswith("UNREACHABLE"), report["classifier"]
        assert all(report[s]["status"] == "SERVING" for s in tools.PROCESSES if s != "classifier"), report

        # one service gone: the supervisor starts it again, on the port its callers know
        os.kill(state["classifier"]["pid"], signal.SIGTERM)
        tools.wait_for(lambda: not tools.alive(state["classifier"]["pid"]), "the classifier to exit after SIGTERM")

        def restarted() -> dict | None:
            entry = json.loads(tools.cli(home, "status", "--json", timeout=60).stdout)["classifier"]
            return entry if entry["status"] == "SERVING" and entry["restarts"] == 1 else None

        again_up = tools.wait_for(restarted, "the supervisor to start the classifier again")
        assert again_up["last_exit"].startswith("exit 0") and again_up["address"] == state["classifier"]["address"], again_up
        state = tools.read_state(home)

        down = tools.cli(home, "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [s for s, e in state.items() if tools.alive(e["pid"])], "processes left after `fenlei down`"
        assert not (home / "run" / "mesh.json").exists()

        after = tools.cli(home, "status", timeout=60)
        assert after.returncode != 0 and "not running" in after.stdout, after.stdout + after.stderr
        after_json = tools.cli(home, "status", "--json", timeout=60)
        assert after_json.returncode != 0 and json.loads(after_json.stdout) == {}
        assert "nothing was running" in tools.cli(home, "down", timeout=60).stdout
    finally:
        tools.stop_mesh(home)  # whatever happened above, nothing stays running
        watchdog.kill()
        watchdog.wait()
