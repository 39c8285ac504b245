"""The web console's routes: the gateway's Envoy answers every file of the installed
console itself (a direct response read from the file), so the console needs no server of
its own and calls only the public REST API beside it. On Kubernetes the same routes make
the bootstrap of the console's own Envoy (`server`, a Deployment of its own), and the
gateway forwards the console's paths to it (`forwarded_routes`).

The files are those present in `ui/` next to this module (in a checkout a link to the
top-level gateway/ui folder, in a wheel its copy): adding a file needs no code change.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fenlei.envoy.config import socket_address, typed

UI = Path(__file__).parent / "ui"
PREFIX = "/ui/"
# Sent on to PREFIX.
REDIRECTED = ("/", PREFIX.rstrip("/"))
INDEX = "index.html"
# Envoy's limit for a direct response's body (route_table's max_direct_response_body_size_bytes).
MAX_FILE_BYTES = 1024 * 1024
# Fixed for what the console is made of: the system's own table differs between machines.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The page may load and call only what this gateway serves: no CDN, no other host.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",  # revalidated on every load: a new release shows at once
}


def content_type(path: Path) -> str:
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def console_files(directory: Path = UI) -> dict[str, Path]:
    """URL path → file, for every file of the console; the index also answers PREFIX."""
    files = {PREFIX + path.relative_to(directory).as_posix(): path for path in sorted(directory.rglob("*")) if path.is_file()}
    if PREFIX + INDEX not in files:
        raise FileNotFoundError(f"the console's {INDEX} is missing from {directory}: reinstall fenlei")
    for url, path in files.items():
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path} is over the {MAX_FILE_BYTES} bytes Envoy answers from a file; split it ({url})")
    files[PREFIX] = files[PREFIX + INDEX]
    return files


def console_routes(openapi_document: str = "", directory: Path = UI) -> list[dict[str, Any]]:
    """One route per file of directory (a direct response with its content type), and "/"
    and "/ui" sent on to PREFIX. Without filter settings: the route table adds those.

    openapi_document: where the gateway's Envoy reads the OpenAPI document when it names
    its own files (a container, GatewaySettings.openapi_document: .../fenlei/v1/...); the
    console's files are then read from the same package (.../fenlei/gateway/ui)."""
    served_from = Path(openapi_document).parent.parent / UI.relative_to(UI.parent.parent) if openapi_document else directory
    redirects = [
        {
            "name": f"console-redirect{path.replace('/', '-').rstrip('-')}",
            "match": {"path": path},
            "redirect": {"path_redirect": PREFIX, "response_code": "FOUND"},
        }
        for path in REDIRECTED
    ]
    files = [
        {
            "name": f"console{url}",
            "match": {"path": url},
            "direct_response": {"status": 200, "body": {"filename": str(served_from / path.relative_to(directory))}},
            "response_headers_to_add": [
                {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for key, value in {"content-type": content_type(path), **SECURITY_HEADERS}.items()
            ],
        }
        for url, path in console_files(directory).items()
    ]
    return [*redirects, *files]


def forwarded_routes(cluster: str) -> list[dict[str, Any]]:
    """The gateway's routes when the console has a server of its own: its redirects and
    every file under PREFIX go to cluster. Without filter settings, as console_routes."""
    matches = {**{f"console{path}": {"path": path} for path in REDIRECTED}, f"console{PREFIX}*": {"prefix": PREFIX}}
    return [
        {"name": name, "match": match, "route": {"cluster": cluster}, "metadata": {"filter_metadata": {"fenlei": {"service": cluster}}}}
        for name, match in matches.items()
    ]


def server(routes: list[dict[str, Any]], *, port: int, admin_port: int, metrics_port: int) -> dict[str, Any]:
    """The bootstrap of the console's own Envoy: routes (console_routes) on 0.0.0.0:port,
    anything else 404; Envoy's Prometheus metrics as /metrics on metrics_port (the admin
    interface itself stays on loopback). No access log: the gateway logs every request it
    forwards here, and the kubelet's probes would fill it."""

    def manager(name: str, route_config: dict[str, Any]) -> dict[str, Any]:
        return typed(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix=name,
            codec_type="AUTO",  # HTTP/1.1 from a kubelet's probe, h2c from the gateway
            request_headers_timeout="10s",
            common_http_protocol_options={"idle_timeout": "300s", "headers_with_underscores_action": "REJECT_REQUEST"},
            route_config=route_config,
            http_filters=[{"name": "envoy.filters.http.router", "typed_config": typed("envoy.extensions.filters.http.router.v3.Router")}],
        )

    def listener(name: str, listen_port: int, route_config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "address": socket_address("0.0.0.0", listen_port),
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager(name, route_config)}]}
            ],
        }

    def not_found() -> dict[str, Any]:
        return {"name": "unknown", "match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no such file"}}}

    files = {
        "name": "console",
        "max_direct_response_body_size_bytes": MAX_FILE_BYTES,
        "virtual_hosts": [{"name": "console", "domains": ["*"], "routes": [*routes, not_found()]}],
    }
    metrics = {
        "name": "metrics",
        "virtual_hosts": [
            {
                "name": "metrics",
                "domains": ["*"],
                "routes": [
                    {"match": {"path": "/metrics"}, "route": {"cluster": "admin", "prefix_rewrite": "/stats/prometheus"}},
                    not_found(),
                ],
            }
        ],
    }
    return {
        "node": {"id": "console", "cluster": "console"},
        "admin": {"address": socket_address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [listener("console", port, files), listener("metrics", metrics_port, metrics)],
            "clusters": [
                {
                    "name": "admin",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "admin",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address("127.0.0.1", admin_port)}}]}],
                    },
                }
            ],
        },
    }
