"""Experiments end to end on the session mesh (real processes, through its gateway): two
arms between the session model's v1 (its "production" alias) and v2, under load from
many concurrent clients whose routing keys never change arm while the weights change
and while the registry is killed; feedback by request id that moves the online accuracy
and the confusion matrix, and Thompson weights; ending with a promotion."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from fenlei.local.mesh import LocalMesh
from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc, registry_pb2

ARMS = {"a": "v1", "b": "v2"}
TEXTS = ["质量很好，物流也快，非常满意", "太差了，用了两天就坏了", "国务院召开常务会议研究部署经济工作", "包装破损，发错了货"]
CLIENTS = 8  # threads calling Classify at once, each with keys of its own
KEYS_PER_CLIENT = 6


def create(api, name: str, model: str, allocation=registry_pb2.ALLOCATION_FIXED, weights=(1.0, 1.0)) -> registry_pb2.Experiment:
    arms = [registry_pb2.Arm(name="a", target="production", weight=weights[0]), registry_pb2.Arm(name="b", target="v2", weight=weights[1])]
    request = registry_pb2.CreateExperimentRequest(name=name, model=model, arms=arms, allocation=allocation, description="e2e")
    return api("admin").experiments.CreateExperiment(request).experiment


def get(api, name: str) -> registry_pb2.Experiment:
    return api("viewer").experiments.GetExperiment(registry_pb2.GetExperimentRequest(name=name)).experiment


def end(api, name: str, **fields) -> registry_pb2.EndExperimentResponse:
    return api("admin").experiments.EndExperiment(registry_pb2.EndExperimentRequest(name=name, **fields))


@pytest.fixture
def experiment(api, second_version, tools):
    """experiment(name, **create options): an experiment on the session model, running once
    the pipeline routes by it; ended (if still running) when the test ends, so the model
    answers with its production alias again."""
    started: list[str] = []

    def start(name: str, **options) -> registry_pb2.Experiment:
        created = create(api, name, second_version.name, **options)
        started.append(name)
        tools.wait_for(
            lambda: api("viewer").classify(TEXTS[0], model=second_version.name).experiment == name, f"the pipeline to route by {name}"
        )
        return created

    yield start
    for name in started:
        if get(api, name).running:
            end(api, name, reason="the test is over")


def test_sticky_keys_keep_their_arm_under_load_while_weights_change_and_the_registry_restarts(
    mesh, api, second_version, experiment, tools
) -> None:
    model = second_version.name
    experiment("e2e-sticky")
    viewer = api("viewer")
    answers: dict[str, list[tuple[str, str]]] = defaultdict(list)
    request_ids: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        keys = [f"user-{number}-{k}" for k in range(KEYS_PER_CLIENT)]
        turn = 0
        while not stop.is_set():
            key = keys[turn % len(keys)]
            try:
                answer = viewer.classify(TEXTS[turn % len(TEXTS)], model=model, routing_key=key)
            except grpc.RpcError as error:
                with lock:
                    failures.append(error)
                return
            with lock:
                answers[key].append((answer.arm, answer.version))
                request_ids.append(answer.request_id)
            turn += 1

    def answered() -> int:
        with lock:
            return len(request_ids)

    def under_load(what: str, more: int = 150) -> None:
        """Waits until the clients got `more` answers (or one failed)."""
        target = answered() + more
        tools.wait_for(lambda: failures or answered() >= target, f"{more} answers {what}")
        assert not failures, failures[0]

    def everyone_on(arm: str) -> None:
        """Waits until the pipeline routes callers without a key by the new weights."""
        tools.wait_for(lambda: all(viewer.classify(TEXTS[1], model=model).arm == arm for _ in range(6)), f"the traffic to move to {arm}")

    admin = api("admin")
    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, number) for number in range(CLIENTS)]
        try:
            under_load("at 1:1")
            for weights, everyone in (({"a": 0.0}, "b"), ({"a": 9.0, "b": 1.0}, None), ({"a": 1.0, "b": 0.0}, "a")):
                admin.experiments.SetWeights(registry_pb2.SetWeightsRequest(name="e2e-sticky", weights=weights))
                if everyone:
                    everyone_on(everyone)
                under_load(f"at {weights}")
            # the registry dies (kill -9) and comes back: the pipeline goes on answering,
            # every key it knows on its arm, and routing from its own view of the weights
            registry = tools.read_state(mesh.home)["registry"]
            os.kill(registry["pid"], signal.SIGKILL)
            under_load("while the registry is down")
            tools.wait_for(
                lambda: (
                    (state := tools.read_state(mesh.home)["registry"])["restarts"] > registry["restarts"]
                    and tools.health_status(state["address"]) == "SERVING"
                ),
                "the supervisor to bring the registry back",
            )
            under_load("once the registry is back")
        finally:
            stop.set()
            for future in running:
                future.result()
    assert not failures, failures[:3]
    assert len(request_ids) == len(set(request_ids)) >= 900  # every answer has an id of its own
    assert len(answers) == CLIENTS * KEYS_PER_CLIENT
    arms_of = {key: set(seen) for key, seen in answers.items()}
    changed = {key: Counter(seen) for key, seen in answers.items() if len(arms_of[key]) > 1}
    assert not changed, f"keys that changed arm: {changed}"
    assigned = Counter(next(iter(seen))[0] for seen in arms_of.values())
    assert set(assigned) == {"a", "b"}, assigned  # assigned at 1:1, so both arms have keys
    assert all(next(iter(seen)) in ARMS.items() for seen in arms_of.values())  # each arm answered with its version
    # what the pipeline serves once it has reconnected to the registry is recorded again
    # (what it served before that was dropped, and counted)
    tools.wait_for(lambda: recorded_soon(api, viewer.classify(TEXTS[0], model=model, routing_key="user-0-0")), "records to resume")


def recorded_soon(api, answer) -> bool:
    """Whether feedback on the answer is taken within about a second (the pipeline records in the background)."""
    for _ in range(20):
        try:
            request = registry_pb2.SendFeedbackRequest(request_id=answer.request_id, label=answer.labels[0].label)
            return api("viewer").experiments.SendFeedback(request).correct
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            time.sleep(0.05)
    return False


def test_a_second_pipeline_replica_keeps_keys_where_the_first_put_them(mesh, api, second_version, experiment, dedicated_pipeline) -> None:
    model = second_version.name
    experiment("e2e-replicas")
    viewer = api("viewer")
    keys = [f"replica-user-{i}" for i in range(20)]
    through_gateway = {key: viewer.classify(TEXTS[0], model=model, routing_key=key).arm for key in keys}
    assert set(through_gateway.values()) == {"a", "b"}
    api("admin").experiments.SetWeights(registry_pb2.SetWeightsRequest(name="e2e-replicas", weights={"b": 0.0}))
    other = dedicated_pipeline(FENLEI_PIPELINE_REGISTRY_ADDRESS=mesh.address("registry"))
    with grpc.insecure_channel(other.address) as channel:
        stub = pipeline_pb2_grpc.PipelineStub(channel)
        elsewhere = {
            key: stub.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model=model, routing_key=key), timeout=30).arm for key in keys
        }
    assert elsewhere == through_gateway


def held_out(mesh, count: int) -> list[tuple[str, str]]:
    """(text, true label) of the held-out documents, which neither version trained on."""
    rows = [line.split("\t") for line in mesh.test_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(text, mesh.labels[int(label)]) for text, label in rows[:count]]


def feedback_when_recorded(api, tools, request_id: str, label: str, document_id: str = "") -> registry_pb2.SendFeedbackResponse:
    """SendFeedback through the gateway, once the pipeline's background record reached the registry."""

    def send():
        try:
            return api("viewer").experiments.SendFeedback(
                registry_pb2.SendFeedbackRequest(request_id=request_id, document_id=document_id, label=label)
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    return tools.wait_for(send, f"the prediction of {request_id} to be recorded")


def test_feedback_moves_the_online_accuracy_and_confusion_matrix_of_each_arm(mesh, api, second_version, experiment, tools) -> None:
    model = second_version.name
    experiment("e2e-feedback")
    viewer = api("viewer")
    truth_of = held_out(mesh, 40)
    expected: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    answers = [viewer.classify(text, model=model, metadata=[("x-fenlei-arm", "ab"[i % 2])]) for i, (text, _) in enumerate(truth_of)]
    for index, (answer, (_, truth)) in enumerate(zip(answers, truth_of)):
        arm = "ab"[index % 2]
        assert (answer.experiment, answer.arm, answer.version) == ("e2e-feedback", arm, ARMS[arm])
        taken = feedback_when_recorded(api, tools, answer.request_id, truth)
        predicted = answer.labels[0].label
        assert (taken.experiment, taken.arm, taken.correct) == ("e2e-feedback", arm, predicted == truth)
        expected[arm][(truth, predicted)] += 1
    # a batch: feedback names the document within the request
    batch = viewer.classify_batch([text for text, _ in truth_of[:4]], model=model, metadata=[("x-fenlei-arm", "a")])
    for prediction, (_, truth) in zip(batch.predictions, truth_of[:4]):
        taken = feedback_when_recorded(api, tools, batch.request_id, truth, prediction.id)
        assert taken.arm == "a" and taken.correct == (prediction.labels[0].label == truth)
        expected["a"][(truth, prediction.labels[0].label)] += 1
    scores = {score.arm: score for score in get(api, "e2e-feedback").scores}
    for arm, counts in expected.items():
        score = scores[arm]
        correct = sum(n for (truth, predicted), n in counts.items() if truth == predicted)
        assert (score.feedback, score.correct) == (sum(counts.values()), correct)
        assert score.accuracy == pytest.approx(correct / sum(counts.values()))
        confusion = {(truth, predicted): n for truth, row in score.confusion.items() for predicted, n in row.counts.items()}
        assert confusion == dict(counts)
    assert 0.5 < scores["a"].accuracy <= 1.0  # v1 is a real model: feedback on held-out text says so
    # the same over REST, as a browser or curl sees it: the arm header, the answer's fields, the scores
    answer = rest(mesh, "POST", "/v1/classify", {"text": TEXTS[0], "model": model}, {"x-fenlei-arm": "b"})
    assert (answer["experiment"], answer["arm"], answer["version"]) == ("e2e-feedback", "b", "v2") and answer["requestId"]
    shown = rest(mesh, "GET", "/v1/experiments/e2e-feedback")["experiment"]
    assert {s["arm"]: s["feedback"] for s in shown["scores"]} == {"a": str(scores["a"].feedback), "b": str(scores["b"].feedback)}


def rest(mesh, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None) -> dict:
    """A JSON call through the gateway with a viewer's token; fails unless it answers 200."""
    token = LocalMesh(mesh.home).authority().mint("viewer", ttl_seconds=600)
    host, port = mesh.address("gateway").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"authorization": f"Bearer {token}", **(headers or {})})
        reply = connection.getresponse()
        answer = json.loads(reply.read())
    finally:
        connection.close()
    assert reply.status == 200, answer
    return answer


def test_thompson_sampling_moves_traffic_to_the_arm_feedback_favours_and_ending_promotes_it(
    mesh, api, second_version, experiment, tools
) -> None:
    model = second_version.name
    experiment("e2e-thompson", allocation=registry_pb2.ALLOCATION_THOMPSON)
    viewer = api("viewer")
    # the callers agree with every answer of arm b and with none of arm a's
    answers = [viewer.classify(TEXTS[i % len(TEXTS)], model=model, metadata=[("x-fenlei-arm", "ab"[i % 2])]) for i in range(48)]
    for answer in answers:
        arm = answer.arm
        predicted = answer.labels[0].label
        disagreed = next(label for label in mesh.labels if label != predicted)
        feedback_when_recorded(api, tools, answer.request_id, predicted if arm == "b" else disagreed)

    def moved() -> dict[str, float] | None:
        weights = {arm.name: arm.weight for arm in get(api, "e2e-thompson").arms}
        return weights if weights["a"] < 0.06 else None  # once all the feedback is counted, a is at its floor

    weights = tools.wait_for(moved, "Thompson sampling to move the weights to arm b")
    assert weights["b"] > 0.9 and weights["a"] >= 0.05  # never starved: the floor
    tools.wait_for(lambda: sum(viewer.classify(TEXTS[0], model=model).arm == "b" for _ in range(20)) >= 16, "the traffic to follow")
    scores = {score.arm: score for score in get(api, "e2e-thompson").scores}
    assert (scores["a"].accuracy, scores["b"].accuracy) == (0.0, 1.0)
    ended = end(api, "e2e-thompson", promote_alias="e2e-winner", reason="b won")
    assert (ended.experiment.running, ended.experiment.leader) == (False, "b")
    assert (ended.move.alias, ended.move.to_version, ended.move.reason, ended.move.moved_by) == ("e2e-winner", "v2", "b won", "e2e-admin")
    history = api("viewer").model_registry.GetHistory(registry_pb2.GetHistoryRequest(name=model, alias="e2e-winner")).moves
    assert history[-1] == ended.move
    answer = tools.wait_for(lambda: (a := viewer.classify(TEXTS[0], model=model)).experiment == "" and a, "the experiment to stop routing")
    assert answer.version == second_version.production  # requests naming no version: production again
    assert viewer.classify(TEXTS[0], model=model, version="e2e-winner").version == "v2"
