"""The pipeline: Classify, ClassifyBatch and ClassifyStream over open streams to the
four stages. It never imports stage code; it only knows their contracts."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc

from fenlei import services
from fenlei.errors import FenleiError
from fenlei.pipeline.core import ModelRouter, split
from fenlei.runtime import rpc
from fenlei.runtime.limits import check_documents
from fenlei.runtime.models import ModelStore
from fenlei.runtime.server import Service, channel_options, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.runtime.stages import StageStreams
from fenlei.v1 import classifier_pb2, common_pb2, pipeline_pb2, pipeline_pb2_grpc

PART = "pipeline"


@dataclasses.dataclass(frozen=True)
class PipelineSettings(ServiceSettings):
    # One per stage it calls (fenlei.services): FENLEI_PIPELINE_<STAGE>_ADDRESS.
    segmenter_address: str = "127.0.0.1:50051"
    preprocessor_address: str = "127.0.0.1:50052"
    features_address: str = "127.0.0.1:50053"
    classifier_address: str = "127.0.0.1:50054"
    default_model: str = ""
    # Documents per stage message: big enough to amortise a message, small enough to pipeline.
    stage_batch_documents: int = 256
    # Client stream messages in flight at once within one ClassifyStream.
    stream_window: int = 8


class PipelineServicer(pipeline_pb2_grpc.PipelineServicer):
    def __init__(self, stages: StageStreams, router: ModelRouter, settings: PipelineSettings) -> None:
        self.stages = stages
        self.router = router
        self.settings = settings

    async def _classify(self, request, response_type):
        """Classifies a request's documents in stage batches, concurrently; answers in order."""
        check_documents(request.documents, self.settings)
        route = self.router.route(request.model, request.version)
        model = common_pb2.ModelRef(name=route.name, version=route.version)
        options = classifier_pb2.PredictOptions(top_k=request.top_k, explain=request.explain, labels=request.labels)
        batches = split(request.documents, self.settings.stage_batch_documents)
        try:
            answers = await asyncio.gather(*(self.stages.classify(batch, model, options) for batch in batches))
        except grpc.aio.AioRpcError as error:
            raise rpc.upstream_error(error) from error
        # Field 1 of every answer is the predictions, so the answers concatenate into one message.
        header = response_type(model=route.name, version=route.version).SerializeToString()
        response = response_type.FromString(b"".join(answers) + header)
        if request.explain:
            await self.stages.name_features(response.predictions, model)
        return response

    @rpc.unary
    async def Classify(self, request: pipeline_pb2.ClassifyRequest, context: grpc.aio.ServicerContext) -> pipeline_pb2.ClassifyResponse:
        batch = pipeline_pb2.ClassifyBatchRequest(
            documents=[common_pb2.Document(text=request.text)],
            model=request.model,
            version=request.version,
            top_k=request.top_k,
            explain=request.explain,
            labels=request.labels,
        )
        answer = await self._classify(batch, pipeline_pb2.ClassifyBatchResponse)
        prediction = answer.predictions[0]
        return pipeline_pb2.ClassifyResponse(
            labels=prediction.labels, model=answer.model, version=answer.version, explanation=prediction.explanation
        )

    @rpc.unary
    async def ClassifyBatch(
        self, request: pipeline_pb2.ClassifyBatchRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.ClassifyBatchResponse:
        return await self._classify(request, pipeline_pb2.ClassifyBatchResponse)

    @rpc.streaming
    async def ClassifyStream(
        self, requests: AsyncIterator[pipeline_pb2.ClassifyStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pipeline_pb2.ClassifyStreamResponse]:
        # Up to stream_window client messages are in the stages at once; answers keep their order.
        in_flight: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=self.settings.stream_window)

        async def feed() -> None:
            try:
                async for request in requests:
                    await in_flight.put(asyncio.ensure_future(self._classify(request, pipeline_pb2.ClassifyStreamResponse)))
            finally:
                await in_flight.put(None)

        feeder = asyncio.create_task(feed())
        index = 0
        try:
            while (task := await in_flight.get()) is not None:
                try:
                    yield await task
                except FenleiError as error:
                    raise rpc.in_stream(error, index) from error
                index += 1
            await feeder
        finally:
            feeder.cancel()
            while not in_flight.empty():
                task = in_flight.get_nowait()
                if task is not None:
                    task.cancel()


def register(server: grpc.aio.Server, settings: PipelineSettings) -> Service:
    router = ModelRouter(ModelStore(settings.home), settings.default_model)
    addresses = {stage.name: getattr(settings, f"{stage.name}_address") for stage in services.STAGES}
    stages = StageStreams(addresses, channel_options(settings))
    pipeline_pb2_grpc.add_PipelineServicer_to_server(PipelineServicer(stages, router, settings), server)
    return Service([pipeline_pb2.DESCRIPTOR.services_by_name["Pipeline"].full_name])


def main() -> None:
    serve(PART, load_settings(PipelineSettings, PART), register)


if __name__ == "__main__":
    main()
