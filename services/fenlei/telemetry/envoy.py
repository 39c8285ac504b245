"""Envoy's part of tracing (the gateway and every sidecar): its OpenTelemetry tracer, which
sends spans over OTLP/gRPC to the collector the standard OTEL_* variables name, and
carries W3C trace context (traceparent) to the next hop.

The gateway starts a trace for every request that comes without one (or continues the
caller's). A sidecar only continues traces: a call that arrives without trace context
there is a stage's open stream, opened once for the batches of many requests, which
carry their trace context themselves (fenlei.runtime.tracing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fenlei.envoy.config import http2_options, socket_address, typed

CLUSTER = "opentelemetry_collector"


def endpoint(environ: Mapping[str, str]) -> str:
    """The collector's host:port from the OTLP variables the services read too; "" when
    tracing is off (OTEL_SDK_DISABLED=true) or nothing is named."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    return urlsplit(url).netloc if "//" in url else url


def collector_cluster(address: str) -> dict[str, Any]:
    """The cluster Envoy's tracer exports through (gRPC: HTTP/2, plaintext)."""
    host, port = address.rsplit(":", 1)
    return {
        "name": CLUSTER,
        "type": "STRICT_DNS",  # a name (a Kubernetes Service) is followed; an IP address resolves to itself
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(host, int(port))}}]}],
        },
        "typed_extension_protocol_options": http2_options(),
    }


def tracing(service: str, *, starts_traces: bool) -> dict[str, Any]:
    """The HttpConnectionManager's `tracing`: spans named by `service`. starts_traces: a
    request without trace context starts one (the gateway); else it is not traced
    (sidecars: a sampler that follows the parent, and samples no root)."""
    config: dict[str, Any] = {"grpc_service": {"envoy_grpc": {"cluster_name": CLUSTER}, "timeout": "1s"}, "service_name": service}
    if not starts_traces:
        # Envoy's own decision (random_sampling) would not follow a parent that an app sent
        # without an x-request-id of Envoy's; a sampler does.
        config["sampler"] = _sampler(
            "parent_based",
            "ParentBasedSamplerConfig",
            wrapped_sampler=_sampler("trace_id_ratio_based", "TraceIdRatioBasedSamplerConfig", sampling_percentage={"numerator": 0}),
        )
    return {
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": typed("envoy.config.trace.v3.OpenTelemetryConfig", **config)}
    }


def _sampler(name: str, config: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"envoy.tracers.opentelemetry.samplers.{name}",
        "typed_config": typed(f"envoy.extensions.tracers.opentelemetry.samplers.v3.{config}", **fields),
    }
