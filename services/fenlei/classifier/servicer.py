"""gRPC adapter for the classifier core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import scipy.sparse as sp

from fenlei import services
from fenlei.classifier.core import Algorithm, ClassifierConfig, ClassifierTrainer, LinearModel
from fenlei.errors import InvalidInput
from fenlei.runtime import metrics, rpc, tracing
from fenlei.runtime.limits import check_batch_size
from fenlei.runtime.models import LoadedModels, ModelStore
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

PART = "classifier"
ALGORITHMS = {
    classifier_pb2.ALGORITHM_COMPLEMENT_NB: Algorithm.COMPLEMENT_NB,
    classifier_pb2.ALGORITHM_MULTINOMIAL_NB: Algorithm.MULTINOMIAL_NB,
    classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION: Algorithm.LOGISTIC_REGRESSION,
    classifier_pb2.ALGORITHM_LINEAR_SVM: Algorithm.LINEAR_SVM,
    classifier_pb2.ALGORITHM_SGD: Algorithm.SGD,
    classifier_pb2.ALGORITHM_ENSEMBLE: Algorithm.ENSEMBLE,
}


def config_of(options: classifier_pb2.ClassifierOptions) -> ClassifierConfig:
    config = ClassifierConfig().to_json()
    if options.algorithm in ALGORITHMS:
        config["algorithm"] = ALGORITHMS[options.algorithm].value
    if options.regularization:
        config["regularization"] = options.regularization
    if options.epochs:
        config["epochs"] = options.epochs
    if options.seed:
        config["seed"] = options.seed
    return ClassifierConfig.from_json(config)


def to_matrix(vectors: Sequence[common_pb2.FeatureVector], dimension: int) -> sp.csr_matrix:
    lengths = [len(vector.indices) for vector in vectors]
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if any(len(vector.values) != length for vector, length in zip(vectors, lengths)):
        raise InvalidInput("a feature vector has different numbers of indices and values")
    indices = np.fromiter((i for vector in vectors for i in vector.indices), dtype=np.int64, count=int(indptr[-1]))
    values = np.fromiter((v for vector in vectors for v in vector.values), dtype=np.float32, count=int(indptr[-1]))
    if len(indices) and (indices.max() >= dimension):
        raise InvalidInput(f"a feature index {int(indices.max())} is outside the model's {dimension} dimensions")
    return sp.csr_matrix((values, indices, indptr), shape=(len(vectors), dimension))


class ClassifierServicer(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, store: ModelStore, models: LoadedModels[LinearModel], settings: ServiceSettings) -> None:
        self.store = store
        self.models = models
        self.settings = settings

    @rpc.unary
    async def Fit(
        self, requests: AsyncIterator[classifier_pb2.ClassifierFitRequest], context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ClassifierFitResponse:
        trainer = None
        count = 0
        async for request in requests:
            if trainer is None:
                model = request.model
                directory = self.store.writable_part(model.name, model.version, PART)
                if not request.dimension:
                    raise InvalidInput("the first fit message must carry the features' dimension")
                dimension = request.dimension
                trainer = ClassifierTrainer(config_of(request.options), dimension, classes=list(request.labels))
            check_batch_size(len(request.examples), self.settings)
            trainer.add(to_matrix([e.vector for e in request.examples], dimension), [e.label for e in request.examples])
            count += len(request.examples)
        if trainer is None:
            raise InvalidInput("the fit stream was empty: send at least one message with the model and labelled vectors")
        # Off the event loop, and abandoned if the caller goes away: then nothing is saved.
        fitted = await rpc.in_worker(trainer.finish)
        fitted.save(directory)
        return classifier_pb2.ClassifierFitResponse(model=model, examples=count, labels=fitted.classes)

    def _predict(self, request: classifier_pb2.PredictRequest, items) -> None:
        check_batch_size(len(request.vectors), self.settings)
        model = self.models.get(request.model.name, request.model.version)
        options = request.options
        matrix = to_matrix(request.vectors, model.dimension)
        predictions = model.predict(matrix, top_k=options.top_k, explain=options.explain, restrict_to=list(options.labels))
        for vector, prediction in zip(request.vectors, predictions):
            item = items.add(id=vector.id)
            for scored in prediction.labels:
                item.labels.add(label=scored.label, score=scored.score)
            for explained in prediction.explanation:
                item.explanation.add(feature_index=explained.feature_index, label=explained.label, weight=explained.weight)
        metrics.count_documents(PART, len(request.vectors))

    Predict = rpc.batch_unary(_predict, classifier_pb2.PredictResponse)

    def _measure(self, request: classifier_pb2.PredictStreamRequest, items) -> dict[str, int]:
        return {tracing.DOCUMENTS: len(request.vectors)}

    PredictStream = rpc.batch_stream(
        tracing.per_batch(_predict, services.BY_NAME[PART].stream, _measure), classifier_pb2.PredictStreamResponse
    )


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    store = ModelStore(settings.home)
    models = LoadedModels(store, PART, LinearModel.load, settings.loaded_models)
    metrics.watch_models(PART, models)
    classifier_pb2_grpc.add_ClassifierServicer_to_server(ClassifierServicer(store, models, settings), server)
    return Service([classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name])


def main() -> None:
    serve(PART, load_settings(ServiceSettings, PART), register)


if __name__ == "__main__":
    main()
