"""gRPC adapter of the model registry (fenlei.v1.ModelRegistry), and the registry's server:
ModelRegistry, Experiments and ExperimentRouting over one database.

Roles are in the contract and the gateway enforces them; who did what (created_by,
moved_by) is the caller the runtime names (the token's subject, else the calling workload).
The database work blocks, so it runs in threads, one writer at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format

from fenlei.errors import InvalidInput
from fenlei.registry import archive
from fenlei.registry.experiments import Experiments
from fenlei.registry.experiments_servicer import ExperimentRoutingServicer, ExperimentsServicer
from fenlei.registry.store import Registry
from fenlei.runtime import rpc
from fenlei.runtime.messages import timestamp
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.v1 import registry_pb2, registry_pb2_grpc

SERVICE = "registry"


def version_message(version: dict[str, Any]) -> registry_pb2.ModelVersion:
    """A version as the API answers it; with its training's report when the registry gave one (GetVersion)."""
    message = registry_pb2.ModelVersion(
        name=version["name"],
        version=version["version"],
        created=timestamp(version["created"]),
        created_by=version["created_by"],
        lineage=json_format.ParseDict(version["lineage"], registry_pb2.Lineage(), ignore_unknown_fields=True),
        metrics=json_format.ParseDict(version["metrics"], registry_pb2.Metrics(), ignore_unknown_fields=True),
        tags=version["tags"],
        aliases=version["aliases"],
        labels=version["labels"],
        digest=version["digest"],
        size_bytes=version["size_bytes"],
    )
    if "report" in version:
        json_format.ParseDict(version["report"], message.report, ignore_unknown_fields=True)
    return message


def move_message(move: dict[str, Any]) -> registry_pb2.AliasMove:
    return registry_pb2.AliasMove(
        name=move["name"],
        alias=move["alias"],
        from_version=move["from_version"],
        to_version=move["to_version"],
        moved_by=move["moved_by"],
        moved=timestamp(move["moved"]),
        reason=move["reason"],
        sequence=move["sequence"],
    )


def _fields(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class ModelRegistryServicer(registry_pb2_grpc.ModelRegistryServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @rpc.unary
    async def RegisterVersion(self, request: registry_pb2.RegisterVersionRequest, context: grpc.aio.ServicerContext) -> Any:
        if not request.draft:
            raise InvalidInput("name the draft (draft-...) the stages were fitted into")
        version = await asyncio.to_thread(
            self.registry.register,
            request.name,
            request.draft,
            _fields(request.lineage),
            _fields(request.metrics),
            dict(request.tags),
            list(request.labels),
            rpc.caller(context),
            _fields(request.report),
        )
        return registry_pb2.RegisterVersionResponse(version=version_message(version))

    @rpc.unary
    async def GetVersion(self, request: registry_pb2.GetVersionRequest, context: grpc.aio.ServicerContext) -> Any:
        version = await asyncio.to_thread(self.registry.get, request.name, request.version)
        return registry_pb2.GetVersionResponse(version=version_message(version))

    @rpc.unary
    async def ListModels(self, request: registry_pb2.ListModelsRequest, context: grpc.aio.ServicerContext) -> Any:
        models = await asyncio.to_thread(self.registry.list_models)
        return registry_pb2.ListModelsResponse(models=[registry_pb2.ModelSummary(**model) for model in models])

    @rpc.unary
    async def SearchVersions(self, request: registry_pb2.SearchVersionsRequest, context: grpc.aio.ServicerContext) -> Any:
        versions = await asyncio.to_thread(
            self.registry.search,
            request.name,
            list(request.tags),
            request.metric,
            request.min_value,
            request.order_by_metric,
            request.limit,
        )
        return registry_pb2.SearchVersionsResponse(versions=[version_message(version) for version in versions])

    @rpc.unary
    async def TagVersion(self, request: registry_pb2.TagVersionRequest, context: grpc.aio.ServicerContext) -> Any:
        version = await asyncio.to_thread(self.registry.tag, request.name, request.version, dict(request.set), list(request.remove))
        return registry_pb2.TagVersionResponse(version=version_message(version))

    @rpc.unary
    async def DeleteVersion(self, request: registry_pb2.DeleteVersionRequest, context: grpc.aio.ServicerContext) -> Any:
        version = await asyncio.to_thread(self.registry.delete, request.name, request.version)
        return registry_pb2.DeleteVersionResponse(name=request.name, version=version)

    @rpc.unary
    async def SetAlias(self, request: registry_pb2.SetAliasRequest, context: grpc.aio.ServicerContext) -> Any:
        expected = request.expected_version if request.HasField("expected_version") else None
        move = await asyncio.to_thread(
            self.registry.set_alias, request.name, request.alias, request.version, rpc.caller(context), request.reason, expected
        )
        return registry_pb2.SetAliasResponse(move=move_message(move))

    @rpc.unary
    async def RollbackAlias(self, request: registry_pb2.RollbackAliasRequest, context: grpc.aio.ServicerContext) -> Any:
        move = await asyncio.to_thread(self.registry.rollback, request.name, request.alias, rpc.caller(context), request.reason)
        return registry_pb2.RollbackAliasResponse(move=move_message(move))

    @rpc.unary
    async def DeleteAlias(self, request: registry_pb2.DeleteAliasRequest, context: grpc.aio.ServicerContext) -> Any:
        move = await asyncio.to_thread(self.registry.delete_alias, request.name, request.alias, rpc.caller(context), request.reason)
        return registry_pb2.DeleteAliasResponse(move=move_message(move))

    @rpc.unary
    async def GetHistory(self, request: registry_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext) -> Any:
        moves = await asyncio.to_thread(self.registry.history, request.name, request.alias)
        return registry_pb2.GetHistoryResponse(moves=[move_message(move) for move in moves])

    @rpc.streaming
    async def ExportRegistry(
        self, request: registry_pb2.ExportRegistryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb2.ExportRegistryResponse]:
        chunks = archive.export_archive(self.registry)
        try:
            while (chunk := await rpc.in_thread(next, chunks, None)) is not None:
                yield registry_pb2.ExportRegistryResponse(chunk=chunk)
        finally:
            await rpc.in_thread(chunks.close)

    @rpc.unary
    async def ImportRegistry(
        self, requests: AsyncIterator[registry_pb2.ImportRegistryRequest], context: grpc.aio.ServicerContext
    ) -> registry_pb2.ImportRegistryResponse:
        upload = await rpc.in_thread(archive.Upload, self.registry)
        try:
            async for request in requests:
                await rpc.in_thread(upload.write, request.chunk)
            result = await rpc.in_thread(upload.finish)
        finally:
            await rpc.in_thread(upload.close)
        return registry_pb2.ImportRegistryResponse(**result)


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    registry = Registry(settings.home)
    experiments = Experiments(registry)
    registry_pb2_grpc.add_ModelRegistryServicer_to_server(ModelRegistryServicer(registry), server)
    registry_pb2_grpc.add_ExperimentsServicer_to_server(ExperimentsServicer(experiments, move_message), server)
    registry_pb2_grpc.add_ExperimentRoutingServicer_to_server(ExperimentRoutingServicer(experiments), server)

    async def load() -> None:
        # Repairs what a crash left and adopts a pre-registry home before anything is served.
        await asyncio.to_thread(registry.open)

    names = [registry_pb2.DESCRIPTOR.services_by_name[name].full_name for name in ("ModelRegistry", "Experiments", "ExperimentRouting")]
    return Service(names, load)


def main() -> None:
    serve(SERVICE, load_settings(ServiceSettings, SERVICE), register)


if __name__ == "__main__":
    main()
