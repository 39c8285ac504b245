"""The gateway's Envoy configuration, built from the contract and the settings.

Nothing in it is written by hand per environment: routes, authorisation and the
transcoder's service list come from the protos (every public RPC, its streaming shape
and its `fenlei.v1.required_role`); addresses, limits and auth switches come from
GatewaySettings (FENLEI_GATEWAY_<FIELD>).

Filter order matters. jwt_authn checks the token on the incoming path; the transcoder
then turns REST into gRPC and the route is chosen again on the gRPC path, so rbac and the
per-route rate limits see `/fenlei.v1.Service/Method` whether the call came as REST or
as gRPC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from google.api import annotations_pb2
from google.protobuf import descriptor as pb_descriptor

from fenlei import services
from fenlei.envoy.config import deadline, disabled, file_source, socket_address, typed
from fenlei.gateway.auth import ROLE_CLAIM, role_name, roles_at_least
from fenlei.runtime.settings import load_settings
from fenlei.sidecar.policy import Policy
from fenlei.sidecar.xds import policy_routes
from fenlei.v1 import common_pb2

V1 = Path(common_pb2.__file__).parent
DESCRIPTOR_SET = V1 / "fenlei.binpb"
OPENAPI = V1 / "fenlei.swagger.json"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/"
REFLECTION_INFO = REFLECTION + "ServerReflectionInfo"
CALLER_CONTENT_TYPE = "x-fenlei-caller-content-type"
RATE_LIMITED = "rate limit exceeded: the gateway's limit for this method (FENLEI_GATEWAY_RATE_LIMIT_PER_SECOND) was reached; retry later"
HEALTH = "/grpc.health.v1.Health/"
# Envoy's own replies to REST callers get the google.rpc.Status shape the transcoder
# gives upstream errors: {"code": <grpc code>, "message": ...}.
GRPC_CODE_OF_HTTP = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 429: 8, 500: 13, 501: 12, 502: 14, 503: 14, 504: 4}


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port
    admin_port: int = 0  # admin listens on loopback only, whatever `host` is
    # Without a token a caller may do what a viewer may. Off unless asked for (the demo does).
    anonymous: bool = False
    issuer: str = "fenlei-local"
    audience: str = "fenlei"
    # Token bucket per route: sustained calls per second and burst.
    rate_limit_per_second: int = 500
    rate_limit_burst: int = 1000
    max_request_bytes: int = 1024 * 1024
    max_response_bytes: int = 16 * 1024 * 1024
    # Unary RPCs; streams have no route timeout. A client's grpc-timeout wins when shorter.
    route_timeout_seconds: float = 30.0
    workers: int = 2
    # Open client connections at most; idle ones are closed after five minutes.
    max_connections: int = 4096
    # Where Envoy finds its files; empty: this installation's (a container names its own).
    descriptor_set: str = ""
    openapi_document: str = ""
    # A JWKS file to check tokens against; empty: the local token authority's keys, inline.
    jwks_file: str = ""


def load_gateway_settings(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    return load_settings(GatewaySettings, "gateway", environ)


@dataclass(frozen=True)
class Method:
    service: str  # the workload serving it (fenlei.services)
    path: str  # /fenlei.v1.Service/Method
    streaming: bool
    role: str
    http: annotations_pb2.http_pb2.HttpRule


def public_methods() -> list[Method]:
    methods = []
    for workload, service in services.public_services():
        for method in service.methods:
            options = method.GetOptions()
            role = options.Extensions[common_pb2.required_role]
            if role == common_pb2.ROLE_UNSPECIFIED:
                raise ValueError(f"{method.full_name} names no fenlei.v1.required_role; every public RPC must")
            methods.append(
                Method(
                    workload.name,
                    f"/{service.full_name}/{method.name}",
                    method.client_streaming or method.server_streaming,
                    role_name(role),
                    options.Extensions[annotations_pb2.http],
                )
            )
    return methods


def _socket(address: str) -> dict[str, Any]:
    host, port = address.rsplit(":", 1)
    return socket_address(host, int(port))


def _cluster(name: str, address: str) -> dict[str, Any]:
    host = address.rsplit(":", 1)[0]
    return {
        "name": name,
        # a name (a Kubernetes Service) is resolved and followed; an address is taken as is
        "type": "STATIC" if host.replace(".", "").isdigit() else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(address)}}]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", explicit_http_config={"http2_protocol_options": {}}
            )
        },
    }


def _rate_limit(settings: GatewaySettings, name: str) -> dict[str, Any]:
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": f"rate_limit.{name}"}
    return typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=f"rate_limit_{name}",
        token_bucket={
            "max_tokens": settings.rate_limit_burst,
            "tokens_per_fill": settings.rate_limit_per_second,
            "fill_interval": "1s",
        },
        filter_enabled=always,
        filter_enforced=always,
        rate_limited_as_resource_exhausted=True,  # gRPC callers see RESOURCE_EXHAUSTED, REST 429
    )


def _route(settings: GatewaySettings, path: str, cluster: str, name: str, *, prefix: bool = False, stream: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"prefix" if prefix else "path": path},
        "route": {
            "cluster": cluster,
            **deadline(None if stream else settings.route_timeout_seconds),
        },
        "typed_per_filter_config": {"envoy.filters.http.local_ratelimit": _rate_limit(settings, name)},
    }


def _role_principals(role: str, anonymous: bool) -> list[dict[str, Any]]:
    if anonymous and role == "viewer":
        return [{"any": True}]
    return [
        {
            "sourced_metadata": {
                "metadata_matcher": {
                    "filter": "envoy.filters.http.jwt_authn",
                    "path": [{"key": "jwt_payload"}, {"key": ROLE_CLAIM}],
                    "value": {"string_match": {"exact": allowed}},
                }
            }
        }
        for allowed in roles_at_least(role)
    ]


def _rbac(methods: list[Method], anonymous: bool) -> dict[str, Any]:
    def paths(rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {"or_rules": {"rules": rules}}

    by_role: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        by_role.setdefault(method.role, []).append({"url_path": {"path": {"exact": method.path}}})
    by_role.setdefault("viewer", []).extend({"url_path": {"path": {"prefix": prefix}}} for prefix in (REFLECTION, HEALTH))
    policies = {
        f"{role}-methods": {"permissions": [paths(rules)], "principals": _role_principals(role, anonymous)}
        for role, rules in by_role.items()
    }
    # Paths that name no public method go on to the router, whose 404 a gRPC caller
    # reads as UNIMPLEMENTED: an unknown method is not a permission problem.
    known = [rule for rules in by_role.values() for rule in rules]
    policies["unknown-methods"] = {"permissions": [{"not_rule": paths(known)}], "principals": [{"any": True}]}
    return typed("envoy.extensions.filters.http.rbac.v3.RBAC", rules={"action": "ALLOW", "policies": policies})


def _jwt_authn(settings: GatewaySettings, jwks: str) -> dict[str, Any]:
    provider = {"provider_name": "fenlei"}
    requirement = {"requires_any": {"requirements": [provider, {"allow_missing": {}}]}} if settings.anonymous else provider
    return typed(
        "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        providers={
            "fenlei": {
                "issuer": settings.issuer,
                "audiences": [settings.audience],
                "local_jwks": {"filename": settings.jwks_file} if settings.jwks_file else {"inline_string": jwks},
                "payload_in_metadata": "jwt_payload",
                "forward": False,  # the services never see the token
            }
        },
        rules=[{"match": {"prefix": "/"}, "requires": requirement}],
    )


def _transcoder(settings: GatewaySettings) -> dict[str, Any]:
    return typed(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=settings.descriptor_set or str(DESCRIPTOR_SET),
        services=[service.full_name for _, service in services.public_services()],
        print_options={"always_print_primitive_fields": True, "stream_newline_delimited": True},
        convert_grpc_status=True,
        request_validation_options={"reject_unknown_method": True, "reject_unknown_query_parameters": True},
        max_request_body_size=settings.max_request_bytes,
        max_response_body_size=settings.max_response_bytes,
    )


def _remember_content_type() -> dict[str, Any]:
    """The transcoder rewrites a REST request's content-type to application/grpc, so the
    caller's own is kept in a header of ours (overwritten, never trusted from outside)."""
    return typed(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        mutations={
            "request_mutations": [
                {
                    "append": {
                        "header": {"key": CALLER_CONTENT_TYPE, "value": "%REQ(content-type)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                }
            ]
        },
    )


def _local_replies() -> dict[str, Any]:
    """Envoy's own answers to REST callers (a missing token, a rate limit, a bad path) in
    the same JSON shape as a service's error; gRPC callers get grpc-status as usual."""
    not_grpc = {"header_filter": {"header": {"name": CALLER_CONTENT_TYPE, "string_match": {"prefix": "application/grpc"}, "invert_match": True}}}

    def as_status(code: int) -> dict[str, Any]:
        return {"json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%"}, "content_type": "application/json"}

    # Envoy's only 429 of its own is the rate limit (a service's RESOURCE_EXHAUSTED is no
    # local reply), and local_ratelimit says just "local_rate_limited": say why, to both kinds.
    rate_limited = {"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": 429, "runtime_key": "reply.rate_limited"}}}}
    explained = [
        {"filter": {"and_filter": {"filters": [rate_limited, not_grpc]}}, "body": {"inline_string": RATE_LIMITED}, "body_format_override": as_status(8)},
        {"filter": rate_limited, "body": {"inline_string": RATE_LIMITED}},
    ]
    by_status = [
        {
            "filter": {"and_filter": {"filters": [{"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": status, "runtime_key": f"reply.{status}"}}}}, not_grpc]}},
            "body_format_override": as_status(code),
        }
        for status, code in GRPC_CODE_OF_HTTP.items()
    ]
    return {"mappers": [*explained, *by_status]}


def route_table(settings: GatewaySettings, policy: Policy | None = None) -> dict[str, Any]:
    """Every public method gets its own route (and so its own rate limit). Without a
    policy, straight to each service; with one (the local mesh), the routes, retries,
    timeouts, faults and splits of each host's VirtualService."""
    methods = public_methods()
    open_route = {name: disabled() for name in ("envoy.filters.http.jwt_authn", "envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.rbac")}
    calls: list[tuple[str, list[tuple[str, bool]]]] = [
        *((w.name, [(m.path, m.streaming) for m in methods if m.service == w.name]) for w in services.PUBLIC),
        (services.CATALOG.name, [(REFLECTION_INFO, True)]),
        ("pipeline", [(HEALTH + "Check", False), (HEALTH + "Watch", True)]),
    ]
    routes: list[dict[str, Any]] = []
    for host, paths in calls:
        if policy is None:
            routes += [_route(settings, path, host, path.strip("/").replace("/", "."), stream=streams) for path, streams in paths]
        else:
            limit = {"typed_per_filter_config": {"envoy.filters.http.local_ratelimit": _rate_limit(settings, host)}}
            routes += policy_routes(policy, host, paths=paths, extra=limit, unary_timeout=settings.route_timeout_seconds)
    streaming = {path for _, paths in calls for path, streams in paths if streams}
    for route in routes:
        path = route["match"].get("path")
        if path in streaming:
            route.setdefault("typed_per_filter_config", {})["envoy.filters.http.buffer"] = disabled()
        if path == REFLECTION_INFO:
            # The API's description is as open as /openapi.json: `grpcurl <gateway> list`
            # works without a token; calling a method still needs one.
            route["typed_per_filter_config"].update(open_route)
    return {
        "name": "gateway",
        "max_direct_response_body_size_bytes": 1024 * 1024,
        "virtual_hosts": [
            {
                "name": "fenlei",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "healthz",
                        "match": {"path": "/healthz"},
                        "direct_response": {"status": 200, "body": {"inline_string": '{"status":"SERVING"}'}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
                        "typed_per_filter_config": open_route,
                    },
                    {
                        "name": "openapi",
                        "match": {"path": "/openapi.json"},
                        "direct_response": {"status": 200, "body": {"filename": settings.openapi_document or str(OPENAPI)}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
                        "typed_per_filter_config": open_route,
                    },
                    *routes,
                    {"name": "unknown", "match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no such method or path"}}},
                ],
            }
        ],
    }


def build(settings: GatewaySettings, upstreams: dict[str, str], jwks: str = "", *, xds_directory: Path | None = None) -> dict[str, Any]:
    """The Envoy bootstrap. upstreams: service name → address (with "catalog" for
    reflection), for a gateway straight to the services. With xds_directory (the local
    mesh), routes and clusters come from files there instead (rds-gateway.json,
    cds.json), which `fenlei mesh apply` rewrites while Envoy runs."""
    methods = public_methods()
    if xds_directory is None:
        routing: dict[str, Any] = {"route_config": route_table(settings)}
        clusters = [_cluster(name, address) for name, address in sorted(upstreams.items())]
    else:
        routing = {"rds": {"route_config_name": "gateway", "config_source": file_source(xds_directory / "rds-gateway.json", xds_directory)}}
        clusters = []
    manager = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="gateway",
        codec_type="AUTO",  # HTTP/1.1 for REST, h2c for gRPC, on one port
        request_headers_timeout="10s",  # slow headers do not hold a connection
        stream_idle_timeout="300s",
        common_http_protocol_options={"idle_timeout": "300s", "headers_with_underscores_action": "REJECT_REQUEST"},
        # A stream answered over HTTP/1.1 has sent 200 before it can fail: its grpc-status
        # and grpc-message then arrive as chunked trailers, so a REST client can tell.
        http_protocol_options={"enable_trailers": True},
        **routing,
        local_reply_config=_local_replies(),
        http_filters=[
            {"name": "envoy.filters.http.header_mutation", "typed_config": _remember_content_type()},
            {"name": "envoy.filters.http.jwt_authn", "typed_config": _jwt_authn(settings, jwks)},
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": _transcoder(settings)},
            # A unary request is whole and within the limit (413) before the router opens
            # anything upstream, so a body the transcoder rejects never reaches a service.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": typed("envoy.extensions.filters.http.buffer.v3.Buffer", max_request_bytes=settings.max_request_bytes),
            },
            {"name": "envoy.filters.http.rbac", "typed_config": _rbac(methods, settings.anonymous)},
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": typed("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", stat_prefix="rate_limit"),
            },
            {"name": "envoy.filters.http.router", "typed_config": typed("envoy.extensions.filters.http.router.v3.Router")},
        ],
    )
    return {
        "node": {"id": "gateway", "cluster": "gateway"},
        "admin": {"address": _socket(f"127.0.0.1:{settings.admin_port}")},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        max_active_downstream_connections=settings.max_connections,
                    ),
                }
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": _socket(f"{settings.host}:{settings.port}"),
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
                }
            ],
            "clusters": clusters,
        },
        **({"dynamic_resources": {"cds_config": file_source(xds_directory / "cds.json", xds_directory)}} if xds_directory else {}),
    }


def write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

