"""A mesh scenario through the live configuration, on the session mesh with sidecars: set,
it is in the sidecars at once (the classifier's injects its faults); unset, it is gone; both
changes are in the history with who made them."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from fenlei.client import Client
from fenlei.local.mesh import LocalMesh
from fenlei.v1 import classifier_pb2, common_pb2, config_pb2

pytestmark = pytest.mark.xdist_group("sidecar_mesh")


def aborts_injected(admin: str) -> int:
    text = urllib.request.urlopen(f"http://{admin}/stats?filter=fault.aborts_injected", timeout=5).read().decode()
    return sum(int(value) for name, _, value in (line.partition(": ") for line in text.splitlines()) if value.strip().isdigit())


def test_a_scenario_set_through_the_configuration_reaches_the_sidecars_and_leaves_with_its_unset(sidecar_mesh) -> None:
    mesh = LocalMesh(sidecar_mesh.home)
    token = mesh.authority().mint("admin", ttl_seconds=600, subject="e2e-operator")
    classifier_sidecar = sidecar_mesh.processes()["classifier-sidecar"]["admin"]
    request = classifier_pb2.PredictRequest(vectors=[common_pb2.FeatureVector(id="a")], model=common_pb2.ModelRef(name="reviews"))
    with Client(mesh.address("gateway"), token=token, timeout=30) as client:

        def predict_many() -> None:
            for _ in range(20):
                try:
                    client.classifier.Predict(request, timeout=10)
                except grpc.RpcError as error:  # the gateway's retries make most calls pass; some may not
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()

        predict_many()
        assert aborts_injected(classifier_sidecar) == 0
        set_ = client.live_config.SetConfig(
            config_pb2.SetConfigRequest(key="mesh.scenarios", value="fault-abort-classifier", reason="chaos")
        )
        try:
            assert set_.applied and set_.change.after == "fault-abort-classifier"
            predict_many()
            injected = aborts_injected(classifier_sidecar)
            assert injected > 0  # half of the Predict calls, by the scenario
        finally:
            unset = client.live_config.SetConfig(config_pb2.SetConfigRequest(key="mesh.scenarios", value="", reason="calm again"))
        assert unset.applied and unset.change.before == "fault-abort-classifier"
        predict_many()
        assert aborts_injected(classifier_sidecar) == injected  # no more

        history = client.live_config.ListConfigChanges(config_pb2.ListConfigChangesRequest(key="mesh")).changes
        assert [(c.after, c.who, c.reason) for c in history[:2]] == [
            ("", "e2e-operator", "calm again"),
            ("fault-abort-classifier", "e2e-operator", "chaos"),
        ]
