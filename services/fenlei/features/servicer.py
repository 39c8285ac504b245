"""gRPC adapter for the features core."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np

from fenlei import services
from fenlei.errors import InvalidInput
from fenlei.features.core import FeatureConfig, FeatureFitter, FeatureSpace, Selection
from fenlei.runtime import metrics, rpc, tracing
from fenlei.runtime.limits import check_batch_size
from fenlei.runtime.models import LoadedModels, ModelStore
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.v1 import features_pb2, features_pb2_grpc

PART = "features"
SELECTIONS = {
    features_pb2.FEATURE_SELECTION_NONE: Selection.NONE,
    features_pb2.FEATURE_SELECTION_CHI2: Selection.CHI2,
    features_pb2.FEATURE_SELECTION_MUTUAL_INFO: Selection.MUTUAL_INFO,
    features_pb2.FEATURE_SELECTION_ANOVA_F: Selection.ANOVA_F,
}


def config_of(options: features_pb2.FeatureOptions) -> FeatureConfig:
    config = FeatureConfig().to_json()
    if options.HasField("sublinear_tf"):
        config["sublinear_tf"] = options.sublinear_tf
    if options.HasField("min_df"):
        config["min_df"] = options.min_df
    if options.selection in SELECTIONS:
        config["selection"] = SELECTIONS[options.selection].value
    if options.top_k:
        config["top_k"] = options.top_k
    return FeatureConfig.from_json(config)


class FeaturesServicer(features_pb2_grpc.FeaturesServicer):
    def __init__(self, store: ModelStore, models: LoadedModels[FeatureSpace], settings: ServiceSettings) -> None:
        self.store = store
        self.models = models
        self.settings = settings

    @rpc.unary
    async def Fit(self, requests: AsyncIterator[features_pb2.FitRequest], context: grpc.aio.ServicerContext) -> features_pb2.FitResponse:
        fitter = None
        count = 0
        async for request in requests:
            if fitter is None:
                model = request.model
                directory = self.store.writable_part(model.name, model.version, PART)
                fitter = FeatureFitter(config_of(request.options))
            check_batch_size(len(request.documents), self.settings)
            fitter.add([example.document.tokens for example in request.documents], [example.label for example in request.documents])
            count += len(request.documents)
        if fitter is None:
            raise InvalidInput("the fit stream was empty: send at least one message with the model and labelled documents")
        # Off the event loop, and abandoned if the caller goes away: then nothing is saved.
        space = await rpc.in_worker(fitter.finish)
        space.save(directory)
        return features_pb2.FitResponse(model=model, documents=count, vocabulary_size=space.vocabulary_size, dimension=space.dimension)

    def _transform(self, request: features_pb2.TransformRequest, items) -> None:
        documents = request.documents
        check_batch_size(len(documents), self.settings)
        space = self.models.get(request.model.name, request.model.version)
        term_lists = [document.tokens for document in documents]
        matrix = space.transform(term_lists)
        terms, unknown = metrics.count_tokens(request.model.name, request.model.version, term_lists, space.vocabulary)
        # Counted once: the metrics' drift signal and the attributes of the call's (or the batch's) span.
        tracing.annotate({tracing.TERMS: terms, tracing.UNKNOWN_TERMS: unknown, tracing.OOV_SHARE: unknown / terms if terms else 0.0})
        indptr = matrix.indptr.tolist()
        indices = matrix.indices.tolist()
        values = matrix.data.tolist()
        for row, document in enumerate(documents):
            start, end = indptr[row], indptr[row + 1]
            items.add(id=document.id, indices=indices[start:end], values=values[start:end])
        metrics.count_documents(PART, len(documents))

    Transform = rpc.batch_unary(_transform, features_pb2.TransformResponse)

    def _measure(self, request: features_pb2.TransformStreamRequest, items) -> dict[str, int | float]:
        return {tracing.DOCUMENTS: len(request.documents)}  # the terms: annotated by _transform

    TransformStream = rpc.batch_stream(
        tracing.per_batch(_transform, services.BY_NAME[PART].stream, _measure), features_pb2.TransformStreamResponse
    )

    @rpc.unary
    async def DescribeFeatures(
        self, request: features_pb2.DescribeFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.DescribeFeaturesResponse:
        space = self.models.get(request.model.name, request.model.version)
        return features_pb2.DescribeFeaturesResponse(names=space.feature_names(np.asarray(request.indices, dtype=np.int64)))


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    store = ModelStore(settings.home)
    models = LoadedModels(store, PART, FeatureSpace.load, settings.loaded_models)
    metrics.watch_models(PART, models)
    features_pb2_grpc.add_FeaturesServicer_to_server(FeaturesServicer(store, models, settings), server)
    return Service([features_pb2.DESCRIPTOR.services_by_name["Features"].full_name])


def main() -> None:
    serve(PART, load_settings(ServiceSettings, PART), register)


if __name__ == "__main__":
    main()
