"""gRPC adapter for the segmenter core."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc

from fenlei import services
from fenlei.runtime import metrics, rpc, tracing
from fenlei.runtime.limits import check_documents
from fenlei.runtime.models import LoadedModels, ModelStore
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.segmenter.core import Mode, SegmentConfig, Segmenter
from fenlei.v1 import segmenter_pb2, segmenter_pb2_grpc

PART = "segmenter"
MODES = {
    segmenter_pb2.SEGMENT_MODE_ACCURATE: Mode.ACCURATE,
    segmenter_pb2.SEGMENT_MODE_FULL: Mode.FULL,
    segmenter_pb2.SEGMENT_MODE_SEARCH: Mode.SEARCH,
}


def config_of(request: segmenter_pb2.SegmentRequest, models: LoadedModels[SegmentConfig]) -> SegmentConfig:
    """The model's configuration (or the defaults), overridden by the request's options."""
    config = models.get(request.model.name, request.model.version) if request.model.name else SegmentConfig()
    return with_options(config, request.options) if request.HasField("options") else config


def with_options(config: SegmentConfig, options: segmenter_pb2.SegmentOptions) -> SegmentConfig:
    """config overridden by the options set (a training job's too)."""
    changes: dict = {"user_words": config.user_words + tuple(options.user_words)}
    if options.mode in MODES:
        changes["mode"] = MODES[options.mode]
    for name in ("hmm", "pos_tags", "feature_tags"):
        if options.HasField(name):
            changes[name] = getattr(options, name)
    return dataclasses.replace(config, **changes)


class SegmenterServicer(segmenter_pb2_grpc.SegmenterServicer):
    segmenter: Segmenter  # set by load(); no request reaches the servicer before that

    def __init__(self, models: LoadedModels[SegmentConfig], settings: ServiceSettings) -> None:
        self.models = models
        self.settings = settings

    async def load(self) -> None:
        self.segmenter = await asyncio.to_thread(Segmenter)  # the dictionary, off the event loop

    def _segment(self, request: segmenter_pb2.SegmentRequest, items) -> None:
        texts = check_documents(request.documents, self.settings)
        results = self.segmenter.segment(texts, config_of(request, self.models))
        for document, result in zip(request.documents, results):
            items.add(id=document.id, tokens=result.tokens, tags=result.tags)
        metrics.count_documents(PART, len(request.documents))

    Segment = rpc.batch_unary(_segment, segmenter_pb2.SegmentResponse)

    def _measure(self, request: segmenter_pb2.SegmentStreamRequest, items) -> dict[str, int]:
        return {
            tracing.DOCUMENTS: len(request.documents),
            tracing.CHARACTERS: sum(len(document.text) for document in request.documents),
            tracing.TOKENS: sum(len(item.tokens) for item in items),
        }

    SegmentStream = rpc.batch_stream(
        tracing.per_batch(_segment, services.BY_NAME[PART].stream, _measure), segmenter_pb2.SegmentStreamResponse
    )


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    models = LoadedModels(ModelStore(settings.home), PART, SegmentConfig.load, settings.loaded_models)
    servicer = SegmenterServicer(models, settings)
    metrics.watch_models(PART, models)
    segmenter_pb2_grpc.add_SegmenterServicer_to_server(servicer, server)
    return Service([segmenter_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name], servicer.load)


def main() -> None:
    serve(PART, load_settings(ServiceSettings, PART), register)


if __name__ == "__main__":
    main()
