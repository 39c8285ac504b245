"""The pipeline: Classify, ClassifyBatch and ClassifyStream over open streams to the
four stages. It never imports stage code; it only knows their contracts. While an
experiment routes a model, it asks the registry for the arm of a routing key and tells it,
in the background, what each arm answered."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc

from fenlei import services
from fenlei.errors import FenleiError, Unavailable
from fenlei.pipeline.core import ModelRouter, Recorder, Route, request_id, split
from fenlei.runtime import logging as jsonlog
from fenlei.runtime import metrics, rpc, tracing
from fenlei.runtime.limits import check_documents
from fenlei.runtime.models import ModelStore
from fenlei.runtime.server import Service, channel_options, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.runtime.stages import StageStreams
from fenlei.v1 import classifier_pb2, common_pb2, pipeline_pb2, pipeline_pb2_grpc, registry_pb2, registry_pb2_grpc

PART = "pipeline"
ARM_HEADER = "x-fenlei-arm"
REQUEST_ID_HEADER = "x-request-id"
# In each answer's trailing metadata: the trace of the call, for `fenlei trace ID`.
TRACE_ID_HEADER = "x-trace-id"


@dataclasses.dataclass(frozen=True)
class PipelineSettings(ServiceSettings):
    # One per stage it calls (fenlei.services): FENLEI_PIPELINE_<STAGE>_ADDRESS.
    segmenter_address: str = "127.0.0.1:50051"
    preprocessor_address: str = "127.0.0.1:50052"
    features_address: str = "127.0.0.1:50053"
    classifier_address: str = "127.0.0.1:50054"
    # Where experiments' routing keys are assigned and their predictions recorded; empty:
    # keys go by hash and nothing is recorded (feedback then finds nothing).
    registry_address: str = ""
    # The registry answers in milliseconds; a pipeline waits no longer than this for it.
    registry_timeout_seconds: float = 1.0
    # Routing keys whose arm a pipeline remembers (least recently used go first).
    routing_keys_cached: int = 100_000
    default_model: str = ""
    # Documents per stage message: big enough to amortise a message, small enough to pipeline.
    stage_batch_documents: int = 256
    # Client stream messages in flight at once within one ClassifyStream.
    stream_window: int = 8


class ExperimentRegistry:
    """The registry's ExperimentRouting as the pipeline's core needs it."""

    def __init__(self, address: str, settings: PipelineSettings) -> None:
        # A restarted registry is asked again within two seconds (gRPC's default waits up to two minutes).
        options = [*channel_options(settings), ("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 2000)]
        channel = grpc.aio.insecure_channel(address, options=options, interceptors=tracing.client_interceptors())
        self.stub = registry_pb2_grpc.ExperimentRoutingStub(channel)
        self.timeout = settings.registry_timeout_seconds

    async def assign(self, experiment: str, key: str) -> str:
        try:
            answer = await self.stub.AssignArm(registry_pb2.AssignArmRequest(experiment=experiment, key=key), timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"AssignArm failed: {error.code().name}: {error.details()}") from error
        return answer.arm

    async def record(self, predictions: list[registry_pb2.ServedPrediction]) -> None:
        # In the background, so it may wait (within its timeout) for a registry that is reconnecting.
        request = registry_pb2.RecordPredictionsRequest(predictions=predictions)
        await self.stub.RecordPredictions(request, timeout=self.timeout, wait_for_ready=True)


def _header(context: grpc.aio.ServicerContext, name: str) -> str:
    return next((value for key, value in context.invocation_metadata() or () if key == name and isinstance(value, str)), "")


def _answer_id(context: grpc.aio.ServicerContext) -> str:
    answer_id = request_id(_header(context, REQUEST_ID_HEADER))
    jsonlog.request_id.set(answer_id)  # the logs of this call carry the id its answer does
    return answer_id


async def _name_trace(context: grpc.aio.ServicerContext) -> None:
    """The trace's id in the response headers (initial metadata; REST callers get them too),
    sent with the first answer, never before it: headers sent while the work goes on would
    turn a deadline that passes meanwhile into a reset stream at the gateway."""
    if trace_id := tracing.trace_id():
        await context.send_initial_metadata(((TRACE_ID_HEADER, trace_id),))


class PipelineServicer(pipeline_pb2_grpc.PipelineServicer):
    def __init__(
        self,
        stages: StageStreams,
        router: ModelRouter,
        settings: PipelineSettings,
        recorder: Recorder[registry_pb2.ServedPrediction] | None,
    ) -> None:
        self.stages = stages
        self.router = router
        self.settings = settings
        self.recorder = recorder

    async def _classify(self, request, response_type, answer_id: str, arm: str):
        """Classifies a request's documents in stage batches, concurrently; answers in order."""
        check_documents(request.documents, self.settings)
        route = await self.router.route(request.model, request.version, arm, request.routing_key)
        model = common_pb2.ModelRef(name=route.name, version=route.version)
        tracing.annotate(
            {
                "fenlei.model": route.name,
                "fenlei.version": route.version,
                "fenlei.experiment": route.experiment,
                "fenlei.arm": route.arm,
                tracing.DOCUMENTS: len(request.documents),
                tracing.CHARACTERS: sum(len(document.text) for document in request.documents),
            }
        )
        options = classifier_pb2.PredictOptions(top_k=request.top_k, explain=request.explain, labels=request.labels)
        batches = split(request.documents, self.settings.stage_batch_documents)
        try:
            answers = await asyncio.gather(*(self.stages.classify(batch, model, options) for batch in batches))
        except grpc.aio.AioRpcError as error:
            raise rpc.upstream_error(error) from error
        # Field 1 of every answer is the predictions, so the answers concatenate into one message.
        header = response_type(
            model=route.name, version=route.version, request_id=answer_id, experiment=route.experiment, arm=route.arm
        ).SerializeToString()
        response = response_type.FromString(b"".join(answers) + header)
        if request.explain:
            await self.stages.name_features(response.predictions, model)
        self._record(route, answer_id, response.predictions)
        metrics.count_documents(PART, len(request.documents))
        return response

    def _record(self, route: Route, answer_id: str, predictions) -> None:
        """What an experiment's arm answered (each document's best label), for feedback to find."""
        if route.experiment and self.recorder is not None:
            self.recorder.add(
                [
                    registry_pb2.ServedPrediction(
                        request_id=answer_id,
                        # Documents without ids are told apart by their position (SendFeedbackRequest).
                        document_id=prediction.id or (str(index) if len(predictions) > 1 else ""),
                        experiment=route.experiment,
                        arm=route.arm,
                        version=route.version,
                        label=prediction.labels[0].label,
                    )
                    for index, prediction in enumerate(predictions)
                    if prediction.labels
                ]
            )

    @rpc.unary
    async def Classify(self, request: pipeline_pb2.ClassifyRequest, context: grpc.aio.ServicerContext) -> pipeline_pb2.ClassifyResponse:
        batch = pipeline_pb2.ClassifyBatchRequest(
            documents=[common_pb2.Document(text=request.text)],
            model=request.model,
            version=request.version,
            top_k=request.top_k,
            explain=request.explain,
            labels=request.labels,
            routing_key=request.routing_key,
        )
        answer = await self._classify(batch, pipeline_pb2.ClassifyBatchResponse, _answer_id(context), _header(context, ARM_HEADER))
        await _name_trace(context)
        prediction = answer.predictions[0]
        return pipeline_pb2.ClassifyResponse(
            labels=prediction.labels,
            model=answer.model,
            version=answer.version,
            explanation=prediction.explanation,
            request_id=answer.request_id,
            experiment=answer.experiment,
            arm=answer.arm,
        )

    @rpc.unary
    async def ClassifyBatch(
        self, request: pipeline_pb2.ClassifyBatchRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.ClassifyBatchResponse:
        answer = await self._classify(request, pipeline_pb2.ClassifyBatchResponse, _answer_id(context), _header(context, ARM_HEADER))
        await _name_trace(context)
        return answer

    @rpc.streaming
    async def ClassifyStream(
        self, requests: AsyncIterator[pipeline_pb2.ClassifyStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pipeline_pb2.ClassifyStreamResponse]:
        stream_id, arm = _answer_id(context), _header(context, ARM_HEADER)
        # Up to stream_window client messages are in the stages at once; answers keep their order.
        in_flight: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=self.settings.stream_window)

        async def answer(request: pipeline_pb2.ClassifyStreamRequest, index: int) -> pipeline_pb2.ClassifyStreamResponse:
            # A span per message, as its own request: the stream's span lasts as long as the stream.
            with tracing.span("/fenlei.v1.Pipeline/ClassifyStream message", attributes={"fenlei.message": index}):
                return await self._classify(request, pipeline_pb2.ClassifyStreamResponse, f"{stream_id}/{index}", arm)

        async def feed() -> None:
            try:
                sent = 0
                async for request in requests:
                    await in_flight.put(asyncio.ensure_future(answer(request, sent)))
                    sent += 1
            finally:
                await in_flight.put(None)

        feeder = asyncio.create_task(feed())
        index = 0
        try:
            while (task := await in_flight.get()) is not None:
                try:
                    answered = await task
                except FenleiError as error:
                    raise rpc.in_stream(error, index) from error
                if index == 0:
                    await _name_trace(context)
                yield answered
                index += 1
            await feeder
        finally:
            feeder.cancel()
            while not in_flight.empty():
                task = in_flight.get_nowait()
                if task is not None:
                    task.cancel()


def register(server: grpc.aio.Server, settings: PipelineSettings) -> Service:
    registry = ExperimentRegistry(settings.registry_address, settings) if settings.registry_address else None
    router = ModelRouter(
        ModelStore(settings.home),
        settings.default_model,
        assign=registry.assign if registry else None,
        assignments_cached=settings.routing_keys_cached,
    )
    recorder = Recorder(registry.record) if registry else None
    addresses = {stage.name: getattr(settings, f"{stage.name}_address") for stage in services.STAGES}
    stages = StageStreams(addresses, channel_options(settings))
    pipeline_pb2_grpc.add_PipelineServicer_to_server(PipelineServicer(stages, router, settings, recorder), server)
    return Service([pipeline_pb2.DESCRIPTOR.services_by_name["Pipeline"].full_name])


def main() -> None:
    serve(PART, load_settings(PipelineSettings, PART), register)


if __name__ == "__main__":
    main()
