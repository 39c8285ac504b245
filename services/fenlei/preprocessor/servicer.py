"""gRPC adapter for the preprocessor core."""

from __future__ import annotations

import asyncio

import grpc

from fenlei import services
from fenlei.preprocessor.core import PreprocessConfig, Preprocessor
from fenlei.runtime import metrics, rpc, tracing
from fenlei.runtime.limits import check_batch_size
from fenlei.runtime.models import LoadedModels, ModelStore
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.v1 import preprocessor_pb2, preprocessor_pb2_grpc

PART = "preprocessor"
SWITCHES = (
    "normalize_width",
    "lowercase",
    "remove_punctuation",
    "remove_digits",
    "remove_urls",
    "remove_emails",
    "remove_stopwords",
    "min_token_length",
    "tag_terms",
)


def config_of(request: preprocessor_pb2.PreprocessRequest, models: LoadedModels[PreprocessConfig]) -> PreprocessConfig:
    """The model's configuration (or the defaults), overridden by the options the request sets."""
    config = models.get(request.model.name, request.model.version) if request.model.name else PreprocessConfig()
    return with_options(config, request.options) if request.HasField("options") else config


def with_options(config: PreprocessConfig, options: preprocessor_pb2.PreprocessOptions) -> PreprocessConfig:
    """config overridden by the options set (a training job's too)."""
    changes: dict = {name: getattr(options, name) for name in SWITCHES if options.HasField(name)}
    for name in ("word_ngrams", "char_ngrams"):
        if options.HasField(name):
            changes[name] = (getattr(options, name).min, getattr(options, name).max)
    if options.extra_stopwords:
        changes["extra_stopwords"] = config.extra_stopwords + tuple(options.extra_stopwords)
    return PreprocessConfig.from_json({**config.to_json(), **{k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}})


class PreprocessorServicer(preprocessor_pb2_grpc.PreprocessorServicer):
    preprocessor: Preprocessor  # set by load(); no request reaches the servicer before that

    def __init__(self, models: LoadedModels[PreprocessConfig], settings: ServiceSettings) -> None:
        self.models = models
        self.settings = settings

    async def load(self) -> None:
        self.preprocessor = await asyncio.to_thread(Preprocessor)

    def _preprocess(self, request: preprocessor_pb2.PreprocessRequest, items) -> None:
        documents = request.documents
        check_batch_size(len(documents), self.settings)
        config = config_of(request, self.models)
        terms = self.preprocessor.process([document.tokens for document in documents], config, [document.tags for document in documents])
        for document, document_terms in zip(documents, terms):
            items.add(id=document.id, tokens=document_terms)
        metrics.count_documents(PART, len(documents))

    Preprocess = rpc.batch_unary(_preprocess, preprocessor_pb2.PreprocessResponse)

    def _measure(self, request: preprocessor_pb2.PreprocessStreamRequest, items) -> dict[str, int]:
        return {
            tracing.DOCUMENTS: len(request.documents),
            tracing.TOKENS: sum(len(document.tokens) for document in request.documents),
            tracing.TERMS: sum(len(item.tokens) for item in items),
        }

    PreprocessStream = rpc.batch_stream(
        tracing.per_batch(_preprocess, services.BY_NAME[PART].stream, _measure), preprocessor_pb2.PreprocessStreamResponse
    )


def register(server: grpc.aio.Server, settings: ServiceSettings) -> Service:
    models = LoadedModels(ModelStore(settings.home), PART, PreprocessConfig.load, settings.loaded_models)
    servicer = PreprocessorServicer(models, settings)
    metrics.watch_models(PART, models)
    preprocessor_pb2_grpc.add_PreprocessorServicer_to_server(servicer, server)
    return Service([preprocessor_pb2.DESCRIPTOR.services_by_name["Preprocessor"].full_name], servicer.load)


def main() -> None:
    serve(PART, load_settings(ServiceSettings, PART), register)


if __name__ == "__main__":
    main()
