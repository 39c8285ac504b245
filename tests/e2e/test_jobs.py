"""Jobs on the real mesh: a dataset uploaded to the datasets service, trained by the jobs
service's workers through the stage services, registered with the registry; cancel, a
kill -9 of the jobs service while it trains, two jobs on one dataset, a watcher that
reconnects."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from fenlei.jobs.core import RESTARTED
from fenlei.v1 import classifier_pb2, datasets_pb2, jobs_pb2, registry_pb2, training_pb2

LABEL_NAMES = ("negative", "positive", "news")
CHUNK = 64 * 1024
# SGD that passes over the data this often takes long enough to be caught while it fits.
SLOW = training_pb2.PipelineConfig(classifier=classifier_pb2.ClassifierOptions(algorithm=classifier_pb2.ALGORITHM_SGD, epochs=400))


@pytest.fixture(scope="module")
def dataset(mesh: Any, corpus: Any) -> datasets_pb2.Dataset:
    """The session corpus's training file as a dataset."""
    data = Path(corpus.train).read_bytes()

    def requests() -> Iterator[datasets_pb2.UploadDatasetRequest]:
        yield datasets_pb2.UploadDatasetRequest(name="e2e jobs", file_name="train.txt", label_names=LABEL_NAMES, chunk=data[:CHUNK])
        for start in range(CHUNK, len(data), CHUNK):
            yield datasets_pb2.UploadDatasetRequest(chunk=data[start : start + CHUNK])

    return mesh.stub("datasets").UploadDataset(requests(), timeout=120).dataset


def create(mesh: Any, model: str, dataset: str, **fields: Any) -> jobs_pb2.Job:
    return mesh.stub("jobs").CreateJob(jobs_pb2.CreateJobRequest(model=model, dataset=dataset, **fields), timeout=60).job


def events(mesh: Any, job: str, after: int = 0) -> Iterator[jobs_pb2.JobEvent]:
    for answer in mesh.stub("jobs").WatchJob(jobs_pb2.WatchJobRequest(id=job, after_sequence=after), timeout=600):
        yield answer.event


def until(mesh: Any, job: str, condition: Any) -> jobs_pb2.JobEvent:
    """The first event of the job that meets the condition (the job must not end before)."""
    for event in events(mesh, job):
        assert event.state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING), event
        if condition(event):
            return event
    pytest.fail(f"{job} ended before the condition was met")


def fitting(event: jobs_pb2.JobEvent) -> bool:
    return event.progress.phase == "fitting classifier" and 0 < event.progress.documents_done < event.progress.documents_total


def versions(mesh: Any, model: str) -> list[str]:
    answer = mesh.stub("registry").SearchVersions(registry_pb2.SearchVersionsRequest(name=model), timeout=60)
    return [v.version for v in answer.versions]


def drafts(mesh: Any, model: str) -> list[Path]:
    folder = Path(mesh.home) / "models" / model / ".drafts"
    return list(folder.iterdir()) if folder.exists() else []


def workers(home: Path) -> list[int]:
    """The pids of the job workers of the mesh at home."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fenlei.jobs.worker" in command and f"FENLEI_HOME={home}".encode() in environment:
            found.append(int(pid))
    return found


def test_a_job_registers_a_version_with_its_report_and_a_watcher_that_reconnects_resumes(
    mesh: Any, dataset: datasets_pb2.Dataset, tools: SimpleNamespace
) -> None:
    job = create(mesh, "jobs-e2e", dataset.id, tags={"e2e": "jobs"})
    assert job.state == jobs_pb2.JOB_STATE_QUEUED and job.id
    seen: list[jobs_pb2.JobEvent] = []
    for event in events(mesh, job.id):
        seen.append(event)
        if event.progress.phase == "segmenting":
            break  # the watcher goes away mid-job ...
    seen += list(events(mesh, job.id, after=seen[-1].sequence))  # ... and comes back
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, seen[-1]
    by_phase: dict[str, list[jobs_pb2.Progress]] = {}
    for event in seen:
        by_phase.setdefault(event.progress.phase, []).append(event.progress)
    assert {"reading", "segmenting", "fitting features", "fitting classifier", "evaluating", "registering"} <= set(by_phase)
    assert by_phase["reading"][-1].documents_done == by_phase["reading"][-1].documents_total == dataset.documents
    train = by_phase["segmenting"][-1]
    assert train.documents_done == train.documents_total and 0 < train.documents_total < dataset.documents
    elapsed = [e.progress.elapsed_seconds for e in seen if e.state == jobs_pb2.JOB_STATE_RUNNING and e.progress.phase != "starting"]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0

    done = mesh.stub("jobs").GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=60).job
    report = mesh.stub("jobs").GetJobReport(jobs_pb2.GetJobReportRequest(id=job.id), timeout=60).report
    assert done.version == "v1" and report.accuracy > 0.7 and report.evaluation == "held-out 20%"
    assert {c.label for c in report.classes} == set(LABEL_NAMES) and report.confusion
    registered = mesh.stub("registry").GetVersion(registry_pb2.GetVersionRequest(name="jobs-e2e", version="v1"), timeout=60).version
    assert registered.tags["e2e"] == "jobs" and registered.report.accuracy == report.accuracy
    assert registered.lineage.dataset_sha256 == dataset.sha256
    assert not drafts(mesh, "jobs-e2e") and not workers(mesh.home)


def test_an_sgd_job_streams_its_dataset_pass_by_pass_and_holds_none_of_it(mesh: Any, dataset: datasets_pb2.Dataset) -> None:
    config = training_pb2.PipelineConfig(classifier=classifier_pb2.ClassifierOptions(algorithm=classifier_pb2.ALGORITHM_SGD, epochs=3))
    job = create(mesh, "jobs-streamed", dataset.id, config=config)
    seen = list(events(mesh, job.id))
    assert seen[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, seen[-1]
    totals = {event.progress.phase: event.progress.documents_total for event in seen}
    # No phase reads the dataset into memory or segments it once for all: every pass streams it.
    assert "reading" not in totals and "segmenting" not in totals
    assert totals["fitting features"] == dataset.documents and totals["fitting classifier"] == 3 * dataset.documents
    report = mesh.stub("jobs").GetJobReport(jobs_pb2.GetJobReportRequest(id=job.id), timeout=60).report
    assert report.accuracy > 0.7 and report.statistics.documents == dataset.documents
    assert 0 < report.statistics.test_documents < dataset.documents  # a held-out part, decided as it streams
    version = mesh.stub("jobs").GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=60).job.version
    registered = mesh.stub("registry").GetVersion(registry_pb2.GetVersionRequest(name="jobs-streamed", version=version), timeout=60).version
    assert registered.lineage.dataset_sha256 == dataset.sha256 and registered.lineage.job == job.id


def test_two_jobs_on_one_dataset_give_two_versions(mesh: Any, dataset: datasets_pb2.Dataset) -> None:
    first = create(mesh, "jobs-twice", dataset.id)
    second = create(mesh, "jobs-twice", dataset.id, evaluation=jobs_pb2.Evaluation(test_fraction=0.25, seed=3))
    ends = [list(events(mesh, job.id))[-1] for job in (first, second)]
    assert [e.state for e in ends] == [jobs_pb2.JOB_STATE_SUCCEEDED] * 2, ends
    made = [mesh.stub("jobs").GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=60).job.version for job in (first, second)]
    assert sorted(made) == ["v1", "v2"] == sorted(versions(mesh, "jobs-twice"))


def test_cancel_stops_the_training_and_leaves_no_version_and_a_dataset_in_use_is_not_deleted(
    mesh: Any, dataset: datasets_pb2.Dataset
) -> None:
    job = create(mesh, "jobs-cancelled", dataset.id, config=SLOW)
    until(mesh, job.id, fitting)
    with pytest.raises(grpc.RpcError) as pinned:  # the dataset a job trains on stays
        mesh.stub("datasets").DeleteDataset(datasets_pb2.DeleteDatasetRequest(id=dataset.id), timeout=60)
    assert pinned.value.code() == grpc.StatusCode.FAILED_PRECONDITION and job.id in pinned.value.details()
    [worker] = workers(mesh.home)
    cancelled = mesh.stub("jobs").CancelJob(jobs_pb2.CancelJobRequest(id=job.id, reason="e2e: not needed"), timeout=60).job
    assert (cancelled.state, cancelled.reason, cancelled.version) == (jobs_pb2.JOB_STATE_CANCELLED, "e2e: not needed", "")
    assert worker not in workers(mesh.home)  # the answer came once the worker had gone
    assert not drafts(mesh, "jobs-cancelled")
    assert versions(mesh, "jobs-cancelled") == []


def test_a_jobs_service_killed_while_it_trains_fails_the_job_after_its_restart(
    mesh: Any, dataset: datasets_pb2.Dataset, tools: SimpleNamespace
) -> None:
    job = create(mesh, "jobs-killed", dataset.id, config=SLOW)
    until(mesh, job.id, fitting)
    before = tools.read_state(mesh.home)["jobs"]
    os.kill(before["pid"], signal.SIGKILL)

    def failed() -> jobs_pb2.Job | None:
        try:
            found = mesh.stub("jobs").GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=10).job
        except grpc.RpcError:
            return None  # not back yet
        return found if found.state != jobs_pb2.JOB_STATE_RUNNING else None

    after = tools.wait_for(failed, "the restarted jobs service to settle the job", timeout=180)
    assert (after.state, after.reason) == (jobs_pb2.JOB_STATE_FAILED, RESTARTED)
    assert tools.read_state(mesh.home)["jobs"]["restarts"] > before["restarts"]
    tools.wait_for(lambda: not workers(mesh.home), "the orphaned worker to stop")
    tools.wait_for(lambda: not drafts(mesh, "jobs-killed"), "the worker to remove its draft")
    # the registry and the dataset store are intact
    assert versions(mesh, "jobs-killed") == []
    assert versions(mesh, tools.MODEL)
    again = mesh.stub("datasets").GetDataset(datasets_pb2.GetDatasetRequest(id=dataset.id), timeout=60).dataset
    assert again.sha256 == dataset.sha256 and again.documents == dataset.documents
    records = sum(len(a.records) for a in mesh.stub("datasets").ReadDataset(datasets_pb2.ReadDatasetRequest(id=dataset.id), timeout=60))
    assert records == dataset.documents
