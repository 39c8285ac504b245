"""fenlei.v1.Experiments (public) and fenlei.v1.ExperimentRouting (the pipeline's) over
fenlei.registry.experiments. The registry's servicer module registers both."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from fenlei.errors import InvalidInput
from fenlei.registry import experiments as core
from fenlei.runtime import rpc
from fenlei.runtime.messages import struct, timestamp
from fenlei.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger("fenlei.registry.experiments")

ALLOCATION_OF = {registry_pb2.ALLOCATION_FIXED: core.FIXED, registry_pb2.ALLOCATION_THOMPSON: core.THOMPSON}
ALLOCATION_MESSAGE = {name: value for value, name in ALLOCATION_OF.items()}


def experiment_message(view: core.ExperimentView) -> registry_pb2.Experiment:
    return registry_pb2.Experiment(
        name=view.name,
        model=view.model,
        arms=[registry_pb2.Arm(name=a.name, target=a.target, weight=a.weight, version=a.version) for a in view.arms],
        allocation=ALLOCATION_MESSAGE[view.allocation],
        running=view.running,
        created=timestamp(view.created),
        created_by=view.created_by,
        ended=timestamp(view.ended),
        leader=view.leader,
        scores=[
            registry_pb2.ArmScore(
                arm=score.arm,
                predictions=score.predictions,
                feedback=score.feedback,
                correct=score.correct,
                accuracy=score.accuracy,
                confusion={truth: registry_pb2.LabelCounts(counts=counts) for truth, counts in score.confusion.items()},
            )
            for score in view.scores
        ],
        description=view.description,
        events=[
            registry_pb2.ExperimentEvent(sequence=e.sequence, at=timestamp(e.at), by=e.by, kind=e.kind, detail=struct(e.detail))
            for e in view.events
        ],
    )


class Rebalancer:
    """Runs an experiment's Thompson rebalance soon after feedback, at most once per
    `every` seconds per experiment: the first feedback moves the weights at once, a burst
    moves them once more when the second is over."""

    def __init__(self, rebalance: Callable[[str], bool], every: float = core.REBALANCE_SECONDS) -> None:
        self.rebalance = rebalance
        self.every = every
        self._last: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}

    def soon(self, experiment: str) -> None:
        if experiment not in self._pending:
            delay = max(0.0, self._last.get(experiment, float("-inf")) + self.every - time.monotonic())
            self._pending[experiment] = asyncio.get_running_loop().create_task(self._run(experiment, delay))

    async def _run(self, experiment: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._last[experiment] = time.monotonic()
        del self._pending[experiment]  # feedback from now on is counted by the next one
        try:
            await asyncio.to_thread(self.rebalance, experiment)
        except Exception:  # noqa: BLE001 - the next feedback tries again
            log.exception("Thompson rebalance failed", extra={"fields": {"experiment": experiment}})


class ExperimentsServicer(registry_pb2_grpc.ExperimentsServicer):
    def __init__(self, experiments: core.Experiments, move_message: Callable[[Any], registry_pb2.AliasMove]) -> None:
        """move_message: the AliasMove of what Registry.set_alias returns (a promotion)."""
        self.experiments = experiments
        self.move_message = move_message
        self.rebalancer = Rebalancer(experiments.rebalance)

    @rpc.unary
    async def CreateExperiment(self, request: registry_pb2.CreateExperimentRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.allocation == registry_pb2.ALLOCATION_UNSPECIFIED:
            allocation = core.FIXED  # the weights given
        elif request.allocation in ALLOCATION_OF:
            allocation = ALLOCATION_OF[request.allocation]
        else:
            raise InvalidInput(f"allocation {request.allocation} is not one of {', '.join(registry_pb2.Allocation.keys()[1:])}")
        arms = [core.ArmSpec(arm.name, arm.target, arm.weight) for arm in request.arms]
        view = await asyncio.to_thread(
            self.experiments.create, request.name, request.model, arms, allocation, request.description, rpc.caller(context)
        )
        return registry_pb2.CreateExperimentResponse(experiment=experiment_message(view))

    @rpc.unary
    async def GetExperiment(self, request: registry_pb2.GetExperimentRequest, context: grpc.aio.ServicerContext) -> Any:
        view = await asyncio.to_thread(self.experiments.get, request.name)
        return registry_pb2.GetExperimentResponse(experiment=experiment_message(view))

    @rpc.unary
    async def ListExperiments(self, request: registry_pb2.ListExperimentsRequest, context: grpc.aio.ServicerContext) -> Any:
        views = await asyncio.to_thread(self.experiments.list, request.all)
        return registry_pb2.ListExperimentsResponse(experiments=[experiment_message(view) for view in views])

    @rpc.unary
    async def SetWeights(self, request: registry_pb2.SetWeightsRequest, context: grpc.aio.ServicerContext) -> Any:
        view = await asyncio.to_thread(self.experiments.set_weights, request.name, dict(request.weights), rpc.caller(context))
        return registry_pb2.SetWeightsResponse(experiment=experiment_message(view))

    @rpc.unary
    async def EndExperiment(self, request: registry_pb2.EndExperimentRequest, context: grpc.aio.ServicerContext) -> Any:
        view, move = await asyncio.to_thread(
            self.experiments.end, request.name, request.promote_alias, request.winner, request.reason, rpc.caller(context)
        )
        return registry_pb2.EndExperimentResponse(experiment=experiment_message(view), move=self.move_message(move) if move else None)

    @rpc.unary
    async def SendFeedback(self, request: registry_pb2.SendFeedbackRequest, context: grpc.aio.ServicerContext) -> Any:
        taken = await asyncio.to_thread(
            self.experiments.feedback, request.request_id, request.document_id, request.label, rpc.caller(context)
        )
        if taken.allocation == core.THOMPSON:
            self.rebalancer.soon(taken.experiment)
        return registry_pb2.SendFeedbackResponse(experiment=taken.experiment, arm=taken.arm, correct=taken.correct)


class ExperimentRoutingServicer(registry_pb2_grpc.ExperimentRoutingServicer):
    def __init__(self, experiments: core.Experiments) -> None:
        self.experiments = experiments

    @rpc.unary
    async def AssignArm(self, request: registry_pb2.AssignArmRequest, context: grpc.aio.ServicerContext) -> Any:
        arm, revision = await asyncio.to_thread(self.experiments.assign, request.experiment, request.key)
        return registry_pb2.AssignArmResponse(arm=arm, revision=revision)

    @rpc.unary
    async def RecordPredictions(self, request: registry_pb2.RecordPredictionsRequest, context: grpc.aio.ServicerContext) -> Any:
        rows = [(p.request_id, p.document_id, p.experiment, p.arm, p.version, p.label) for p in request.predictions]
        if any(not (request_id and experiment and arm) for request_id, _, experiment, arm, _, _ in rows):
            raise InvalidInput("every served prediction names its request id, experiment and arm")
        recorded = await asyncio.to_thread(self.experiments.record, rows)
        return registry_pb2.RecordPredictionsResponse(recorded=recorded)
