"""grpc.health.v1 on every service of the session mesh."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("segmenter", "preprocessor", "features", "classifier", "pipeline")
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", SERVICES)
def test_check(mesh, tools, service) -> None:
    health = health_pb2_grpc.HealthStub(mesh.channel(service))
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30).status == SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service=tools.FULL_NAMES[service]), timeout=30).status == SERVING
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service="fenlei.v1.NoSuchService"), timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    # another service's name is unknown here too: each process reports on its own services
    other = next(s for s in SERVICES if s != service)
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service=tools.FULL_NAMES[other]), timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("service", SERVICES)
def test_watch_sends_the_current_status_at_once(mesh, tools, service) -> None:
    health = health_pb2_grpc.HealthStub(mesh.channel(service))
    for name, expected in (
        ("", SERVING),
        (tools.FULL_NAMES[service], SERVING),
        ("fenlei.v1.NoSuchService", health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
    ):
        watch = health.Watch(health_pb2.HealthCheckRequest(service=name), timeout=tools.HANG_GUARD)
        try:
            assert next(watch).status == expected, name
            # the stream stays open (nothing changes): it is still running when we leave
            assert not watch.done()
        finally:
            watch.cancel()
