"""Istio resources (mesh/istio/*.yaml) read into the traffic and security policy the local
sidecars apply. One source of truth: what runs on one machine is what runs in a cluster.

fenlei translates a subset of Istio's API. Anything outside it is rejected with a message
naming the field, never silently ignored: a policy that looks applied but is not would
be worse than an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fenlei.errors import InvalidInput

NAMESPACE = "fenlei"
# Istio's retry policy when a VirtualService route names none.
DEFAULT_RETRIES: dict[str, Any] = {"attempts": 2, "retryOn": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"}
GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip


class PolicyError(InvalidInput):
    """An Istio resource fenlei cannot apply as written."""


def _check_keys(where: str, value: Any, allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}: fenlei's local mesh does not translate {', '.join(unknown)} (it knows {', '.join(sorted(allowed))})")
    return value


def seconds(where: str, text: Any) -> float:
    """Istio durations: "1.5s", "250ms", "1m"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text))
    if not match:
        raise PolicyError(f"{where}: {text!r} is not a duration like 250ms, 2s or 1m")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _percent(where: str, value: Any) -> float:
    _check_keys(where, value, {"value"})
    percent = value.get("value", 0)
    if not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        raise PolicyError(f"{where}.value: a percentage from 0 to 100, not {percent!r}")
    return float(percent)


@dataclass(frozen=True)
class ConnectionPool:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None
    max_requests_per_connection: int | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx: int | None = None
    consecutive_gateway_errors: int | None = None
    interval_seconds: float = 10.0
    base_ejection_seconds: float = 30.0
    max_ejection_percent: int = 10


@dataclass(frozen=True)
class DestinationRule:
    host: str
    subsets: dict[str, str] = field(default_factory=dict)  # subset name → version label
    pool: ConnectionPool = ConnectionPool()
    outlier: OutlierDetection | None = None
    mutual_tls: bool = True


@dataclass(frozen=True)
class Match:
    uri: tuple[str, str] | None = None  # ("prefix" | "exact" | "regex", value)
    headers: tuple[tuple[str, str, str], ...] = ()  # (name, "exact" | "prefix" | "regex", value)


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    weight: int = 100


@dataclass(frozen=True)
class Retries:
    attempts: int
    retry_on: str
    per_try_timeout_seconds: float | None = None


@dataclass(frozen=True)
class Fault:
    delay_seconds: float | None = None
    delay_percent: float = 0.0
    abort_grpc_status: int | None = None
    abort_http_status: int | None = None
    abort_percent: float = 0.0


@dataclass(frozen=True)
class HttpRoute:
    name: str
    matches: tuple[Match, ...]  # empty: every request
    destinations: tuple[Destination, ...]
    timeout_seconds: float | None  # None: no timeout (Istio's default)
    retries: Retries | None
    fault: Fault | None


@dataclass(frozen=True)
class Allow:
    principals: tuple[str, ...]  # SPIFFE ids; empty: any authenticated peer
    paths: tuple[str, ...]  # exact paths, or prefixes ending in "*"; empty: any


@dataclass
class Policy:
    destination_rules: dict[str, DestinationRule] = field(default_factory=dict)
    virtual_services: dict[str, tuple[HttpRoute, ...]] = field(default_factory=dict)
    authorization: dict[str, list[Allow]] = field(default_factory=dict)  # app → rules (ALLOW)
    strict_mtls: bool = False
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) → host or app
    origins: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) → the file it came from

    def files_in_effect(self) -> set[str]:
        """Names of the files that still define a resource (not replaced by a later one)."""
        return {self.origins[key] for key in self.names}

    def subset_version(self, host: str, subset: str) -> str:
        rule = self.destination_rules.get(host)
        if not subset:
            return ""
        if rule is None or subset not in rule.subsets:
            raise PolicyError(f"a route to {host} names subset {subset!r}, but no DestinationRule for {host} defines it")
        return rule.subsets[subset]


def _host(where: str, host: Any) -> str:
    text = str(host)
    short = text.removesuffix(f".{NAMESPACE}.svc.cluster.local").removesuffix(f".{NAMESPACE}.svc").removesuffix(f".{NAMESPACE}")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", short):
        raise PolicyError(f"{where}: host {text!r} is not a service of namespace {NAMESPACE}")
    return short


def _destination_rule(where: str, spec: dict[str, Any]) -> DestinationRule:
    _check_keys(where, spec, {"host", "subsets", "trafficPolicy"})
    host = _host(f"{where}.host", spec.get("host"))
    subsets = {}
    for i, subset in enumerate(spec.get("subsets", [])):
        _check_keys(f"{where}.subsets[{i}]", subset, {"name", "labels"})
        labels = _check_keys(f"{where}.subsets[{i}].labels", subset.get("labels", {}), {"version"})
        subsets[str(subset["name"])] = str(labels.get("version", ""))
    policy = _check_keys(f"{where}.trafficPolicy", spec.get("trafficPolicy", {}), {"connectionPool", "outlierDetection", "tls"})
    pool_spec = _check_keys(f"{where}.trafficPolicy.connectionPool", policy.get("connectionPool", {}), {"tcp", "http"})
    tcp = _check_keys(f"{where}.trafficPolicy.connectionPool.tcp", pool_spec.get("tcp", {}), {"maxConnections"})
    http = _check_keys(
        f"{where}.trafficPolicy.connectionPool.http",
        pool_spec.get("http", {}),
        {"http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries"},
    )
    pool = ConnectionPool(
        tcp.get("maxConnections"), http.get("http1MaxPendingRequests"), http.get("http2MaxRequests"),
        http.get("maxRetries"), http.get("maxRequestsPerConnection"),
    )  # fmt: skip
    outlier = None
    if "outlierDetection" in policy:
        spec_o = _check_keys(
            f"{where}.trafficPolicy.outlierDetection",
            policy["outlierDetection"],
            {"consecutive5xxErrors", "consecutiveGatewayErrors", "interval", "baseEjectionTime", "maxEjectionPercent"},
        )
        outlier = OutlierDetection(
            spec_o.get("consecutive5xxErrors"),
            spec_o.get("consecutiveGatewayErrors"),
            seconds(f"{where}.outlierDetection.interval", spec_o.get("interval", "10s")),
            seconds(f"{where}.outlierDetection.baseEjectionTime", spec_o.get("baseEjectionTime", "30s")),
            int(spec_o.get("maxEjectionPercent", 10)),
        )
    tls = _check_keys(f"{where}.trafficPolicy.tls", policy.get("tls", {"mode": "ISTIO_MUTUAL"}), {"mode"})
    if tls.get("mode") not in ("ISTIO_MUTUAL", "DISABLE"):
        raise PolicyError(f"{where}.trafficPolicy.tls.mode: fenlei translates ISTIO_MUTUAL and DISABLE, not {tls.get('mode')!r}")
    return DestinationRule(host, subsets, pool, outlier, tls["mode"] == "ISTIO_MUTUAL")


def _string_match(where: str, spec: Any) -> tuple[str, str]:
    _check_keys(where, spec, {"exact", "prefix", "regex"})
    if len(spec) != 1:
        raise PolicyError(f"{where}: give exactly one of exact, prefix, regex")
    [(kind, value)] = spec.items()
    return kind, str(value)


def _match(where: str, spec: dict[str, Any]) -> Match:
    _check_keys(where, spec, {"name", "uri", "headers"})
    uri = _string_match(f"{where}.uri", spec["uri"]) if "uri" in spec else None
    headers = tuple((name.lower(), *_string_match(f"{where}.headers.{name}", value)) for name, value in spec.get("headers", {}).items())
    return Match(uri, headers)


def _http_route(where: str, spec: dict[str, Any], index: int) -> HttpRoute:
    _check_keys(where, spec, {"name", "match", "route", "timeout", "retries", "fault"})
    matches = tuple(_match(f"{where}.match[{i}]", m) for i, m in enumerate(spec.get("match", [])))
    destinations = []
    routes = spec.get("route") or []
    if not routes:
        raise PolicyError(f"{where}.route: name at least one destination")
    for i, route in enumerate(routes):
        _check_keys(f"{where}.route[{i}]", route, {"destination", "weight"})
        destination = _check_keys(f"{where}.route[{i}].destination", route.get("destination", {}), {"host", "subset", "port"})
        weight = route.get("weight", 100 if len(routes) == 1 else 0)
        destinations.append(
            Destination(
                _host(f"{where}.route[{i}].destination.host", destination.get("host")), str(destination.get("subset", "")), int(weight)
            )
        )
    if len(destinations) > 1 and sum(d.weight for d in destinations) != 100:
        raise PolicyError(f"{where}.route: weights add up to {sum(d.weight for d in destinations)}, not 100")
    timeout = seconds(f"{where}.timeout", spec["timeout"]) if "timeout" in spec else None
    retries_spec = _check_keys(f"{where}.retries", spec.get("retries", DEFAULT_RETRIES), {"attempts", "perTryTimeout", "retryOn"})
    retries = None
    if int(retries_spec.get("attempts", 0)) > 0:
        retries = Retries(
            int(retries_spec["attempts"]),
            str(retries_spec.get("retryOn", DEFAULT_RETRIES["retryOn"])),
            seconds(f"{where}.retries.perTryTimeout", retries_spec["perTryTimeout"]) if "perTryTimeout" in retries_spec else None,
        )
    fault = None
    if "fault" in spec:
        fault_spec = _check_keys(f"{where}.fault", spec["fault"], {"delay", "abort"})
        delay = _check_keys(f"{where}.fault.delay", fault_spec.get("delay", {}), {"fixedDelay", "percentage"})
        abort = _check_keys(f"{where}.fault.abort", fault_spec.get("abort", {}), {"grpcStatus", "httpStatus", "percentage"})
        grpc_status = abort.get("grpcStatus")
        if grpc_status is not None and str(grpc_status) not in GRPC_CODES:
            raise PolicyError(f"{where}.fault.abort.grpcStatus: {grpc_status!r} is not a gRPC status name like UNAVAILABLE")
        fault = Fault(
            seconds(f"{where}.fault.delay.fixedDelay", delay["fixedDelay"]) if "fixedDelay" in delay else None,
            _percent(f"{where}.fault.delay.percentage", delay.get("percentage", {"value": 100})) if delay else 0.0,
            GRPC_CODES[str(grpc_status)] if grpc_status is not None else None,
            int(abort["httpStatus"]) if "httpStatus" in abort else None,
            _percent(f"{where}.fault.abort.percentage", abort.get("percentage", {"value": 100})) if abort else 0.0,
        )
    return HttpRoute(str(spec.get("name", f"route-{index}")), matches, tuple(destinations), timeout, retries, fault)


def _principal(where: str, text: Any) -> str:
    match = re.fullmatch(r"cluster\.local/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)", str(text))
    if not match or match.group(1) != NAMESPACE:
        raise PolicyError(f"{where}: {text!r} is not a principal like cluster.local/ns/{NAMESPACE}/sa/<account>")
    return f"spiffe://{text}"


def _authorization(where: str, spec: dict[str, Any]) -> tuple[str, list[Allow]]:
    _check_keys(where, spec, {"selector", "action", "rules"})
    if spec.get("action", "ALLOW") != "ALLOW":
        raise PolicyError(f"{where}.action: fenlei translates ALLOW policies only, not {spec.get('action')!r}")
    selector = _check_keys(f"{where}.selector", spec.get("selector", {}), {"matchLabels"})
    labels = _check_keys(f"{where}.selector.matchLabels", selector.get("matchLabels", {}), {"app"})
    if "app" not in labels:
        raise PolicyError(f"{where}.selector.matchLabels.app: name the workload the policy protects")
    rules = []
    for i, rule in enumerate(spec.get("rules", [])):
        _check_keys(f"{where}.rules[{i}]", rule, {"from", "to"})
        principals: list[str] = []
        for j, source in enumerate(rule.get("from", [])):
            _check_keys(f"{where}.rules[{i}].from[{j}]", source, {"source"})
            inner = _check_keys(f"{where}.rules[{i}].from[{j}].source", source["source"], {"principals"})
            principals += [_principal(f"{where}.rules[{i}].from[{j}].source.principals", p) for p in inner.get("principals", [])]
        paths: list[str] = []
        for j, target in enumerate(rule.get("to", [])):
            _check_keys(f"{where}.rules[{i}].to[{j}]", target, {"operation"})
            operation = _check_keys(f"{where}.rules[{i}].to[{j}].operation", target["operation"], {"paths"})
            paths += [str(p) for p in operation.get("paths", [])]
        rules.append(Allow(tuple(principals), tuple(paths)))
    return str(labels["app"]), rules


# libyaml's safe loader where PyYAML was built with it: the same documents, some 8 times sooner
# (the supervisor reads the policy at every push).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(files: Iterable[Path], policy: Policy | None = None) -> Policy:
    """Reads Istio resources; a later resource of the same kind and name replaces the
    earlier one, as `kubectl apply` would (a scenario file replaces a default route)."""
    policy = policy or Policy()
    for path in files:
        for index, document in enumerate(yaml.load_all(Path(path).read_text(encoding="utf-8"), Loader=SAFE_LOADER)):
            if document:
                _apply(policy, document, f"{Path(path).name}#{index}")
                kind, name = document.get("kind"), str((document.get("metadata") or {}).get("name", ""))
                if (kind, name) in policy.names:
                    policy.origins[(kind, name)] = Path(path).name
    for routes in policy.virtual_services.values():
        for route in routes:
            for destination in route.destinations:
                policy.subset_version(destination.host, destination.subset)
    return policy


def _apply(policy: Policy, document: dict[str, Any], origin: str) -> None:
    _check_keys(origin, document, {"apiVersion", "kind", "metadata", "spec"})
    kind = document.get("kind")
    metadata = _check_keys(f"{origin}.metadata", document.get("metadata", {}), {"name", "namespace", "labels", "annotations"})
    name = str(metadata.get("name", ""))
    where = f"{origin} {kind} {name}"
    if metadata.get("namespace", NAMESPACE) != NAMESPACE:
        raise PolicyError(f"{where}: fenlei's resources live in namespace {NAMESPACE}, not {metadata['namespace']!r}")
    spec = document.get("spec") or {}
    if kind == "DestinationRule":
        rule = _destination_rule(f"{where} spec", spec)
        _replace(policy, kind, name, rule.host, policy.destination_rules)
        policy.destination_rules[rule.host] = rule
    elif kind == "VirtualService":
        _check_keys(f"{where} spec", spec, {"hosts", "gateways", "http"})
        if spec.get("gateways"):
            return  # ingress routing is the gateway's own (fenlei.gateway); the mesh routes service to service
        hosts = [_host(f"{where} spec.hosts", h) for h in spec.get("hosts", [])]
        if len(hosts) != 1:
            raise PolicyError(f"{where} spec.hosts: fenlei translates VirtualServices for exactly one host, not {hosts}")
        routes = tuple(_http_route(f"{where} spec.http[{i}]", r, i) for i, r in enumerate(spec.get("http", [])))
        _replace(policy, kind, name, hosts[0], policy.virtual_services)
        policy.virtual_services[hosts[0]] = routes
    elif kind == "AuthorizationPolicy":
        app, rules = _authorization(f"{where} spec", spec)
        _replace(policy, kind, name, app, policy.authorization)
        policy.authorization[app] = rules
    elif kind == "PeerAuthentication":
        _check_keys(f"{where} spec", spec, {"mtls", "selector"})
        if "selector" in spec:
            raise PolicyError(f"{where} spec.selector: fenlei applies PeerAuthentication to the whole namespace only")
        mode = _check_keys(f"{where} spec.mtls", spec.get("mtls", {}), {"mode"}).get("mode")
        if mode != "STRICT":
            raise PolicyError(f"{where} spec.mtls.mode: the local mesh runs STRICT mutual TLS only, not {mode!r}")
        policy.strict_mtls = True
    elif kind == "Gateway":
        return  # the ingress: fenlei up runs its own gateway (fenlei.gateway) in its place
    elif kind == "EnvoyFilter":
        raise PolicyError(
            f"{where}: the local mesh does not apply EnvoyFilters (raw Envoy patches); on one machine the gateway's own "
            "configuration (fenlei.gateway) does what an ingress EnvoyFilter does on a cluster"
        )
    else:
        raise PolicyError(f"{where}: fenlei's local mesh does not translate kind {kind!r}")


def _replace(policy: Policy, kind: str, name: str, key: str, table: dict[str, Any]) -> None:
    """One resource of a kind per host (or app): a new name for a taken host replaces it."""
    for (old_kind, old_name), old_key in list(policy.names.items()):
        if old_kind == kind and old_key == key and old_name != name:
            del policy.names[(old_kind, old_name)]
    previous = policy.names.get((kind, name))
    if previous is not None and previous != key:
        table.pop(previous, None)
    policy.names[(kind, name)] = key
