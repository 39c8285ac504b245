"""The Kubernetes and Istio manifests of mesh/: they build, they are valid, and they say
what fenlei needs.

- `kubectl kustomize` builds the base and every overlay;
- every Kubernetes object validates against the Kubernetes 1.32 schema
  (kubernetes-validate, strict: an unknown field is an error);
- every Istio object (mesh/istio and the builds) validates against Istio's own schema
  for its version and kind (Istio 1.24's CRDs as the pydantic models of
  cloudcoil-models-istio, a dev dependency), strict the same way (a misspelt field is an
  error, as with `kubectl apply --validate=strict`);
- routes, subsets, hosts, principals and method paths name things that exist: Services,
  DestinationRule subsets, Deployments, ServiceAccounts, methods of the contract;
- workloads run non-root on a read-only root filesystem, drop every capability, have
  gRPC probes and resources;
- a single writer (the registry, the datasets, the jobs) runs one replica, replaced with
  Recreate, with a disruption budget that still lets nodes drain and no autoscaler; calls
  that change its state are retried only where they never reached it; a mesh-internal
  service is open to the callers that need it alone;
- every caller reaches what it calls (FENLEI_<CALLER>_<CALLEE>_ADDRESS names a Service)
  and may call it (the AuthorizationPolicies allow what fenlei needs);
- every workload announces its Prometheus endpoint (a `metrics` port, the prometheus.io
  annotations, FENLEI_METRICS_HOST/PORT to match); with components/tracing every workload
  and the gateway's Envoy send their spans to the OpenTelemetry Collector's OTLP port, and
  without it no process traces;
- every container of an overlay runs the one image scripts/image.sh wrote into
  components/image (the collector and Istio's injected proxy aside);
- the web console runs as Envoy from its own Deployment, answering every file of the
  console as the local gateway does; the gateway forwards the console's paths to it and
  answers none of them itself; under Istio only the gateway may call it;
- the local mesh's translator (fenlei.sidecar.policy) accepts every Istio file;
- and each check catches a deliberate mistake, so none of them is vacuous.

Every check returns a list of problems; the tests assert it is empty.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.resources import get_model
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from fenlei import services
from fenlei.gateway import console
from fenlei.sidecar.policy import SAFE_LOADER

REPO = Path(__file__).resolve().parents[2]
MESH = REPO / "mesh"
K8S = MESH / "k8s"
ISTIO = MESH / "istio"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "fenlei"
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # a DNS label
PORT = 50051
METRICS_PORT = 9464
SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": "/metrics"}
COLLECTOR, OTLP_PORT = "otel-collector", 4317
IMAGE_COMPONENT = K8S / "components" / "image" / "kustomization.yaml"

BUILDS = ("base", "overlays/local", "overlays/istio", "overlays/istio-canary")
ISTIO_BUILDS = ("overlays/istio", "overlays/istio-canary")
# The default policy the local mesh starts with (fenlei.sidecar.control.BASE_POLICY) and
# the scenarios applied on top of it, one at a time.
DEFAULT_POLICY = (
    "peer-authentication.yaml",
    "destination-rule-all-mtls.yaml",
    "virtual-service-all-v1.yaml",
    "authorization-policies.yaml",
)
SCENARIOS = (
    "virtual-service-pipeline-90-10.yaml",
    "virtual-service-pipeline-iphone-v2.yaml",
    "fault-delay-classifier.yaml",
    "fault-abort-classifier.yaml",
)

# ---------------------------------------------------------------- the contract

# What the manifests must hold, from the registry of services.
SERVICES = tuple(w.name for w in services.WORKLOADS)
STAGES = tuple(w.name for w in services.WORKLOADS if w.autoscale[1] > w.autoscale[0])  # autoscaled
# Each server's gRPC services: its public contract and the mesh-internal ones.
SERVED: dict[str, tuple[ServiceDescriptor, ...]] = {w.name: (*w.contract, *w.internal) for w in services.WORKLOADS}
PUBLIC: tuple[ServiceDescriptor, ...] = tuple(s for w in services.PUBLIC for s in w.contract)
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
MODULES = {w.name: w.module for w in services.WORKLOADS}
CALLS = {w.name: w.calls for w in services.WORKLOADS}
# Stages whose Fit writes model artifacts and the services that keep state (the registry,
# datasets, jobs): the home volume is writable there only.
WRITERS = {w.name for w in services.WORKLOADS if w.writes_models}
# The only writers of their state (each its SQLite database): one replica, never two at once.
SINGLE_WRITERS = {w.name for w in services.WORKLOADS if w.single_writer}


def paths_of(*described: ServiceDescriptor, streaming: bool | None = None) -> set[str]:
    return {
        f"/{service.full_name}/{m.name}"
        for service in described
        for m in service.methods
        if streaming is None or (m.client_streaming or m.server_streaming) == streaming
    }


def served_paths(app: str) -> set[str]:
    """Every method a server of `app` answers: its own services, health, reflection (the
    console: its files and redirects)."""
    return CONSOLE_PATHS if app == CONSOLE else paths_of(*SERVED.get(app, ()), HEALTH, REFLECTION)


# The web console's own Envoy (Kubernetes): every file of the console, read from the image.
CONSOLE, CONSOLE_PORT = "console", 8080
CONSOLE_FILES = console.console_files()  # URL → the file in this checkout
CONSOLE_PATHS = {*console.REDIRECTED, *CONSOLE_FILES}
IMAGE_UI = "/app/services/fenlei/gateway/ui"
GATEWAY = "cluster.local/ns/fenlei/sa/gateway"


# What the mesh carries to each host (the gateway routes health to the pipeline and
# reflection to the catalog), and which of it is long-lived.
CARRIED = {**{app: paths_of(*own) for app, own in SERVED.items() if own}, "catalog": paths_of(REFLECTION)}
CARRIED["pipeline"] |= paths_of(HEALTH)
LONG_LIVED = {app: paths & paths_of(*SERVED.get(app, ()), HEALTH, REFLECTION, streaming=True) for app, paths in CARRIED.items()}
INTERNAL = paths_of(*(s for w in services.WORKLOADS for s in w.internal))
# What the gateway routes: the public contract and reflection (never a mesh-internal service).
GATEWAY_PATHS = paths_of(*PUBLIC) | {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}
# The calls that change the state of a single writer (the registry, the datasets, the
# jobs). A try that reached it may have done its work although its answer was lost (a
# version registered, an alias moved twice by a repeated rollback, a second job
# created), so the mesh retries them only where the call never got there: the
# connection failed, or the stream was refused before it was read. What a retry could
# repeat: every method of theirs the contract does not mark idempotent (option
# idempotency_level), read from the contract itself.
CHANGES_STATE = {
    f"/{service.full_name}/{method.name}"
    for writer in services.WORKLOADS
    if writer.single_writer
    for service in (*writer.contract, *writer.internal)
    for method in service.methods
    if method.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.IdempotencyLevel.IDEMPOTENCY_UNKNOWN
}
NEVER_SEEN = {"connect-failure", "refused-stream"}

# Calls fenlei makes, which the AuthorizationPolicies must allow (caller account → paths).
REQUIRED_CALLS = {
    "pipeline": {
        "/fenlei.v1.Segmenter/SegmentStream", "/fenlei.v1.Preprocessor/PreprocessStream",
        "/fenlei.v1.Features/TransformStream", "/fenlei.v1.Features/DescribeFeatures", "/fenlei.v1.Classifier/PredictStream",
        "/fenlei.v1.ExperimentRouting/AssignArm", "/fenlei.v1.ExperimentRouting/RecordPredictions",
    },
    "jobs": {
        "/fenlei.v1.Segmenter/SegmentStream", "/fenlei.v1.Preprocessor/PreprocessStream",
        "/fenlei.v1.Features/TransformStream", "/fenlei.v1.Features/DescribeFeatures", "/fenlei.v1.Classifier/PredictStream",
        "/fenlei.v1.Features/Fit", "/fenlei.v1.Classifier/Fit", "/fenlei.v1.ModelRegistry/RegisterVersion",
        "/fenlei.v1.ModelRegistry/GetVersion", "/fenlei.v1.Datasets/ReadDataset", "/fenlei.v1.Datasets/GetDataset",
        "/fenlei.v1.DatasetPins/SetPins",
    },
    "gateway": GATEWAY_PATHS | CONSOLE_PATHS,
}  # fmt: skip
GRPC_RETRY_ON = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
HTTP_RETRY_ON = {"5xx", "gateway-error", "reset", "connect-failure"}  # the console's files are plain HTTP

# ---------------------------------------------------------------- loading

Obj = dict[str, Any]


@functools.cache
def _kustomize(directory: str) -> tuple[str, str]:
    result = subprocess.run([KUBECTL, "kustomize", directory], capture_output=True, text=True, timeout=60)
    return result.stdout, result.stderr if result.returncode else ""


def build(directory: Path) -> list[Obj]:
    output, error = _kustomize(str(directory))
    if error:
        raise AssertionError(f"kubectl kustomize {directory} failed: {error}")
    return [d for d in yaml.load_all(output, Loader=SAFE_LOADER) if d]


def read(files: Iterable[Path]) -> list[Obj]:
    return [d for f in files for d in yaml.load_all(f.read_text(encoding="utf-8"), Loader=SAFE_LOADER) if d]


def istio_files(root: Path = ISTIO) -> list[Path]:
    return sorted(p for p in root.glob("*.yaml") if p.name != "kustomization.yaml")


def is_istio(obj: Obj) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0].endswith(".istio.io")


def name(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


# ---------------------------------------------------------------- schemas


def kubernetes_problems(objects: Iterable[Obj]) -> list[str]:
    return [problem for obj in objects if not is_istio(obj) for problem in _schema_problems(json.dumps(obj, sort_keys=True))]


@functools.cache
def _schema_problems(canonical: str) -> tuple[str, ...]:
    """One object (as canonical JSON) against its Kubernetes schema: remembered, since every
    mutation test validates the same build but for the object it changed (the library reads
    the schemas from disk on each call)."""
    obj = json.loads(canonical)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return (f"{name(obj)}: {'.'.join(map(str, error.path))}: {error.message}",)
    except kubernetes_validate.SchemaNotFoundError as error:
        return (f"{name(obj)}: {error.message}",)
    return ()


def istio_problems(objects: Iterable[Obj]) -> list[str]:
    """Each Istio object against Istio's own schema for its apiVersion and kind, strict as
    `kubectl apply --validate=strict` is: an unknown field or a value of the wrong type is
    an error (pydantic would drop the one and coerce the other by default)."""
    problems = []
    for obj in objects:
        if not is_istio(obj):
            continue
        try:
            model = get_model(obj.get("kind", ""), api_version=obj.get("apiVersion", ""))
        except KeyError:
            problems.append(f"{name(obj)}: no Istio schema for {obj.get('apiVersion')} {obj.get('kind')}")
            continue
        try:
            model.model_validate(obj, strict=True, extra="forbid")
        except pydantic.ValidationError as error:
            problems += [f"{name(obj)}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        if "spec" not in obj:
            problems.append(f"{name(obj)}: no spec")
        if not OBJECT_NAME.fullmatch(obj.get("metadata", {}).get("name", "")):
            problems.append(f"{name(obj)}: metadata.name is not a DNS label")
        if obj.get("metadata", {}).get("namespace", NAMESPACE) != NAMESPACE:
            problems.append(f"{name(obj)}: not in namespace {NAMESPACE}")
    return problems


# ---------------------------------------------------------------- references between objects


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(objects: Iterable[Obj]) -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"].get("labels", {}) for d in of_kind(objects, "Deployment")]


def _uri_matches(uri: dict[str, str], path: str) -> bool:
    if "exact" in uri:
        return path == uri["exact"]
    if "prefix" in uri:
        return path.startswith(uri["prefix"])
    return re.fullmatch(uri["regex"], path) is not None


def reference_problems(k8s: list[Obj], istio: list[Obj], *, deployed: list[Obj] | None = None) -> list[str]:
    """Istio objects against the Kubernetes objects they talk about. `deployed`: where
    subsets must find their Deployments (default: k8s itself)."""
    problems: list[str] = []
    services = {s["metadata"]["name"]: s for s in of_kind(k8s, "Service")}
    accounts = {a["metadata"]["name"] for a in of_kind(k8s, "ServiceAccount")}
    pods = _pod_labels(deployed if deployed is not None else k8s)
    apps = {labels.get("app") for labels in _pod_labels(k8s)}
    subsets: dict[str, dict[str, dict[str, str]]] = {}
    gateways = {g["metadata"]["name"] for g in of_kind(istio, "Gateway")}

    for rule in of_kind(istio, "DestinationRule"):
        host = rule["spec"].get("host")
        if host not in services:
            problems.append(f"{name(rule)}: host {host!r} is not a Service")
        if host in subsets:
            problems.append(f"{name(rule)}: a second DestinationRule for host {host!r}")
        subsets[host] = {s["name"]: s.get("labels", {}) for s in rule["spec"].get("subsets", [])}
        for subset, labels in subsets[host].items():
            if not any(_selects({"app": host, **labels}, pod) for pod in pods):
                problems.append(f"{name(rule)}: subset {subset} ({labels}) selects no Deployment of app {host}")
        if rule["spec"].get("trafficPolicy", {}).get("tls", {}).get("mode") != "ISTIO_MUTUAL":
            problems.append(f"{name(rule)}: trafficPolicy.tls.mode is not ISTIO_MUTUAL")

    for service in of_kind(istio, "VirtualService"):
        spec = service["spec"]
        ingress = bool(spec.get("gateways"))
        for gateway in spec.get("gateways", []):
            if gateway not in gateways and gateway != "mesh":
                problems.append(f"{name(service)}: gateway {gateway!r} is not a Gateway")
        hosts = spec.get("hosts", [])
        if not ingress:
            for host in hosts:
                if host not in services:
                    problems.append(f"{name(service)}: host {host!r} is not a Service")
        for index, route in enumerate(spec.get("http", [])):
            where = f"{name(service)} http[{index}] ({route.get('name')})"
            for destination in (r["destination"] for r in route.get("route", [])):
                host, subset = destination.get("host"), destination.get("subset")
                if host not in services:
                    problems.append(f"{where}: destination host {host!r} is not a Service")
                    continue
                if subset and subset not in subsets.get(host, {}):
                    problems.append(f"{where}: subset {subset!r} of {host} is in no DestinationRule")
                elif subset and not any(_selects({"app": host, **subsets[host][subset]}, pod) for pod in pods):
                    problems.append(f"{where}: subset {subset!r} of {host} selects no Deployment")
                port = destination.get("port", {}).get("number")
                if port is not None and port not in {p["port"] for p in services[host]["spec"]["ports"]}:
                    problems.append(f"{where}: {host} has no port {port}")
        if not ingress:
            for host in hosts:
                problems += _retry_problems(service, host) + _stream_timeout_problems(service, host)

    for policy in of_kind(istio, "AuthorizationPolicy"):
        spec = policy["spec"]
        app = spec.get("selector", {}).get("matchLabels", {}).get("app")
        if app not in apps:
            problems.append(f"{name(policy)}: selector app={app!r} selects no Deployment")
        if spec.get("action", "ALLOW") != "ALLOW":
            problems.append(f"{name(policy)}: action {spec.get('action')} (fenlei's policies ALLOW)")
        for rule in spec.get("rules", []):
            for source in rule.get("from", []):
                for principal in source["source"].get("principals", []):
                    match = re.fullmatch(r"cluster\.local/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)", principal)
                    if not match or match.group(1) != NAMESPACE or match.group(2) not in accounts:
                        problems.append(f"{name(policy)}: principal {principal!r} is not a ServiceAccount of namespace {NAMESPACE}")
            for target in rule.get("to", []):
                for path in target["operation"].get("paths", []):
                    if not any(_covers(path, served) for served in served_paths(app or "")) or (
                        path.endswith("*") and not path.endswith("/*")
                    ):
                        problems.append(f"{name(policy)}: path {path!r} names no method that {app} serves")
    problems += _required_call_problems(of_kind(istio, "AuthorizationPolicy"))
    for envoy_filter in of_kind(istio, "EnvoyFilter"):
        for patch in envoy_filter["spec"].get("configPatches", []):
            value = patch.get("patch", {}).get("value", {})
            if value.get("name") == "envoy.filters.http.grpc_json_transcoder":
                transcoded = set(value.get("typed_config", {}).get("services", []))
                if transcoded != {s.full_name for s in PUBLIC}:
                    problems.append(f"{name(envoy_filter)}: transcodes {sorted(transcoded)}, not the public contract")
    return problems


def _routes_taking(service: Obj, path: str) -> list[int]:
    """The rules a call of `path` can reach, by index: each whose match may take it, up to
    the first that takes it whatever the headers."""
    reached = []
    taken: list[list[tuple[str, str]]] = []  # header conditions earlier rules take this path under
    for index, route in enumerate(service["spec"].get("http", [])):
        matches = route.get("match") or [{}]
        reachable = [
            m for m in matches
            if ("uri" not in m or _uri_matches(m["uri"], path))
            and not any(all(c in _conditions(m) for c in earlier) for earlier in taken)
        ]  # fmt: skip
        if not reachable:
            continue
        reached.append(index)
        taken += [_conditions(m) for m in reachable]
        if [] in taken:
            break
    return reached


def _where(service: Obj, index: int) -> str:
    return f"{name(service)} http[{index}] ({service['spec']['http'][index].get('name')})"


def _stream_timeout_problems(service: Obj, host: str) -> list[str]:
    """No route a long-lived call can take may have a timeout: for each such method, every
    rule it could reach has timeout 0s or none."""
    problems = []
    for path in sorted(LONG_LIVED.get(host, ())):
        for index in _routes_taking(service, path):
            timeout = service["spec"]["http"][index].get("timeout", "0s")
            if timeout not in ("0s", "0ms"):
                problems.append(f"{_where(service, index)}: {path} is long-lived but the route has timeout {timeout}")
    return problems


def _retry_problems(service: Obj, host: str) -> list[str]:
    """Every rule retries: on a gRPC condition where each call it takes may be repeated, and
    only where the call never reached the host where one changes state."""
    problems = []
    changing: dict[int, list[str]] = {}
    for path in sorted(CARRIED.get(host, set()) & CHANGES_STATE):
        for index in _routes_taking(service, path):
            changing.setdefault(index, []).append(path)
    for index, route in enumerate(service["spec"].get("http", [])):
        retries = route.get("retries") or {}
        retry_on = set(str(retries.get("retryOn", "")).split(",")) if retries.get("attempts") else set()
        if index in changing:
            if not retry_on or retry_on - NEVER_SEEN:
                problems.append(
                    f"{_where(service, index)}: {', '.join(changing[index])} change state but the route retries on "
                    f"{', '.join(sorted(retry_on - NEVER_SEEN)) or 'nothing'} (retry them on {', '.join(sorted(NEVER_SEEN))} only)"
                )
        elif host == CONSOLE and not HTTP_RETRY_ON & retry_on:
            problems.append(f"{_where(service, index)}: no retries on an HTTP condition ({', '.join(sorted(HTTP_RETRY_ON))})")
        elif host != CONSOLE and not GRPC_RETRY_ON & retry_on:
            problems.append(f"{_where(service, index)}: no retries on a gRPC condition ({', '.join(sorted(GRPC_RETRY_ON))})")
    return problems


def _conditions(match: Obj) -> list[tuple[str, str]]:
    return sorted((header, repr(condition)) for header, condition in match.get("headers", {}).items())


def _covers(pattern: str, path: str) -> bool:
    """Istio's path match: exact, or a prefix when the pattern ends in "*"."""
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def _required_call_problems(policies: list[Obj]) -> list[str]:
    if not policies:
        return []
    allowed = {
        (principal.rsplit("/", 1)[-1], path)
        for policy in policies
        for rule in policy["spec"].get("rules", [])
        for source in rule.get("from", [])
        for principal in source["source"].get("principals", [])
        for target in rule.get("to", [])
        for path in target["operation"].get("paths", [])
    }
    denied = [
        f"{caller} may not call {path}, which fenlei needs"
        for caller, paths in REQUIRED_CALLS.items()
        for path in sorted(paths)
        if not any(who == caller and _covers(pattern, path) for who, pattern in allowed)
    ]
    # A mesh-internal method is for the callers that need it, no one else.
    opened = sorted({
        f"{caller} may call {path}, which is mesh-internal"
        for caller, pattern in allowed
        for path in INTERNAL
        if _covers(pattern, path) and path not in REQUIRED_CALLS.get(caller, ())
    })  # fmt: skip
    return denied + opened


def coverage_problems(objects: list[Obj]) -> list[str]:
    """An Istio build covers every service: a DestinationRule, a VirtualService and an
    AuthorizationPolicy each, STRICT mutual TLS, injection on the namespace."""
    problems = []
    for kind, key in (("DestinationRule", lambda o: o["spec"]["host"]), ("VirtualService", lambda o: o["spec"]["hosts"][0]),
                      ("AuthorizationPolicy", lambda o: o["spec"]["selector"]["matchLabels"]["app"])):  # fmt: skip
        covered = {key(o) for o in of_kind(objects, kind) if not o["spec"].get("gateways")}
        problems += [f"no {kind} for {s}" for s in (*SERVICES, CONSOLE) if s not in covered]
    if not any(
        p["spec"].get("mtls", {}).get("mode") == "STRICT" and "selector" not in p["spec"] for p in of_kind(objects, "PeerAuthentication")
    ):
        problems.append("no namespace-wide STRICT PeerAuthentication")
    if not any(n["metadata"].get("labels", {}).get("istio-injection") == "enabled" for n in of_kind(objects, "Namespace")):
        problems.append("namespace fenlei is not labelled istio-injection: enabled")
    return problems


# ---------------------------------------------------------------- workloads


def _container_problems(where: str, container: Obj, pod: Obj) -> list[str]:
    problems = []
    context, pod_context = container.get("securityContext", {}), pod.get("securityContext", {})

    def setting(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    if setting("runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if setting("runAsUser") in (None, 0):
        problems.append(f"{where}: no non-zero runAsUser")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem is not read-only")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []) or context.get("capabilities", {}).get("add"):
        problems.append(f"{where}: capabilities do not drop ALL (or add some)")
    if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(part, {}))
        if missing:
            problems.append(f"{where}: no {part} for {', '.join(sorted(missing))}")
    return problems


def workload_problems(objects: list[Obj]) -> list[str]:
    problems = []
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    accounts = {a["metadata"]["name"] for a in of_kind(objects, "ServiceAccount")}
    claims = {c["metadata"]["name"]: c for c in of_kind(objects, "PersistentVolumeClaim")}
    config_maps = {c["metadata"]["name"] for c in of_kind(objects, "ConfigMap")}
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    pods = _pod_labels(objects)
    for deployment in deployments.values():
        where = name(deployment)
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        app = labels.get("app")
        if not app or not labels.get("version"):
            problems.append(f"{where}: pods have no app and version labels")
        if not _selects(spec["selector"].get("matchLabels", {}), labels) or "version" not in spec["selector"].get("matchLabels", {}):
            problems.append(f"{where}: selector does not pick its own pods by app and version")
        if pod.get("serviceAccountName") not in accounts:
            problems.append(f"{where}: serviceAccountName {pod.get('serviceAccountName')!r} is not a ServiceAccount")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                problems.append(f"{where}: ConfigMap {volume['configMap']['name']!r} does not exist")
            if "persistentVolumeClaim" in volume and volume["persistentVolumeClaim"]["claimName"] not in claims:
                problems.append(f"{where}: PersistentVolumeClaim {volume['persistentVolumeClaim']['claimName']!r} does not exist")
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            cwhere = f"{where} container {container['name']}"
            problems += _container_problems(cwhere, container, pod)
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            for mount in mounts.values():
                if mount["name"] not in volumes:
                    problems.append(f"{cwhere}: mounts unknown volume {mount['name']!r}")
            if container.get("image") == "auto":
                continue  # Istio's injected gateway proxy: Istio adds its probes
            command = container.get("command", [])
            if command[:2] == ["python", "-m"]:
                problems += _service_container_problems(cwhere, app or "", container, volumes, mounts, services)
            elif container in pod["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in container:
                        problems.append(f"{cwhere}: no {probe}")
    for service in of_kind(objects, "Service"):
        if not any(_selects(service["spec"].get("selector", {}), pod) for pod in pods):
            problems.append(f"{name(service)}: selects no Deployment's pods")
        if service["metadata"]["name"] in SERVICES:
            ports = service["spec"]["ports"]
            if [(p.get("name"), p.get("port"), p.get("appProtocol")) for p in ports] != [("grpc", PORT, "grpc")]:
                problems.append(f"{name(service)}: ports are not exactly grpc {PORT} appProtocol grpc")
    budgeted = set()
    for budget in of_kind(objects, "PodDisruptionBudget"):
        selected = [pod.get("app") for pod in pods if _selects(budget["spec"]["selector"].get("matchLabels", {}), pod)]
        if not selected:
            problems.append(f"{name(budget)}: selects no pods")
        budgeted.update(selected)
        if set(selected) & SINGLE_WRITERS and budget["spec"].get("maxUnavailable") != 1:
            problems.append(
                f"{name(budget)}: a single replica needs maxUnavailable 1 (0 blocks every node drain), not {budget['spec'].get('maxUnavailable')}"
            )
    problems += [f"PodDisruptionBudget: none for {s}" for s in SERVICES if s not in budgeted]
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")}
    problems += [f"HorizontalPodAutoscaler: scales {t}, a single writer" for t in sorted(scaled & SINGLE_WRITERS)]
    for writer in sorted(SINGLE_WRITERS & set(deployments)):
        spec = deployments[writer]["spec"]
        if spec.get("replicas") != 1:
            problems.append(f"Deployment/{writer}: a single writer runs exactly one replica, not {spec.get('replicas')}")
        if spec.get("strategy", {}).get("type") != "Recreate":
            problems.append(f"Deployment/{writer}: a single writer is replaced with strategy Recreate (a rolling update runs two writers)")
    problems += [f"HorizontalPodAutoscaler: none for {s}" for s in STAGES if s not in scaled]
    problems += [f"HorizontalPodAutoscaler: target {t} is not a Deployment" for t in scaled if t not in deployments]
    problems += [f"Deployment: none for {s}" for s in (*SERVICES, "gateway", CONSOLE) if s not in deployments]
    problems += [f"ServiceAccount: none for {s}" for s in (*CALLS, "gateway", CONSOLE) if s not in accounts]
    return problems


def _service_container_problems(where: str, app: str, container: Obj, volumes: dict, mounts: dict, services: dict) -> list[str]:
    problems = []
    command = container["command"]
    if command != ["python", "-m", MODULES.get(app, "?")]:
        problems.append(f"{where}: command {command} does not start {MODULES.get(app)}")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    for key, value in (("FENLEI_HOST", "0.0.0.0"), ("FENLEI_PORT", str(PORT)), ("FENLEI_HOME", "/var/lib/fenlei")):
        if env.get(key) != value:
            problems.append(f"{where}: {key} is {env.get(key)!r}, not {value!r}")
    for callee in CALLS.get(app, ()):
        variable = f"FENLEI_{app.upper()}_{callee.upper()}_ADDRESS"
        host, _, port = env.get(variable, "").partition(":")
        if host not in services or port != str(PORT):
            problems.append(f"{where}: {variable}={env.get(variable, '')!r} is not a Service at port {PORT}")
    if not any(p.get("containerPort") == PORT for p in container.get("ports", [])):
        problems.append(f"{where}: no containerPort {PORT}")
    for probe in ("readinessProbe", "livenessProbe"):
        if container.get(probe, {}).get("grpc", {}).get("port") != PORT:
            problems.append(f"{where}: {probe} is not a gRPC probe on port {PORT}")
    home = mounts.get("/var/lib/fenlei")
    volume = volumes.get(home["name"], {}) if home else {}
    if not home or volume.get("persistentVolumeClaim", {}).get("claimName") != "fenlei-models":
        problems.append(f"{where}: /var/lib/fenlei is not the fenlei-models volume")
    elif bool(home.get("readOnly")) == (app in WRITERS):
        problems.append(f"{where}: the model volume should be {'read-write' if app in WRITERS else 'read-only'}")
    tmp = mounts.get("/tmp")
    if not tmp or "emptyDir" not in volumes.get(tmp["name"], {}):
        problems.append(f"{where}: no emptyDir at /tmp")
    return problems


# ---------------------------------------------------------------- telemetry


def _envoy_config_map(objects: list[Obj], deployment: str = "gateway") -> Obj:
    """The ConfigMap with the envoy.yaml a Deployment's Envoy mounts."""
    volumes = _find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
    return _find(objects, "ConfigMap", next(v["configMap"]["name"] for v in volumes if "configMap" in v))


def _gateway_bootstrap(objects: list[Obj], deployment: str = "gateway") -> Obj:
    """The envoy.yaml of the ConfigMap the Deployment mounts (the gateway's by default)."""
    return yaml.load(_envoy_config_map(objects, deployment)["data"]["envoy.yaml"], Loader=SAFE_LOADER)


def _routes(bootstrap: Obj) -> list[Obj]:
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return manager["route_config"]["virtual_hosts"][0]["routes"]


def _collector_problems(objects: list[Obj]) -> list[str]:
    """The collector takes OTLP over gRPC on the port its Service names."""
    service = next((s for s in of_kind(objects, "Service") if s["metadata"]["name"] == COLLECTOR), None)
    if service is None:
        return []
    problems = []
    if [(p["port"], p.get("appProtocol")) for p in service["spec"]["ports"]] != [(OTLP_PORT, "grpc")]:
        problems.append(f"{name(service)}: ports are not exactly OTLP/gRPC {OTLP_PORT}")
    deployment = _find(objects, "Deployment", COLLECTOR)
    pod = deployment["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    if ports.get(service["spec"]["ports"][0]["targetPort"]) != OTLP_PORT:
        problems.append(f"{name(service)}: targetPort is no container port {OTLP_PORT} of Deployment/{COLLECTOR}")
    config_map = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    config = yaml.load(_find(objects, "ConfigMap", config_map)["data"]["config.yaml"], Loader=SAFE_LOADER)
    endpoint = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    if endpoint != f"0.0.0.0:{OTLP_PORT}" or "otlp" not in config["service"]["pipelines"]["traces"]["receivers"]:
        problems.append(f"Deployment/{COLLECTOR}: its traces pipeline does not receive OTLP/gRPC on 0.0.0.0:{OTLP_PORT} ({endpoint})")
    return problems


def telemetry_problems(objects: list[Obj]) -> list[str]:
    """Every workload's metrics are announced where they are served; spans go to the
    collector when the build has one (components/tracing), and nowhere when it has not."""
    problems = _collector_problems(objects)
    traced = any(s["metadata"]["name"] == COLLECTOR for s in of_kind(objects, "Service"))
    collector_url = f"http://{COLLECTOR}:{OTLP_PORT}"
    for deployment in of_kind(objects, "Deployment"):
        template = deployment["spec"]["template"]
        app = template["metadata"].get("labels", {}).get("app")
        if app not in SERVICES:
            continue
        container = template["spec"]["containers"][0]
        where = f"{name(deployment)} container {container['name']}"
        annotations = template["metadata"].get("annotations", {})
        if {k: annotations.get(k) for k in SCRAPE} != SCRAPE:
            problems.append(f"{where}: pods are not annotated for a scrape of :{METRICS_PORT}/metrics ({annotations})")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if (env.get("FENLEI_METRICS_HOST"), env.get("FENLEI_METRICS_PORT")) != ("0.0.0.0", str(METRICS_PORT)):
            problems.append(f"{where}: metrics are not served on 0.0.0.0:{METRICS_PORT}")
        if {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}.get("metrics") != METRICS_PORT:
            problems.append(f"{where}: no container port metrics {METRICS_PORT}")
        if traced and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != collector_url or "OTEL_SDK_DISABLED" in env):
            problems.append(
                f"{where}: OTEL_EXPORTER_OTLP_ENDPOINT={env.get('OTEL_EXPORTER_OTLP_ENDPOINT')!r}, not the collector {collector_url}"
            )
        if not traced and env.get("OTEL_SDK_DISABLED") != "true":
            problems.append(f"{where}: traces with no collector in the build (OTEL_SDK_DISABLED is not true)")
    if any(d["metadata"]["name"] == "gateway" for d in of_kind(objects, "Deployment")):
        bootstrap = _gateway_bootstrap(objects)
        manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        provider = manager.get("tracing", {}).get("provider", {})
        clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
        if not traced and provider:
            problems.append("the gateway's Envoy traces with no collector in the build")
        if traced:
            cluster = clusters.get(provider.get("typed_config", {}).get("grpc_service", {}).get("envoy_grpc", {}).get("cluster_name"), {})
            addresses = [
                e["endpoint"]["address"]["socket_address"]
                for lb in cluster.get("load_assignment", {}).get("endpoints", [])
                for e in lb["lb_endpoints"]
            ]
            if provider.get("name") != "envoy.tracers.opentelemetry" or addresses != [
                {"address": f"{COLLECTOR}.{NAMESPACE}.svc.cluster.local", "port_value": OTLP_PORT}
            ]:
                problems.append(f"the gateway's Envoy does not trace to the collector ({provider.get('name')} to {addresses})")
    return problems


# ---------------------------------------------------------------- the web console


def _console_server_problems(objects: list[Obj]) -> list[str]:
    """The console's Deployment runs Envoy with the bootstrap of its ConfigMap, which answers
    every file of the console from the image with its content type and security headers,
    redirects / and /ui, and listens where the Service and the probes look."""
    container = _container(objects, CONSOLE)
    where = f"Deployment/{CONSOLE} container {container['name']}"
    problems = []
    config_mount = next((m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/etc/envoy"), None)
    volumes = {v["name"]: v for v in _find(objects, "Deployment", CONSOLE)["spec"]["template"]["spec"]["volumes"]}
    if container.get("command", [])[:3] != ["envoy", "-c", "/etc/envoy/envoy.yaml"] or "configMap" not in volumes.get(config_mount, {}):
        return [f"{where}: does not run envoy -c /etc/envoy/envoy.yaml from its ConfigMap ({container.get('command')})"]
    bootstrap = _gateway_bootstrap(objects, CONSOLE)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    listening = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    if (listening["address"], listening["port_value"]) != ("0.0.0.0", ports.get("http")):
        problems.append(f"{where}: Envoy listens on {listening}, not on 0.0.0.0 and container port http ({ports.get('http')})")
    by_path = {r["match"].get("path"): r for r in _routes(bootstrap)}
    for url, file in CONSOLE_FILES.items():
        route = by_path.get(url, {})
        expected = f"{IMAGE_UI}/{file.relative_to(console.UI).as_posix()}"
        served = route.get("direct_response", {}).get("body", {}).get("filename")
        if served != expected:
            problems.append(f"{where}: serves {url} from {served}, not {expected}")
            continue
        headers = {h["header"]["key"]: h["header"]["value"] for h in route.get("response_headers_to_add", [])}
        if headers != {"content-type": console.content_type(file), **console.SECURITY_HEADERS}:
            problems.append(f"{where}: {url} is served with headers {headers}")
    for path in console.REDIRECTED:
        if by_path.get(path, {}).get("redirect", {}).get("path_redirect") != console.PREFIX:
            problems.append(f"{where}: {path} does not redirect to {console.PREFIX}")
    for probe in ("readinessProbe", "livenessProbe"):
        check = container.get(probe, {}).get("httpGet", {})
        if check.get("path") not in CONSOLE_FILES or check.get("port") != "http":
            problems.append(f"{where}: {probe} does not GET a file of the console on port http ({check})")
    service = _find(objects, "Service", CONSOLE)
    if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in service["spec"]["ports"]] != [("http", CONSOLE_PORT, "http")]:
        problems.append(f"Service/{CONSOLE}: ports are not exactly http {CONSOLE_PORT} to the container's port http")
    return problems


def _console_behind_the_gateway_problems(objects: list[Obj]) -> list[str]:
    """The gateway forwards /, /ui and /ui/* to Service console and answers none of the
    console's files itself."""
    gateway = _gateway_bootstrap(objects)
    routes = _routes(gateway)
    problems = [
        f"the gateway answers {r['match']} itself, not the console's Envoy"
        for r in routes
        if "redirect" in r or "/gateway/ui/" in str(r.get("direct_response", {}).get("body", {}))
    ]
    forwarded = {tuple(r["match"].items())[0] for r in routes if r.get("route", {}).get("cluster") == CONSOLE}
    expected = {*(("path", p) for p in console.REDIRECTED), ("prefix", console.PREFIX)}
    if forwarded != expected:
        problems.append(f"the gateway does not forward {sorted(expected - forwarded)} to the console (it forwards {sorted(forwarded)})")
    cluster = next((c for c in gateway["static_resources"]["clusters"] if c["name"] == CONSOLE), {})
    addresses = [
        e["endpoint"]["address"]["socket_address"]
        for lb in cluster.get("load_assignment", {}).get("endpoints", [])
        for e in lb["lb_endpoints"]
    ]
    if addresses != [{"address": f"{CONSOLE}.{NAMESPACE}.svc.cluster.local", "port_value": CONSOLE_PORT}]:
        problems.append(f"the gateway's cluster {CONSOLE} is not Service {CONSOLE}:{CONSOLE_PORT} ({addresses})")
    return problems


def console_problems(objects: list[Obj]) -> list[str]:
    if not any(d["metadata"]["name"] == CONSOLE for d in of_kind(objects, "Deployment")):
        return [f"Deployment: none for {CONSOLE}"]
    problems = _console_server_problems(objects) + _console_behind_the_gateway_problems(objects)
    policies = [
        p for p in of_kind(objects, "AuthorizationPolicy") if p["spec"].get("selector", {}).get("matchLabels", {}).get("app") == CONSOLE
    ]
    callers = {
        principal
        for policy in policies
        for rule in policy["spec"].get("rules", [])
        for source in rule.get("from", [{}])
        for principal in source.get("source", {}).get("principals", ["anyone"])
    }
    if of_kind(objects, "AuthorizationPolicy") and callers != {GATEWAY}:
        problems.append(f"AuthorizationPolicy/{CONSOLE}: the console's callers are {sorted(callers)}, not the gateway alone")
    for envoy_filter in of_kind(objects, "EnvoyFilter"):
        for patch in envoy_filter["spec"].get("configPatches", []):
            value = patch.get("patch", {}).get("value", {})
            options = value.get("typed_config", {}).get("request_validation_options", {})
            if value.get("name") == "envoy.filters.http.grpc_json_transcoder" and options.get("reject_unknown_method"):
                problems.append(f"{name(envoy_filter)}: the ingress answers 404 to the console's paths (reject_unknown_method)")
    return problems


# ---------------------------------------------------------------- the image


def built_image(component: Path = IMAGE_COMPONENT) -> str:
    """The reference components/image gives every container: name:tag, @digest when pushed."""
    entry = yaml.load(component.read_text(encoding="utf-8"), Loader=SAFE_LOADER)["images"][0]
    reference = f"{entry.get('newName', entry['name'])}:{entry['newTag']}"
    return f"{reference}@{entry['digest']}" if "digest" in entry else reference


def image_problems(objects: list[Obj], image: str) -> list[str]:
    """Every container runs `image`, but Istio's injected proxy and the collector (not fenlei's)."""
    return [
        f"{name(deployment)} container {container['name']}: image {container.get('image')}, not {image}"
        for deployment in of_kind(objects, "Deployment")
        if deployment["metadata"]["name"] != COLLECTOR
        for container in [
            *deployment["spec"]["template"]["spec"].get("initContainers", []),
            *deployment["spec"]["template"]["spec"]["containers"],
        ]
        if container.get("image") not in ("auto", image)
    ]


# ---------------------------------------------------------------- the local mesh's translator


def translator_problems(root: Path = ISTIO) -> list[str]:
    from fenlei.sidecar.policy import PolicyError, load

    base = [root / f for f in DEFAULT_POLICY]
    problems = []
    for extra in [[], *([root / f] for f in SCENARIOS)]:
        try:
            load([*base, *extra])
        except (PolicyError, OSError, KeyError, TypeError, ValueError) as error:
            problems.append(f"{extra[0].name if extra else 'default policy'}: {error}")
    # The ingress is the cluster's: the local mesh runs its own gateway, and says so by name
    # rather than pretend it applied the EnvoyFilter.
    try:
        load([*base, root / "gateway.yaml"])
        problems.append("gateway.yaml: its EnvoyFilter was accepted, though the local mesh cannot apply it")
    except PolicyError as error:
        if "EnvoyFilter ingress-grpc-json-transcoder" not in str(error):
            problems.append(f"gateway.yaml: {error}")
    return problems


# ================================================================ tests


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Obj]]:
    return {b: build(K8S / b) for b in BUILDS}


@pytest.fixture(scope="module")
def repository_istio() -> list[Obj]:
    return read(istio_files())


def test_every_kustomization_builds(builds) -> None:
    for b, objects in builds.items():
        assert objects, b
        assert all(o.get("metadata", {}).get("namespace", NAMESPACE) == NAMESPACE for o in objects), b
    assert not [o for o in builds["base"] if is_istio(o)], "Istio resources belong to components/istio"
    assert {name(o) for o in builds["overlays/istio"] if is_istio(o)} == {
        name(o) for o in read(ISTIO / f for f in (*DEFAULT_POLICY, "gateway.yaml"))
    }


@pytest.mark.parametrize("directory", BUILDS)
def test_kubernetes_objects_validate(builds, directory) -> None:
    assert kubernetes_problems(builds[directory]) == []


def test_istio_files_validate_against_istio_crds(repository_istio) -> None:
    assert istio_problems(repository_istio) == []
    assert {o["kind"] for o in repository_istio} >= {
        "PeerAuthentication",
        "DestinationRule",
        "VirtualService",
        "AuthorizationPolicy",
        "Gateway",
        "EnvoyFilter",
    }


@pytest.mark.parametrize("directory", ISTIO_BUILDS)
def test_istio_objects_in_builds_validate(builds, directory) -> None:
    objects = builds[directory]
    assert [o for o in objects if is_istio(o)]
    assert istio_problems(objects) == []


@pytest.mark.parametrize("directory", ISTIO_BUILDS)
def test_istio_builds_reference_what_exists(builds, directory) -> None:
    objects = builds[directory]
    k8s = [o for o in objects if not is_istio(o)]
    istio = [o for o in objects if is_istio(o)]
    # the default routes reach v1 only: they must work without the versions component;
    # the v2 subset needs the canary build's pipeline-v2
    routed = [o for o in istio if o["kind"] != "DestinationRule"]
    assert reference_problems(k8s, routed + [_routed_subsets_only(r, routed) for r in of_kind(istio, "DestinationRule")]) == []
    assert reference_problems(k8s, istio, deployed=[o for o in builds["overlays/istio-canary"] if not is_istio(o)]) == []
    assert coverage_problems(objects) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_references_what_exists(builds, scenario) -> None:
    """A scenario replaces the default VirtualService of its host (same name and host)."""
    canary = builds["overlays/istio-canary"]
    k8s = [o for o in canary if not is_istio(o)]
    defaults = [o for o in canary if is_istio(o)]
    replacing = read([ISTIO / scenario])
    assert replacing and all(o["kind"] == "VirtualService" for o in replacing)
    replaced = {(o["kind"], o["metadata"]["name"]) for o in replacing}
    for obj in replacing:
        default = [d for d in of_kind(defaults, "VirtualService") if d["metadata"]["name"] == obj["metadata"]["name"]]
        assert default and default[0]["spec"]["hosts"] == obj["spec"]["hosts"], f"{scenario} does not replace a default route"
    applied = [o for o in defaults if (o["kind"], o["metadata"]["name"]) not in replaced] + replacing
    assert reference_problems(k8s, applied) == []


def test_versions_only_with_the_versions_component(builds) -> None:
    def versions(objects):
        return {(labels.get("app"), labels.get("version")) for labels in _pod_labels(objects)}

    assert ("pipeline", "v2") in versions(builds["overlays/istio-canary"])
    for b in ("base", "overlays/local", "overlays/istio"):
        assert {v for _, v in versions(builds[b])} == {"v1"}, b


@pytest.mark.parametrize("directory", BUILDS)
def test_workloads_are_locked_down_and_probed(builds, directory) -> None:
    assert workload_problems(builds[directory]) == []


def test_the_local_mesh_translates_every_istio_file() -> None:
    assert translator_problems() == []
    assert {p.name for p in istio_files()} == {*DEFAULT_POLICY, *SCENARIOS, "gateway.yaml"}, "a new Istio file needs a place in these tests"


@pytest.mark.parametrize("directory", BUILDS)
def test_metrics_are_announced_and_spans_reach_the_collector(builds, directory) -> None:
    assert telemetry_problems(builds[directory]) == []
    collectors = [d for d in of_kind(builds[directory], "Deployment") if d["metadata"]["name"] == COLLECTOR]
    assert bool(collectors) == (directory != "base"), "the overlays trace (components/tracing), the base alone does not"


@pytest.mark.parametrize("directory", [b for b in BUILDS if b != "base"])
def test_every_container_runs_the_image_the_build_wrote(builds, directory) -> None:
    image = built_image()
    repository = image.split("@")[0].rpartition(":")[0]
    assert repository.rsplit("/", 1)[-1] == "fenlei", image
    assert image_problems(builds[directory], image) == []
    assert any(c["image"] == image for d in of_kind(builds[directory], "Deployment") for c in d["spec"]["template"]["spec"]["containers"])


def test_modules_the_deployments_start_exist() -> None:
    import importlib.util

    for module in MODULES.values():
        assert importlib.util.find_spec(module) is not None, module


# ---------------------------------------------------------------- the gateway's Envoy


def gateway_problems(config_path: Path, services: set[str]) -> list[str]:
    config = yaml.load(config_path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    problems = []
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    transcoder = filters.get("envoy.filters.http.grpc_json_transcoder", {})
    if transcoder.get("proto_descriptor") != "/app/services/fenlei/v1/fenlei.binpb":
        problems.append("the transcoder does not read the image's descriptor set")
    if set(transcoder.get("services", [])) != {s.full_name for s in PUBLIC}:
        problems.append(f"the transcoder's services are not the contract's: {transcoder.get('services')}")
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for cluster_name, cluster in clusters.items():
        if cluster_name == CONSOLE:
            continue  # not a gRPC service: console_problems checks it
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        if (
            cluster_name not in services
            or address["address"] != f"{cluster_name}.{NAMESPACE}.svc.cluster.local"
            or address["port_value"] != PORT
        ):
            problems.append(f"cluster {cluster_name} is not Service {cluster_name}:{PORT}")
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    for path in sorted(GATEWAY_PATHS):
        route = next((r for r in routes if r["match"].get("path") == path or path.startswith(r["match"].get("prefix", "\0"))), None)
        owner = next(app for app, paths in CARRIED.items() if path in paths)
        if route is None or route.get("route", {}).get("cluster") != owner:
            problems.append(f"{path} is not routed to {owner}")
        elif any(path in LONG_LIVED[a] for a in LONG_LIVED) and route["route"].get("timeout") != "0s":
            problems.append(f"{path} is long-lived but its route has timeout {route['route'].get('timeout')}")
    return problems


def test_gateway_envoy_config_routes_the_contract(builds) -> None:
    services = {s["metadata"]["name"] for s in of_kind(builds["base"], "Service")}
    assert gateway_problems(K8S / "gateway" / "envoy.yaml", services) == []


def envoy_validate_problems(text: str, directory: Path) -> str:
    """`envoy --mode validate` of a bootstrap, with the image's paths pointed at this checkout."""
    from fenlei.envoy.binary import envoy_binary

    config = directory / "envoy.yaml"
    config.write_text(text.replace("/app/services/", str(REPO / "services") + "/"))  # the descriptor set, the OpenAPI document, the console
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error"], capture_output=True, text=True, timeout=30
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


@pytest.mark.parametrize("bootstrap", ["gateway/envoy.yaml", "components/tracing/envoy.yaml"])
def test_gateway_envoy_config_is_valid_for_envoy(tmp_path, bootstrap) -> None:
    """Both bootstraps: the base's, and the traced one of components/tracing."""
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**key, "kid": "fenlei", "alg": "RS256"}]}))
    text = (K8S / bootstrap).read_text(encoding="utf-8")
    assert "/app/services/fenlei/v1/fenlei.binpb" in text and "/etc/fenlei/jwks/jwks.json" in text
    assert envoy_validate_problems(text.replace("/etc/fenlei/jwks/jwks.json", str(jwks)), tmp_path) == ""


def test_console_envoy_config_is_valid_for_envoy(tmp_path) -> None:
    text = (K8S / "console" / "envoy.yaml").read_text(encoding="utf-8")
    assert f"{IMAGE_UI}/index.html" in text
    assert envoy_validate_problems(text, tmp_path) == ""


@pytest.mark.parametrize("directory", BUILDS)
def test_the_console_runs_on_its_own_behind_the_gateway(builds, directory) -> None:
    assert console_problems(builds[directory]) == []


def test_dockerfile_builds_the_image_the_manifests_assume() -> None:
    text = (MESH / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    named = {alias for _, alias in stages if alias}
    # multi-stage: the first and the last on the base, the others on stages before them
    assert len(stages) >= 2 and stages[0][0] == stages[-1][0] == "${BASE}", stages
    assert all(base in named for base, _ in stages[1:-1]), stages
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.M), "the official Python image is the default base"
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1].split(":")[0] == "10001"
    assert re.search(r"^COPY --from=runtime /opt/venv /opt/venv$", text, re.M)
    assert re.search(r"^COPY --from=builder /app/installed/opt/venv /opt/venv$", text, re.M)
    assert re.search(r"^COPY --from=builder /app/services /app/services$", text, re.M)
    assert (REPO / "services/fenlei/v1/fenlei.binpb").exists()  # what /app/services/fenlei/v1/fenlei.binpb is


# ---------------------------------------------------------------- the checks catch mistakes


def _routed_subsets_only(rule: Obj, istio: list[Obj]) -> Obj:
    """A DestinationRule reduced to the subsets that some VirtualService routes to."""
    used = {
        (d["destination"]["host"], d["destination"].get("subset"))
        for vs in of_kind(istio, "VirtualService")
        for r in vs["spec"].get("http", [])
        for d in r.get("route", [])
    }
    reduced = copy.deepcopy(rule)
    reduced["spec"]["subsets"] = [s for s in rule["spec"].get("subsets", []) if (rule["spec"]["host"], s["name"]) in used]
    return reduced


def _find(objects: list[Obj], kind: str, obj_name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == obj_name)


def _container(objects: list[Obj], deployment: str) -> Obj:
    return _find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def _all_problems(objects: list[Obj]) -> list[str]:
    k8s = [o for o in objects if not is_istio(o)]
    istio = [o for o in objects if is_istio(o)]
    return [
        *kubernetes_problems(k8s),
        *istio_problems(istio),
        *reference_problems(k8s, istio),
        *workload_problems(k8s),
        *coverage_problems(objects),
        *telemetry_problems(objects),
        *image_problems(objects, built_image()),
        *console_problems(objects),
    ]


def _edit_envoy(objects: list[Obj], deployment: str, edit: Callable[[list[Obj]], Any]) -> None:
    """edit(routes) on the bootstrap in the ConfigMap the Deployment mounts."""
    config_map = _envoy_config_map(objects, deployment)
    bootstrap = yaml.load(config_map["data"]["envoy.yaml"], Loader=SAFE_LOADER)
    edit(_routes(bootstrap))
    config_map["data"]["envoy.yaml"] = yaml.safe_dump(bootstrap)


def _route(routes: list[Obj], **match: str) -> Obj:
    return next(r for r in routes if r["match"] == match)


def _gateway_answers_the_console(objects: list[Obj]) -> None:
    def edit(routes: list[Obj]) -> None:
        kept = [r for r in routes if r.get("route", {}).get("cluster") != CONSOLE]
        routes[:] = [*console.console_routes("/app/services/fenlei/v1/fenlei.swagger.json"), *kept]

    _edit_envoy(objects, "gateway", edit)


MUTATIONS: dict[str, Callable[[list[Obj]], None]] = {
    "misspelt subset": lambda o: _find(o, "VirtualService", "classifier")["spec"]["http"][1]["route"][0]["destination"].update(subset="vl"),
    "unknown host": lambda o: _find(o, "VirtualService", "segmenter")["spec"]["http"][0]["route"][0]["destination"].update(
        host="segmentor"
    ),
    "subset selecting nothing": lambda o: _find(o, "DestinationRule", "features")["spec"]["subsets"][0]["labels"].update(version="v3"),
    "misspelt Istio field": lambda o: _find(o, "VirtualService", "pipeline")["spec"]["http"][1]["retries"].update(retryon="unavailable"),
    "wrong Istio value type": lambda o: _find(o, "DestinationRule", "pipeline")["spec"]["trafficPolicy"]["connectionPool"]["tcp"].update(
        maxConnections="many"
    ),
    "timeout on a stream": lambda o: _find(o, "VirtualService", "classifier")["spec"]["http"][0].update(timeout="15s"),
    "stream caught by a unary route": lambda o: _find(o, "VirtualService", "features")["spec"]["http"].reverse(),
    "no gRPC retries": lambda o: _find(o, "VirtualService", "preprocessor")["spec"]["http"][1]["retries"].update(retryOn="5xx"),
    "an internal method opened": lambda o: _find(o, "AuthorizationPolicy", "registry")["spec"]["rules"][0]["to"][0]["operation"][
        "paths"
    ].append("/fenlei.v1.ExperimentRouting/*"),
    "pins opened to the gateway": lambda o: _find(o, "AuthorizationPolicy", "datasets")["spec"]["rules"][0]["to"][0]["operation"][
        "paths"
    ].append("/fenlei.v1.DatasetPins/SetPins"),
    "ingress transcoder behind the contract": lambda o: _find(o, "EnvoyFilter", "ingress-grpc-json-transcoder")["spec"]["configPatches"][0][
        "patch"
    ]["value"]["typed_config"]["services"].remove("fenlei.v1.Experiments"),
    "a state change retried blindly": lambda o: _find(o, "VirtualService", "registry")["spec"]["http"][-1]["retries"].update(
        retryOn="connect-failure,refused-stream,unavailable"
    ),
    "unknown principal": lambda o: _find(o, "AuthorizationPolicy", "segmenter")["spec"]["rules"][0]["from"][0]["source"].update(
        principals=["cluster.local/ns/fenlei/sa/pipline"]
    ),
    "unknown method": lambda o: _find(o, "AuthorizationPolicy", "classifier")["spec"]["rules"][0]["to"][0]["operation"].update(
        paths=["/fenlei.v1.Classifier/Predikt"]
    ),
    "method of another service": lambda o: _find(o, "AuthorizationPolicy", "segmenter")["spec"]["rules"][1]["to"][0]["operation"][
        "paths"
    ].append("/fenlei.v1.Pipeline/Classify"),
    "a needed call denied": lambda o: _find(o, "AuthorizationPolicy", "features")["spec"]["rules"][0]["to"][0]["operation"]["paths"].remove(
        "/fenlei.v1.Features/DescribeFeatures"
    ),
    "no STRICT mTLS": lambda o: _find(o, "PeerAuthentication", "default")["spec"]["mtls"].update(mode="PERMISSIVE"),
    "writable root filesystem": lambda o: _container(o, "pipeline")["securityContext"].update(readOnlyRootFilesystem=False),
    "root user": lambda o: _container(o, "catalog")["securityContext"].update(runAsUser=0),
    "capabilities kept": lambda o: _container(o, "segmenter")["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    "HTTP probe on a gRPC service": lambda o: _container(o, "features").update(readinessProbe={"tcpSocket": {"port": PORT}}),
    "no limits": lambda o: _container(o, "classifier")["resources"].pop("limits"),
    "writable models in a serving stage": lambda o: next(
        m for m in _container(o, "preprocessor")["volumeMounts"] if m["name"] == "home"
    ).update(readOnly=False),
    "a single writer rolled": lambda o: _find(o, "Deployment", "registry")["spec"].update(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    ),
    "two single writers": lambda o: _find(o, "Deployment", "registry")["spec"].update(replicas=2),
    "a single writer autoscaled": lambda o: o.append(
        {
            **copy.deepcopy(_find(o, "HorizontalPodAutoscaler", "classifier")),
            "metadata": {"name": "registry", "namespace": NAMESPACE},
            "spec": {
                **_find(o, "HorizontalPodAutoscaler", "classifier")["spec"],
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "registry"},
            },
        }
    ),
    "a budget that blocks drains": lambda o: _find(o, "PodDisruptionBudget", "registry")["spec"].update(maxUnavailable=0),
    "no budget": lambda o: o.remove(_find(o, "PodDisruptionBudget", "segmenter")),
    "registry models read-only": lambda o: next(m for m in _container(o, "registry")["volumeMounts"] if m["name"] == "home").update(
        readOnly=True
    ),
    "pipeline without the registry": lambda o: _container(o, "pipeline")["env"].remove(
        next(e for e in _container(o, "pipeline")["env"] if e["name"] == "FENLEI_PIPELINE_REGISTRY_ADDRESS")
    ),
    "misspelt Kubernetes field": lambda o: _container(o, "pipeline").update(imagePulPolicy="Always"),
    "wrong Kubernetes value type": lambda o: _container(o, "segmenter")["ports"][0].update(containerPort="50051"),
    "pipeline pointed at nothing": lambda o: (
        _container(o, "pipeline")["env"].append({"name": "FENLEI_PIPELINE_FEATURES_ADDRESS", "value": "feature:50051"})
        or _container(o, "pipeline")["env"].remove(next(e for e in _container(o, "pipeline")["env"] if e.get("value") == "features:50051"))
    ),
    "service port renamed": lambda o: _find(o, "Service", "classifier")["spec"]["ports"][0].update(name="http"),
    "missing ServiceAccount": lambda o: o.remove(_find(o, "ServiceAccount", "jobs")),
    "jobs without the datasets": lambda o: _container(o, "jobs")["env"].remove(
        next(e for e in _container(o, "jobs")["env"] if e["name"] == "FENLEI_JOBS_DATASETS_ADDRESS")
    ),
    "a job created twice by a retry": lambda o: _find(o, "VirtualService", "jobs")["spec"]["http"][-1]["retries"].update(
        retryOn="connect-failure,refused-stream,unavailable"
    ),
    "a timeout on an upload": lambda o: _find(o, "VirtualService", "datasets")["spec"]["http"][0].update(timeout="30s"),
    "a watch cut off": lambda o: _find(o, "VirtualService", "jobs")["spec"]["http"][0]["match"].pop(0),
    "jobs may not read datasets": lambda o: _find(o, "AuthorizationPolicy", "datasets")["spec"]["rules"].pop(),
    "two jobs services": lambda o: _find(o, "Deployment", "jobs")["spec"].update(replicas=2),
    "metrics unannounced": lambda o: _find(o, "Deployment", "classifier")["spec"]["template"]["metadata"]["annotations"].pop(
        "prometheus.io/scrape"
    ),
    "metrics on loopback": lambda o: next(e for e in _container(o, "features")["env"] if e["name"] == "FENLEI_METRICS_HOST").update(
        value="127.0.0.1"
    ),
    "spans sent nowhere": lambda o: next(e for e in _container(o, "pipeline")["env"] if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT").update(
        value="http://localhost:4317"
    ),
    "an untraced gateway": lambda o: _find(
        o, "ConfigMap", _find(o, "Deployment", "gateway")["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    )["data"].update({"envoy.yaml": (K8S / "gateway" / "envoy.yaml").read_text(encoding="utf-8")}),
    "collector without OTLP/gRPC": lambda o: _find(o, "Service", COLLECTOR)["spec"]["ports"][0].update(port=4318),
    "a container on another image": lambda o: _container(o, "registry").update(image="fenlei:latest"),
    "the gateway answers the console itself": _gateway_answers_the_console,
    "console files not forwarded": lambda o: _edit_envoy(
        o, "gateway", lambda routes: _route(routes, prefix="/ui/")["route"].update(cluster="pipeline")
    ),
    "a console file from elsewhere": lambda o: _edit_envoy(
        o,
        CONSOLE,
        lambda routes: _route(routes, path="/ui/index.html")["direct_response"]["body"].update(filename="/app/gateway/ui/index.html"),
    ),
    "a console file without its CSP": lambda o: _edit_envoy(
        o, CONSOLE, lambda routes: _route(routes, path="/ui/app.js")["response_headers_to_add"].pop(1)
    ),
    "no console redirect": lambda o: _edit_envoy(o, CONSOLE, lambda routes: routes.remove(_route(routes, path="/"))),
    "the console run as a service": lambda o: _container(o, CONSOLE).update(command=["python", "-m", "fenlei.gateway.console"]),
    "the console probed on nothing": lambda o: _container(o, CONSOLE)["readinessProbe"]["httpGet"].update(path="/ui/missing.html"),
    "the console on another image": lambda o: _container(o, CONSOLE).update(image="fenlei:latest"),
    "the console open to the pipeline": lambda o: _find(o, "AuthorizationPolicy", CONSOLE)["spec"]["rules"][0]["from"][0]["source"][
        "principals"
    ].append("cluster.local/ns/fenlei/sa/pipeline"),
    "the console without a policy": lambda o: o.remove(_find(o, "AuthorizationPolicy", CONSOLE)),
    "console retried on gRPC statuses": lambda o: _find(o, "VirtualService", CONSOLE)["spec"]["http"][0]["retries"].update(
        retryOn="unavailable,cancelled"
    ),
    "no console Deployment": lambda o: o.remove(_find(o, "Deployment", CONSOLE)),
    "the console stopped at the ingress": lambda o: _find(o, "EnvoyFilter", "ingress-grpc-json-transcoder")["spec"]["configPatches"][0][
        "patch"
    ]["value"]["typed_config"]["request_validation_options"].update(reject_unknown_method=True),
}


# What the problem report must say for each mutation: caught, and for the right reason.
CAUGHT_AS = {
    "misspelt subset": "subset 'vl' of classifier is in no DestinationRule",
    "unknown host": "destination host 'segmentor' is not a Service",
    "subset selecting nothing": "subset v1 ({'version': 'v3'}) selects no Deployment",
    "misspelt Istio field": "VirtualService/pipeline: spec.http.1.retries.retryon: Extra inputs are not permitted",
    "wrong Istio value type": "trafficPolicy.connectionPool.tcp.maxConnections: Input should be a valid integer",
    "timeout on a stream": "/fenlei.v1.Classifier/PredictStream is long-lived but the route has timeout 15s",
    "stream caught by a unary route": "(unary): /fenlei.v1.Features/TransformStream is long-lived",
    "no gRPC retries": "VirtualService/preprocessor http[1] (unary): no retries on a gRPC condition",
    "an internal method opened": "gateway may call /fenlei.v1.ExperimentRouting/AssignArm, which is mesh-internal",
    "pins opened to the gateway": "gateway may call /fenlei.v1.DatasetPins/SetPins, which is mesh-internal",
    "ingress transcoder behind the contract": "EnvoyFilter/ingress-grpc-json-transcoder: transcodes",
    "a state change retried blindly": "/fenlei.v1.ModelRegistry/TagVersion change state but the route retries on unavailable",
    "unknown principal": "principal 'cluster.local/ns/fenlei/sa/pipline' is not a ServiceAccount",
    "unknown method": "path '/fenlei.v1.Classifier/Predikt' names no method that classifier serves",
    "method of another service": "path '/fenlei.v1.Pipeline/Classify' names no method that segmenter serves",
    "a needed call denied": "pipeline may not call /fenlei.v1.Features/DescribeFeatures",
    "no STRICT mTLS": "no namespace-wide STRICT PeerAuthentication",
    "writable root filesystem": "Deployment/pipeline container pipeline: root filesystem is not read-only",
    "root user": "Deployment/catalog container catalog: no non-zero runAsUser",
    "capabilities kept": "Deployment/segmenter container segmenter: capabilities do not drop ALL",
    "HTTP probe on a gRPC service": "readinessProbe is not a gRPC probe on port 50051",
    "no limits": "Deployment/classifier container classifier: no limits for cpu, memory",
    "writable models in a serving stage": "Deployment/preprocessor container preprocessor: the model volume should be read-only",
    "a single writer rolled": "Deployment/registry: a single writer is replaced with strategy Recreate",
    "two single writers": "Deployment/registry: a single writer runs exactly one replica, not 2",
    "a single writer autoscaled": "HorizontalPodAutoscaler: scales registry, a single writer",
    "a budget that blocks drains": "PodDisruptionBudget/registry: a single replica needs maxUnavailable 1 (0 blocks every node drain), not 0",
    "no budget": "PodDisruptionBudget: none for segmenter",
    "registry models read-only": "Deployment/registry container registry: the model volume should be read-write",
    "pipeline without the registry": "FENLEI_PIPELINE_REGISTRY_ADDRESS='' is not a Service",
    "misspelt Kubernetes field": "'imagePulPolicy' was unexpected",
    "wrong Kubernetes value type": "containerPort: '50051' is not of type 'integer'",
    "pipeline pointed at nothing": "FENLEI_PIPELINE_FEATURES_ADDRESS='feature:50051' is not a Service",
    "service port renamed": "Service/classifier: ports are not exactly grpc 50051",
    "missing ServiceAccount": "ServiceAccount: none for jobs",
    "jobs without the datasets": "FENLEI_JOBS_DATASETS_ADDRESS='' is not a Service",
    "a job created twice by a retry": "/fenlei.v1.Jobs/CreateJob change state but the route retries on unavailable",
    "a timeout on an upload": "/fenlei.v1.Datasets/UploadDataset is long-lived but the route has timeout 30s",
    "a watch cut off": "/fenlei.v1.Jobs/WatchJob is long-lived but the route has timeout 30s",
    "jobs may not read datasets": "jobs may not call /fenlei.v1.Datasets/ReadDataset, which fenlei needs",
    "two jobs services": "Deployment/jobs: a single writer runs exactly one replica, not 2",
    "metrics unannounced": "Deployment/classifier container classifier: pods are not annotated for a scrape of :9464/metrics",
    "metrics on loopback": "Deployment/features container features: metrics are not served on 0.0.0.0:9464",
    "spans sent nowhere": "Deployment/pipeline container pipeline: OTEL_EXPORTER_OTLP_ENDPOINT='http://localhost:4317', not the collector",
    "an untraced gateway": "the gateway's Envoy does not trace to the collector (None to [])",
    "collector without OTLP/gRPC": "Service/otel-collector: ports are not exactly OTLP/gRPC 4317",
    "a container on another image": f"Deployment/registry container registry: image fenlei:latest, not {built_image()}",
    "the gateway answers the console itself": "the gateway answers {'path': '/ui/index.html'} itself, not the console's Envoy",
    "console files not forwarded": "the gateway does not forward [('prefix', '/ui/')] to the console",
    "a console file from elsewhere": "serves /ui/index.html from /app/gateway/ui/index.html, not /app/services/fenlei/gateway/ui/index.html",
    "a console file without its CSP": "Deployment/console container envoy: /ui/app.js is served with headers",
    "no console redirect": "Deployment/console container envoy: / does not redirect to /ui/",
    "the console run as a service": "Deployment/console container envoy: does not run envoy -c /etc/envoy/envoy.yaml from its ConfigMap",
    "the console probed on nothing": "readinessProbe does not GET a file of the console on port http",
    "the console on another image": f"Deployment/console container envoy: image fenlei:latest, not {built_image()}",
    "the console open to the pipeline": "the console's callers are ['cluster.local/ns/fenlei/sa/gateway', 'cluster.local/ns/fenlei/sa/pipeline']",
    "the console without a policy": "no AuthorizationPolicy for console",
    "console retried on gRPC statuses": "VirtualService/console http[0] (files): no retries on an HTTP condition",
    "no console Deployment": "Deployment: none for console",
    "the console stopped at the ingress": "EnvoyFilter/ingress-grpc-json-transcoder: the ingress answers 404 to the console's paths",
}


def test_the_unmutated_canary_build_passes_all_checks(builds) -> None:
    assert _all_problems(copy.deepcopy(builds["overlays/istio-canary"])) == []


def test_every_mutation_says_how_it_is_caught() -> None:
    assert set(MUTATIONS) == set(CAUGHT_AS)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_check_catches_a_mistake(builds, mutation) -> None:
    objects = copy.deepcopy(builds["overlays/istio-canary"])
    MUTATIONS[mutation](objects)
    problems = _all_problems(objects)
    assert any(CAUGHT_AS[mutation] in p for p in problems), f"{mutation}: {problems or 'went unnoticed'}"


def test_a_broken_copy_of_the_files_fails(tmp_path) -> None:
    """End to end on files: a misspelt subset in a copy of mesh/ fails the build's checks
    and the local mesh's translator alike."""
    copied = tmp_path / "mesh"
    shutil.copytree(MESH, copied)
    routes = copied / "istio" / "virtual-service-all-v1.yaml"
    text = routes.read_text(encoding="utf-8")
    assert "{host: classifier, subset: v1}" in text
    routes.write_text(text.replace("{host: classifier, subset: v1}", "{host: classifier, subset: v1-}", 1), encoding="utf-8")
    objects = build(copied / "k8s" / "overlays" / "istio")
    problems = _all_problems(objects)
    assert any("subset 'v1-' of classifier is in no DestinationRule" in p for p in problems), problems
    assert translator_problems(copied / "istio")
