"""training.core's Stages over gRPC: the same stage streams the pipeline serves with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

from google.protobuf import json_format

from fenlei.runtime.stages import StageStreams
from fenlei.training.core import Labelled
from fenlei.training.report import Predicted
from fenlei.v1 import classifier_pb2, common_pb2, features_pb2, preprocessor_pb2

BATCH = 256


def _batches(count: int) -> list[range]:
    return [range(start, min(start + BATCH, count)) for start in range(0, count, BATCH)]


async def in_batches(terms: Sequence[Sequence[str]], labels: Sequence[str]) -> AsyncIterator[Labelled]:
    """Terms held in memory as the stream the fits read."""
    yield terms, labels


class GrpcStages:
    def __init__(self, streams: StageStreams) -> None:
        self.streams = streams

    async def _terms_bytes(self, model: common_pb2.ModelRef, texts: Sequence[str]) -> list[bytes]:
        return await asyncio.gather(
            *(self.streams.terms([common_pb2.Document(id=str(i), text=texts[i]) for i in batch], model) for batch in _batches(len(texts)))
        )

    async def terms(self, name: str, version: str, texts: Sequence[str]) -> list[list[str]]:
        answers = await self._terms_bytes(common_pb2.ModelRef(name=name, version=version), texts)
        return [
            list(document.tokens)
            for answer in answers
            for document in preprocessor_pb2.PreprocessStreamResponse.FromString(answer).documents
        ]

    async def fit_features(self, name: str, version: str, batches: AsyncIterable[Labelled], options: dict[str, Any]) -> int:
        model = common_pb2.ModelRef(name=name, version=version)
        feature_options = json_format.ParseDict(options, features_pb2.FeatureOptions())

        async def requests() -> AsyncIterator[features_pb2.FitRequest]:
            first = True
            async for terms, labels in batches:
                for batch in _batches(len(terms)):
                    yield features_pb2.FitRequest(
                        documents=[
                            common_pb2.LabelledDocument(document=common_pb2.TokenizedDocument(tokens=terms[i]), label=labels[i])
                            for i in batch
                        ],
                        model=model if first else None,
                        options=feature_options if first else None,
                    )
                    first = False

        answer = await self.streams.features.Fit(requests())
        return answer.dimension

    async def _vectors(self, model: common_pb2.ModelRef, terms: Sequence[Sequence[str]]) -> list[bytes]:
        def request(batch: range) -> bytes:
            return preprocessor_pb2.PreprocessStreamResponse(
                documents=[common_pb2.TokenizedDocument(id=str(i), tokens=terms[i]) for i in batch]
            ).SerializeToString()

        return await asyncio.gather(*(self.streams.vectors(request(batch), model) for batch in _batches(len(terms))))

    async def fit_classifier(
        self,
        name: str,
        version: str,
        examples: AsyncIterable[Labelled],
        labels: Sequence[str],
        dimension: int,
        options: dict[str, Any],
    ) -> None:
        """examples: every pass over the data the classifier learns from (SGD's epochs are
        that many passes), turned into vectors batch by batch as they stream."""
        model = common_pb2.ModelRef(name=name, version=version)
        classifier_options = json_format.ParseDict(options, classifier_pb2.ClassifierOptions())

        async def requests() -> AsyncIterator[classifier_pb2.ClassifierFitRequest]:
            first = True
            async for terms, truth in examples:
                for answer, batch in zip(await self._vectors(model, terms), _batches(len(terms)), strict=True):
                    vectors = features_pb2.TransformStreamResponse.FromString(answer).vectors
                    yield classifier_pb2.ClassifierFitRequest(
                        examples=[
                            common_pb2.LabelledVector(vector=vector, label=truth[i]) for vector, i in zip(vectors, batch, strict=True)
                        ],
                        model=model if first else None,
                        options=classifier_options if first else None,
                        labels=labels if first else (),
                        dimension=dimension if first else 0,
                    )
                    first = False

        await self.streams.classifier.Fit(requests())

    async def predict(self, name: str, version: str, terms: Sequence[Sequence[str]], explain: int = 0) -> list[Predicted]:
        """The best label of each document with its score and, for explain > 0, that many of
        the features that pushed it there, named by the features stage."""
        model = common_pb2.ModelRef(name=name, version=version)
        options = classifier_pb2.PredictOptions(top_k=1, explain=explain)
        answers = await asyncio.gather(*(self.streams.predictions(v, model, options) for v in await self._vectors(model, terms)))
        predictions = [p for answer in answers for p in classifier_pb2.PredictStreamResponse.FromString(answer).predictions]
        if explain:
            await self.streams.name_features(predictions, model)
        return [Predicted(p.labels[0].label, p.labels[0].score, tuple((c.feature, c.weight) for c in p.explanation)) for p in predictions]
