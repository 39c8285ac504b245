"""The web console's routes: the gateway's Envoy answers every file of the installed
console itself (a direct response read from the file), so the console needs no server of
its own and calls only the public REST API beside it.

The files are those present in `ui/` next to this module (in a checkout a link to the
top-level gateway/ui folder, in a wheel its copy): adding a file needs no code change.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

UI = Path(__file__).parent / "ui"
PREFIX = "/ui/"
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
        for path in ("/", PREFIX.rstrip("/"))
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
