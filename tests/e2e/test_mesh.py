"""The local mesh with real Envoy sidecars: mutual TLS with SPIFFE identities, and the
retries, timeouts, faults, circuit breakers, outlier detection and traffic splits of
mesh/istio/ applied by the proxies. One mesh for the module: two classifier replicas and
a v2 pipeline next to v1. Every test that applies policy resets it afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from fenlei import services
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.local.state import Files
from fenlei.sidecar.ca import CertificateAuthority
from fenlei.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2, pipeline_pb2, pipeline_pb2_grpc

pytestmark = pytest.mark.xdist_group("own_sidecar_mesh")  # meshes with sidecars of its own: one such module at a time (inotify)

REPO = Path(__file__).resolve().parents[2]
ISTIO = Path(os.environ.get("FENLEI_MESH_POLICY", REPO / "mesh" / "istio"))  # what the mesh itself reads
TOLERANCE = 0.5  # seconds a timeout may overshoot on a busy 2-core machine


@pytest.fixture(scope="module")
def canary_mesh(tmp_path_factory: pytest.TempPathFactory, mesh, tools) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("mesh-home")
    tools.copy_models(mesh, home)  # the session mesh's model, without training it again
    watchdog = tools.start_watchdog(home)
    try:
        up = tools.cli(home, "up", "--replicas", "classifier=2", "--canary", "pipeline", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "mutual TLS" in up.stdout
        local = Mesh(home)
        token = local.authority().mint("viewer")
        yield SimpleNamespace(mesh=local, home=home, metadata=[("authorization", f"Bearer {token}")])
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()


@pytest.fixture
def policy(canary_mesh, tmp_path) -> Iterator[SimpleNamespace]:
    """Applies scenario files (from mesh/istio, or written by the test); resets afterwards."""

    def apply(*files: Path) -> None:
        canary_mesh.mesh.apply(list(files))  # returns once every proxy has loaded it

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    try:
        yield SimpleNamespace(apply=apply, write=write)
    finally:
        canary_mesh.mesh.reset_policy()


def stats(admin: str, prefix: str) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://{admin}/stats?filter={prefix}", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            values[name] = int(value)
    return values


def admin(canary_mesh, name: str) -> str:
    return canary_mesh.mesh.processes()[name].admin


def gateway_channel(canary_mesh, user_agent: str = "") -> grpc.Channel:
    options = [("grpc.primary_user_agent", user_agent)] if user_agent else []
    return grpc.insecure_channel(canary_mesh.mesh.address("gateway"), options=options)


def predict(stub, canary_mesh, timeout: float = 10):
    request = classifier_pb2.PredictRequest(vectors=[common_pb2.FeatureVector(id="a")], model=common_pb2.ModelRef(name="reviews"))
    return stub.Predict(request, metadata=canary_mesh.metadata, timeout=timeout)


# ---------------------------------------------------------------- identity


def segment_stream(channel: grpc.Channel):
    from fenlei.v1 import segmenter_pb2, segmenter_pb2_grpc

    request = segmenter_pb2.SegmentStreamRequest(documents=[common_pb2.Document(id="a", text="北京大学")])
    return [list(r.documents[0].tokens) for r in segmenter_pb2_grpc.SegmenterStub(channel).SegmentStream(iter([request]), timeout=10)]


def mtls_channel(address: str, ca_root: bytes, cert: Path, key: Path) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_root, private_key=key.read_bytes(), certificate_chain=cert.read_bytes())
    return grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "segmenter")])


def test_sidecars_speak_only_mutual_tls_and_authorise_by_identity(canary_mesh, tmp_path) -> None:
    mesh = canary_mesh.mesh
    inbound = mesh.processes()["segmenter-sidecar"].address
    ca = mesh.control.ca
    root = ca.root.read_bytes()

    with pytest.raises(grpc.RpcError) as plaintext:
        segment_stream(grpc.insecure_channel(inbound))
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE

    pipeline = ca.issue("pipeline")  # the pipeline may stream to the segmenter
    assert segment_stream(mtls_channel(inbound, root, pipeline.cert, pipeline.key)) == [["北京大学"]]

    stranger = CertificateAuthority(tmp_path / "another-ca").issue("pipeline")  # same name, foreign CA
    with pytest.raises(grpc.RpcError) as foreign:
        segment_stream(mtls_channel(inbound, root, stranger.cert, stranger.key))
    assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE

    catalog = ca.issue("catalog")  # a real identity of this mesh that no policy lets call the segmenter
    with pytest.raises(grpc.RpcError) as denied:
        segment_stream(mtls_channel(inbound, root, catalog.cert, catalog.key))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert stats(admin(canary_mesh, "segmenter-sidecar"), "http.inbound.rbac")["http.inbound.rbac.denied"] >= 1


# ---------------------------------------------------------------- start order


def test_apps_that_call_nobody_start_with_the_sidecars_and_callers_once_their_callees_serve(canary_mesh) -> None:
    """`fenlei up` starts what it can at once: an app that calls nobody does not wait for the
    sidecars, and a caller (the jobs service calls the datasets service as it starts) waits
    only until every instance of the services it calls serves (writes its address file)."""
    state = Files(canary_mesh.home).read_state()
    assert state is not None
    first = {name: r for name, r in state.processes.items() if r.identity and r.restarts == 0 and r.service != "collector"}
    apps = [r for r in first.values() if r.kind == "app"]
    sidecars = [r for r in first.values() if r.kind == "proxy"]
    assert {r.service for r in apps} == {w.name for w in services.WORKLOADS} and len(sidecars) == len(apps)
    last_sidecar = max(r.identity.start_ticks for r in sidecars if r.identity)
    for app in (r for r in apps if not services.BY_NAME[r.service].calls):
        assert app.identity and app.identity.start_ticks <= last_sidecar, app.name

    ticks = os.sysconf("SC_CLK_TCK")
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])  # the start ticks count from here
    slack = 3 / ticks  # both clocks count in ticks: a start is known to within one, the boot to within two
    for caller in (r for r in apps if services.BY_NAME[r.service].calls):
        assert caller.identity
        started = boot + caller.identity.start_ticks / ticks
        for callee in (r for r in apps if r.service in services.BY_NAME[caller.service].calls):
            served = (canary_mesh.home / "run" / f"{callee.name}.json").stat().st_mtime
            assert started + slack >= served, (caller.name, callee.name, served - started)


def test_a_mesh_that_fitted_nothing_has_not_loaded_scikit_learn(canary_mesh) -> None:
    """scikit-learn fits models and only that: the classifier loads it for its first fit and
    the jobs service for its first job, not as they start (a second of CPU each)."""
    apps = {name: r for name, r in canary_mesh.mesh.processes().items() if r.kind == "app"}
    assert {"classifier", "classifier-v1-1", "jobs"} <= set(apps)
    for name, record in apps.items():
        assert "/sklearn/" not in Path(f"/proc/{record.pid}/maps").read_text(), f"{name} has loaded scikit-learn"


# ---------------------------------------------------------------- resilience


def test_fault_abort_on_half_the_calls_is_hidden_by_retries(canary_mesh, policy) -> None:
    policy.apply(ISTIO / "fault-abort-classifier.yaml")
    gateway = admin(canary_mesh, "gateway")
    retries_before = sum(v for k, v in stats(gateway, "cluster.classifier").items() if k.endswith(".upstream_rq_retry"))
    stub = classifier_pb2_grpc.ClassifierStub(gateway_channel(canary_mesh))

    def call(_: int) -> bool:
        try:
            predict(stub, canary_mesh)
            return True
        except grpc.RpcError:
            return False

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(1000)))
    assert sum(outcomes) >= 990, f"{1000 - sum(outcomes)} of 1000 calls failed"
    retries = sum(v for k, v in stats(gateway, "cluster.classifier").items() if k.endswith(".upstream_rq_retry")) - retries_before
    injected = sum(
        stats(admin(canary_mesh, name), "http.inbound.fault")["http.inbound.fault.aborts_injected"]
        for name in ("classifier-sidecar", "classifier-v1-1-sidecar")
    )
    assert retries >= 300 and injected >= 300, (retries, injected)  # about one in two calls was retried


def test_fault_delay_beyond_the_timeout_gives_the_timeout_on_time(canary_mesh, policy) -> None:
    slow = policy.write(
        "slow-classifier.yaml",
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: classifier, namespace: fenlei}
spec:
  hosts: [classifier]
  http:
  - name: slow
    fault:
      delay: {fixedDelay: 3s, percentage: {value: 100}}
    route:
    - destination: {host: classifier, subset: v1}
    timeout: 1s
    # a per-try timeout is a gateway error (504) to Envoy: retried only when asked for
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: "gateway-error,unavailable,cancelled"}
""",
    )
    policy.apply(slow)
    gateway = admin(canary_mesh, "gateway")
    before = stats(gateway, "cluster.classifier")
    stub = classifier_pb2_grpc.ClassifierStub(gateway_channel(canary_mesh))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failure:
        predict(stub, canary_mesh, timeout=30)
    elapsed = time.monotonic() - started
    assert failure.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE), failure.value
    assert 0.9 <= elapsed <= 1.0 + TOLERANCE, elapsed
    after = stats(gateway, "cluster.classifier")
    per_try = sum(v - before.get(k, 0) for k, v in after.items() if k.endswith("upstream_rq_per_try_timeout"))
    assert per_try >= 2, "the per-try timeout should have fired and been retried"

    # a caller's own deadline, shorter than the route's, wins
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as early:
        predict(stub, canary_mesh, timeout=0.4)
    assert early.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started <= 0.4 + TOLERANCE


def test_circuit_breaker_fails_the_excess_fast(canary_mesh, policy) -> None:
    tight = policy.write(
        "tight-classifier.yaml",
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: classifier, namespace: fenlei}
spec:
  host: classifier
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1, maxRetries: 0}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: classifier, namespace: fenlei}
spec:
  hosts: [classifier]
  http:
  - name: slow
    fault:
      delay: {fixedDelay: 500ms, percentage: {value: 100}}
    route:
    - destination: {host: classifier, subset: v1}
    timeout: 10s
    retries: {attempts: 0}
""",
    )
    policy.apply(tight)
    gateway = admin(canary_mesh, "gateway")
    stub = classifier_pb2_grpc.ClassifierStub(gateway_channel(canary_mesh))

    def call(_: int) -> tuple[str, float]:
        started = time.monotonic()
        try:
            predict(stub, canary_mesh, timeout=20)
            return "OK", time.monotonic() - started
        except grpc.RpcError as error:
            return error.code().name, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert time.monotonic() - started < 10, "nothing may hang behind the breaker"
    rejected = [elapsed for code, elapsed in outcomes if code == "UNAVAILABLE"]
    assert len(rejected) >= 6 and any(code == "OK" for code, _ in outcomes), outcomes
    assert min(rejected) < 0.4, "excess calls fail fast, without waiting for the slow ones"
    counters = stats(gateway, "cluster.classifier")
    overflow = sum(v for k, v in counters.items() if k.endswith("overflow"))
    assert overflow >= len(rejected), {k: v for k, v in counters.items() if v and ("overflow" in k or "_open" in k)}


# ---------------------------------------------------------------- traffic splits


def pipeline_instance(canary_mesh, channel: grpc.Channel) -> str:
    stub = pipeline_pb2_grpc.PipelineStub(channel)
    _, call = stub.Classify.with_call(
        pipeline_pb2.ClassifyRequest(text="姚明率领火箭队击败湖人", model="reviews"), metadata=canary_mesh.metadata, timeout=10
    )
    return dict(call.initial_metadata())["x-fenlei-instance"]


def test_iphone_user_agents_go_to_v2(canary_mesh, policy) -> None:
    assert {pipeline_instance(canary_mesh, gateway_channel(canary_mesh)) for _ in range(20)} == {"pipeline-v1-0"}
    policy.apply(ISTIO / "virtual-service-pipeline-iphone-v2.yaml")
    iphone = gateway_channel(canary_mesh, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)")
    other = gateway_channel(canary_mesh, "Mozilla/5.0 (X11; Linux x86_64)")
    assert {pipeline_instance(canary_mesh, iphone) for _ in range(20)} == {"pipeline-v2-0"}
    assert {pipeline_instance(canary_mesh, other) for _ in range(20)} == {"pipeline-v1-0"}


def test_canary_split_90_10(canary_mesh, policy) -> None:
    policy.apply(ISTIO / "virtual-service-pipeline-90-10.yaml")
    channel = gateway_channel(canary_mesh)
    with ThreadPoolExecutor(8) as pool:
        landed = list(pool.map(lambda _: pipeline_instance(canary_mesh, channel), range(2000)))
    share = landed.count("pipeline-v2-0") / len(landed)
    # 2,000 draws at p = 0.1: the standard deviation is 0.0067; allow five of them
    assert abs(share - 0.10) < 0.034, share
    assert set(landed) == {"pipeline-v1-0", "pipeline-v2-0"}


# ---------------------------------------------------------------- replicas


def test_a_killed_replica_fails_no_request_and_is_started_again(canary_mesh, tools) -> None:
    mesh = canary_mesh.mesh
    victim = "classifier-v1-1"
    stub = pipeline_pb2_grpc.PipelineStub(gateway_channel(canary_mesh))
    failures: list[str] = []
    calls = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal calls
        while not stop.is_set():
            try:
                stub.Classify(
                    pipeline_pb2.ClassifyRequest(text=f"沪指放量大涨 券商股集体涨停 {calls}", model="reviews"),
                    metadata=canary_mesh.metadata,
                    timeout=10,
                )
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
            calls += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        tools.wait_for(lambda: calls >= 50, "calls to flow before the kill")
        os.kill(mesh.processes()[victim].pid, signal.SIGKILL)
        # the other replica answers while the supervisor starts this one again (retries
        # go to another host; a replica dead for longer is ejected by outlier detection)
        tools.wait_for(lambda: mesh.status()[victim]["restarts"] == 1, "the supervisor to notice the kill")
        after_kill = calls
        tools.wait_for(lambda: calls >= after_kill + 50, "calls to flow after the kill")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not failures, f"{len(failures)} of {calls} calls failed: {failures[:3]}"

    # the supervisor starts it again by itself, and says so
    tools.wait_for(lambda: mesh.status()[victim]["status"] == "SERVING", "the supervisor to start the killed replica again", timeout=60)
    report = mesh.status()[victim]
    assert report["restarts"] == 1 and report["last_exit"].startswith("signal SIGKILL"), report
    inbound = admin(canary_mesh, f"{victim}-sidecar")
    served_before = stats(inbound, "http.inbound.downstream_rq_completed").get("http.inbound.downstream_rq_completed", 0)

    def serves_again() -> bool:
        for i in range(8):
            request = pipeline_pb2.ClassifyRequest(text=f"教育部公布高考招生新政策 {i}", model="reviews")
            stub.Classify(request, metadata=canary_mesh.metadata, timeout=10)
        return stats(inbound, "http.inbound.downstream_rq_completed").get("http.inbound.downstream_rq_completed", 0) > served_before

    tools.wait_for(serves_again, "the restarted replica to take traffic again", timeout=60, interval=0.5)


def test_the_sidecar_of_an_instance_that_does_not_answer_stops_saying_serving(canary_mesh, tools) -> None:
    mesh = canary_mesh.mesh
    app = mesh.processes()["classifier-v1-1"]
    os.kill(app.pid, signal.SIGSTOP)  # alive, so nothing restarts it, but it answers nothing
    try:
        tools.wait_for(
            lambda: mesh.status()["classifier-v1-1-sidecar"]["status"].startswith("NOT_SERVING"), "the sidecar to report its app"
        )
        status = tools.cli(canary_mesh.home, "status", timeout=60)
        assert status.returncode == 1 and "its app classifier-v1-1" in status.stdout, status.stdout
    finally:
        os.kill(app.pid, signal.SIGCONT)
    tools.wait_for(lambda: mesh.status()["classifier-v1-1-sidecar"]["status"] == "SERVING", "the sidecar to say SERVING again")


def test_a_running_mesh_scales_up_and_down(canary_mesh, tools) -> None:
    mesh = canary_mesh.mesh
    up = tools.cli(canary_mesh.home, "up", "--replicas", "segmenter=2", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    status = mesh.status()
    assert status["segmenter-v1-1"]["status"] == status["segmenter-v1-1-sidecar"]["status"] == "SERVING", status
    assert "classifier-v1-1" in status and "pipeline-v2-0" in status  # the other services keep their instances
    inbound = admin(canary_mesh, "segmenter-v1-1-sidecar")
    stub = pipeline_pb2_grpc.PipelineStub(gateway_channel(canary_mesh))

    def new_replica_serves() -> bool:
        for i in range(8):
            stub.Classify(pipeline_pb2.ClassifyRequest(text=f"物流很快 {i}", model=tools.MODEL), metadata=canary_mesh.metadata, timeout=10)
        return stats(inbound, "http.inbound.downstream_rq_completed").get("http.inbound.downstream_rq_completed", 0) > 0

    tools.wait_for(new_replica_serves, "the new segmenter replica to take traffic", timeout=60, interval=0.5)
    pids = [status["segmenter-v1-1"]["pid"], status["segmenter-v1-1-sidecar"]["pid"]]
    down = tools.cli(canary_mesh.home, "up", "--replicas", "segmenter=1", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "segmenter-v1-1" not in mesh.status() and not any(tools.alive(pid) for pid in pids)
    stub.Classify(pipeline_pb2.ClassifyRequest(text="物流很快", model=tools.MODEL), metadata=canary_mesh.metadata, timeout=10)


def test_a_policy_fenlei_cannot_translate_is_refused_and_changes_nothing(canary_mesh, policy, tools) -> None:
    mirror = policy.write(
        "mirror.yaml",
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: classifier, namespace: fenlei}
spec:
  hosts: [classifier]
  http:
  - route:
    - destination: {host: classifier, subset: v1}
    mirror: {host: classifier, subset: v1}
""",
    )
    routes = canary_mesh.home / "mesh" / "proxies" / "pipeline-v1-0" / "rds-outbound-classifier.json"
    before = routes.read_text()
    refused = tools.cli(canary_mesh.home, "mesh", "apply", mirror, timeout=60)
    assert refused.returncode != 0 and "mirror" in refused.stderr, refused.stdout + refused.stderr
    assert routes.read_text() == before and canary_mesh.mesh.control.applied() == []
