"""The web console on Kubernetes: an Envoy of its own answers the console's files (the
routes the local gateway answers them with), and the cluster's gateway forwards /, /ui
and /ui/* to it, open to all but the deny list; the local gateway still answers them
itself. The console's bootstrap is run by the real Envoy (tests/manifests validates the
committed one) and asked for its files, its redirects and its metrics."""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import wait_for

from fenlei import kubernetes, services
from fenlei.envoy.binary import envoy_binary
from fenlei.gateway import console
from fenlei.gateway.config import CONSOLE, DENY_ADDRESS, DENY_SUBJECT, GatewaySettings, build, route_table

REPO = Path(__file__).resolve().parents[2]
TOKEN_FILTERS = ("envoy.filters.http.jwt_authn", "envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.rbac")
RULES = [{"id": 7, "subject": "mallory", "address": ""}, {"id": 8, "subject": "", "address": "10.0.0.0/8"}]
CONSOLE_SERVICE = f"{CONSOLE}.{kubernetes.NAMESPACE}.svc.cluster.local"


def routes_of(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return manager["route_config"]["virtual_hosts"][0]["routes"]


def serves_console_files(routes: list[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in routes if "redirect" in r or "/gateway/ui/" in str(r.get("direct_response", {}).get("body", {}))]


def test_the_kubernetes_gateway_forwards_the_console_paths_to_its_service() -> None:
    bootstrap = yaml.safe_load(kubernetes.gateway_bootstrap())
    routes = routes_of(bootstrap)
    assert serves_console_files(routes) == []
    forwarded = {tuple(r["match"].items())[0]: r for r in routes if r.get("route", {}).get("cluster") == CONSOLE}
    assert set(forwarded) == {("path", "/"), ("path", "/ui"), ("prefix", "/ui/")}
    for route in forwarded.values():
        filters = route["typed_per_filter_config"]
        assert all(
            filters[name] == {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True} for name in TOKEN_FILTERS
        )
    # before the catch-all 404, which would otherwise take them
    names = [r["name"] for r in routes]
    assert max(names.index(r["name"]) for r in forwarded.values()) < names.index("unknown")
    cluster = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == CONSOLE)
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (cluster["type"], address) == ("STRICT_DNS", {"address": CONSOLE_SERVICE, "port_value": kubernetes.CONSOLE_PORT})
    # every other route is the same as without the console's own server
    local = routes_of(build(kubernetes.GATEWAY_SETTINGS, {name: f"{name}:50051" for name in services.GATEWAY_CALLS}))
    assert [r for r in routes if r not in forwarded.values()] == [r for r in local if not r["name"].startswith("console")]


def test_the_deny_list_applies_to_the_forwarded_console_paths() -> None:
    routes = route_table(GatewaySettings(), deny=RULES, console_served=True)["virtual_hosts"][0]["routes"]
    forwarded = [r for r in routes if r.get("route", {}).get("cluster") == CONSOLE]
    assert len(forwarded) == 3
    for route in forwarded:
        assert {DENY_ADDRESS, DENY_SUBJECT} <= set(route["typed_per_filter_config"]), route["name"]


def test_the_local_gateway_still_answers_the_console_itself() -> None:
    bootstrap = build(GatewaySettings(), {name: f"127.0.0.1:{50051 + i}" for i, name in enumerate(services.GATEWAY_CALLS)})
    routes = routes_of(bootstrap)
    assert CONSOLE not in {c["name"] for c in bootstrap["static_resources"]["clusters"]}
    assert not [r for r in routes if r.get("route", {}).get("cluster") == CONSOLE]
    assert len(serves_console_files(routes)) == len(console.console_routes())


def _console_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    """The generated bootstrap with the image's paths pointed at this checkout, its
    listeners and admin moved to ports on loopback."""
    text = kubernetes.console_bootstrap()
    assert "/app/services/fenlei/gateway/ui/index.html" in text
    config = yaml.safe_load(text.replace("/app/services/", str(REPO / "services") + "/"))
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=ports[listener["name"]])
    config["admin"]["address"]["socket_address"]["port_value"] = ports["admin"]
    admin = config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    admin["address"]["socket_address"]["port_value"] = ports["admin"]
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def console_envoy(tmp_path) -> Iterator[dict[str, int]]:
    ports = dict(zip(("console", "metrics", "admin"), _free_ports(3), strict=True))
    command = [envoy_binary(), "-c", str(_console_config(tmp_path, ports)), "--disable-hot-restart", "--concurrency", "1"]
    with open(tmp_path / "envoy.log", "wb") as log:
        process = subprocess.Popen([*command, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or get(ports["console"], "/ui/index.html")[0] == 200, "the console's Envoy", timeout=30)
        assert process.poll() is None, (tmp_path / "envoy.log").read_text()
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=10)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except OSError:
        return 0, {}, b""


def test_the_console_envoy_answers_every_file_and_redirects(console_envoy) -> None:
    port = console_envoy["console"]
    for url, file in console.console_files().items():
        status, headers, body = get(port, url)
        assert status == 200, url
        assert body == file.read_bytes(), url
        assert headers["content-type"] == console.content_type(file), url
        assert {key: headers.get(key) for key in console.SECURITY_HEADERS} == console.SECURITY_HEADERS, url
    for path in ("/", "/ui"):
        status, headers, _ = get(port, path)
        # the Host the request named: behind the gateway, the address the browser used
        assert (status, headers.get("location")) == (302, f"http://127.0.0.1:{port}/ui/"), path
    assert get(port, "/ui/no-such-file.js")[0] == 404
    assert get(port, "/openapi.json")[0] == 404  # the API is the gateway's, not the console's


def test_the_console_envoy_serves_prometheus_metrics_and_nothing_else_of_its_admin(console_envoy) -> None:
    status, headers, body = get(console_envoy["metrics"], "/metrics")
    assert status == 200 and b"# TYPE envoy_cluster_upstream_cx_total counter" in body, body[:200]
    assert get(console_envoy["metrics"], "/quitquitquit")[0] == 404
    assert get(console_envoy["metrics"], "/config_dump")[0] == 404
