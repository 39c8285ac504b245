"""The mesh's status and traces through the public API (what the console's services page
reads): every process with its state, each service's load moving when traffic flows, who
calls whom, and the slowest traces opened as a waterfall; a bad trace id is refused."""

from __future__ import annotations

import http.client
import json
import re

import grpc
import pytest

from fenlei import services
from fenlei.local.mesh import LocalMesh
from fenlei.v1 import pipeline_pb2, telemetry_pb2

TEXT = "质量很好，物流也快，非常满意"


def test_the_mesh_status_names_every_process_and_the_load_follows_the_traffic(mesh, api, tools) -> None:
    viewer = api("viewer")
    telemetry = viewer.telemetry
    status = telemetry.GetMeshStatus(telemetry_pb2.GetMeshStatusRequest())
    assert {p.name for p in status.processes} == set(tools.PROCESSES)
    assert all(p.state == "running" for p in status.processes), status.processes
    assert not status.sidecars
    assert ("pipeline", "segmenter") in {(e.caller, e.callee) for e in status.edges}
    assert ("gateway", "pipeline") in {(e.caller, e.callee) for e in status.edges}

    def busy_pipeline() -> telemetry_pb2.ServiceLoad | None:
        for _ in range(5):
            viewer.classify(TEXT, model=tools.MODEL)
        answer = telemetry.GetMeshStatus(telemetry_pb2.GetMeshStatusRequest())
        load = {row.service: row for row in answer.load}
        row = load.get("pipeline")
        return row if row and row.requests_per_second > 0 and row.HasField("p50_ms") and answer.window_seconds > 0 else None

    row = tools.wait_for(busy_pipeline, "the pipeline's load to show the calls")
    assert row.instances == 1 and row.resident_bytes > 10 << 20 and row.p99_ms >= row.p50_ms > 0
    assert {r.service for r in telemetry.GetMeshStatus(telemetry_pb2.GetMeshStatusRequest()).load} >= set(services.STAGE_NAMES)


def test_the_slowest_traces_open_as_a_waterfall(mesh, api, tools) -> None:
    viewer = api("viewer")
    _, call = viewer.pipeline.Classify.with_call(pipeline_pb2.ClassifyRequest(text=TEXT, model=tools.MODEL), timeout=30)
    trace_id = dict(call.initial_metadata())["x-trace-id"]

    def full() -> telemetry_pb2.GetTraceResponse | None:
        try:
            answer = viewer.telemetry.GetTrace(telemetry_pb2.GetTraceRequest(trace_id=trace_id))
        except grpc.RpcError as error:  # none of its spans collected yet
            assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
            return None
        return answer if {s.service for s in answer.spans} >= {"gateway", "pipeline", *services.STAGE_NAMES} else None

    trace = tools.wait_for(full, "every hop's span of the trace")

    # Once every hop's span is in, the trace's first span is the gateway's.
    def listed() -> list[telemetry_pb2.TraceSummary]:
        found = viewer.telemetry.ListSlowTraces(telemetry_pb2.ListSlowTracesRequest(count=10_000)).traces
        return [t for t in found if t.trace_id == trace_id]

    [ours] = tools.wait_for(listed, "our Classify among the slowest traces")
    assert ours.what == "/fenlei.v1.Pipeline/Classify" and ours.service == "gateway" and not ours.error
    durations = [t.duration_ms for t in viewer.telemetry.ListSlowTraces(telemetry_pb2.ListSlowTracesRequest(count=50)).traces]
    assert durations == sorted(durations, reverse=True) and len(durations) <= 50

    assert trace.spans[0].depth == 0 and trace.spans[0].offset_ms == 0 and trace.spans[0].service == "gateway"
    pipeline = next(s for s in trace.spans if s.service == "pipeline")
    assert pipeline.attributes["model"] == tools.MODEL and pipeline.depth >= 1
    assert all(s.offset_ms + s.duration_ms <= trace.duration_ms + 0.001 for s in trace.spans)

    with pytest.raises(grpc.RpcError) as malformed:
        viewer.telemetry.GetTrace(telemetry_pb2.GetTraceRequest(trace_id="not-a-trace"))
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "32 hexadecimal digits" in malformed.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        viewer.telemetry.GetTrace(telemetry_pb2.GetTraceRequest(trace_id="0" * 32))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_rest_answer_names_its_trace_in_a_header(mesh, tools) -> None:
    host, port = mesh.address("gateway").rsplit(":", 1)
    token = LocalMesh(mesh.home).authority().mint("viewer", ttl_seconds=600, subject="e2e-rest")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = json.dumps({"text": TEXT, "model": tools.MODEL}, ensure_ascii=False).encode()
        connection.request("POST", "/v1/classify", body, {"authorization": f"Bearer {token}", "content-type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200 and answer["labels"], answer
    assert re.fullmatch(r"[0-9a-f]{32}", response.getheader("x-trace-id") or ""), response.getheaders()
