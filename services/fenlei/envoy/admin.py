"""A client of Envoy's admin interface (loopback only): readiness, bound ports, loaded
configuration, statistics and the graceful drain."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Admin:
    address: str  # host:port of the admin listener

    def get(self, path: str) -> str:
        """The answer's body, or "" when Envoy does not answer (not up, or gone)."""
        return self._call("GET", path)

    def post(self, path: str) -> str:
        return self._call("POST", path)

    def _call(self, method: str, path: str) -> str:
        try:
            request = urllib.request.Request(f"http://{self.address}{path}", method=method)
            with urllib.request.urlopen(request, timeout=2) as answer:
                return answer.read().decode().strip()
        except OSError:
            return ""

    def ready(self) -> bool:
        return self.get("/ready") == "LIVE"

    def listener_port(self, name: str | None = None) -> int:
        """The port a listener bound (the first one when name is None)."""
        listeners = json.loads(self.get("/listeners?format=json") or '{"listener_statuses": []}')["listener_statuses"]
        for listener in listeners:
            if name is None or listener["name"] == name:
                return int(listener["local_address"]["socket_address"]["port_value"])
        raise LookupError(f"Envoy at {self.address} has no listener {name or ''} bound")

    def has_cluster(self, prefix: str) -> bool:
        return f"\n{prefix}" in "\n" + self.get("/clusters")

    def route_versions(self) -> set[str]:
        """version_info of every dynamic route configuration loaded."""
        dump = json.loads(self.get("/config_dump?resource=dynamic_route_configs") or '{"configs": []}')
        return {config.get("version_info") for config in dump["configs"]}

    def stats(self, prefix: str) -> dict[str, Any]:
        """Counters and gauges whose names start with prefix."""
        answer = json.loads(self.get(f"/stats?format=json&filter=^{prefix}") or '{"stats": []}')
        return {stat["name"]: stat["value"] for stat in answer["stats"] if "value" in stat}

    def drain_listeners(self) -> None:
        """Stop accepting connections, tell open ones to close (HTTP/2 GOAWAY), keep
        serving the requests already in flight. The graceful drain marks the open
        connections for closing; the plain one then closes the listeners at once."""
        self.post("/drain_listeners?graceful")
        self.post("/drain_listeners")
