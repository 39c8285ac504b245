"""Clients of the four stage services over open streams, shared by the pipeline
(serving) and training, so a model never sees text processed differently in
production than in training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from fenlei import services
from fenlei.errors import Unavailable
from fenlei.runtime import tracing
from fenlei.runtime.streams import OrderedStream
from fenlei.v1 import (
    classifier_pb2,
    classifier_pb2_grpc,
    common_pb2,
    features_pb2,
    features_pb2_grpc,
    preprocessor_pb2,
    segmenter_pb2,
)


class StageStreams:
    """One open stream per stage, shared by every caller. Payloads stay serialized from
    stage to stage: an answer's field 1 plus the next request's header is that request.
    Each header names the caller's current trace, under which the stage traces the batch."""

    def __init__(self, addresses: Mapping[str, str], options: Sequence[tuple[str, int]] = ()) -> None:
        """addresses: stage name → gRPC address, for every stage of fenlei.services.STAGES."""
        missing = [stage.name for stage in services.STAGES if not addresses.get(stage.name)]
        if missing:
            raise ValueError(f"no address for the stage(s) {', '.join(missing)}")
        self.channels = {
            stage.name: grpc.aio.insecure_channel(addresses[stage.name], options=list(options), interceptors=tracing.client_interceptors())
            for stage in services.STAGES
        }
        self.streams = {stage.name: OrderedStream(self.channels[stage.name], stage.stream) for stage in services.STAGES}
        self.features = features_pb2_grpc.FeaturesStub(self.channels["features"])
        self.classifier = classifier_pb2_grpc.ClassifierStub(self.channels["classifier"])

    async def terms(self, documents: Sequence[common_pb2.Document], model: common_pb2.ModelRef) -> bytes:
        """A serialized PreprocessStreamResponse: each document's terms."""
        trace = tracing.current_trace()
        tokens = await self._call(
            "segmenter", segmenter_pb2.SegmentStreamRequest(documents=documents, model=model, trace=trace).SerializeToString()
        )
        return await self._call(
            "preprocessor", tokens + preprocessor_pb2.PreprocessStreamRequest(model=model, trace=trace).SerializeToString()
        )

    async def vectors(self, terms: bytes, model: common_pb2.ModelRef) -> bytes:
        """A serialized TransformStreamResponse, from terms() output."""
        header = features_pb2.TransformStreamRequest(model=model, trace=tracing.current_trace())
        return await self._call("features", terms + header.SerializeToString())

    async def predictions(self, vectors: bytes, model: common_pb2.ModelRef, options: classifier_pb2.PredictOptions) -> bytes:
        """A serialized PredictStreamResponse, from vectors() output."""
        header = classifier_pb2.PredictStreamRequest(model=model, options=options, trace=tracing.current_trace())
        return await self._call("classifier", vectors + header.SerializeToString())

    async def _call(self, stage: str, payload: bytes) -> bytes:
        """One batch on a stage's open stream. A stage that cannot be reached is named, so a
        caller learns which hop is down (a sidecar's own reply already names it)."""
        try:
            return await self.streams[stage].call(payload)
        except grpc.aio.AioRpcError as error:
            details = error.details() or ""
            if error.code() != grpc.StatusCode.UNAVAILABLE or details.startswith(f"the {stage} service"):
                raise
            raise Unavailable(f"the {stage} stage is unavailable: {details}") from error

    async def classify(
        self, documents: Sequence[common_pb2.Document], model: common_pb2.ModelRef, options: classifier_pb2.PredictOptions
    ) -> bytes:
        return await self.predictions(await self.vectors(await self.terms(documents, model), model), model, options)

    async def name_features(self, predictions: Sequence[common_pb2.Prediction], model: common_pb2.ModelRef) -> None:
        """Fills in the feature names of every contribution in the predictions."""
        contributions = [c for prediction in predictions for c in prediction.explanation]
        if not contributions:
            return
        answer = await self.features.DescribeFeatures(
            features_pb2.DescribeFeaturesRequest(indices=[c.feature_index for c in contributions], model=model)
        )
        for contribution, name in zip(contributions, answer.names):
            contribution.feature = name

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
