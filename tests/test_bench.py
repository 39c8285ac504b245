"""Pieces of `fenlei bench` (fenlei.bench) that need no corpus: where a unary Classify
spends its time, read from a spans file as the mesh's collector writes it; and the
monolith the mesh is measured against, answering as the pipeline does for a model the
stage services trained."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from pipeline.test_servicer import TEXTS, InProcessMesh  # the pipeline's own tests' mesh of in-process servers

from fenlei import bench
from fenlei.telemetry import spans
from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc

MS = 1_000_000  # nanoseconds


def span(trace_id: str, span_id: str, parent: str, service: str, name: str, start_ms: float, end_ms: float) -> spans.Span:
    return spans.Span(trace_id, span_id, parent, service, name, "server", int(start_ms * MS), int(end_ms * MS))


def classify_trace(trace_id: str, sidecar: bool, stretch: float = 1.0) -> list[spans.Span]:
    """A Classify as the mesh traces it: the gateway's ingress span, the pipeline's sidecar's
    (when `sidecar`), the pipeline's call and a batch span per stage, each stage 1 ms (times
    `stretch`) with 0.5 ms between them."""
    pipeline_parent = "s1" if sidecar else "g1"
    trace = [span(trace_id, "g1", "", "gateway", "ingress", 0, 10 * stretch)]
    if sidecar:
        trace.append(span(trace_id, "s1", "g1", "pipeline-sidecar", "ingress", 1 * stretch, 9 * stretch))
    trace.append(span(trace_id, "p1", pipeline_parent, "pipeline", "/fenlei.v1.Pipeline/Classify", 2 * stretch, 8 * stretch))
    starts = (2.25, 3.75, 5.25, 6.75)
    for stage, start in zip(("segmenter", "preprocessor", "features", "classifier"), starts):
        trace.append(span(trace_id, f"b-{stage}", "p1", stage, f"{stage} batch", start * stretch, (start + 1) * stretch))
    return trace


def write_spans(home: Path, every: list[spans.Span]) -> None:
    folder = spans.directory(home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spans.FILE_NAME).write_text("".join(s.to_json() + "\n" for s in every), encoding="utf-8")


def test_the_hops_of_a_classify_add_up_to_what_its_client_measured(tmp_path: Path) -> None:
    ids = ["a" * 32, "b" * 32, "c" * 32]
    unrelated = span("d" * 32, "x1", "", "jobs", "job 1", 0, 500)
    write_spans(tmp_path, [*classify_trace(ids[0], True), *classify_trace(ids[1], True, 2.0), *classify_trace(ids[2], True), unrelated])
    latencies = {ids[0]: 11.0, ids[1]: 25.0, ids[2]: 12.0}
    traces = bench.collected_traces(tmp_path, latencies, spans_per_trace=7, timeout=0)
    assert sorted(traces) == sorted(ids)

    assert bench.hops(traces[ids[0]], latencies[ids[0]]) == pytest.approx(
        {
            bench.CLIENT_HOP: 1.0,
            "gateway": 2.0,
            "pipeline-sidecar": 2.0,
            "pipeline -> segmenter": 0.25,
            "segmenter batch": 1.0,
            "segmenter -> preprocessor": 0.5,
            "preprocessor batch": 1.0,
            "preprocessor -> features": 0.5,
            "features batch": 1.0,
            "features -> classifier": 0.5,
            "classifier batch": 1.0,
            "classifier -> pipeline": 0.25,
            bench.TOTAL: 11.0,
            bench.PIPELINE_LESS_STAGES: 2.0,
        }
    )
    medians = bench.median_hops(traces, latencies)
    # the middle of 1, 2 (the trace twice as slow) and 1; of the client's 1, 5 and 2
    assert medians["segmenter batch"] == pytest.approx(1.0) and medians[bench.CLIENT_HOP] == pytest.approx(2.0)
    assert medians[bench.TOTAL] == pytest.approx(12.0)


def test_a_trace_not_yet_written_whole_is_waited_for_then_named(tmp_path: Path) -> None:
    whole, cut = "a" * 32, "b" * 32
    write_spans(tmp_path, [*classify_trace(whole, True), *classify_trace(cut, True)[:-1]])  # the classifier's batch not yet there
    with pytest.raises(RuntimeError, match="1 of 2 traces"):
        bench.collected_traces(tmp_path, [whole, cut], spans_per_trace=7, timeout=0)


def test_the_hop_table_has_a_column_per_mesh_and_a_dash_where_a_mesh_has_no_such_hop() -> None:
    without = bench.hops(classify_trace("a" * 32, sidecar=False), 11.0)
    with_sidecars = bench.hops(classify_trace("b" * 32, sidecar=True), 11.0)
    assert "pipeline-sidecar" not in without and without["gateway"] == pytest.approx(4.0)  # 10 ms less the pipeline's 6
    lines = bench.format_hops({"no sidecars": without, "sidecars": with_sidecars})
    assert lines[0].split() == ["no", "sidecars", "sidecars"]
    cells = [re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line) for line in lines[1:]]
    rows = {row[1]: row[2].split() for row in cells if row}
    assert list(rows)[:3] == [bench.CLIENT_HOP, "gateway", "pipeline-sidecar"]  # in the order a call passes them
    assert rows["pipeline-sidecar"] == ["-", "2.000", "ms"]
    assert rows["gateway"] == ["4.000", "ms", "2.000", "ms"]
    assert rows[bench.TOTAL] == ["11.000", "ms", "11.000", "ms"] and len(rows) == len(with_sidecars)


@pytest.fixture(scope="module")
def trained(module_servers, helpers, tmp_path_factory):
    """The stage services in-process, a model trained through them, and the pipeline in front."""
    mesh = InProcessMesh(module_servers, helpers, tmp_path_factory.mktemp("m"))
    report = mesh.train(bench.MODEL)
    assert report.version == "v1"
    return mesh


def test_the_monolith_answers_as_the_pipeline_does(trained, helpers) -> None:
    pipeline = trained.pipeline()
    with bench.monolith_server(trained.home, "v1") as monolith, grpc.insecure_channel(monolith.address) as channel:
        alone = pipeline_pb2_grpc.PipelineStub(channel)
        for text in TEXTS:
            request = pipeline_pb2.ClassifyRequest(text=text, model=bench.MODEL, top_k=2)
            mine, theirs = alone.Classify(request, timeout=helpers.TIMEOUT), pipeline.Classify(request, timeout=helpers.TIMEOUT)
            assert (mine.model, mine.version) == (theirs.model, theirs.version) == (bench.MODEL, "v1")
            assert [s.label for s in mine.labels] == [s.label for s in theirs.labels]
            assert [s.score for s in mine.labels] == pytest.approx([s.score for s in theirs.labels], abs=1e-5)
        requests = [
            pipeline_pb2.ClassifyStreamRequest(
                documents=[common_pb2.Document(id=f"{n}-{i}", text=TEXTS[(n + i) % len(TEXTS)]) for i in range(n + 1)],
                model=bench.MODEL,
                top_k=1,
            )
            for n in range(4)
        ]

        def streamed(stub: pipeline_pb2_grpc.PipelineStub) -> list[tuple[str, str]]:
            answers = stub.ClassifyStream(iter(requests), timeout=helpers.TIMEOUT)
            return [(p.id, p.labels[0].label) for answer in answers for p in answer.predictions]

        assert streamed(alone) == streamed(pipeline)
        assert {label for _, label in streamed(alone)} == {"sports", "finance"}
