"""The slowest recent requests from the kept spans: one line per trace (its first span),
slowest first, named by the method an Envoy span carried; streams left out when asked."""

from __future__ import annotations

from fenlei.telemetry.spans import Span, slowest, what


def span(trace: str, span_id: str, parent: str, name: str, milliseconds: float, **attributes: str) -> Span:
    return Span(
        trace * 32,
        span_id * 16,
        parent * 16 if parent else "",
        "gateway",
        name,
        "server",
        0,
        int(milliseconds * 1e6),
        attributes=attributes,
    )


KEPT = [
    span("a", "1", "", "ingress", 12.0, **{"grpc.path": "/fenlei.v1.Pipeline/Classify"}),
    span("a", "2", "1", "/fenlei.v1.Pipeline/Classify", 10.0),
    span("b", "3", "", "ingress", 900.0, **{"grpc.path": "/fenlei.v1.Jobs/WatchJob"}),
    span("c", "4", "", "ingress", 30.0, **{"http.url": "http://127.0.0.1:8080/v1/models"}),
    span("c", "5", "4", "/fenlei.v1.ModelRegistry/ListModels", 28.0),
]


def test_the_slowest_traces_come_first_each_once() -> None:
    assert [(s.trace_id[0], s.duration_ms) for s in slowest(KEPT, 5)] == [("b", 900.0), ("c", 30.0), ("a", 12.0)]
    assert [s.trace_id[0] for s in slowest(KEPT, 1)] == ["b"]


def test_streams_are_left_out_when_asked_whichever_span_names_them() -> None:
    assert [s.trace_id[0] for s in slowest(KEPT, 5, skipped={"/fenlei.v1.Jobs/WatchJob"})] == ["c", "a"]
    assert [s.trace_id[0] for s in slowest(KEPT, 5, skipped={"/fenlei.v1.ModelRegistry/ListModels"})] == ["b", "a"]


def test_a_span_is_named_by_the_method_it_carried() -> None:
    assert (
        what(KEPT[0]) == "/fenlei.v1.Pipeline/Classify"
        and what(KEPT[3]) == "ingress"
        and what(KEPT[4]) == "/fenlei.v1.ModelRegistry/ListModels"
    )
