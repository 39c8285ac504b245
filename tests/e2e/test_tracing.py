"""Traces of the real mesh, as its collector writes them to <home>/telemetry/spans.jsonl and
`fenlei trace` shows them: a Classify through the gateway is one trace (gateway, pipeline,
a batch span in each stage, with the right parents; with sidecars, the pipeline's sidecar
between the gateway and the pipeline); a training job is one trace with its phases."""

from __future__ import annotations

import re
import secrets
from types import SimpleNamespace

import grpc
import pytest

from fenlei import services
from fenlei.local.mesh import LocalMesh
from fenlei.pipeline.servicer import TRACE_ID_HEADER
from fenlei.telemetry import spans as kept
from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

BATCHES = {stage.name: f"{stage.stream} batch" for stage in services.STAGES}
CLASSIFY = "/fenlei.v1.Pipeline/Classify"
TEXT = "这家酒店的服务非常好，房间干净"

pytestmark = pytest.mark.xdist_group("sidecar_mesh")  # one worker runs the users of the mesh with sidecars


def classify_through_the_gateway(home, tools) -> str:
    """One Classify over gRPC through the gateway, under a traceparent of the caller's own;
    returns its trace id, after checking the answer names it."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    token = LocalMesh(home).authority().mint("viewer", ttl_seconds=600, subject="e2e-tracing")
    metadata = (("authorization", f"Bearer {token}"), ("traceparent", f"00-{trace_id}-{parent}-01"))
    with grpc.insecure_channel(tools.read_state(home)["gateway"]["address"]) as channel:
        request = pipeline_pb2.ClassifyRequest(text=TEXT, model=tools.MODEL)
        answer, call = pipeline_pb2_grpc.PipelineStub(channel).Classify.with_call(request, metadata=metadata, timeout=tools.HANG_GUARD)
    assert answer.labels and dict(call.initial_metadata())[TRACE_ID_HEADER] == trace_id
    return trace_id


def collected(home, tools, trace_id: str, count: int) -> dict[str, list[kept.Span]]:
    """The trace's spans by name, once the collector has `count` of them (spans leave each
    service within about a second, Envoy's within five)."""

    def by_name() -> dict[str, list[kept.Span]] | None:
        found: dict[str, list[kept.Span]] = {}
        for span in kept.read(home):
            if span.trace_id == trace_id:
                found.setdefault(span.name, []).append(span)
        return found if sum(map(len, found.values())) >= count else None

    return tools.wait_for(by_name, f"{count} spans of trace {trace_id}", timeout=tools.HANG_GUARD)


@pytest.fixture(scope="module")
def classified(mesh, tools) -> SimpleNamespace:
    trace_id = classify_through_the_gateway(mesh.home, tools)
    # the gateway's, the pipeline's and a batch's in each stage
    return SimpleNamespace(id=trace_id, spans=collected(mesh.home, tools, trace_id, 2 + len(BATCHES)))


def test_a_classify_through_the_gateway_is_one_trace_through_every_stage(classified) -> None:
    [gateway] = classified.spans["ingress"]
    [pipeline] = classified.spans[CLASSIFY]
    assert gateway.service == "gateway" and pipeline.service == "pipeline"
    assert pipeline.parent_span_id == gateway.span_id  # no sidecars in this mesh: the gateway calls the pipeline
    assert pipeline.attributes["fenlei.model"] == "reviews" and pipeline.attributes["fenlei.version"] == "v1"
    assert pipeline.attributes["fenlei.documents"] == 1 and pipeline.attributes["fenlei.characters"] == len(TEXT)
    for stage, name in BATCHES.items():
        [batch] = classified.spans[name]
        assert batch.service == stage and batch.parent_span_id == pipeline.span_id, batch
        assert batch.attributes["fenlei.documents"] == 1
        assert gateway.start_ns <= pipeline.start_ns <= batch.start_ns <= batch.end_ns <= pipeline.end_ns <= gateway.end_ns
    segmenter, features = classified.spans[BATCHES["segmenter"]][0], classified.spans[BATCHES["features"]][0]
    assert segmenter.attributes["fenlei.characters"] == len(TEXT) and segmenter.attributes["fenlei.tokens"] > 0
    assert 0 <= features.attributes["fenlei.oov_share"] <= 1
    # Nothing else: the stages' open streams carry this request's batches but are no span of it.
    assert sum(map(len, classified.spans.values())) == 2 + len(BATCHES)


def test_fenlei_trace_prints_the_trace_as_a_tree(mesh, tools, classified) -> None:
    shown = tools.cli(mesh.home, "trace", classified.id, timeout=60)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"trace {classified.id}: {2 + len(BATCHES)} spans, ")
    # offset, duration, indentation, service, name (up to the attributes, two spaces on)
    rows = [re.match(r"^\s*([0-9.]+) ms\s+([0-9.]+) ms  ( *)(\S+)  (.+?)(?:  .*)?$", line) for line in lines[2:]]
    assert all(rows), lines
    tree = [(len(row[3]) // 2, row[4], row[5]) for row in rows if row]
    assert tree == [
        (0, "gateway", "ingress"),
        (1, "pipeline", CLASSIFY),
        *((2, stage, name) for stage, name in BATCHES.items()),  # children by start: the order a document passes the stages
    ]
    offsets = [float(row[1]) for row in rows if row]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert "model=reviews" in lines[3] and "version=v1" in lines[3]


def test_fenlei_trace_lists_the_slowest_requests_and_refuses_what_is_no_trace_id(mesh, tools, classified) -> None:
    slowest = tools.cli(mesh.home, "trace", "--slowest", "3", timeout=60)
    assert slowest.returncode == 0, slowest.stdout + slowest.stderr
    rows = [re.match(r"^([0-9a-f]{32})\s+([0-9.]+) ms  (\S+)  (.+)$", line) for line in slowest.stdout.splitlines()]
    assert len(rows) == 3 and all(rows), slowest.stdout
    durations = [float(row[2]) for row in rows if row]
    assert durations == sorted(durations, reverse=True)

    unknown = tools.cli(mesh.home, "trace", "0" * 32, timeout=60)
    assert unknown.returncode == 2 and "no span of trace" in unknown.stderr, unknown.stderr
    malformed = tools.cli(mesh.home, "trace", "not-a-trace", timeout=60)
    assert malformed.returncode == 2 and "32 hexadecimal digits" in malformed.stderr, malformed.stderr


def test_a_training_job_is_a_trace_with_its_phases_and_their_stage_batches(mesh, tools) -> None:
    """The session model's training (`fenlei train`, a job of the jobs service) ended before
    any test ran; its worker sent its spans as it exited."""

    def job_trace() -> list[kept.Span] | None:
        every = kept.read(mesh.home)
        root = next((s for s in every if s.name.startswith("job ") and s.attributes.get("fenlei.model") == tools.MODEL), None)
        return [s for s in every if s.trace_id == root.trace_id] if root else None

    trace_spans = tools.wait_for(job_trace, "the spans of the session model's training job", timeout=tools.HANG_GUARD)
    [root] = kept.roots(trace_spans)
    assert root.service == "jobs" and root.attributes["fenlei.version"] == "v1"
    phases = {s.name: s for s in trace_spans if s.parent_span_id == root.span_id and s.kind == "internal"}
    assert {"reading", "segmenting", "fitting features", "fitting classifier", "evaluating", "registering"} <= set(phases), sorted(phases)
    # Each stage batch falls under the phase that sent it; the phases' calls reach the services.
    by_id = {s.span_id: s for s in trace_spans}
    segmenting = [s for s in trace_spans if s.name == BATCHES["segmenter"]]
    assert segmenting and all(by_id[s.parent_span_id].name.startswith("segmenting") for s in segmenting)
    assert any(by_id[s.parent_span_id].name == "evaluating" for s in trace_spans if s.name == BATCHES["classifier"])
    fits = [s for s in trace_spans if s.name == "/fenlei.v1.Features/Fit"]
    assert {s.service for s in fits} == {"jobs", "features"}  # the worker's call and the stage's server span under it
    registered = [s for s in trace_spans if s.service == "registry" and s.name == "/fenlei.v1.ModelRegistry/RegisterVersion"]
    assert registered and by_id[by_id[registered[0].parent_span_id].parent_span_id].name == "registering"


def test_with_sidecars_the_pipelines_sidecar_is_between_the_gateway_and_the_pipeline(sidecar_mesh, tools) -> None:
    trace_id = classify_through_the_gateway(sidecar_mesh.home, tools)
    found = collected(sidecar_mesh.home, tools, trace_id, 3 + len(BATCHES))
    proxies = {s.service: s for s in found["ingress"]}
    assert sorted(proxies) == ["gateway", "pipeline-sidecar"]
    [pipeline] = found[CLASSIFY]
    assert proxies["pipeline-sidecar"].parent_span_id == proxies["gateway"].span_id
    assert pipeline.parent_span_id == proxies["pipeline-sidecar"].span_id
    assert all(batch.parent_span_id == pipeline.span_id for name in BATCHES.values() for batch in found[name])
    # The batches went through the stages' sidecars on open streams, which start no traces of their own.
    assert not [s for s in kept.read(sidecar_mesh.home) if s.name == "egress" and s.attributes.get("grpc.path", "").endswith("Stream")]
