"""The console's routes in the gateway's route table: Envoy answers every file of the
installed console itself, with its content type, without a token, the deny list applying
as on every route; "/" and "/ui" lead to "/ui/"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fenlei.gateway import console
from fenlei.gateway.config import DENY_ADDRESS, DENY_SUBJECT, GatewaySettings, route_table

RULES = [{"id": 7, "subject": "mallory", "address": ""}, {"id": 8, "subject": "", "address": "10.0.0.0/8"}]
TOKEN_FILTERS = ("envoy.filters.http.jwt_authn", "envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.rbac")


def routes_of(table: dict[str, Any]) -> list[dict[str, Any]]:
    return table["virtual_hosts"][0]["routes"]


def header(route: dict[str, Any], name: str) -> str:
    return next(h["header"]["value"] for h in route["response_headers_to_add"] if h["header"]["key"] == name)


def test_every_file_of_the_installed_console_is_served_with_its_content_type() -> None:
    files = sorted(p.relative_to(console.UI).as_posix() for p in console.UI.rglob("*") if p.is_file())
    assert {"index.html", "app.js", "console.css"} <= set(files)
    routes = {r["match"]["path"]: r for r in console.console_routes() if "direct_response" in r}
    assert sorted(routes) == sorted(["/ui/", *(f"/ui/{f}" for f in files)])
    expected = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    for url, route in routes.items():
        served = Path(route["direct_response"]["body"]["filename"])
        assert served.is_file() and served.resolve().is_relative_to(console.UI.resolve()), url
        assert route["direct_response"]["status"] == 200
        assert header(route, "content-type") == expected[served.suffix], url
        assert header(route, "x-content-type-options") == "nosniff"
        assert "default-src 'self'" in header(route, "content-security-policy")  # nothing from another host
    assert routes["/ui/"]["direct_response"]["body"] == routes["/ui/index.html"]["direct_response"]["body"]


def test_the_root_and_ui_without_its_slash_redirect_to_the_console() -> None:
    redirects = {r["match"]["path"]: r["redirect"] for r in console.console_routes() if "redirect" in r}
    assert redirects == {
        "/": {"path_redirect": "/ui/", "response_code": "FOUND"},
        "/ui": {"path_redirect": "/ui/", "response_code": "FOUND"},
    }


def test_a_file_added_to_the_folder_gets_its_route(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "lines.js").write_text("export {};")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    routes = {r["match"]["path"]: r for r in console.console_routes(directory=tmp_path) if "direct_response" in r}
    assert sorted(routes) == ["/ui/", "/ui/charts/lines.js", "/ui/index.html", "/ui/logo.png"]
    assert routes["/ui/charts/lines.js"]["direct_response"]["body"] == {"filename": str(tmp_path / "charts" / "lines.js")}
    assert header(routes["/ui/logo.png"], "content-type") == "image/png"


def test_a_file_envoy_could_not_answer_and_a_missing_index_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index.html"):
        console.console_routes(directory=tmp_path)
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "big.js").write_bytes(b" " * (console.MAX_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="big.js"):
        console.console_routes(directory=tmp_path)


def test_a_gateway_that_names_its_own_files_reads_the_console_beside_its_openapi_document() -> None:
    settings = GatewaySettings(openapi_document="/app/services/fenlei/v1/fenlei.swagger.json")
    index = next(r for r in routes_of(route_table(settings)) if r["match"].get("path") == "/ui/index.html")
    assert index["direct_response"]["body"] == {"filename": "/app/services/fenlei/gateway/ui/index.html"}


def test_the_console_needs_no_token_but_the_deny_list_applies_and_api_paths_stay_the_apis() -> None:
    routes = routes_of(route_table(GatewaySettings(), deny=RULES))
    names = [r["name"] for r in routes]
    ours = [r for r in routes if r["name"].startswith("console")]
    assert len(ours) == len(console.console_routes())
    # before the catch-all routes, after every API route: no API path is shadowed
    assert max(names.index(r["name"]) for r in ours) < names.index("lift-deny-rest") < names.index("unknown")
    assert min(names.index(r["name"]) for r in ours) > max(
        i for i, r in enumerate(routes) if r["match"].get("path", "").startswith("/fenlei.v1.")
    )
    assert not any(r["match"].get("path", "").startswith("/v1/") for r in ours)
    for route in ours:
        filters = route["typed_per_filter_config"]
        assert all(filters[name]["@type"].endswith("FilterConfig") and filters[name]["disabled"] for name in TOKEN_FILTERS), route["name"]
        assert list(filters[DENY_SUBJECT]["rbac"]["rules"]["policies"]) == ["deny-7"], route["name"]
        assert list(filters[DENY_ADDRESS]["rbac"]["rules"]["policies"]) == ["deny-8"], route["name"]
