"""JSON logs: one object per line with service, level, trace_id and request_id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "service": self.service,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": trace_id.get(),
            "request_id": request_id.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def bind_request(metadata: tuple[tuple[str, str | bytes], ...] | None) -> None:
    """Takes x-request-id and the W3C traceparent's trace id from call metadata."""
    rid = tid = ""
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str):
            rid = value
        elif key == "traceparent" and isinstance(value, str):
            parts = value.split("-")
            tid = parts[1] if len(parts) == 4 else ""
    request_id.set(rid)
    trace_id.set(tid)
