"""The monolith a user would otherwise write: one process with the four stages' cores,
serving Pipeline.Classify and ClassifyStream over gRPC for one model version, loaded
from the files the registry wrote for it. No sidecar, no gateway, no tracing: `fenlei
bench` measures the mesh against it, so the mesh's cost per request is a difference.

    python -m fenlei.monolith HOME MODEL VERSION     prints its address, serves until stopped
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from fenlei.classifier.core import LinearModel, Prediction
from fenlei.features.core import FeatureSpace
from fenlei.preprocessor.core import PreprocessConfig, Preprocessor
from fenlei.runtime.models import ModelStore
from fenlei.segmenter.core import SegmentConfig, Segmenter
from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc


@dataclass
class Terms:
    """Text to terms: the segmenter and the preprocessor, with a model's configuration."""

    segment: SegmentConfig
    preprocess: PreprocessConfig
    segmenter: Segmenter = field(default_factory=Segmenter)
    preprocessor: Preprocessor = field(default_factory=Preprocessor)

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        segmented = self.segmenter.segment(texts, self.segment)
        return self.preprocessor.process([s.tokens for s in segmented], self.preprocess, [s.tags for s in segmented])


@dataclass
class Monolith:
    """The pipeline's four stages as plain calls."""

    terms: Terms
    space: FeatureSpace
    model: LinearModel

    @classmethod
    def load(cls, home: Path, name: str, version: str) -> Monolith:
        """The version's parts as its stage services load them."""
        store = ModelStore(home)
        return cls(
            Terms(
                SegmentConfig.load(store.part_to_serve(name, version, "segmenter")),
                PreprocessConfig.load(store.part_to_serve(name, version, "preprocessor")),
            ),
            FeatureSpace.load(store.part_to_serve(name, version, "features")),
            LinearModel.load(store.part_to_serve(name, version, "classifier")),
        )

    def classify(self, texts: Sequence[str], top_k: int) -> list[Prediction]:
        return self.model.predict(self.space.transform(self.terms(texts)), top_k=top_k)


class MonolithServicer(pipeline_pb2_grpc.PipelineServicer):
    def __init__(self, monolith: Monolith, name: str, version: str) -> None:
        self.monolith = monolith
        self.name = name
        self.version = version

    def _predictions(self, documents: Sequence[common_pb2.Document], top_k: int) -> list[common_pb2.Prediction]:
        predicted = self.monolith.classify([document.text for document in documents], top_k)
        return [
            common_pb2.Prediction(id=document.id, labels=[common_pb2.LabelScore(label=s.label, score=s.score) for s in prediction.labels])
            for document, prediction in zip(documents, predicted)
        ]

    async def Classify(self, request: pipeline_pb2.ClassifyRequest, context: grpc.aio.ServicerContext) -> pipeline_pb2.ClassifyResponse:
        [prediction] = self._predictions([common_pb2.Document(text=request.text)], request.top_k)
        return pipeline_pb2.ClassifyResponse(labels=prediction.labels, model=self.name, version=self.version)

    async def ClassifyBatch(
        self, request: pipeline_pb2.ClassifyBatchRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.ClassifyBatchResponse:
        return pipeline_pb2.ClassifyBatchResponse(
            predictions=self._predictions(request.documents, request.top_k), model=self.name, version=self.version
        )

    async def ClassifyStream(
        self, requests: AsyncIterator[pipeline_pb2.ClassifyStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pipeline_pb2.ClassifyStreamResponse]:
        async for request in requests:
            yield pipeline_pb2.ClassifyStreamResponse(
                predictions=self._predictions(request.documents, request.top_k), model=self.name, version=self.version
            )


async def start(monolith: Monolith, name: str, version: str) -> tuple[grpc.aio.Server, str]:
    """A started server on an ephemeral loopback port, and its address."""
    server = grpc.aio.server()
    pipeline_pb2_grpc.add_PipelineServicer_to_server(MonolithServicer(monolith, name, version), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _serve(home: Path, name: str, version: str) -> None:
    server, address = await start(Monolith.load(home, name, version), name, version)
    print(address, flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fenlei.monolith", description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path, help="the mesh's home, whose models/ holds the version")
    parser.add_argument("model")
    parser.add_argument("version")
    args = parser.parse_args()
    asyncio.run(_serve(args.home, args.model, args.version))


if __name__ == "__main__":
    main()
