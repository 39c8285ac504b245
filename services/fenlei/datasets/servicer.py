"""gRPC adapter of the datasets (fenlei.v1.Datasets), and the datasets service's server.

Roles are in the contract and the gateway enforces them; created_by is the caller the
runtime names. File and database work blocks, so it runs in threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc

from fenlei import services
from fenlei.datasets.core import Datasets, Format, Limits, UploadSpec
from fenlei.errors import InvalidInput, LimitExceeded
from fenlei.runtime import live, rpc
from fenlei.runtime.messages import timestamp
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.v1 import datasets_pb2, datasets_pb2_grpc

SERVICE = "datasets"
FORMATS = {
    Format.TSV: datasets_pb2.DATASET_FORMAT_TSV,
    Format.CSV: datasets_pb2.DATASET_FORMAT_CSV,
    Format.JSONL: datasets_pb2.DATASET_FORMAT_JSONL,
}


@dataclasses.dataclass(frozen=True)
class DatasetsSettings(ServiceSettings):
    # The bytes of one upload, as sent: past them it is refused at once.
    max_dataset_bytes: int = 4 << 30
    # Documents every label needs: one to train on and one to hold out.
    min_label_documents: int = 2


def dataset_message(dataset: dict[str, Any]) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        id=dataset["id"],
        name=dataset["name"],
        sha256=dataset["sha256"],
        file_name=dataset["file_name"],
        format=FORMATS[dataset["format"]],
        documents=dataset["documents"],
        characters=dataset["characters"],
        bytes=dataset["bytes"],
        label_counts=dataset["label_counts"],
        examples=[datasets_pb2.DatasetExample(text=text, label=label) for text, label in dataset["examples"]],
        created=timestamp(dataset["created"]),
        created_by=dataset["created_by"],
    )


def upload_spec(request: datasets_pb2.UploadDatasetRequest) -> UploadSpec:
    return UploadSpec(
        name=request.name,
        file_name=request.file_name,
        format=next((kind for kind, value in FORMATS.items() if value == request.format), None),
        text_column=request.text_column or "text",
        label_column=request.label_column or "label",
        label_names=tuple(request.label_names),
        size_bytes=request.size_bytes,
    )


class DatasetsServicer(datasets_pb2_grpc.DatasetsServicer):
    def __init__(self, datasets: Datasets, settings: DatasetsSettings) -> None:
        self.datasets = datasets
        self.settings = settings

    @rpc.unary
    async def UploadDataset(
        self, requests: AsyncIterator[datasets_pb2.UploadDatasetRequest], context: grpc.aio.ServicerContext
    ) -> datasets_pb2.UploadDatasetResponse:
        first = await anext(requests, None)
        if first is None:
            raise InvalidInput("an upload needs at least one message: the first names the dataset and its format")
        # Opening its temporary file is quick; in a thread, a cancellation could lose it before the try.
        upload = self.datasets.upload(upload_spec(first), rpc.caller(context))
        try:
            await rpc.in_thread(upload.write, first.chunk)
            async for request in requests:
                await rpc.in_thread(upload.write, request.chunk)
            dataset, existed = await rpc.in_thread(upload.finish)
        finally:
            await rpc.in_thread(upload.close)
        return datasets_pb2.UploadDatasetResponse(dataset=dataset_message(dataset), existed=existed)

    @rpc.unary
    async def GetDataset(self, request: datasets_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext) -> Any:
        dataset = await asyncio.to_thread(self.datasets.get, request.id)
        return datasets_pb2.GetDatasetResponse(dataset=dataset_message(dataset))

    @rpc.unary
    async def ListDatasets(self, request: datasets_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext) -> Any:
        datasets = await asyncio.to_thread(self.datasets.all)
        return datasets_pb2.ListDatasetsResponse(datasets=[dataset_message(dataset) for dataset in datasets])

    @rpc.unary
    async def DeleteDataset(self, request: datasets_pb2.DeleteDatasetRequest, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.to_thread(self.datasets.delete, request.id)
        return datasets_pb2.DeleteDatasetResponse(id=request.id)

    @rpc.streaming
    async def ReadDataset(
        self, request: datasets_pb2.ReadDatasetRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[datasets_pb2.ReadDatasetResponse]:
        limit = live.batch_limit(self.settings)
        if request.batch_documents > limit:
            raise LimitExceeded(
                f"batches of {request.batch_documents:,} records are over the limit of {limit:,} "
                "(FENLEI_MAX_BATCH_DOCUMENTS): ask for smaller ones"
            )
        # Half a message's limit: a batch stops growing there (its last text may add to it).
        batches = await rpc.in_thread(
            self.datasets.read, request.id, request.offset, request.batch_documents, self.settings.max_message_bytes // 2
        )
        try:
            while (batch := await rpc.in_thread(next, batches, None)) is not None:
                yield datasets_pb2.ReadDatasetResponse(
                    records=[datasets_pb2.DatasetRecord(index=record.index, text=record.text, label=record.label) for record in batch]
                )
        finally:
            await rpc.in_thread(batches.close)


class DatasetPinsServicer(datasets_pb2_grpc.DatasetPinsServicer):
    def __init__(self, datasets: Datasets) -> None:
        self.datasets = datasets

    @rpc.unary
    async def SetPins(self, request: datasets_pb2.SetPinsRequest, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.to_thread(self.datasets.set_pins, [(pin.job, pin.dataset) for pin in request.pins])
        return datasets_pb2.SetPinsResponse()


def register(server: grpc.aio.Server, settings: DatasetsSettings) -> Service:
    limits = Limits(settings.max_dataset_bytes, settings.max_document_chars, settings.min_label_documents)
    datasets = Datasets(settings.home, limits)
    datasets_pb2_grpc.add_DatasetsServicer_to_server(DatasetsServicer(datasets, settings), server)
    datasets_pb2_grpc.add_DatasetPinsServicer_to_server(DatasetPinsServicer(datasets), server)

    async def load() -> None:
        # Removes what a crash left before anything is served.
        await asyncio.to_thread(datasets.open)

    return Service([service.full_name for service in services.BY_NAME[SERVICE].contract + services.BY_NAME[SERVICE].internal], load)


def main() -> None:
    serve(SERVICE, load_settings(DatasetsSettings, SERVICE), register)


if __name__ == "__main__":
    main()
