"""Merging the mesh's logs (fenlei.local.logs): every file's lines in time order, a line
that is not JSON in its place with its file's name, filters by service or process, trace
and time, and reading on as the files grow."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from fenlei.errors import InvalidInput
from fenlei.local import logs

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# Envoy writes its own log's times in local time: 2026-12-01T10:00:01.500Z here
ENVOY_TIME = datetime.fromtimestamp(1_796_119_201.5).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def entry(time: str, service: str, message: str, trace_id: str | None = "", **fields: object) -> str:
    return json.dumps({"time": time, "service": service, "level": "INFO", "message": message, "trace_id": trace_id, **fields})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = logs.directory(tmp_path)
    folder.mkdir()
    (folder / "pipeline.log").write_text(
        entry("2026-12-01T10:00:00.100Z", "pipeline", "listening")
        + "\n"
        + entry("2026-12-01T10:00:02.300Z", "pipeline", "handled", TRACE, method="/fenlei.v1.Pipeline/Classify")
        + "\nTraceback (most recent call last):\n"
    )
    (folder / "gateway.access.log").write_text(
        entry("2026-12-01T10:00:02.100Z", "gateway", "POST /v1/classify 200 OK 4ms", TRACE.upper())
        + "\n"
        + entry("2026-12-01T10:00:05.000Z", "gateway", "GET /openapi.json 200", None)  # Envoy: null for a missing header
        + "\n"
    )
    (folder / "segmenter.log").write_text(entry("2026-12-01T10:00:01.000Z", "segmenter", "serving") + "\n")
    (folder / "gateway.log").write_text(f"[{ENVOY_TIME}][17][warning][main] no limit on downstream connections\n")
    return tmp_path


def messages(lines: list[logs.Line]) -> list[str]:
    return [line.field("message") or line.text for line in lines]


def test_every_file_merged_in_time_order_with_other_lines_in_their_place(home) -> None:
    lines = logs.merged(home, logs.Selection())
    assert messages(lines) == [
        "listening",
        "serving",
        f"[{ENVOY_TIME}][17][warning][main] no limit on downstream connections",  # at its own time
        "POST /v1/classify 200 OK 4ms",
        "handled",
        "Traceback (most recent call last):",  # after the line before it in its file
        "GET /openapi.json 200",
    ]
    assert logs.render(lines[5]) == "pipeline.log: Traceback (most recent call last):"
    assert logs.render(lines[4]) == (f"2026-12-01T10:00:02.300Z pipeline INFO handled trace_id={TRACE} method=/fenlei.v1.Pipeline/Classify")


def test_a_trace_selects_its_lines_from_every_process_whatever_the_case(home) -> None:
    assert messages(logs.merged(home, logs.Selection(trace_id=TRACE))) == ["POST /v1/classify 200 OK 4ms", "handled"]


def test_names_select_services_or_processes(home) -> None:
    assert messages(logs.merged(home, logs.Selection(frozenset({"segmenter"})))) == ["serving"]
    # a process by its file's name; the line that is not JSON belongs to its file's process
    assert messages(logs.merged(home, logs.Selection(frozenset({"pipeline"}))))[-1] == "Traceback (most recent call last):"
    assert len(logs.merged(home, logs.Selection(frozenset({"gateway"})))) == 3  # its access log and Envoy's own
    with pytest.raises(InvalidInput, match="no service or process named segmentr; processes with logs: gateway, pipeline, segmenter"):
        logs.check(home, ["segmentr", "pipeline", "classifier"])  # classifier: a service with no log yet
    with pytest.raises(InvalidInput, match="no logs under .*: start the mesh there with `fenlei up`"):
        logs.check(home / "elsewhere", [])


def test_since_takes_a_duration_back_or_an_iso_time(home) -> None:
    now = 1_796_119_205.0  # 2026-12-01T10:00:05Z
    assert logs.since("3s", now) == "2026-12-01T10:00:02.000Z"
    assert logs.since("1.5m", now) == "2026-12-01T09:58:35.000Z"
    assert logs.since("2026-12-01T10:00:02") == logs.since("2026-12-01T18:00:02+08:00") == "2026-12-01T10:00:02.000Z"
    assert messages(logs.merged(home, logs.Selection(since=logs.since("3s", now)))) == [
        "POST /v1/classify 200 OK 4ms",
        "handled",
        "Traceback (most recent call last):",
        "GET /openapi.json 200",
    ]
    with pytest.raises(InvalidInput, match="--since takes a duration"):
        logs.since("yesterday")


def test_a_reader_goes_on_where_it_stopped_and_waits_for_whole_lines(home) -> None:
    reader = logs.Reader(home)
    assert len(reader.read()) == 7
    assert reader.read() == []
    with open(logs.directory(home) / "segmenter.log", "a") as handle:
        handle.write(entry("2026-12-01T10:00:06.000Z", "segmenter", "draining") + "\n" + '{"time": "2026-12-01T10:00:0')
    (logs.directory(home) / "classifier.log").write_text(entry("2026-12-01T10:00:05.500Z", "classifier", "serving") + "\n")
    assert [(line.field("service"), line.field("message")) for line in reader.read()] == [
        ("classifier", "serving"),
        ("segmenter", "draining"),
    ]
    with open(logs.directory(home) / "segmenter.log", "a") as handle:
        handle.write('7.000Z", "service": "segmenter", "message": "stopped"}\n')
    assert messages(reader.read()) == ["stopped"]


def test_an_entry_with_lines_in_its_message_or_its_fields_is_shown_on_one_line() -> None:
    error = "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.DEADLINE_EXCEEDED\n>"
    line = logs.Line("2026-12-01T10:00:00.000Z", "pipeline.log", "", {"service": "pipeline", "message": f"failed: {error}", "error": error})
    shown = logs.render(line)
    assert "\n" not in shown and shown.startswith("pipeline ")
    assert json.dumps(error, ensure_ascii=False) in shown  # escaped, so it reads back whole
