"""`fenlei logs` on the session mesh: the lines of one request join up on its trace id
across the gateway's access log, the pipeline's sidecar's (when the mesh has sidecars) and
the pipeline's own, in time order; a name selects one service; --follow prints what is
written after it started."""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import sys
import threading

import grpc

from fenlei.local.mesh import LocalMesh
from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def classify(mesh, trace_id: str) -> pipeline_pb2.ClassifyResponse:
    """One Classify through the gateway, in a trace of the test's own."""
    token = LocalMesh(mesh.home).authority().mint("viewer")
    metadata = (("authorization", f"Bearer {token}"), ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"))
    with grpc.insecure_channel(mesh.address("gateway")) as channel:
        request = pipeline_pb2.ClassifyRequest(text="物流很快，包装完好", model="reviews")
        return pipeline_pb2_grpc.PipelineStub(channel).Classify(request, metadata=metadata, timeout=60)


def field(line: str, key: str) -> str:
    found = re.search(rf"(?:^| ){key}=(\S+)", line)
    return found.group(1) if found else ""


def parsed(output: str) -> list[tuple[str, str, str]]:
    """(time, service, line) of each line `fenlei logs` printed."""
    rows = []
    for line in output.splitlines():
        time, service, _ = line.split(" ", 2)
        assert TIME.match(time), line
        rows.append((time, service, line))
    return rows


def test_one_requests_lines_join_on_its_trace_across_the_gateway_the_sidecar_and_the_pipeline(mesh, tools) -> None:
    trace_id = secrets.token_hex(16)
    answer = classify(mesh, trace_id)
    # the gateway's access log, the pipeline's own log, and its sidecar's access log (a mesh with sidecars)
    wanted = {"gateway", "pipeline", *({"pipeline-sidecar"} & set(mesh.state))}

    def lines() -> list[tuple[str, str, str]]:
        shown = tools.cli(mesh.home, "logs", "--trace", trace_id, timeout=60)
        assert shown.returncode == 0, shown.stderr
        rows = parsed(shown.stdout)
        return rows if wanted <= {service for _, service, _ in rows} else []

    rows = tools.wait_for(lines, "the request's lines in the gateway's, the sidecar's and the pipeline's logs", timeout=30)
    assert [time for time, _, _ in rows] == sorted(time for time, _, _ in rows)
    assert all(field(line, "trace_id") == trace_id for _, _, line in rows), rows
    # the request id the gateway gave it is the answer's, and in every line of the request
    assert {field(line, "request_id") for _, _, line in rows} == {answer.request_id}
    [handled] = [line for _, service, line in rows if service == "pipeline" and " handled " in line]
    assert field(handled, "method") == "/fenlei.v1.Pipeline/Classify" and field(handled, "code") == "OK"
    [access] = [line for _, service, line in rows if service == "gateway"]
    assert field(access, "method") == "/fenlei.v1.Pipeline/Classify" and field(access, "status") == "200"


def test_a_name_selects_one_services_lines(mesh, tools) -> None:
    shown = tools.cli(mesh.home, "logs", "segmenter", timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = parsed(shown.stdout)
    assert rows and {service for _, service, _ in rows} == {"segmenter"}
    assert any(" serving " in line for _, _, line in rows)
    unknown = tools.cli(mesh.home, "logs", "segmentr", timeout=60)
    assert unknown.returncode == 2 and "no service or process named segmentr" in unknown.stderr


def test_follow_prints_lines_written_after_it_started(mesh, tools) -> None:
    env = {**os.environ, "FENLEI_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "fenlei.cli", "logs", "--follow", "pipeline"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [printed.put(line) for line in follower.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    seen: list[str] = []

    def shown(text: str) -> bool:
        while not printed.empty():
            seen.append(printed.get())
        return any(text in line for line in seen)

    try:
        tools.wait_for(lambda: shown(" pipeline "), "the pipeline's lines so far", timeout=30)  # it has read what was there
        trace_id = secrets.token_hex(16)
        classify(mesh, trace_id)
        tools.wait_for(lambda: shown(f"trace_id={trace_id}"), "the new request's line", timeout=30)
        # The pipeline's lines only: its JSON ones, and any other its process wrote (shown after its file's name).
        others = [line for line in seen if line.split(" ", 2)[1] != "pipeline" and not line.startswith("pipeline.log: ")]
        assert not others, others
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        reader.join(timeout=30)
