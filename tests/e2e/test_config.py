"""Live configuration on the session mesh, end to end: a changed limit takes effect without
a restart (the same gateway and service processes) and is in the history with who, before
and after; a denied subject or address gets 403 saying why and is let in again the moment
the rule is removed; log levels and the batch limit reach the services; an experiment's
weights change through the configuration and are recorded. Every test puts back what it
changed, so the rest of the session sees the mesh as it was."""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections.abc import Iterator

import grpc
import pytest

from fenlei.local.mesh import LocalMesh
from fenlei.v1 import common_pb2, config_pb2, pipeline_pb2, registry_pb2, segmenter_pb2

TEXT = "质量很好，物流也快，非常满意"


def rest(mesh, method: str, path: str, token: str = "") -> tuple[int, dict]:
    host, port = mesh.address("gateway").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers={"authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def token(mesh, role: str, subject: str) -> str:
    return LocalMesh(mesh.home).authority().mint(role, ttl_seconds=600, subject=subject)


@pytest.fixture
def config(api) -> Iterator:
    """The admin's LiveConfig stub; whatever a test set or denied is undone afterwards."""
    stub = api("admin").live_config
    before = stub.ListDenyRules(config_pb2.ListDenyRulesRequest()).rules
    yield stub
    for setting in stub.GetConfig(config_pb2.GetConfigRequest()).settings:
        if setting.value:
            stub.SetConfig(config_pb2.SetConfigRequest(key=setting.key, value="", reason="the test is over"))
    for rule in stub.ListDenyRules(config_pb2.ListDenyRulesRequest()).rules:
        if rule.id not in {r.id for r in before}:
            stub.RemoveDenyRule(config_pb2.RemoveDenyRuleRequest(id=rule.id, reason="the test is over"))


def test_a_changed_rate_limit_takes_effect_without_a_restart_and_is_in_the_history(mesh, api, config, tools) -> None:
    started = {name: entry["pid"] for name, entry in tools.read_state(mesh.home).items()}
    viewer = api("viewer", "e2e-limited")
    viewer.model_registry.ListModels(registry_pb2.ListModelsRequest())

    answer = config.SetConfig(config_pb2.SetConfigRequest(key="gateway.rate_limit_burst", value="2", reason="a noisy caller"))
    config.SetConfig(config_pb2.SetConfigRequest(key="gateway.rate_limit_per_second", value="1"))
    assert answer.applied and (answer.change.before, answer.change.after) == ("", "2")
    codes = []
    for _ in range(4):
        try:
            viewer.model_registry.ListModels(registry_pb2.ListModelsRequest(), timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED and codes.count(grpc.StatusCode.OK) <= 2, codes

    back = config.SetConfig(config_pb2.SetConfigRequest(key="gateway.rate_limit_burst", value="", reason="quiet again"))
    config.SetConfig(config_pb2.SetConfigRequest(key="gateway.rate_limit_per_second", value=""))
    assert back.applied and (back.change.before, back.change.after) == ("2", "")
    for _ in range(4):
        viewer.model_registry.ListModels(registry_pb2.ListModelsRequest(), timeout=10)
    assert {name: entry["pid"] for name, entry in tools.read_state(mesh.home).items()} == started  # nothing was restarted

    history = api("viewer").live_config.ListConfigChanges(config_pb2.ListConfigChangesRequest(key="gateway.rate_limit_burst"))
    latest, earlier = history.changes[0], history.changes[1]
    assert (latest.who, latest.before, latest.after, latest.reason) == ("e2e-admin", "2", "", "quiet again")
    assert (earlier.before, earlier.after, earlier.reason) == ("", "2", "a noisy caller")
    assert latest.sequence > earlier.sequence and latest.time.seconds >= earlier.time.seconds


def test_the_body_limit_changes_live_for_grpc_and_rest_alike(mesh, api, config, tools) -> None:
    texts = [TEXT * 10] * 8  # about 3.5 kB of UTF-8
    request = pipeline_pb2.ClassifyBatchRequest(model=tools.MODEL, documents=[common_pb2.Document(text=text) for text in texts])
    viewer = api("viewer")
    viewer.pipeline.ClassifyBatch(request, timeout=30)
    assert config.SetConfig(config_pb2.SetConfigRequest(key="gateway.max_request_bytes", value="2048")).applied

    def refused() -> str:
        try:
            api("viewer", "e2e-fresh-connection").pipeline.ClassifyBatch(request, timeout=30)
        except grpc.RpcError as error:
            return error.details() if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else ""
        return ""

    # The listener's new filters are for new connections; open ones drain from the old.
    assert "limit of 2048 bytes" in tools.wait_for(refused, "the gateway to take the body limit of 2048 bytes")
    body = json.dumps({"model": tools.MODEL, "documents": [{"text": text} for text in texts]}, ensure_ascii=False).encode()
    host, port = mesh.address("gateway").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"authorization": f"Bearer {token(mesh, 'viewer', 'v')}", "content-type": "application/json"}
    connection.request("POST", "/v1/classify:batch", body, headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "limit of 2048 bytes" in answer["message"], answer

    assert config.SetConfig(config_pb2.SetConfigRequest(key="gateway.max_request_bytes", value="")).applied
    tools.wait_for(lambda: not refused(), "the gateway back at its own body limit")


def test_a_denied_subject_gets_403_saying_why_and_is_let_in_again_at_once(mesh, api, config, tools) -> None:
    mallory = token(mesh, "viewer", "mallory")
    assert rest(mesh, "GET", "/v1/models", mallory)[0] == 200
    added = config.AddDenyRule(config_pb2.AddDenyRuleRequest(subject="mallory", reason="scraping"))
    assert added.applied and added.rule.subject == "mallory" and added.change.after == "subject mallory"

    status, body = rest(mesh, "GET", "/v1/models", mallory)
    assert status == 403 and body["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert f"deny list blocks this caller (rule {added.rule.id})" in body["message"], body
    with pytest.raises(grpc.RpcError) as refused:
        api("viewer", "mallory").pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXT, model=tools.MODEL), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and "deny list" in refused.value.details()
    assert rest(mesh, "GET", "/v1/models", token(mesh, "viewer", "alice"))[0] == 200  # only mallory

    removed = config.RemoveDenyRule(config_pb2.RemoveDenyRuleRequest(id=added.rule.id, reason="settled"))
    assert removed.applied and removed.change.before == "subject mallory"
    assert rest(mesh, "GET", "/v1/models", mallory)[0] == 200  # at once: no wait
    keys = [c.key for c in config.ListConfigChanges(config_pb2.ListConfigChangesRequest(key="deny")).changes[:2]]
    assert keys == [f"deny.{added.rule.id}"] * 2


def test_a_denied_address_is_refused_everything_but_lifting_the_rule(mesh, api, config) -> None:
    added = config.AddDenyRule(config_pb2.AddDenyRuleRequest(address="127.0.0.1", reason="load test gone wrong"))
    assert added.applied and added.rule.address == "127.0.0.1/32"
    status, body = rest(mesh, "GET", "/openapi.json")
    assert status == 403 and f"rule {added.rule.id}" in body["message"]
    with pytest.raises(grpc.RpcError) as refused:
        config.GetConfig(config_pb2.GetConfigRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Lifting still works from the blocked address, with an admin token (and only with one).
    assert rest(mesh, "DELETE", f"/v1/config/deny/{added.rule.id}", token(mesh, "viewer", "v"))[0] == 403
    status, body = rest(mesh, "DELETE", f"/v1/config/deny/{added.rule.id}", token(mesh, "admin", "e2e-admin"))
    assert status == 200 and body["applied"] is True, body
    assert rest(mesh, "GET", "/openapi.json")[0] == 200


def test_a_services_log_level_and_the_batch_limit_change_while_it_runs(mesh, api, config, tools) -> None:
    viewer = api("viewer")
    log = mesh.log("segmenter")

    def segment() -> None:  # a unary call: the segmenter logs it when it ends, at INFO
        viewer.segmenter.Segment(segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id="live", text=TEXT)]), timeout=10)

    config.SetConfig(config_pb2.SetConfigRequest(key="log_level.segmenter", value="ERROR"))
    tools.wait_for(lambda: '"to": "ERROR"' in log.read_text(), "the segmenter to take log level ERROR")
    quiet_from = log.stat().st_size
    segment()
    config.SetConfig(config_pb2.SetConfigRequest(key="log_level.segmenter", value=""))
    tools.wait_for(lambda: '"to": "INFO"' in log.read_text()[quiet_from:], "the segmenter back at its own level")
    quiet, _ = log.read_text()[quiet_from:].split('"to": "INFO"')
    assert '"message": "handled"' not in quiet  # the call while at ERROR left no INFO line
    segment()
    tools.wait_for(
        lambda: '"message": "handled"' in log.read_text()[quiet_from:].split('"to": "INFO"')[1], "the segmenter logging its calls again"
    )

    config.SetConfig(config_pb2.SetConfigRequest(key="max_batch_documents", value="2"))
    request = pipeline_pb2.ClassifyBatchRequest(model=tools.MODEL, documents=[common_pb2.Document(id=str(i), text=TEXT) for i in range(3)])

    def refused() -> str:
        try:
            viewer.pipeline.ClassifyBatch(request, timeout=10)
        except grpc.RpcError as error:
            return error.details() if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else ""
        return ""

    assert "over the limit of 2" in tools.wait_for(refused, "the pipeline to take the batch limit of 2")
    config.SetConfig(config_pb2.SetConfigRequest(key="max_batch_documents", value=""))
    tools.wait_for(lambda: not refused(), "the pipeline back at its own batch limit")


def test_an_experiments_weights_change_through_the_configuration_and_are_recorded(api, config, second_version) -> None:
    arms = [registry_pb2.Arm(name="a", target="v1", weight=1.0), registry_pb2.Arm(name="b", target="v2", weight=1.0)]
    api("admin").experiments.CreateExperiment(
        registry_pb2.CreateExperimentRequest(name="e2e-live-weights", model=second_version.name, arms=arms)
    )
    try:
        answer = config.SetConfig(
            config_pb2.SetConfigRequest(key="experiments.e2e-live-weights", value="a=0.9,b=0.1", reason="ramp down b")
        )
        assert (answer.change.before, answer.change.after, answer.change.who) == ("a=1,b=1", "a=0.9,b=0.1", "e2e-admin")
        experiment = api("viewer").experiments.GetExperiment(registry_pb2.GetExperimentRequest(name="e2e-live-weights")).experiment
        assert {arm.name: arm.weight for arm in experiment.arms} == {"a": 0.9, "b": 0.1}
        with pytest.raises(grpc.RpcError) as unknown:
            config.SetConfig(config_pb2.SetConfigRequest(key="experiments.e2e-live-weights", value="c=1"))
        assert unknown.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), unknown.value.details()
        history = config.ListConfigChanges(config_pb2.ListConfigChangesRequest(key="experiments")).changes
        assert [(c.key, c.after, c.reason) for c in history[:1]] == [("experiments.e2e-live-weights", "a=0.9,b=0.1", "ramp down b")]
    finally:
        api("admin").experiments.EndExperiment(registry_pb2.EndExperimentRequest(name="e2e-live-weights", reason="the test is over"))


def test_viewers_read_the_configuration_and_only_admins_change_it(api) -> None:
    viewer = api("viewer").live_config
    assert {s.key for s in viewer.GetConfig(config_pb2.GetConfigRequest()).settings} >= {"log_level", "gateway.rate_limit_burst"}
    for forbidden in (
        lambda: viewer.SetConfig(config_pb2.SetConfigRequest(key="log_level", value="DEBUG")),
        lambda: viewer.ListDenyRules(config_pb2.ListDenyRulesRequest()),  # it names callers
    ):
        with pytest.raises(grpc.RpcError) as refused:
            forbidden()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as bad:
        api("admin").live_config.SetConfig(config_pb2.SetConfigRequest(key="log_level", value="LOUD"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "DEBUG, INFO, WARNING, ERROR" in bad.value.details()


def test_scenarios_are_refused_on_a_mesh_without_sidecars(config) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        config.SetConfig(config_pb2.SetConfigRequest(key="mesh.scenarios", value="fault-abort-classifier"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "without sidecars" in refused.value.details()
    assert not config.ListConfigChanges(config_pb2.ListConfigChangesRequest(key="mesh")).changes


def test_a_restarted_gateway_comes_back_on_its_port_with_the_live_configuration(mesh, config, tools) -> None:
    added = config.AddDenyRule(config_pb2.AddDenyRuleRequest(subject="mallory-again", reason="still at it"))
    assert added.applied
    before = tools.read_state(mesh.home)["gateway"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> dict | None:
        now = tools.read_state(mesh.home).get("gateway", {})
        return now if now.get("pid") not in (None, before["pid"]) and tools.health_status(mesh.address("pipeline")) == "SERVING" else None

    after = tools.wait_for(back, "the gateway started again")
    assert after["address"] == before["address"] and after["restarts"] == before["restarts"] + 1

    def answering() -> bool:
        try:
            return rest(mesh, "GET", "/v1/models", token(mesh, "viewer", "v"))[0] == 200
        except OSError:  # not listening yet
            return False

    tools.wait_for(answering, "the gateway answering again")
    assert rest(mesh, "GET", "/v1/models", token(mesh, "viewer", "mallory-again"))[0] == 403
    mesh.state.update(tools.read_state(mesh.home))  # the session's record of its processes, for the tests after this one
