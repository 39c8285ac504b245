"""Envoy resources for the local mesh, built from a Policy and the running instances.

Each proxy reads its routes (RDS) and clusters (CDS) from files in its directory, which
Envoy watches: `fenlei mesh apply` rewrites the files and every proxy takes the new policy
without a restart, keeping its open connections. Listeners are static: an instance's
inbound mTLS port and its outbound Unix sockets never change while it runs.

    app ──unix──► own sidecar (outbound-<host>.sock) ──mTLS──► host's sidecar (inbound port) ──unix──► host app
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fenlei.envoy.config import (
    access_log,
    deadline,
    duration,
    file_source,
    grpc_health_checks,
    http2_options,
    pipe,
    route_configuration,
    socket_address,
    typed,
    unavailable,
    unreachable,
)
from fenlei.sidecar.ca import Identity, spiffe_id
from fenlei.sidecar.policy import DEFAULT_RETRIES, Destination, HttpRoute, Match, Policy, Retries
from fenlei.telemetry import envoy as envoy_tracing

INSTANCE_HEADER = "x-fenlei-instance"  # names the instance that answered: for people and tests


@dataclass(frozen=True)
class Instance:
    """One running copy of a service: its app and its sidecar."""

    service: str
    version: str
    index: int
    inbound_port: int

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}-{self.index}"


def cluster_name(host: str, version: str = "") -> str:
    return f"{host}|{version}" if version else host


def tls_context(identity: Identity, ca_root: Path) -> dict[str, Any]:
    return {
        "tls_certificates": [{"certificate_chain": {"filename": str(identity.cert)}, "private_key": {"filename": str(identity.key)}}],
        "validation_context": {"trusted_ca": {"filename": str(ca_root)}},
        "alpn_protocols": ["h2"],
    }


def mesh_clusters(policy: Policy, instances: Iterable[Instance], hosts: Iterable[str], identity: Identity, ca_root: Path,
                  health_checked: Iterable[str] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """For each host: a cluster of all its instances and one per DestinationRule subset,
    with the rule's circuit breakers and outlier detection, over mTLS that checks the
    server is who the host should be. The all-instances cluster of each host in
    health_checked gets active gRPC health checks."""
    health_checked = set(health_checked)
    instances = list(instances)
    clusters = []
    for host in sorted(set(hosts)):
        rule = policy.destination_rules.get(host)
        members = [i for i in instances if i.service == host]
        groups = {"": members}
        if rule:
            groups.update({version: [i for i in members if i.version == version] for version in rule.subsets.values()})
        for version, group in groups.items():
            cluster: dict[str, Any] = {
                "name": cluster_name(host, version),
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": cluster_name(host, version),
                    "endpoints": [
                        {"lb_endpoints": [{"endpoint": {"address": socket_address("127.0.0.1", i.inbound_port)}} for i in group]}
                    ],
                },
                "typed_extension_protocol_options": http2_options(rule.pool.max_requests_per_connection if rule else None),
            }
            if host in health_checked and not version:
                cluster["health_checks"] = grpc_health_checks()
            if rule is None or rule.mutual_tls:
                context = tls_context(identity, ca_root)
                context["validation_context"]["match_typed_subject_alt_names"] = [
                    {"san_type": "URI", "matcher": {"exact": spiffe_id(host)}}
                ]
                cluster["transport_socket"] = {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": typed(
                        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", common_tls_context=context, sni=host
                    ),
                }
            if rule:
                thresholds = {
                    key: value
                    for key, value in (
                        ("max_connections", rule.pool.max_connections),
                        ("max_pending_requests", rule.pool.max_pending_requests),
                        ("max_requests", rule.pool.max_requests),
                        ("max_retries", rule.pool.max_retries),
                    )
                    if value is not None
                }
                if thresholds:
                    cluster["circuit_breakers"] = {"thresholds": [thresholds]}
                if rule.outlier:
                    outlier: dict[str, Any] = {
                        "interval": duration(rule.outlier.interval_seconds),
                        "base_ejection_time": duration(rule.outlier.base_ejection_seconds),
                        "max_ejection_percent": rule.outlier.max_ejection_percent,
                    }
                    if rule.outlier.consecutive_5xx is not None:
                        outlier["consecutive_5xx"] = rule.outlier.consecutive_5xx
                    else:
                        outlier["enforcing_consecutive_5xx"] = 0
                    if rule.outlier.consecutive_gateway_errors is not None:
                        outlier["consecutive_gateway_failure"] = rule.outlier.consecutive_gateway_errors
                        outlier["enforcing_consecutive_gateway_failure"] = 100
                    cluster["outlier_detection"] = outlier
            clusters.append(cluster)
    return clusters


def _retry_policy(retries: Retries) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "retry_on": retries.retry_on,
        "num_retries": retries.attempts,
        # A retry goes to another instance when there is one, as Istio's does.
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }
    if retries.per_try_timeout_seconds is not None:
        policy["per_try_timeout"] = duration(retries.per_try_timeout_seconds)
    return policy


def _destinations(policy: Policy, destinations: tuple[Destination, ...]) -> dict[str, Any]:
    names = [cluster_name(d.host, policy.subset_version(d.host, d.subset)) for d in destinations]
    if len(destinations) == 1:
        return {"cluster": names[0]}
    return {"weighted_clusters": {"clusters": [{"name": n, "weight": d.weight} for n, d in zip(names, destinations) if d.weight]}}


def _fault(route: HttpRoute) -> dict[str, Any] | None:
    fault = route.fault
    if fault is None:
        return None
    config: dict[str, Any] = {}
    if fault.delay_seconds is not None:
        config["delay"] = {"fixed_delay": duration(fault.delay_seconds), "percentage": _fraction(fault.delay_percent)}
    if fault.abort_grpc_status is not None or fault.abort_http_status is not None:
        abort: dict[str, Any] = {"percentage": _fraction(fault.abort_percent)}
        if fault.abort_grpc_status is not None:
            abort["grpc_status"] = fault.abort_grpc_status
        else:
            abort["http_status"] = fault.abort_http_status
        config["abort"] = abort
    return typed("envoy.extensions.filters.http.fault.v3.HTTPFault", **config)


def _fraction(percent: float) -> dict[str, Any]:
    return {"numerator": round(percent * 10_000), "denominator": "MILLION"}


def _header_matchers(headers: tuple[tuple[str, str, str], ...]) -> list[dict[str, Any]]:
    matchers = []
    for name, kind, value in headers:
        matcher = {"safe_regex": {"regex": value}} if kind == "regex" else {kind: value}
        matchers.append({"name": name, "string_match": matcher})
    return matchers


def policy_routes(policy: Policy, host: str, *, paths: Iterable[tuple[str, bool]] | None = None,
                  unary_timeout: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Envoy routes for calls to `host`, from its VirtualService (or Istio's defaults).

    paths: None for a sidecar (match on the rule's own uri); for the gateway, its exact
    method paths with whether each streams, so every method keeps its own route (and
    rate limit). Routes carrying streams get no timeout; others the rule's, else
    unary_timeout. No two routes share an object: a caller may change one route alone."""
    rules = policy.virtual_services.get(host) or (HttpRoute("default", (), (Destination(host),), None, _default_retries(), None),)
    routes = []
    for rule in rules:
        action = _destinations(policy, rule.destinations)
        if rule.retries:
            action["retry_policy"] = _retry_policy(rule.retries)
        for match in rule.matches or (None,):
            for path, streams in paths if paths is not None else [(None, False)]:
                if path is not None and match and match.uri and not _uri_matches(match.uri, path):
                    continue
                route_match = _route_match(match, path)
                timeout = 0.0 if streams else (rule.timeout_seconds if rule.timeout_seconds is not None else unary_timeout)
                route = {
                    "name": f"{host}.{rule.name}" + (f".{path.strip('/').replace('/', '.')}" if path else ""),
                    "match": route_match,
                    "route": {**copy.deepcopy(action), **deadline(timeout)},
                }
                routes.append(route)
    return routes


def _route_match(match: Match | None, path: str | None = None) -> dict[str, Any]:
    route_match: dict[str, Any]
    if path is not None:
        route_match = {"path": path}
    elif match and match.uri:
        kind, value = match.uri
        route_match = {"safe_regex": {"regex": value}} if kind == "regex" else {"path" if kind == "exact" else "prefix": value}
    else:
        route_match = {"prefix": "/"}
    if match and match.headers:
        route_match["headers"] = _header_matchers(match.headers)
    return route_match


def _default_retries() -> Retries:
    return Retries(int(DEFAULT_RETRIES["attempts"]), str(DEFAULT_RETRIES["retryOn"]))


def _uri_matches(uri: tuple[str, str], path: str) -> bool:
    kind, value = uri
    return path == value if kind == "exact" else path.startswith(value) if kind == "prefix" else re.fullmatch(value, path) is not None


def inbound_rbac(policy: Policy, service: str) -> dict[str, Any]:
    """The service's AuthorizationPolicies as Envoy RBAC. No policy: any mesh peer (mTLS
    already proved it is one), as in Istio."""
    rules = policy.authorization.get(service)
    if rules is None:
        policies = {
            "any-peer": {"permissions": [{"any": True}], "principals": [{"authenticated": {"principal_name": {"prefix": "spiffe://"}}}]}
        }
    else:
        policies = {}
        for index, allow in enumerate(rules):
            permissions: list[dict[str, Any]] = [
                {"url_path": {"path": {"prefix": p[:-1]} if p.endswith("*") else {"exact": p}}} for p in allow.paths
            ] or [{"any": True}]
            principals = [{"authenticated": {"principal_name": {"exact": p}}} for p in allow.principals] or [
                {"authenticated": {"principal_name": {"prefix": "spiffe://"}}}
            ]
            policies[f"rule-{index}"] = {"permissions": [{"or_rules": {"rules": permissions}}], "principals": principals}
    return typed("envoy.extensions.filters.http.rbac.v3.RBACPerRoute", rbac={"rules": {"action": "ALLOW", "policies": policies}})


def inbound_routes(policy: Policy, instance: Instance) -> dict[str, Any]:
    """Everything allowed goes to the app. Faults of the service's VirtualService are
    injected here, by the destination's sidecar, so that the caller's proxy sees them as
    real failures and its retries apply (Istio injects them in the caller's proxy, where
    its own retries never see an injected abort)."""
    rbac = inbound_rbac(policy, instance.service)
    to_app = {"cluster": "app", **deadline(None)}
    routes = []
    for rule in policy.virtual_services.get(instance.service, ()):
        fault = _fault(rule)
        versions = {policy.subset_version(d.host, d.subset) for d in rule.destinations}
        if fault is None or not ({"", instance.version} & versions):
            continue
        for index, match in enumerate(rule.matches or (None,)):
            routes.append({
                "name": f"fault.{rule.name}.{index}",
                "match": _route_match(match),
                "route": to_app,
                "typed_per_filter_config": {"envoy.filters.http.rbac": rbac, "envoy.filters.http.fault": fault},
            })  # fmt: skip
    routes.append({"name": "app", "match": {"prefix": "/"}, "route": to_app, "typed_per_filter_config": {"envoy.filters.http.rbac": rbac}})
    return route_configuration("inbound", routes, {INSTANCE_HEADER: instance.name})


def _rds(name: str, directory: Path) -> dict[str, Any]:
    return {"route_config_name": name, "config_source": file_source(directory / f"rds-{name}.json", directory)}


# The inbound side tells the app who called: x-forwarded-client-cert with the SPIFFE id
# (URI) of the peer's certificate, which mutual TLS proved. Whatever a caller sent in that
# header is replaced, never passed on. (Istio's sidecars append to it instead; either way
# the last entry is the peer's, the one fenlei.runtime.rpc.caller reads.)
CALLER_CERTIFICATE = {"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": {"uri": True}}


def _manager(stat_prefix: str, route_name: str, directory: Path, filters: list[dict[str, Any]], service: str,
             **options: Any) -> dict[str, Any]:  # fmt: skip
    """service: whom the proxy's own replies name when it reaches no instance of it.
    options: more settings of the HttpConnectionManager."""
    unreached = {"filter": unreachable(), "body_format_override": {"text_format_source": {"inline_string": unavailable(service)}}}
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": typed(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix=stat_prefix,
            codec_type="HTTP2",
            rds=_rds(route_name, directory),
            local_reply_config={"mappers": [unreached]},
            http_filters=[
                *filters,
                {"name": "envoy.filters.http.router", "typed_config": typed("envoy.extensions.filters.http.router.v3.Router")},
            ],
            **options,
        ),
    }


FAULT_FILTER = {"name": "envoy.filters.http.fault", "typed_config": typed("envoy.extensions.filters.http.fault.v3.HTTPFault")}
# Denies everything unless the route's RBACPerRoute allows it.
DENY_BY_DEFAULT = {
    "name": "envoy.filters.http.rbac",
    "typed_config": typed("envoy.extensions.filters.http.rbac.v3.RBAC", rules={"action": "ALLOW", "policies": {}}),
}


def outbound_socket(directory: Path, host: str) -> Path:
    return directory / f"out-{host}.sock"


def sidecar_bootstrap(
    name: str, directory: Path, identity: Identity, ca_root: Path, *, inbound: tuple[int, Path], outbound: Iterable[str],
    proxy: str = "", access_log_file: Path | None = None, collector: str = "",
) -> dict[str, Any]:  # fmt: skip
    """inbound: (mTLS port, the app's Unix socket).
    outbound: the hosts the app calls, each through a Unix socket of this proxy.
    proxy: its name in its access log (default: name), written to access_log_file, else to Envoy's stdout.
    collector: host:port of the trace collector its spans go to (named by proxy); "": no tracing."""
    port, app_socket = inbound
    traced = {"tracing": envoy_tracing.tracing(proxy or name, starts_traces=False)} if collector else {}

    def logged(listener: str) -> list[dict[str, Any]]:
        return access_log(proxy or name, listener, access_log_file)

    tls = typed(
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        require_client_certificate=True,
        common_tls_context=tls_context(identity, ca_root),
    )
    inbound_listener = {
        "name": "inbound",
        "address": socket_address("127.0.0.1", port),
        "filter_chains": [
            {
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [
                    _manager(
                        "inbound",
                        "inbound",
                        directory,
                        [DENY_BY_DEFAULT, FAULT_FILTER],
                        identity.account,
                        access_log=logged("inbound"),
                        **traced,
                        **CALLER_CERTIFICATE,
                    )
                ],
            }
        ],
    }
    app_cluster = {
        "name": "app",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": pipe(app_socket)}}]}]},
        "typed_extension_protocol_options": http2_options(),
    }
    outbound_listeners = [
        {
            "name": f"outbound-{host}",
            "address": pipe(outbound_socket(directory, host)),
            "traffic_direction": "OUTBOUND",  # its spans are "egress", the inbound side's "ingress"
            "filter_chains": [
                {
                    "filters": [
                        _manager(
                            f"outbound_{host}", f"outbound-{host}", directory, [], host, access_log=logged(f"outbound-{host}"), **traced
                        )
                    ]
                }
            ],
        }
        for host in outbound
    ]
    return {
        "node": {"id": name, "cluster": name.rsplit("-", 2)[0]},
        "admin": {"address": socket_address("127.0.0.1", 0)},
        "static_resources": {
            "listeners": [inbound_listener, *outbound_listeners],
            "clusters": [app_cluster, *([envoy_tracing.collector_cluster(collector)] if collector else [])],
        },
        "dynamic_resources": {"cds_config": file_source(directory / "cds.json", directory)},
    }
