"""Istio resources → the local mesh's policy: what is translated, and that everything
else is refused with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fenlei.sidecar import xds
from fenlei.sidecar.ca import CertificateAuthority
from fenlei.sidecar.control import ControlPlane
from fenlei.sidecar.policy import PolicyError, load

RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: classifier, namespace: fenlei}
spec:
  host: classifier.fenlei.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool:
      tcp: {maxConnections: 4}
      http: {http2MaxRequests: 8, http1MaxPendingRequests: 2, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 2, interval: 500ms, baseEjectionTime: 2s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
ROUTE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: classifier, namespace: fenlei}
spec:
  hosts: [classifier]
  http:
  - name: iphone
    match:
    - headers: {user-agent: {regex: ".*iPhone.*"}}
    route:
    - destination: {host: classifier, subset: v2}
  - name: split
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 25}}
    route:
    - {destination: {host: classifier, subset: v1}, weight: 90}
    - {destination: {host: classifier, subset: v2}, weight: 10}
    timeout: 2s
    retries: {attempts: 4, perTryTimeout: 250ms, retryOn: "unavailable,gateway-error"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_destination_rule_and_virtual_service_translate(tmp_path) -> None:
    policy = load([write(tmp_path, "dr.yaml", RULE), write(tmp_path, "vs.yaml", ROUTE)])
    rule = policy.destination_rules["classifier"]
    assert rule.subsets == {"v1": "v1", "v2": "v2"} and rule.pool.max_requests == 8 and rule.outlier.interval_seconds == 0.5
    iphone, split = policy.virtual_services["classifier"]
    assert iphone.matches[0].headers == (("user-agent", "regex", ".*iPhone.*"),)
    assert iphone.retries is not None and iphone.retries.attempts == 2  # Istio's default retries
    assert [d.weight for d in split.destinations] == [90, 10] and split.timeout_seconds == 2.0
    assert split.retries.per_try_timeout_seconds == 0.25 and split.fault.abort_grpc_status == 14


def test_envoy_routes_and_clusters_follow_the_policy(tmp_path) -> None:
    policy = load([write(tmp_path, "dr.yaml", RULE), write(tmp_path, "vs.yaml", ROUTE)])
    routes = xds.policy_routes(policy, "classifier")
    assert routes[0]["match"]["headers"] == [{"name": "user-agent", "string_match": {"safe_regex": {"regex": ".*iPhone.*"}}}]
    assert routes[0]["route"]["cluster"] == "classifier|v2"
    weighted = routes[1]["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in weighted] == [("classifier|v1", 90), ("classifier|v2", 10)]
    assert routes[1]["route"]["retry_policy"]["per_try_timeout"] == "0.250s"
    assert routes[1]["route"]["max_stream_duration"]["max_stream_duration"] == "2.000s"
    assert "envoy.filters.http.fault" not in routes[1].get("typed_per_filter_config", {})  # injected by the destination

    instances = [xds.Instance("classifier", "v1", 0, 1001), xds.Instance("classifier", "v2", 0, 1002)]
    inbound = xds.inbound_routes(policy, instances[1])["virtual_hosts"][0]["routes"]
    abort = inbound[0]["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]
    assert abort == {"percentage": {"numerator": 250_000, "denominator": "MILLION"}, "grpc_status": 14}

    identity = CertificateAuthority(tmp_path / "ca").issue("pipeline")
    clusters = {c["name"]: c for c in xds.mesh_clusters(policy, instances, ["classifier"], identity, tmp_path / "ca" / "ca.pem")}
    assert sorted(clusters) == ["classifier", "classifier|v1", "classifier|v2"]
    assert (
        clusters["classifier|v2"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "port_value"
        ]
        == 1002
    )
    assert clusters["classifier"]["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 4,
        "max_pending_requests": 2,
        "max_requests": 8,
        "max_retries": 3,
    }
    san = clusters["classifier"]["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"][
        "match_typed_subject_alt_names"
    ]
    assert san == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/fenlei/sa/classifier"}}]


@pytest.mark.parametrize(
    "text, named",
    [
        (ROUTE.replace("timeout: 2s", "timeout: 2s\n    mirror: {host: classifier}"), "mirror"),
        (ROUTE.replace("weight: 10", "weight: 20"), "add up to 110"),
        (ROUTE.replace("subset: v2}", "subset: v3}"), "v3"),
        (ROUTE.replace("grpcStatus: UNAVAILABLE", "grpcStatus: SOMETIMES"), "SOMETIMES"),
        (ROUTE.replace("timeout: 2s", "timeout: soon"), "soon"),
        (RULE.replace("mode: ISTIO_MUTUAL", "mode: SIMPLE"), "SIMPLE"),
        (
            RULE.replace("maxEjectionPercent: 50", "maxEjectionPercent: 50, splitExternalLocalOriginErrors: true"),
            "splitExternalLocalOriginErrors",
        ),
        (RULE.replace("namespace: fenlei", "namespace: default"), "default"),
        (ROUTE.replace("kind: VirtualService", "kind: ServiceEntry"), "ServiceEntry"),
    ],
    ids=["unknown-field", "weights", "unknown-subset", "grpc-status", "duration", "tls-mode", "outlier-field", "namespace", "kind"],
)
def test_what_is_not_translated_is_refused_by_name(tmp_path, text, named) -> None:
    files = [write(tmp_path, "dr.yaml", RULE), write(tmp_path, "vs.yaml", ROUTE)]
    files.append(write(tmp_path, "change.yaml", text))
    with pytest.raises(PolicyError) as refused:
        load(files)
    assert named in str(refused.value)


def test_authorization_and_peer_authentication(tmp_path) -> None:
    text = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: segmenter, namespace: fenlei}
spec:
  selector: {matchLabels: {app: segmenter}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/fenlei/sa/pipeline]}}]
    to: [{operation: {paths: [/fenlei.v1.Segmenter/SegmentStream, "/grpc.health.v1.Health/*"]}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: fenlei}
spec: {mtls: {mode: STRICT}}
"""
    policy = load([write(tmp_path, "security.yaml", text)])
    assert policy.strict_mtls
    rbac = xds.inbound_rbac(policy, "segmenter")["rbac"]["rules"]["policies"]["rule-0"]
    assert rbac["principals"] == [{"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/fenlei/sa/pipeline"}}}]
    assert {"url_path": {"path": {"prefix": "/grpc.health.v1.Health/"}}} in rbac["permissions"][0]["or_rules"]["rules"]
    with pytest.raises(PolicyError, match="PERMISSIVE"):
        load([write(tmp_path, "permissive.yaml", text.replace("STRICT", "PERMISSIVE"))])


def test_the_registry_is_retried_only_where_a_retry_cannot_repeat_a_change(tmp_path) -> None:
    """The repository's policy, as a caller's sidecar routes calls to the registry."""
    routes = xds.policy_routes(ControlPlane(tmp_path).policy(), "registry")

    def action(path: str) -> dict:
        return next(r for r in routes if r["match"].get("path", path) == path and path.startswith(r["match"].get("prefix", "")))["route"]

    for changes in ("ModelRegistry/RegisterVersion", "ModelRegistry/SetAlias", "ModelRegistry/RollbackAlias", "ModelRegistry/ImportRegistry",
                    "Experiments/EndExperiment", "ExperimentRouting/RecordPredictions"):  # fmt: skip
        assert action(f"/fenlei.v1.{changes}")["retry_policy"]["retry_on"] == "connect-failure,refused-stream", changes
    for reads in ("ModelRegistry/GetVersion", "ModelRegistry/SearchVersions", "Experiments/GetExperiment", "ExperimentRouting/AssignArm"):
        assert "unavailable" in action(f"/fenlei.v1.{reads}")["retry_policy"]["retry_on"], reads
    assert action("/fenlei.v1.ExperimentRouting/AssignArm")["max_stream_duration"]["max_stream_duration"] == "1.000s"
    assert action("/fenlei.v1.ModelRegistry/ImportRegistry")["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}  # no limit


def test_only_the_inbound_side_names_the_caller_to_the_app(tmp_path) -> None:
    identity = CertificateAuthority(tmp_path / "ca").issue("registry")
    bootstrap = xds.sidecar_bootstrap(
        "registry-v1-0", tmp_path, identity, tmp_path / "ca" / "ca.pem", inbound=(0, tmp_path / "app.sock"), outbound=["classifier"]
    )
    managers = {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in bootstrap["static_resources"]["listeners"]
    }
    assert managers["inbound"]["forward_client_cert_details"] == "SANITIZE_SET"
    assert managers["inbound"]["set_current_client_cert_details"] == {"uri": True}
    # Outbound, Envoy's default (SANITIZE): an app cannot pass on a certificate header of its own.
    assert "forward_client_cert_details" not in managers["outbound-classifier"]
