"""One gRPC health check of a service process, as the supervisor and `fenlei status` ask it."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def app_health(address: str, timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, ... or UNREACHABLE (CODE) when the process does not answer."""
    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.RpcError as error:
        return f"UNREACHABLE ({error.code().name})"
