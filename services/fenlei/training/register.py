"""training.core's Registry over gRPC: fenlei.v1.ModelRegistry.RegisterVersion, reached
as the job's worker reaches the stages (through its sidecar in the mesh)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from fenlei.training.core import RegisteredVersion
from fenlei.v1 import registry_pb2, registry_pb2_grpc, training_pb2

# Taking a draft's files into the artifact store reads and syncs every one of them.
REGISTER_SECONDS = 300.0


class GrpcRegistry:
    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.stub = registry_pb2_grpc.ModelRegistryStub(channel)
        self.metadata = tuple(metadata)

    async def register(
        self,
        name: str,
        draft: str,
        lineage: dict[str, Any],
        metrics: dict[str, Any],
        labels: Sequence[str],
        tags: Mapping[str, str],
        report: dict[str, Any],
    ) -> RegisteredVersion:
        request = registry_pb2.RegisterVersionRequest(
            name=name,
            draft=draft,
            lineage=json_format.ParseDict(lineage, registry_pb2.Lineage()),
            metrics=json_format.ParseDict(metrics, registry_pb2.Metrics()),
            labels=labels,
            tags=tags,
            report=json_format.ParseDict(report, training_pb2.TrainingReport()),
        )
        answer = await self.stub.RegisterVersion(request, timeout=REGISTER_SECONDS, metadata=self.metadata)
        return RegisteredVersion(answer.version.version, answer.version.created_by, answer.version.digest)
