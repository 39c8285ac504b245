"""Pieces of Envoy configuration that the gateway and the sidecars share, and the files
through which Envoy takes its dynamic resources (file-based xDS: Envoy watches the
directory and reloads a file that is replaced, without a restart)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fenlei.runtime.logging import TIME_FORMAT

UNIX_PATH_MAX = 107
# Calls that are not logged one by one (as the services do not log them either).
UNLOGGED_PATHS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def disabled() -> dict[str, Any]:
    """A per-route filter configuration that turns the filter off on that route."""
    return typed("envoy.config.route.v3.FilterConfig", disabled=True)


def duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def grpc_health_checks() -> list[dict[str, Any]]:
    """Active grpc.health.v1 checks of a cluster's hosts (their overall status): a host that
    stops answering SERVING (down, stopped, draining) is unhealthy within a few seconds,
    whether the cluster has traffic or not."""
    every = "2s"
    check = {"timeout": "1s", "interval": every, "no_traffic_interval": every, "unhealthy_threshold": 2, "healthy_threshold": 1}
    return [{**check, "grpc_health_check": {}}]


def unreachable() -> dict[str, Any]:
    """The local replies (as an access-log filter) Envoy gives when it reached no host of
    the upstream: connection refused or reset, or no healthy host."""
    return {"response_flag_filter": {"flags": ["UF", "UC", "UH"]}}


def unavailable(service: str) -> str:
    """What such a reply says (a formatter string): the service first, then Envoy's reason."""
    return f"the {service} service is unavailable: %LOCAL_REPLY_BODY%"


def access_log(proxy: str, listener: str, path: Path | None) -> list[dict[str, Any]]:
    """An HttpConnectionManager's access log: a JSON line per request with the keys and the
    time of the services' lines (fenlei.runtime.logging), written to `path`, else to Envoy's
    stdout (a container's log). The trace and span ids are those of the request's
    traceparent as Envoy passes it on (its tracer's span, when it traces). "code" is the gRPC
    status; of a REST call at the gateway (whose transcoder turned the status into the HTTP
    one), it is Envoy's reading of the HTTP status."""

    def traceparent(start: int, end: int) -> str:
        # version-trace_id-span_id-flags: the ids by position (CEL's string functions)
        return f"%CEL('traceparent' in request.headers ? request.headers['traceparent'].substring({start}, {end}) : '')%"

    fields = {
        "time": f"%START_TIME({TIME_FORMAT})%",
        "service": proxy,
        "level": "INFO",
        "logger": f"envoy.access.{listener}",
        "message": "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% %DURATION%ms",
        "trace_id": traceparent(3, 35),
        "span_id": traceparent(36, 52),
        "request_id": "%REQ(X-REQUEST-ID)%",
        "method": "%REQ(:PATH)%",
        "code": "%GRPC_STATUS(SNAKE_STRING)%",
        "status": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "response_flags": "%RESPONSE_FLAGS%",
        "upstream": "%UPSTREAM_HOST%",
    }
    log_format = {
        "json_format": fields,
        "formatters": [cel_formatter()],
    }
    logged = [
        {"header_filter": {"header": {"name": ":path", "string_match": {"prefix": prefix}, "invert_match": True}}}
        for prefix in UNLOGGED_PATHS
    ]
    if path is None:
        logger = {
            "name": "envoy.access_loggers.stdout",
            "typed_config": typed("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", log_format=log_format),
        }
    else:
        logger = {
            "name": "envoy.access_loggers.file",
            "typed_config": typed("envoy.extensions.access_loggers.file.v3.FileAccessLog", path=str(path), log_format=log_format),
        }
    return [{**logger, "filter": {"and_filter": {"filters": [{"not_health_check_filter": {}}, *logged]}}}]


def cel_formatter() -> dict[str, Any]:
    """%CEL(expression)% in a format string, with CEL's string functions."""
    return {
        "name": "envoy.formatter.cel",
        "typed_config": typed("envoy.extensions.formatter.cel.v3.Cel", cel_config={"enable_string_functions": True}),
    }


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def pipe(path: Path) -> dict[str, Any]:
    if len(str(path)) > UNIX_PATH_MAX:
        raise ValueError(f"the Unix socket path {path} is longer than {UNIX_PATH_MAX} bytes; use a shorter FENLEI_HOME")
    return {"pipe": {"path": str(path), "mode": 0o600}}


def http2_options(max_requests_per_connection: int | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"explicit_http_config": {"http2_protocol_options": {}}}
    if max_requests_per_connection:
        options["common_http_protocol_options"] = {"max_requests_per_connection": max_requests_per_connection}
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", **options)
    }


def deadline(seconds: float | None) -> dict[str, Any]:
    """Route fields for an overall time limit. The limit is a maximum stream duration, not
    Envoy's route timeout, so it ends the call with DEADLINE_EXCEEDED (a route timeout
    reaches gRPC callers as UNAVAILABLE, which clients retry); a caller's shorter
    grpc-timeout wins. None or 0: no limit but the caller's own (streams)."""
    limit = (
        {"max_stream_duration": duration(seconds), "grpc_timeout_header_max": duration(seconds)}
        if seconds
        else {"grpc_timeout_header_max": "0s"}
    )
    return {"timeout": "0s", "max_stream_duration": limit}


def route_configuration(name: str, routes: list[dict[str, Any]], headers: dict[str, str] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]}
    if headers:
        config["response_headers_to_add"] = [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in headers.items()
        ]
    return config


def file_source(path: Path, directory: Path) -> dict[str, Any]:
    return {"path_config_source": {"path": str(path), "watched_directory": {"path": str(directory)}}, "resource_api_version": "V3"}


def write_resources(directory: Path, version: int, kind: str, resources: list[dict[str, Any]], file_name: str) -> None:
    """A DiscoveryResponse file, replaced atomically (Envoy watches for the move)."""
    type_url = {
        "cds": "envoy.config.cluster.v3.Cluster",
        "rds": "envoy.config.route.v3.RouteConfiguration",
        "lds": "envoy.config.listener.v3.Listener",
    }[kind]
    if kind == "rds":
        # Envoy keeps a route configuration equal to the one it has, and its old version with
        # it; naming the push inside makes every push visible (`fenlei mesh apply` waits on it).
        resources = [{**r, "metadata": {"filter_metadata": {"fenlei": {"push": str(version)}}}} for r in resources]
    body = {"version_info": str(version), "resources": [{"@type": f"type.googleapis.com/{type_url}", **r} for r in resources]}
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{file_name}.tmp"
    temporary.write_text(json.dumps(body, indent=1))
    os.replace(temporary, directory / file_name)


def write_bootstrap(directory: Path, bootstrap: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bootstrap.json"
    path.write_text(json.dumps(bootstrap, indent=1, ensure_ascii=False))
    return path
