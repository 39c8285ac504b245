"""Plain values as the well-known protobuf types every servicer answers with."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A time of the database (seconds since the epoch) as a Timestamp; None stays unset."""
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(value, message)
    return message
