"""/healthz is the health of the service the gateway fronts, the pipeline: 200 SERVING
while an instance of it passes the gateway's health checks, 503 NOT_SERVING naming it
while none does. A call while a service is down says which one, over REST and gRPC.
Without sidecars (a pipeline of the test's own behind a private gateway) and with them
(the sidecar mesh's processes, killed while its supervisor is held back from restarting
them)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import grpc
import pytest

from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

GOOD = "姚明率领火箭队击败湖人"
DOWN = "the {service} service is unavailable: "

pytestmark = pytest.mark.xdist_group("sidecar_mesh")  # one worker runs the users of the mesh with sidecars


def healthz_says(gateway, tools, status: int):
    """Waits until /healthz answers `status`; returns that answer (health checks run every few seconds)."""
    return tools.wait_for(
        lambda: (reply := gateway.healthz()).status == status and reply, f"/healthz to answer {status}", timeout=tools.HANG_GUARD
    )


def assert_classify_names(gateway, service: str, model: str) -> None:
    """A Classify, over REST and over gRPC, fails with UNAVAILABLE naming `service`."""
    down = DOWN.format(service=service)
    classified = gateway.rest("/v1/classify", {"text": GOOD, "model": model})
    assert classified.status == 503, (classified.status, classified.body[:300])
    status = classified.status_body()
    assert status["code"] == 14 and status["message"].startswith(down), status
    with pytest.raises(grpc.RpcError) as failure:
        pipeline_pb2_grpc.PipelineStub(gateway.channel()).Classify(
            pipeline_pb2.ClassifyRequest(text=GOOD, model=model), metadata=gateway.metadata(), timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE and failure.value.details().startswith(down), failure.value.details()


def assert_reported_down(gateway, tools) -> None:
    reply = healthz_says(gateway, tools, 503)
    assert reply.json() == {"status": "NOT_SERVING", "message": "the pipeline service has no healthy instance"}
    assert reply.headers["content-type"] == "application/json"
    assert_classify_names(gateway, "pipeline", tools.MODEL)


@contextlib.contextmanager
def killed(sidecar_mesh, name: str) -> Iterator[None]:
    """The mesh's process `name` killed, and its supervisor (which would start it again
    within a second) held until the block ends."""
    supervisor = sidecar_mesh.supervisor_pid()
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(sidecar_mesh.processes()[name]["pid"], signal.SIGKILL)
        yield
    finally:
        os.kill(supervisor, signal.SIGCONT)


def test_healthz_without_sidecars_follows_the_pipeline(private_gateway, dedicated_pipeline, tools) -> None:
    pipeline = dedicated_pipeline()
    gateway = private_gateway(upstreams={"pipeline": pipeline.address})
    assert healthz_says(gateway, tools, 200).json() == {"status": "SERVING"}
    pipeline.popen.kill()
    pipeline.popen.wait(timeout=30)
    assert_reported_down(gateway, tools)


def test_healthz_with_sidecars_follows_the_pipeline(sidecar_mesh, sidecar_gateway, tools) -> None:
    assert healthz_says(sidecar_gateway, tools, 200).json() == {"status": "SERVING"}
    with killed(sidecar_mesh, "pipeline"):
        assert_reported_down(sidecar_gateway, tools)  # its sidecar still runs: the sidecar's reply names it
    assert healthz_says(sidecar_gateway, tools, 200).json() == {"status": "SERVING"}  # started again


def test_a_stage_that_is_down_is_named_through_the_pipeline(sidecar_mesh, sidecar_gateway, tools, tmp_path) -> None:
    """With sidecars: the segmenter's sidecar names the segmenter, and the pipeline passes
    the status on. (Without sidecars the message is the pipeline's gRPC client's.)"""
    corpus = tmp_path / "two-classes.tsv"
    lines = [f"{'质量很好，非常满意' if i % 2 else '太差了，很失望'}{i}\t{'positive' if i % 2 else 'negative'}" for i in range(100)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train = tools.cli(sidecar_mesh.home, "train", corpus, "--name", "two-classes", timeout=600)
    assert train.returncode == 0, train.stdout + train.stderr
    assert sidecar_gateway.rest("/v1/classify", {"text": GOOD, "model": "two-classes"}).status == 200
    with killed(sidecar_mesh, "segmenter"):
        assert_classify_names(sidecar_gateway, "segmenter", "two-classes")
    tools.wait_for(
        lambda: sidecar_gateway.rest("/v1/classify", {"text": GOOD, "model": "two-classes"}).status == 200, "the segmenter to serve again"
    )
