"""gRPC adapter of the live configuration (fenlei.v1.LiveConfig), and the config service's server.

An experiment's weights live in the registry: experiments.<name> is set there (SetWeights,
as the caller) and recorded here with the weights before and after.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc

from fenlei import services
from fenlei.config.core import EXPERIMENTS, LiveConfig
from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote, quote_list
from fenlei.local.mesh import LocalMesh
from fenlei.runtime import live, rpc
from fenlei.runtime.messages import timestamp
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.runtime.server import Service, channel_options, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.sidecar.control import ControlPlane
from fenlei.v1 import config_pb2, config_pb2_grpc, registry_pb2, registry_pb2_grpc

SERVICE = "config"
REGISTRY_SECONDS = 10.0
APPLY_SECONDS = 10.0  # how long a change waits for the local mesh to confirm it


@dataclasses.dataclass(frozen=True)
class ConfigSettings(ServiceSettings):
    registry_address: str = ""  # the supervisor (or a manifest) names it


def change_message(change: dict[str, Any]) -> config_pb2.ConfigChange:
    return config_pb2.ConfigChange(
        sequence=change["sequence"],
        time=timestamp(change["time"]),
        who=change["who"],
        key=change["key"],
        before=change["before"],
        after=change["after"],
        reason=change["reason"],
    )


def rule_message(rule: dict[str, Any]) -> config_pb2.DenyRule:
    caller = {"subject": rule["subject"]} if rule["subject"] else {"address": rule["address"]}
    return config_pb2.DenyRule(
        id=rule["id"], reason=rule["reason"], created=timestamp(rule["created"]), created_by=rule["created_by"], **caller
    )


def weights_text(experiment: registry_pb2.Experiment) -> str:
    return ",".join(f"{arm.name}={arm.weight:g}" for arm in experiment.arms)


def parse_weights(value: str) -> dict[str, float]:
    weights = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        arm, _, weight = pair.partition("=")
        try:
            weights[arm.strip()] = float(weight)
        except ValueError:
            raise InvalidInput(f"{quote(pair)} is no arm=weight pair; e.g. control=0.9,candidate=0.1") from None
    if not weights:
        raise InvalidInput("name the arms' weights: arm=weight pairs, comma-separated (e.g. control=0.9,candidate=0.1)")
    return weights


class MeshScenarios:
    """The scenario files of the local mesh's policy (mesh/istio), by name."""

    def __init__(self, control: ControlPlane, mesh: LocalMesh) -> None:
        self.control = control
        self.mesh = mesh

    def names(self) -> list[str]:
        return list(self.control.scenarios())

    def check(self, names: list[str]) -> None:
        if names and self.mesh.state() is not None and not self.mesh.with_sidecars():
            raise FailedPrecondition(
                "this mesh runs without sidecars, which carry the scenarios: `fenlei down`, then `fenlei up` with them"
            )
        known = self.control.scenarios()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise NotFound(
                f"no mesh scenario {quote(unknown[0])} in {self.control.policy_directory}; the scenarios are {quote_list(list(known), count=len(known))}"
            )
        self.control.policy([known[name] for name in names])  # a scenario that breaks the policy is refused


class LiveConfigServicer(config_pb2_grpc.LiveConfigServicer):
    def __init__(self, config: LiveConfig, experiments: registry_pb2_grpc.ExperimentsStub) -> None:
        self.config = config
        self.experiments = experiments

    @rpc.unary
    async def GetConfig(self, request: config_pb2.GetConfigRequest, context: grpc.aio.ServicerContext) -> Any:
        settings, sequence = await asyncio.to_thread(lambda: (self.config.settings(), self.config.sequence()))
        return config_pb2.GetConfigResponse(settings=[config_pb2.Setting(**setting) for setting in settings], sequence=sequence)

    @rpc.unary
    async def ListDenyRules(self, request: config_pb2.ListDenyRulesRequest, context: grpc.aio.ServicerContext) -> Any:
        rules = await asyncio.to_thread(self.config.deny_rules)
        return config_pb2.ListDenyRulesResponse(rules=[rule_message(rule) for rule in rules])

    @rpc.unary
    async def SetConfig(self, request: config_pb2.SetConfigRequest, context: grpc.aio.ServicerContext) -> Any:
        who = rpc.caller(context)
        if request.key.startswith(EXPERIMENTS):
            change = await self._set_weights(request, who, context)
        else:
            change = await asyncio.to_thread(self.config.set, request.key, request.value, who, request.reason)
        return config_pb2.SetConfigResponse(change=change_message(change), applied=await self.applied(change))

    async def _set_weights(self, request: config_pb2.SetConfigRequest, who: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        name = request.key.removeprefix(EXPERIMENTS)
        weights = parse_weights(request.value)
        # The registry records the caller, as it would had they called it themselves.
        metadata = [(SUBJECT_HEADER, value) for key, value in context.invocation_metadata() or () if key == SUBJECT_HEADER]
        try:
            before = await self.experiments.GetExperiment(registry_pb2.GetExperimentRequest(name=name), timeout=REGISTRY_SECONDS)
            after = await self.experiments.SetWeights(
                registry_pb2.SetWeightsRequest(name=name, weights=weights), timeout=REGISTRY_SECONDS, metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            raise rpc.upstream_error(error) from None
        return await asyncio.to_thread(
            self.config.record, who, request.key, weights_text(before.experiment), weights_text(after.experiment), request.reason
        )

    @rpc.unary
    async def ListConfigChanges(self, request: config_pb2.ListConfigChangesRequest, context: grpc.aio.ServicerContext) -> Any:
        changes = await asyncio.to_thread(self.config.changes, request.limit, request.key)
        return config_pb2.ListConfigChangesResponse(changes=[change_message(c) for c in changes])

    @rpc.unary
    async def AddDenyRule(self, request: config_pb2.AddDenyRuleRequest, context: grpc.aio.ServicerContext) -> Any:
        rule, change = await asyncio.to_thread(
            lambda: self.config.add_deny_rule(rpc.caller(context), subject=request.subject, address=request.address, reason=request.reason)
        )
        return config_pb2.AddDenyRuleResponse(rule=rule_message(rule), change=change_message(change), applied=await self.applied(change))

    @rpc.unary
    async def RemoveDenyRule(self, request: config_pb2.RemoveDenyRuleRequest, context: grpc.aio.ServicerContext) -> Any:
        change = await asyncio.to_thread(self.config.remove_deny_rule, request.id, rpc.caller(context), request.reason)
        return config_pb2.RemoveDenyRuleResponse(change=change_message(change), applied=await self.applied(change))

    async def applied(self, change: dict[str, Any]) -> bool:
        return await live.applied(self.config.home, change["sequence"], APPLY_SECONDS)


def register(server: grpc.aio.Server, settings: ConfigSettings) -> Service:
    config = LiveConfig(settings.home, MeshScenarios(ControlPlane(settings.home), LocalMesh(settings.home)))
    channel = grpc.aio.insecure_channel(settings.registry_address, options=channel_options(settings))
    config_pb2_grpc.add_LiveConfigServicer_to_server(LiveConfigServicer(config, registry_pb2_grpc.ExperimentsStub(channel)), server)
    return Service([service.full_name for service in services.BY_NAME[SERVICE].contract])


def main() -> None:
    serve(SERVICE, load_settings(ConfigSettings, SERVICE), register)


if __name__ == "__main__":
    main()
