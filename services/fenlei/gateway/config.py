"""The gateway's Envoy configuration, built from the contract and the settings.

Nothing in it is written by hand per environment: routes, authorisation and the
transcoder's service list come from the protos (every public RPC, its streaming shape
and its `fenlei.v1.required_role`); addresses, limits and auth switches come from
GatewaySettings (FENLEI_GATEWAY_<FIELD>).

Filter order matters. jwt_authn checks the token on the incoming path; the body size
limit counts the body before the transcoder's parser has to hold any of it; the transcoder
turns REST into gRPC and the route is chosen again on the gRPC path, so the buffer (whole
unary requests), rbac and the per-route rate limits see `/fenlei.v1.Service/Method`
whether the call came as REST or as gRPC.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2

from fenlei import services
from fenlei.envoy.config import (
    access_log,
    cel_formatter,
    deadline,
    disabled,
    file_source,
    grpc_health_checks,
    socket_address,
    typed,
    unavailable,
    unreachable,
    write_resources,
)
from fenlei.gateway.auth import BEARER, ROLE_CLAIM, role_name, roles_at_least
from fenlei.gateway.console import console_routes, forwarded_routes
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.runtime.settings import load_settings
from fenlei.sidecar.policy import Policy
from fenlei.sidecar.xds import policy_routes
from fenlei.telemetry import envoy as envoy_tracing
from fenlei.v1 import common_pb2

V1 = Path(common_pb2.__file__).parent
DESCRIPTOR_SET = V1 / "fenlei.binpb"
OPENAPI = V1 / "fenlei.swagger.json"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/"
REFLECTION_INFO = REFLECTION + "ServerReflectionInfo"
CALLER_CONTENT_TYPE = "x-fenlei-caller-content-type"
HEALTH = "/grpc.health.v1.Health/"
HEALTHZ = "/healthz"
CONSOLE = "console"  # the cluster of the console's own server, where it has one (Kubernetes)
# The local mesh's gateway listener and routes, in its xDS directory.
LISTENERS = "lds.json"
ROUTES = "rds-gateway.json"
BODY_LIMIT = "envoy.filters.http.body_size_limit"
LIFT_DENY = "/fenlei.v1.LiveConfig/RemoveDenyRule"
# The deny list's two RBAC filters (fenlei.config): by client address, by token subject.
DENY_ADDRESS = "fenlei.deny.address"
DENY_SUBJECT = "fenlei.deny.subject"
DENY_POLICY = "deny-"  # a rule's policy is deny-<id>: Envoy names it in the reply's details
_DENIED_DETAILS = f"rbac_access_denied_matched_policy[{DENY_POLICY}"
DENIED = (
    "the gateway's deny list blocks this caller (rule"
    f" %CEL(response.code_details.substring({len(_DENIED_DETAILS)}, size(response.code_details) - 1))%); an admin lifts it"
    " with `fenlei config deny remove ID`"
)
# Envoy's own replies, in words a caller can act on (formatter strings).
RATE_LIMITED = (
    "rate limit exceeded: you called this method more often than the gateway allows one caller"
    " (FENLEI_GATEWAY_RATE_LIMIT_PER_SECOND); retry after the seconds in Retry-After"
)
TOO_LARGE = (
    "the request is larger than the gateway's limit of {limit} bytes (FENLEI_GATEWAY_MAX_REQUEST_BYTES);"
    " send fewer documents per call, or stream them over gRPC"
)
# The transcoder's own message quotes the body around the error, cut at any byte (even
# inside a character): this one says what is wrong without quoting.
NOT_JSON = (
    "the request body is not a valid %METADATA(ROUTE:fenlei:request)% in JSON (UTF-8, the field names and value types of /openapi.json)"
)
NOT_SERVING = "the {service} service has no healthy instance"
DEADLINE_PASSED = (
    "the call's deadline (its grpc-timeout) passed before the gateway had passed it on and answered;"
    " give it more time, or send less per call"
)
# Rate limits: a bucket per caller, keyed by the token's subject, else the client address.
NO_SUBJECT = "-"
TRACKED_CALLERS = 10_000  # per route; the least recently seen caller's bucket goes first
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
    request: str  # the full name of its request message


def public_methods() -> list[Method]:
    methods = []
    for workload, service in services.public_services():
        for method in service.methods:
            options = method.GetOptions()
            role: int = options.Extensions[common_pb2.required_role]  # type: ignore[index]  # the stubs type it as a plain field
            if role == common_pb2.ROLE_UNSPECIFIED:
                raise ValueError(f"{method.full_name} names no fenlei.v1.required_role; every public RPC must")
            methods.append(
                Method(
                    workload.name,
                    f"/{service.full_name}/{method.name}",
                    method.client_streaming or method.server_streaming,
                    role_name(role),
                    options.Extensions[annotations_pb2.http],
                    method.input_type.full_name,
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
        **({"health_checks": grpc_health_checks()} if name == services.GATEWAY_FRONT.name else {}),
    }


def _rate_limit(settings: GatewaySettings, name: str) -> dict[str, Any]:
    """A token bucket per caller of one route: per token subject; per client address for
    callers without a token (the subject entry "-" keeps the two kinds of key apart)."""

    # Each piece made anew where it is used: no part of a route's settings is another's.
    def always() -> dict[str, Any]:
        return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": f"rate_limit.{name}"}

    def bucket() -> dict[str, Any]:
        return {"max_tokens": settings.rate_limit_burst, "tokens_per_fill": settings.rate_limit_per_second, "fill_interval": "1s"}

    def subject(**default: str) -> dict[str, Any]:
        payload = [{"key": "jwt_payload"}, {"key": "sub"}]
        return {
            "metadata": {
                "descriptor_key": "subject",
                "metadata_key": {"key": "envoy.filters.http.jwt_authn", "path": payload},
                "source": "DYNAMIC",
                **default,
            }
        }

    return typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=f"rate_limit_{name}",
        token_bucket=bucket(),  # required; every call matches a descriptor below, so none falls back to it
        always_consume_default_token_bucket=False,
        rate_limits=[
            {"actions": [subject()]},  # none without a subject
            {"actions": [subject(default_value=NO_SUBJECT), {"remote_address": {}}]},
        ],
        descriptors=[
            {"entries": [{"key": "subject"}], "token_bucket": bucket()},  # no value: a bucket per value seen
            {"entries": [{"key": "subject", "value": NO_SUBJECT}, {"key": "remote_address"}], "token_bucket": bucket()},
        ],
        max_dynamic_descriptors=TRACKED_CALLERS,
        filter_enabled=always(),
        filter_enforced=always(),
        enable_retry_after_header=True,
        rate_limited_as_resource_exhausted=True,  # gRPC callers see RESOURCE_EXHAUSTED, REST 429
    )


def _route_filters(settings: GatewaySettings, route: str, *, streams: bool, open_to_all: bool) -> dict[str, Any]:
    """One route's filter settings, built for it alone: a dict shared between routes and
    changed for one (a stream's buffer turned off) would change them all."""
    filters = {"envoy.filters.http.local_ratelimit": _rate_limit(settings, route)}
    if streams:
        # Messages pass as they come, each within the services' message size limit.
        filters.update({"envoy.filters.http.buffer": disabled(), BODY_LIMIT: disabled()})
    if open_to_all:
        filters.update(_open_route())
    return filters


def _open_route() -> dict[str, Any]:
    """No token, no transcoding, no roles: for what anyone may read."""
    return {
        name: disabled() for name in ("envoy.filters.http.jwt_authn", "envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.rbac")
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
                "require_expiration": True,  # a token without `exp` would be good forever
                # Only the header: a token in the URL (`?access_token=`) ends up in logs.
                "from_headers": [{"name": "authorization", "value_prefix": f"{BEARER} "}],
                "claim_to_headers": [{"header_name": SUBJECT_HEADER, "claim_name": "sub"}],
            }
        },
        rules=[{"match": {"prefix": "/"}, "requires": requirement}],
    )


def _bearer_scheme() -> dict[str, Any]:
    """The auth scheme is case-insensitive (RFC 7235, RFC 6750: `bearer x`, `BEARER x`);
    jwt_authn matches its prefix exactly, so the scheme is spelled its way first."""
    script = f"""
function envoy_on_request(handle)
  local headers = handle:headers()
  local scheme, credentials = (headers:get("authorization") or ""):match("^(%S+)%s+(.*)$")
  if scheme ~= nil and scheme:lower() == "{BEARER.lower()}" then
    headers:replace("authorization", "{BEARER} " .. credentials)
  end
end
"""
    return typed("envoy.extensions.filters.http.lua.v3.Lua", default_source_code={"inline_string": script})


def _healthz() -> dict[str, Any]:
    """/healthz answers itself: 200 while the service the gateway fronts has a healthy
    instance (active health checks of its cluster), else 503."""
    return typed(
        "envoy.extensions.filters.http.health_check.v3.HealthCheck",
        pass_through_mode=False,
        headers=[{"name": ":path", "string_match": {"exact": HEALTHZ}}],
        # Envoy compares in whole percent: one instance of up to a hundred is enough.
        cluster_min_healthy_percentages={services.GATEWAY_FRONT.name: {"value": 1}},
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


def _caller_headers() -> dict[str, Any]:
    """Headers of ours about the caller, never trusted from outside. The transcoder rewrites
    a REST request's content-type to application/grpc, so the caller's own is kept
    (overwritten). Who called (SUBJECT_HEADER) is the subject of the token jwt_authn checked,
    which it sets: a value the client sent is removed here first, on every route (also where
    no token is checked, as on reflection's), so a call without a token has none."""
    return typed(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        mutations={
            "request_mutations": [
                {
                    "append": {
                        "header": {"key": CALLER_CONTENT_TYPE, "value": "%REQ(content-type)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                },
                {"remove": SUBJECT_HEADER},
            ]
        },
    )


def _local_replies(settings: GatewaySettings) -> dict[str, Any]:
    """Envoy's own answers (a missing token, a rate limit, a bad path, a service down): to
    REST callers, whatever their content-type, the JSON google.rpc.Status a service's error
    gets ({"code": <grpc code>, "message": ...}); to gRPC callers, grpc-status and
    grpc-message. The first mapper that matches answers."""
    caller_grpc = {"name": CALLER_CONTENT_TYPE, "string_match": {"prefix": "application/grpc"}, "treat_missing_header_as_empty": True}
    rest = {"header_filter": {"header": {**caller_grpc, "invert_match": True}}}
    grpc = {"header_filter": {"header": caller_grpc}}

    def status(code: int) -> dict[str, Any]:
        return {"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": f"reply.{code}"}}}}

    def both(*filters: dict[str, Any]) -> dict[str, Any]:
        return {"and_filter": {"filters": list(filters)}}

    def json_body(fields: dict[str, Any]) -> dict[str, Any]:
        return {"json_format": fields, "content_type": "application/json", "formatters": [cel_formatter()]}

    def explained(when: dict[str, Any], code: int, message: str, rest_status: int = 0) -> list[dict[str, Any]]:
        """A reply of ours with the gRPC status `code`, to both kinds of caller (to REST
        callers with HTTP status rest_status, if given, in place of Envoy's)."""
        to_grpc = {
            "filter": both(when, grpc),
            "body_format_override": {"text_format_source": {"inline_string": message}, "formatters": [cel_formatter()]},
            # Said outright: Envoy's own mapping of the HTTP status gets some wrong (413 → UNKNOWN).
            "headers_to_add": [{"header": {"key": "grpc-status", "value": str(code)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        }
        to_rest = {"filter": both(when, rest), "body_format_override": json_body({"code": code, "message": message})}
        return [{**to_rest, "status_code": rest_status} if rest_status else to_rest, to_grpc]

    healthz = {"header_filter": {"header": {"name": ":path", "string_match": {"exact": HEALTHZ}}}}

    def details(expression: str) -> dict[str, Any]:
        """The replies whose response code details (what Envoy says of why) match a CEL expression."""
        cel = typed("envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter", expression=expression)
        return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": cel}}

    transcoder_refused = details("response.code_details == 'grpc_json_transcode_failure{INVALID_ARGUMENT}'")
    denied = details(f"response.code_details.startsWith('{_DENIED_DETAILS}')")
    duration_passed = details("response.code_details == 'max_duration_timeout'")
    front = services.GATEWAY_FRONT.name
    mappers = [
        {"filter": both(healthz, status(200)), "body_format_override": json_body({"status": "SERVING"})},
        {
            "filter": both(healthz, status(503)),
            "body_format_override": json_body({"status": "NOT_SERVING", "message": NOT_SERVING.format(service=front)}),
        },
        # Envoy's only 429 of its own is the rate limit (a service's RESOURCE_EXHAUSTED is no
        # local reply), and local_ratelimit says just "local_rate_limited".
        *explained(both(denied, status(403)), 7, DENIED),
        *explained(status(429), 8, RATE_LIMITED),
        *explained(status(413), 8, TOO_LARGE.format(limit=settings.max_request_bytes)),
        *explained(both(transcoder_refused, rest), 3, NOT_JSON),
        *explained(unreachable(), 14, unavailable("%METADATA(ROUTE:fenlei:service)%")),
        # A grpc-timeout that ends while the request is still arriving or being transcoded is
        # the stream's duration limit, which Envoy answers 408: to REST callers, the 504 of any
        # other passed deadline.
        *explained(duration_passed, 4, DEADLINE_PASSED, rest_status=504),
    ]
    by_status = [
        {"filter": both(status(code), rest), "body_format_override": json_body({"code": grpc_code, "message": "%LOCAL_REPLY_BODY%"})}
        for code, grpc_code in GRPC_CODE_OF_HTTP.items()
    ]
    return {"mappers": [*mappers, *by_status]}


def _deny(rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A route's part of the deny list: rules {id, subject, address} (fenlei.runtime.live),
    each an RBAC DENY policy of the filter that can see what it names."""

    def filter_config(policies: dict[str, Any]) -> dict[str, Any]:
        return typed("envoy.extensions.filters.http.rbac.v3.RBACPerRoute", rbac={"rules": {"action": "DENY", "policies": policies}})

    by_address, by_subject = {}, {}
    for rule in rules:
        if rule["address"]:
            network = ipaddress.ip_network(rule["address"])
            principal = {"remote_ip": {"address_prefix": str(network.network_address), "prefix_len": network.prefixlen}}
            by_address[f"{DENY_POLICY}{rule['id']}"] = {"permissions": [{"any": True}], "principals": [principal]}
        else:
            principal = {
                "sourced_metadata": {
                    "metadata_matcher": {
                        "filter": "envoy.filters.http.jwt_authn",
                        "path": [{"key": "jwt_payload"}, {"key": "sub"}],
                        "value": {"string_match": {"exact": rule["subject"]}},
                    }
                }
            }
            by_subject[f"{DENY_POLICY}{rule['id']}"] = {"permissions": [{"any": True}], "principals": [principal]}
    return {
        **({DENY_ADDRESS: filter_config(by_address)} if by_address else {}),
        **({DENY_SUBJECT: filter_config(by_subject)} if by_subject else {}),
    }


def _lifting(rules: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rules that apply to lifting a rule: not those by address, so that an admin whose
    own address a rule blocks (127.0.0.1 on one machine) can still lift it, with an admin
    token; a blocked subject stays blocked."""
    return [rule for rule in rules if not rule["address"]]


def _rest_match(rule: annotations_pb2.http_pb2.HttpRule) -> dict[str, Any]:
    """A route match for the REST form of an http rule ({field} stands for one segment)."""
    verb = rule.WhichOneof("pattern")
    template = getattr(rule, verb)
    pattern = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$"
    return {"safe_regex": {"regex": pattern}, "headers": [{"name": ":method", "string_match": {"exact": verb.upper()}}]}


def route_table(
    settings: GatewaySettings, policy: Policy | None = None, deny: Sequence[Mapping[str, Any]] = (), *, console_served: bool = False
) -> dict[str, Any]:
    """Every public method gets its own route (and so its own rate limit). Without a
    policy, straight to each service; with one (the local mesh), the routes, retries,
    timeouts, faults and splits of each host's VirtualService. deny: the deny list's rules,
    on every route. console_served: the console's paths go to its own server (cluster
    CONSOLE), else the gateway answers its files itself."""
    methods = {m.path: m for m in public_methods()}
    front = services.GATEWAY_FRONT.name
    calls: list[tuple[str, list[tuple[str, bool]]]] = [
        *((w.name, [(m.path, m.streaming) for m in methods.values() if m.service == w.name]) for w in services.PUBLIC),
        (services.CATALOG.name, [(REFLECTION_INFO, True)]),
        (front, [(HEALTH + "Check", False), (HEALTH + "Watch", True)]),
    ]
    routes: list[dict[str, Any]] = []
    timeout = settings.route_timeout_seconds
    for host, paths in calls:
        if policy is None:
            found: list[dict[str, Any]] = [
                {
                    "name": path.strip("/").replace("/", "."),
                    "match": {"path": path},
                    "route": {"cluster": host, **deadline(None if streams else timeout)},
                }
                for path, streams in paths
            ]
        else:
            found = policy_routes(policy, host, paths=paths, unary_timeout=timeout)
        streaming = {path for path, streams in paths if streams}
        for route in found:  # objects of their own, as policy_routes promises
            path = route["match"]["path"]
            # The API's description is as open as /openapi.json: `grpcurl <gateway> list`
            # works without a token; calling a method still needs one.
            open_to_all = path == REFLECTION_INFO
            route["typed_per_filter_config"] = {
                **_route_filters(settings, route["name"], streams=path in streaming, open_to_all=open_to_all),
                **_deny(_lifting(deny) if path == LIFT_DENY else deny),
            }
            # For Envoy's own replies on this route: which service, which request message.
            route["metadata"] = {
                "filter_metadata": {"fenlei": {"service": host, "request": methods[path].request if path in methods else ""}}
            }
            routes.append(route)
    return {
        "name": "gateway",
        "max_direct_response_body_size_bytes": 1024 * 1024,
        "virtual_hosts": [
            {
                "name": "fenlei",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "openapi",
                        "match": {"path": "/openapi.json"},
                        "direct_response": {"status": 200, "body": {"filename": settings.openapi_document or str(OPENAPI)}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
                        "typed_per_filter_config": {**_open_route(), **_deny(deny)},
                    },
                    *routes,
                    # The web console's files: no token to load them, the deny list as everywhere.
                    *(
                        {**route, "typed_per_filter_config": {**_open_route(), **_deny(deny)}}
                        for route in (forwarded_routes(CONSOLE) if console_served else console_routes(settings.openapi_document))
                    ),
                    # The REST call that lifts a rule, until transcoded: as its gRPC route.
                    {
                        "name": "lift-deny-rest",
                        "match": _rest_match(methods[LIFT_DENY].http),
                        "direct_response": {"status": 404, "body": {"inline_string": "no such method or path"}},
                        "typed_per_filter_config": _deny(_lifting(deny)),
                    },
                    # Also the route of every REST call until the transcoder has turned it into gRPC.
                    {
                        "name": "unknown",
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 404, "body": {"inline_string": "no such method or path"}},
                        "typed_per_filter_config": _deny(deny),
                    },
                ],
            }
        ],
    }


def listener(
    settings: GatewaySettings, jwks: str, routing: dict[str, Any], *, access_log_file: Path | None = None, collector: str = ""
) -> dict[str, Any]:
    """The gateway's listener. routing: its route_config, or where its RDS comes from."""
    methods = public_methods()
    traced = {"tracing": envoy_tracing.tracing("gateway", starts_traces=True)} if collector else {}
    manager = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="gateway",
        codec_type="AUTO",  # HTTP/1.1 for REST, h2c for gRPC, on one port
        request_headers_timeout="10s",  # slow headers do not hold a connection
        stream_idle_timeout="300s",
        drain_timeout="0.25s",  # on `fenlei down` open HTTP/2 connections get their final GOAWAY soon: no new calls
        common_http_protocol_options={"idle_timeout": "300s", "headers_with_underscores_action": "REJECT_REQUEST"},
        # A stream answered over HTTP/1.1 has sent 200 before it can fail: its grpc-status
        # and grpc-message then arrive as chunked trailers, so a REST client can tell.
        http_protocol_options={"enable_trailers": True},
        **routing,
        local_reply_config=_local_replies(settings),
        access_log=access_log("gateway", "gateway", access_log_file),
        **traced,
        # The client is the peer of the connection, never what its X-Forwarded-For claims
        # (rate limits and the deny list go by client address).
        use_remote_address=True,
        http_filters=[
            {"name": "envoy.filters.http.header_mutation", "typed_config": _caller_headers()},
            {"name": "envoy.filters.http.health_check", "typed_config": _healthz()},
            # The deny list: no rules here, each route carries the list (RDS, so a change
            # reaches open connections at once); addresses before the token is even read.
            {"name": DENY_ADDRESS, "typed_config": typed("envoy.extensions.filters.http.rbac.v3.RBAC")},
            {"name": "envoy.filters.http.lua", "typed_config": _bearer_scheme()},
            {"name": "envoy.filters.http.jwt_authn", "typed_config": _jwt_authn(settings, jwks)},
            {"name": DENY_SUBJECT, "typed_config": typed("envoy.extensions.filters.http.rbac.v3.RBAC")},
            # Before the transcoder, whose JSON parser would hold a body of any size (one
            # long string is kept whole): 413 as soon as a body passes the limit, or says it
            # will. Every REST body (on the "unknown" route until transcoded) and unary gRPC.
            {
                "name": BODY_LIMIT,
                "typed_config": typed(
                    "envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit", max_request_bytes=settings.max_request_bytes
                ),
            },
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": _transcoder(settings)},
            # A unary request is whole before the router opens anything upstream, so a body
            # the transcoder rejects never reaches a service.
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
        "name": "gateway",
        "address": _socket(f"{settings.host}:{settings.port}"),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
    }


def build(
    settings: GatewaySettings,
    upstreams: dict[str, str],
    jwks: str = "",
    *,
    xds_directory: Path | None = None,
    access_log_file: Path | None = None,
    collector: str = "",
    console: str = "",
) -> dict[str, Any]:
    """The Envoy bootstrap. upstreams: service name → address (with "catalog" for
    reflection); none: the clusters come from xds_directory (cds.json, the sidecars' mesh).
    Without xds_directory everything is in the bootstrap (a gateway straight to the
    services, as on Kubernetes). With it (the local mesh), the listener and the routes come
    from files there (write_dynamic), which the supervisor rewrites while Envoy runs: a
    `fenlei mesh apply`, a live limit, the deny list. Its
    access log goes to access_log_file, else to Envoy's stdout. collector: host:port of the
    trace collector (every request is traced, as a trace's first hop unless the caller sent
    a traceparent); "": no tracing. console: host:port of the console's own server, which
    then serves its paths (Kubernetes); "": the gateway answers the console's files itself."""
    clusters = [_cluster(name, address) for name, address in sorted(upstreams.items())]
    if console:
        clusters.append(_cluster(CONSOLE, console))
    if collector:
        clusters.append(envoy_tracing.collector_cluster(collector))
    if xds_directory is None:
        routing = {"route_config": route_table(settings, console_served=bool(console))}
        listeners = [listener(settings, jwks, routing, access_log_file=access_log_file, collector=collector)]
        dynamic = {}
    else:
        listeners = []
        dynamic = {"lds_config": file_source(xds_directory / LISTENERS, xds_directory)}
        if not upstreams:
            dynamic["cds_config"] = file_source(xds_directory / "cds.json", xds_directory)
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
        "static_resources": {"listeners": listeners, "clusters": clusters},
        **({"dynamic_resources": dynamic} if dynamic else {}),
    }


def write_dynamic(
    directory: Path,
    version: int,
    settings: GatewaySettings,
    jwks: str,
    routes: dict[str, Any],
    *,
    access_log_file: Path | None = None,
    collector: str = "",
) -> None:
    """The listener and the routes of a gateway built with xds_directory=directory. Routes
    reach open connections at once. A listener whose filters changed (a body limit) is
    updated in place: new connections get the new filters, open ones drain from the old;
    one that did not change is left alone."""
    write_resources(directory, version, "rds", [routes], ROUTES)
    rds = {"rds": {"route_config_name": "gateway", "config_source": file_source(directory / ROUTES, directory)}}
    write_resources(
        directory, version, "lds", [listener(settings, jwks, rds, access_log_file=access_log_file, collector=collector)], LISTENERS
    )


def write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
