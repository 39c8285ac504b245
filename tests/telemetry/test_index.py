"""The index of the kept spans answers as a fresh read of the files would, while reading only
what the collector appended since it was last asked: appends, a parent written after its
children, a rotation, a line being written, a file that shrank."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from fenlei.errors import NotFound
from fenlei.telemetry import spans
from fenlei.telemetry.index import SpanIndex

CLASSIFY = "/fenlei.v1.Pipeline/Classify"
WATCH = "/fenlei.v1.Jobs/WatchJob"
# Asked again and again (the answer merges what changed), now and then another.
QUESTIONS = [(5, frozenset())] * 6 + [(200, frozenset()), (3, frozenset({WATCH}))]


def span(trace: str, span_id: str, parent: str, milliseconds: float, *, status: str = "ok", **attributes: str) -> str:
    """One line of the collector's file: trace and ids as hex digits repeated to their length."""
    return spans.Span(
        trace * 32,
        span_id * 16,
        parent * 16 if parent else "",
        "gateway",
        "ingress",
        "server",
        0,
        int(milliseconds * 1e6),
        status=status,
        attributes=attributes,
    ).to_json()


def append(folder: Path, *lines: str, end: str = "\n") -> None:
    """What the collector does with an export."""
    with (folder / spans.FILE_NAME).open("a", encoding="utf-8") as file:
        file.write("".join(line + end for line in lines))


def rotate(folder: Path) -> None:
    (folder / spans.FILE_NAME).replace(folder / f"{spans.FILE_NAME}.1")


def listed(index: SpanIndex, count: int = 10, skipped: frozenset[str] = frozenset()) -> list[tuple[str, float, bool]]:
    return [(t.trace_id[0], t.duration_ms, t.error) for t in index.slowest(count, skipped)]


def fresh(home: Path, count: int = 10, skipped: frozenset[str] = frozenset()) -> list[tuple[str, float, bool]]:
    kept = spans.read(home)
    errors = {s.trace_id for s in kept if s.status == "error"}
    return [(s.trace_id[0], s.duration_ms, s.trace_id in errors) for s in spans.slowest(kept, count, skipped)]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    spans.directory(tmp_path).mkdir()
    return tmp_path


@pytest.fixture
def index(home: Path) -> Iterator[SpanIndex]:
    kept = SpanIndex(spans.directory(home))
    yield kept
    kept.close()


def test_appended_spans_are_picked_up_and_a_late_parent_becomes_the_start(home: Path, index: SpanIndex) -> None:
    folder = spans.directory(home)
    assert listed(index) == []
    append(folder, span("a", "2", "1", 10.0), span("b", "3", "", 20.0, **{"grpc.path": CLASSIFY}))
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False)]
    # The child's parent arrives in a later export, slower and failed: it is the trace's start now.
    append(folder, span("a", "1", "", 30.0, status="error"), span("c", "4", "", 5.0))
    assert listed(index) == fresh(home) == [("a", 30.0, True), ("b", 20.0, False), ("c", 5.0, False)]
    assert listed(index, 10, frozenset({CLASSIFY})) == fresh(home, 10, frozenset({CLASSIFY})) == [("a", 30.0, True), ("c", 5.0, False)]
    assert [s.span_id[0] for s in index.trace("a" * 32)] == ["2", "1"]


def test_what_was_read_is_not_read_again(home: Path, index: SpanIndex) -> None:
    folder = spans.directory(home)
    append(folder, span("a", "1", "", 10.0))
    assert listed(index) == [("a", 10.0, False)]
    # The same bytes rewritten in place (the collector never does): were they read again, "a" would take 90 ms.
    path = folder / spans.FILE_NAME
    path.write_text(path.read_text().replace('"end_ns": 10000000', '"end_ns": 90000000'))
    append(folder, span("b", "2", "", 20.0))
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False)]
    assert fresh(home) == [("a", 90.0, False), ("b", 20.0, False)]


def test_a_rotation_is_picked_up_and_what_it_dropped_is_forgotten(home: Path, index: SpanIndex) -> None:
    folder = spans.directory(home)
    append(folder, span("a", "1", "", 10.0))
    rotate(folder)
    append(folder, span("b", "2", "", 20.0), span("c", "4", "3", 1.0))
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False), ("c", 1.0, False)]
    # The collector writes the end of an export, rotates (the file with "a" goes), and starts a new file,
    # where the parent of c's spans comes.
    append(folder, span("c", "5", "3", 2.0, status="error"))
    rotate(folder)
    append(folder, span("c", "3", "", 40.0), span("d", "6", "", 30.0))
    assert listed(index) == fresh(home) == [("c", 40.0, True), ("d", 30.0, False), ("b", 20.0, False)]
    assert [s.span_id[0] for s in index.trace("c" * 32)] == ["4", "5", "3"]
    with pytest.raises(NotFound):
        index.trace("a" * 32)


def test_a_line_being_written_is_read_once_whole(home: Path, index: SpanIndex) -> None:
    folder = spans.directory(home)
    whole = span("b", "2", "", 20.0)
    append(folder, span("a", "1", "", 10.0))
    append(folder, whole[:40], end="")
    assert listed(index) == [("a", 10.0, False)]
    append(folder, whole[40:] + "\n" + span("c", "3", "", 5.0), end="")  # even one whose JSON is complete
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False)]
    append(folder, "")
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False), ("c", 5.0, False)]


def test_a_file_that_shrank_is_read_again(home: Path, index: SpanIndex) -> None:
    folder = spans.directory(home)
    append(folder, span("a", "1", "", 10.0), span("b", "2", "", 20.0))
    assert listed(index) == [("b", 20.0, False), ("a", 10.0, False)]
    (folder / spans.FILE_NAME).write_text(span("c", "3", "", 5.0) + "\n")
    assert listed(index) == [("c", 5.0, False)]
    (folder / spans.FILE_NAME).unlink()
    assert listed(index) == []


def child(trace: str, span_id: str, parent: str, draw: random.Random) -> spans.Span:
    start = draw.randrange(4)
    return spans.Span(trace, span_id, parent, "pipeline", CLASSIFY, "server", start, start + draw.randrange(9))


def test_the_answers_are_a_fresh_read_s_through_exports_and_rotations(home: Path, index: SpanIndex) -> None:
    """Traces written out of order (children first, a parent in a later export, some never),
    over many exports and rotations; after each, every answer is compared with a fresh read's."""
    folder, draw = spans.directory(home), random.Random(7)
    pending: list[str] = []
    for number in range(120):
        trace = f"{number:032x}"
        # Each child of the root or of an earlier child; now and then more than a short trace's.
        ids = [f"{number:016x}", *(f"{number:08x}{child:08x}" for child in range(1, draw.choice([2, 3, 4, 4, 21])))]
        children = [child(trace, span_id, draw.choice(ids[:place]), draw) for place, span_id in enumerate(ids[1:], 1)]
        root = spans.Span(  # starts and durations tie, a child may start before its parent: the answers may not differ
            trace, ids[0], "", "gateway", "ingress", "server", 1, 1 + draw.randrange(10),
            status=draw.choice(["ok", "ok", "error"]), attributes={"grpc.path": draw.choice([CLASSIFY, WATCH])},
        )  # fmt: skip
        pending += [s.to_json() for s in children] + ([root.to_json()] if draw.random() < 0.9 else [])
        draw.shuffle(pending)
        while len(pending) > 6:  # an export: the spans of several traces, in the order they ended
            append(folder, *(pending.pop() for _ in range(draw.randrange(1, 6))))
            if draw.random() < 0.05:
                rotate(folder)
            count, skipped = draw.choice(QUESTIONS)
            assert listed(index, count, skipped) == fresh(home, count, skipped)
        asked = f"{draw.randrange(number + 1):032x}"
        kept = [s for s in spans.read(home) if s.trace_id == asked]
        if kept:
            assert index.trace(asked) == kept
        else:
            with pytest.raises(NotFound):
                index.trace(asked)
