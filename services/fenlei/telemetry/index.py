"""The kept spans (fenlei.telemetry.spans) indexed for what the telemetry service is asked
often (the console's services page asks every two seconds): the slowest traces, one trace.

The collector only appends to spans.jsonl, and rotates it by renaming it spans.jsonl.1. Each
file is therefore indexed once, under its identity (device and inode) wherever it has moved,
and then only what was appended to it is read: a question costs four stat calls when nothing
was written; otherwise the new lines, and the traces they touched merged into the last
answer (all traces ranked again after a rotation, or when the answer held a touched one). A
file that shrank is indexed anew; one at neither path is forgotten. Per trace and file the
index keeps its span ids, the spans that may be its start, what its spans name and where its
lines begin: less than half the file. One trace's spans are read back from their lines.
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import threading
from array import array
from collections.abc import Collection
from dataclasses import dataclass
from io import BufferedReader
from operator import attrgetter
from pathlib import Path

from fenlei.telemetry.spans import FILE_NAME, Span, one_trace, parse_trace_id, what

Identity = tuple[int, int]  # a file's device and inode
SHORT_TRACE = 16  # span ids a trace's part keeps in a tuple (a request's, through every hop, fit)


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """A trace as a list of the slowest shows it (spans.slowest): by its start, its first span
    whose parent is not among its spans."""

    trace_id: str
    service: str  # the start's
    what: str  # what the start did (spans.what)
    start_ns: int
    end_ns: int
    error: bool  # one of its spans ended in error
    names: tuple[str, ...]  # its spans' names and the methods Envoy's carried
    rank: tuple[int, int, int]  # the start's duration, then (negated) where the trace was first written

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


_ranked = attrgetter("rank")
_Orphan = tuple[int, int, int, str, str]  # a span's start_ns, offset, end_ns, service, what


class _Part:
    """One trace's spans in one file."""

    __slots__ = ("error", "ids", "names", "offsets", "orphans")

    def __init__(self) -> None:
        self.ids: tuple[str, ...] | set[str] = ()  # a tuple while short: a set's table is several times its size
        self.orphans: dict[str, list[_Orphan]] = {}  # its spans whose parent is not among them, by that parent
        self.names: tuple[str, ...] = ()
        self.error = False
        self.offsets = array("Q")

    def add(self, span: Span, offset: int) -> None:
        if isinstance(self.ids, set):
            self.ids.add(span.span_id)
        elif len(self.ids) < SHORT_TRACE:
            self.ids += (span.span_id,)
        else:
            self.ids = {*self.ids, span.span_id}
        self.orphans.pop(span.span_id, None)  # its children, found a parent, are let go
        done = what(span)
        if span.parent_span_id not in self.ids:
            self.orphans.setdefault(span.parent_span_id, []).append(
                (span.start_ns, offset, span.end_ns, sys.intern(str(span.service)), sys.intern(done))
            )
        for name in (str(span.name), done):
            if name not in self.names:
                self.names += (sys.intern(name),)
        self.error = self.error or span.status == "error"
        self.offsets.append(offset)


class _FileIndex:
    """One spans file's traces, read up to `end`, the end of its last whole line."""

    def __init__(self, handle: BufferedReader) -> None:
        self.handle = handle
        status = os.fstat(handle.fileno())
        self.identity: Identity = (status.st_dev, status.st_ino)
        self.end = 0
        self.traces: dict[str, _Part] = {}

    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    def catch_up(self, touched: dict[str, None]) -> None:
        """Indexes the whole lines past `end`, naming their traces in `touched`."""
        self.handle.seek(self.end)
        for line in self.handle:
            if not line.endswith(b"\n"):
                return  # being written: read once whole
            try:
                span = Span(**json.loads(line))
            except (ValueError, TypeError):
                pass  # no span: a line cut short when the collector stopped while writing it
            else:
                self.traces.setdefault(span.trace_id, _Part()).add(span, self.end)
                touched[span.trace_id] = None
            self.end += len(line)

    def spans_of(self, trace_id: str) -> list[Span]:
        part = self.traces.get(trace_id)
        found = []
        for offset in part.offsets if part else ():
            self.handle.seek(offset)
            found.append(Span(**json.loads(self.handle.readline())))
        return found


def _summary(trace_id: str, parts: list[tuple[int, _Part]]) -> TraceSummary | None:
    """A trace's summary from its parts, by file (its place, the oldest first); None when no span starts it."""
    starts = [
        (orphan[0], place, orphan[1], orphan)
        for place, part in parts
        for parent, orphans in part.orphans.items()
        if not any(parent in other.ids for _, other in parts)
        for orphan in orphans
    ]
    if not starts:
        return None
    # The earliest; of equals, the first written, as spans.roots
    start_ns, _, end_ns, service, done = min(starts, key=lambda start: start[:3])[3]
    place, first = parts[0]
    names = first.names if len(parts) == 1 else tuple(dict.fromkeys(name for _, part in parts for name in part.names))
    error = any(part.error for _, part in parts)
    return TraceSummary(trace_id, service, done, start_ns, end_ns, error, names, (end_ns - start_ns, -place, -first.offsets[0]))


class SpanIndex:
    """The spans kept in a folder (<home>/telemetry), indexed as the collector writes them.
    Its answers are those of spans.slowest and spans.one_trace over spans.read's, from any thread.

    It holds open each file it knows: a deleted file's inode, once free, soon names a new
    file, which must not pass for the one indexed."""

    def __init__(self, folder: Path) -> None:
        self.paths = (folder / f"{FILE_NAME}.1", folder / FILE_NAME)  # the oldest first
        self._files: list[_FileIndex] = []  # as at the last question, the oldest first
        self._summaries: dict[str, TraceSummary | None] = {}
        self._last: tuple[tuple[int, frozenset[str]], list[TraceSummary]] | None = None
        self._changed: set[str] | None = set()  # the traces changed since the last answer; None: all
        self._lock = threading.Lock()

    def slowest(self, count: int, skipped: Collection[str] = ()) -> list[TraceSummary]:
        """The `count` slowest traces; skipped: method paths whose traces are left out."""
        with self._lock:
            self._refresh()
            question = (count, frozenset(skipped))
            last, changed = self._last, self._changed
            if last is None or last[0] != question or changed is None or not changed.isdisjoint(t.trace_id for t in last[1]):
                candidates: Collection[TraceSummary | None] = self._summaries.values()
            elif changed:
                candidates = [*last[1], *(self._summaries[trace_id] for trace_id in changed)]
            else:
                return last[1]
            shown = (summary for summary in candidates if summary and question[1].isdisjoint(summary.names))
            self._last, self._changed = (question, heapq.nlargest(count, shown, key=_ranked)), set()
            return self._last[1]

    def trace(self, trace_id: str) -> list[Span]:
        """One trace's spans in the order they were written."""
        wanted = parse_trace_id(trace_id)
        with self._lock:
            self._refresh()
            return one_trace([span for file in self._files for span in file.spans_of(wanted)], wanted)

    def close(self) -> None:
        with self._lock:
            self._take([], {})

    def _refresh(self) -> None:
        """Indexes the files kept now to their ends."""
        known = {file.identity: file for file in self._files}
        found: dict[Identity, _FileIndex] = {}
        # The newest first: should the collector rotate meanwhile, one file shows at both paths (and its successor
        # next time), rather than one at neither.
        for path in reversed(self.paths):
            try:
                status = path.stat()
                file = known.get((status.st_dev, status.st_ino)) or _FileIndex(path.open("rb"))
            except FileNotFoundError:
                continue
            if known.setdefault(file.identity, file) is not file:  # the path had moved on to a known file since the stat
                file.handle.close()
                file = known[file.identity]
            found.setdefault(file.identity, file)
        files: list[_FileIndex] = []
        touched: dict[str, None] = {}
        for file in reversed(found.values()):
            size = file.size()
            if size < file.end:  # not what was indexed: the same file (and handle), read anew
                file = _FileIndex(file.handle)
            if size != file.end:
                file.catch_up(touched)
            files.append(file)
        self._take(files, touched)

    def _take(self, files: list[_FileIndex], touched: dict[str, None]) -> None:
        """Takes the files kept now, and the traces whose spans were just read; lets go of the others."""
        kept = {file.identity for file in files}
        for file in self._files:
            if file.identity not in kept:
                file.handle.close()
        if files[: len(self._files)] != self._files:  # a file went (rotated away), or came before one kept
            self._summaries, self._changed = {}, None
            touched = dict.fromkeys(trace_id for file in files for trace_id in file.traces)
        elif self._changed is not None:
            self._changed.update(touched)
        self._files = files
        for trace_id in touched:
            self._summaries[trace_id] = _summary(
                trace_id, [(place, part) for place, file in enumerate(files) if (part := file.traces.get(trace_id))]
            )
