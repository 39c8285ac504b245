"""The gateway's route tables, with and without the mesh policy: every route has filter
settings of its own (a dict shared between routes and changed for one changed them all:
"buffer off" for the streams reached every unary route of the mesh's gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fenlei.gateway.config import GatewaySettings, public_methods, route_table
from fenlei.sidecar.control import ControlPlane
from fenlei.sidecar.xds import policy_routes

BUFFER, BODY_LIMIT, RATE_LIMIT = "envoy.filters.http.buffer", "envoy.filters.http.body_size_limit", "envoy.filters.http.local_ratelimit"


@pytest.fixture(params=["without-policy", "with-policy"])
def table(request, tmp_path: Path) -> dict[str, Any]:
    policy = ControlPlane(tmp_path).policy() if request.param == "with-policy" else None  # the mesh's defaults, from mesh/istio
    return route_table(GatewaySettings(), policy)


def routes(table: dict[str, Any]) -> list[dict[str, Any]]:
    return table["virtual_hosts"][0]["routes"]


def shared_objects(value: Any, where: str = "", seen: dict[int, str] | None = None) -> Iterator[tuple[str, str]]:
    """Places in `value` that hold a dict or list already held elsewhere in it."""
    seen = {} if seen is None else seen
    if not isinstance(value, (dict, list)):
        return
    if id(value) in seen:
        yield seen[id(value)], where
        return
    seen[id(value)] = where
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        yield from shared_objects(item, f"{where}/{key}", seen)


def test_no_two_places_in_a_route_table_share_an_object(table) -> None:
    assert list(shared_objects(table)) == []


def test_policy_routes_share_no_object(tmp_path) -> None:
    policy = ControlPlane(tmp_path).policy()
    methods = [m for m in public_methods() if m.service == "pipeline"]
    assert list(shared_objects(policy_routes(policy, "pipeline", paths=[(m.path, m.streaming) for m in methods]))) == []


def test_only_streams_pass_unbuffered_and_every_route_limits_per_caller(table) -> None:
    streaming = {m.path: m.streaming for m in public_methods()}
    checked = 0
    for route in routes(table):
        path = route["match"].get("path")
        if path not in streaming:
            continue
        filters = route["typed_per_filter_config"]
        off = {name for name in (BUFFER, BODY_LIMIT) if filters.get(name, {}).get("disabled")}
        assert off == ({BUFFER, BODY_LIMIT} if streaming[path] else set()), (route["name"], off)
        limit = filters[RATE_LIMIT]
        assert [d["entries"][0]["key"] for d in limit["descriptors"]] == ["subject", "subject"], route["name"]
        checked += 1
    assert checked >= len(streaming)
