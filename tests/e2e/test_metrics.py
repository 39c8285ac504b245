"""Prometheus metrics of the running mesh: `fenlei status --json` names every app's /metrics
and every Envoy's stats; a Classify moves the pipeline's and every stage's series; and
`fenlei up --prometheus` runs a real Prometheus that scrapes every process of a mesh with
sidecars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fenlei import services
from fenlei.v1 import pipeline_pb2

STAGES = services.STAGE_NAMES
TIMEOUT = 30  # a hang guard, not a speed requirement
PROMETHEUS = Path("/usr/bin/prometheus")

pytestmark = pytest.mark.xdist_group("sidecar_mesh")  # one worker runs the users of the mesh with sidecars


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
        return answer.read().decode()


Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(fetch(url)) for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for found, have, value in samples if found == name and labels.items() <= have.items())


def status(home: Path, cli: Callable, serving: bool = True) -> dict[str, dict]:
    """`fenlei status --json`; serving: every process must be SERVING (its exit code says)."""
    answer = cli(home, "status", "--json", timeout=120)
    assert answer.returncode == 0 or not serving, answer.stdout + answer.stderr
    return json.loads(answer.stdout)


def test_status_names_every_apps_metrics_and_every_envoys_stats(mesh, tools) -> None:
    listed = status(mesh.home, tools.cli)
    for workload in services.WORKLOADS:
        url = listed[workload.name]["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), listed[workload.name]
        samples = scrape(url)
        assert total(samples, "process_resident_memory_bytes") > 0 and total(samples, "process_cpu_seconds_total") > 0
        assert total(samples, "grpc_server_started_total", grpc_service="grpc.health.v1.Health") > 0  # the supervisor's checks
    stats = listed["gateway"]["stats"]
    # the gateway's admin now (another test may have had it restarted, on a new admin port)
    assert stats == f"http://{tools.read_state(mesh.home)['gateway']['admin']}/stats/prometheus"
    assert total(scrape(stats), "envoy_server_live") == 1


def test_a_classify_moves_the_pipelines_and_every_stages_series(mesh, tools) -> None:
    listed = status(mesh.home, tools.cli)
    urls = {name: listed[name]["metrics"] for name in ("pipeline", *STAGES)}
    before = {name: scrape(url) for name, url in urls.items()}
    # "qzxjkvbw" is no word of the model's vocabulary: the features stage counts it as unknown.
    text = "这家酒店的服务很好 qzxjkvbw"
    answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text, model=tools.MODEL), timeout=TIMEOUT)
    version = answer.version
    after = {name: scrape(url) for name, url in urls.items()}

    def moved(name: str, metric: str, **labels: str) -> float:
        return total(after[name], metric, **labels) - total(before[name], metric, **labels)

    classify = {"grpc_service": "fenlei.v1.Pipeline", "grpc_method": "Classify", "grpc_type": "unary"}
    assert moved("pipeline", "grpc_server_started_total", **classify) == 1
    assert moved("pipeline", "grpc_server_handled_total", **classify, grpc_code="OK") == 1
    assert moved("pipeline", "grpc_server_handling_seconds_count", **classify) == 1
    assert moved("pipeline", "fenlei_stage_documents_total", stage="pipeline") == 1
    for stage in STAGES:
        # The pipeline keeps its streams to the stages open: the stage saw one more message each way.
        served = services.BY_NAME[stage].contract[0].full_name
        assert moved(stage, "grpc_server_msg_received_total", grpc_service=served) == 1, stage
        assert moved(stage, "grpc_server_msg_sent_total", grpc_service=served) == 1, stage
        assert moved(stage, "fenlei_stage_documents_total", stage=stage) == 1, stage
    for stage in ("features", "classifier"):
        assert total(after[stage], "fenlei_model_versions_loaded", stage=stage, model=tools.MODEL, version=version) == 1, stage
    model = {"model": tools.MODEL, "version": version}
    tokens, unknown = (
        moved("features", "fenlei_features_tokens_total", **model),
        moved("features", "fenlei_features_unknown_tokens_total", **model),
    )
    assert tokens > unknown >= 1, (tokens, unknown)


def test_the_jobs_service_reports_its_queue(mesh, tools) -> None:
    families = {family.name for family in text_string_to_metric_families(fetch(status(mesh.home, tools.cli)["jobs"]["metrics"]))}
    assert {"fenlei_jobs_queued", "fenlei_jobs_running"} <= families


def test_top_shows_the_traffic_of_each_service(mesh, tools) -> None:
    """Classifies until `fenlei top --once` has read every service twice: the pipeline's
    row shows requests, a p50 and a p99."""
    env = {**os.environ, "FENLEI_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "fenlei.cli", "top", "--once", "--interval", "1"]
    watching = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        while watching.poll() is None:
            mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text="这家酒店的服务很好", model=tools.MODEL), timeout=TIMEOUT)
        out, err = watching.communicate(timeout=TIMEOUT)
    finally:
        if watching.poll() is None:
            watching.kill()
        watching.wait()
    assert watching.returncode == 0, out + err
    header, *lines = out.splitlines()
    assert header.split() == ["SERVICE", "INST", "REQ/S", "ERR/S", "ERR%", "P50", "MS", "P99", "MS", "CPU%", "RSS", "MIB"]
    table = {line.split()[0]: line.split()[1:] for line in lines}
    assert {w.name for w in services.WORKLOADS} <= set(table), out
    instances, requests, errors, error_share, p50, p99, cpu, rss = table["pipeline"]
    assert instances == "1" and float(requests) > 0 and float(p50) > 0 and float(p99) >= float(p50) and float(rss) > 0, out
    for stage in STAGES:
        assert float(table[stage][1]) > 0, out  # the batches the pipeline sent it


def test_up_with_prometheus_scrapes_every_process(sidecar_mesh, tools) -> None:
    """The session mesh with sidecars runs `fenlei up --prometheus`."""
    assert PROMETHEUS.exists(), f"{PROMETHEUS} is missing: run scripts/debian-packages.sh (it installs Debian's prometheus package)"
    home = sidecar_mesh.home
    listed = status(home, tools.cli)
    address = listed["prometheus"]["address"]
    assert listed["prometheus"]["status"] == "SERVING"
    sidecars = [name for name in listed if name.endswith("-sidecar")]
    assert sidecars and all(listed[name]["stats"].endswith("/stats/prometheus") for name in sidecars)
    expected = {name for name, entry in listed.items() if entry.get("metrics") or entry.get("stats")} | {"prometheus"}

    def every_target_up() -> dict[str, str]:
        """process → its scrape URL, once Prometheus scrapes every process and each is up."""
        targets = json.loads(fetch(f"http://{address}/api/v1/targets"))["data"]["activeTargets"]
        health = {target["labels"]["process"]: target["health"] for target in targets}
        up = set(health) == expected and set(health.values()) == {"up"}
        return {target["labels"]["process"]: target["scrapeUrl"] for target in targets} if up else {}

    scraped = tools.wait_for(every_target_up, "Prometheus to scrape every process of the mesh", timeout=120)
    assert set(scraped) >= {"gateway", "pipeline", *STAGES, *sidecars}
    assert scraped["segmenter"] == listed["segmenter"]["metrics"]
    query = fetch(f"http://{address}/api/v1/query?query=sum%20by%20(job)%20(grpc_server_started_total)")
    jobs = {result["metric"]["job"] for result in json.loads(query)["data"]["result"]}
    assert {w.name for w in services.WORKLOADS} <= jobs, jobs

    # A restarted service serves its metrics on a new port: Prometheus follows it.
    os.kill(listed["segmenter"]["pid"], signal.SIGKILL)

    def restarted() -> dict[str, dict]:
        now = status(home, tools.cli, serving=False)
        return now if now["segmenter"]["status"] == "SERVING" and now["segmenter"]["metrics"] != listed["segmenter"]["metrics"] else {}

    moved = tools.wait_for(restarted, "the segmenter to serve again", timeout=120)["segmenter"]["metrics"]
    tools.wait_for(lambda: every_target_up().get("segmenter") == moved, "Prometheus to scrape the restarted segmenter", timeout=120)
