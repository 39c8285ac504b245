"""fenlei.v1.Jobs served in-process (fenlei.jobs.servicer over the scheduler with the stand-in
worker), in front of a datasets service that knows one dataset."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from servicekit import TIMEOUT, LoopThread, Servers, rpc_error, settings_for
from testkit import wait_for

from fenlei.jobs.core import JobsSettings, JobStore, Scheduler
from fenlei.jobs.servicer import JobsServicer
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.runtime.server import Service
from fenlei.v1 import classifier_pb2, datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, training_pb2

DATASET = "ds-0123456789abcdef"


class OneDataset(datasets_pb2_grpc.DatasetsServicer):
    async def GetDataset(self, request: datasets_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.id != DATASET:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no dataset {request.id}")
        return datasets_pb2.GetDatasetResponse(dataset=datasets_pb2.Dataset(id=DATASET, documents=4))


def _datasets(server: grpc.aio.Server, settings: Any) -> Service:
    datasets_pb2_grpc.add_DatasetsServicer_to_server(OneDataset(), server)
    return Service([datasets_pb2.DESCRIPTOR.services_by_name["Datasets"].full_name])


@pytest.fixture
def jobs(
    request: pytest.FixtureRequest, tmp_path: Path, servers: Servers, loop_thread: LoopThread, stand_in: list[str]
) -> Iterator[jobs_pb2_grpc.JobsStub]:
    """The jobs service; parametrize it indirectly with settings of its own."""
    settings = dict(getattr(request, "param", {}))
    datasets = servers.start("datasets", _datasets, settings_for(tmp_path / "datasets"))
    schedulers: list[Scheduler] = []

    def register(server: grpc.aio.Server, settings: JobsSettings) -> Service:
        scheduler = Scheduler(JobStore(settings.home), settings, stand_in)
        schedulers.append(scheduler)
        stub = datasets_pb2_grpc.DatasetsStub(grpc.aio.insecure_channel(datasets.address))
        jobs_pb2_grpc.add_JobsServicer_to_server(JobsServicer(scheduler, stub), server)
        return Service([jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name], scheduler.open)

    settings["datasets_address"] = datasets.address
    served = servers.start("jobs", register, settings_for(tmp_path / "home", JobsSettings, **settings))
    try:
        yield jobs_pb2_grpc.JobsStub(served.channel)
    finally:
        for scheduler in schedulers:
            loop_thread.run(scheduler.close())


def create(jobs: jobs_pb2_grpc.JobsStub, plan: dict | None = None, **fields: Any) -> jobs_pb2.Job:
    request = jobs_pb2.CreateJobRequest(model="news", dataset=DATASET, description=json.dumps(plan or {}), **fields)
    return jobs.CreateJob(request, timeout=TIMEOUT, metadata=[(SUBJECT_HEADER, "alice")]).job


def watch(jobs: jobs_pb2_grpc.JobsStub, job: str, after: int = 0) -> list[jobs_pb2.JobEvent]:
    return [answer.event for answer in jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job, after_sequence=after), timeout=TIMEOUT)]


def test_a_job_is_created_watched_to_its_end_and_reported(jobs: jobs_pb2_grpc.JobsStub) -> None:
    config = training_pb2.PipelineConfig(classifier=classifier_pb2.ClassifierOptions(algorithm=classifier_pb2.ALGORITHM_SGD))
    step = {"phase": "segmenting", "documents_done": 2, "documents_total": 4, "elapsed_seconds": 1.5, "remaining_seconds": 1.5}
    job = create(jobs, {"progress": [step]}, config=config, tags={"owner": "ml"}, evaluation=jobs_pb2.Evaluation(folds=3, seed=7))
    assert job.id == "job-1" and job.created_by == "alice" and job.config == config and job.tags == {"owner": "ml"}
    assert job.evaluation.folds == 3 and job.created.seconds > 0
    events = watch(jobs, job.id)
    assert [e.state for e in events] == [
        jobs_pb2.JOB_STATE_QUEUED,
        jobs_pb2.JOB_STATE_RUNNING,
        jobs_pb2.JOB_STATE_RUNNING,
        jobs_pb2.JOB_STATE_SUCCEEDED,
    ]
    assert events[2].progress == jobs_pb2.Progress(**step)
    assert [e.sequence for e in watch(jobs, job.id, after=2)] == [3, 4]  # a watcher that reconnects
    done = jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=TIMEOUT).job
    assert (done.state, done.version, done.progress.phase) == (jobs_pb2.JOB_STATE_SUCCEEDED, "v7", "segmenting")
    assert done.started.ToNanoseconds() <= done.finished.ToNanoseconds()
    report = jobs.GetJobReport(jobs_pb2.GetJobReportRequest(id=job.id), timeout=TIMEOUT).report
    assert report.accuracy == 0.75 and report.evaluation == job.id


@pytest.mark.parametrize("jobs", [{"watch_keepalive_seconds": 0.1}], indirect=True)
def test_a_watch_of_a_queued_job_gets_keep_alives_with_the_jobs_ahead(jobs: jobs_pb2_grpc.JobsStub, tmp_path: Path) -> None:
    running = create(jobs, {"started": str(tmp_path / "1"), "release": str(tmp_path / "go")})
    queued = create(jobs)
    wait_for(lambda: (tmp_path / "1").exists(), "the first job's worker to start")
    answers = jobs.WatchJob(jobs_pb2.WatchJobRequest(id=queued.id), timeout=TIMEOUT)
    first, keepalive = next(answers), next(answers)
    assert first.event.state == jobs_pb2.JOB_STATE_QUEUED
    # Nothing happens to the queued job, and the watch goes on: a keep-alive, no event.
    assert not keepalive.HasField("event") and keepalive.jobs_ahead == 1
    (tmp_path / "go").touch()
    rest = [answer for answer in answers if answer.HasField("event")]
    assert rest[-1].event.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert watch(jobs, running.id)[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_jobs_are_listed_newest_first_by_state_and_model(jobs: jobs_pb2_grpc.JobsStub, tmp_path: Path) -> None:
    first = create(jobs, {"error": "no luck"})
    watch(jobs, first.id)
    second = create(jobs, {"started": str(tmp_path / "2"), "hang": True})
    listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=TIMEOUT).jobs
    assert [j.id for j in listed] == [second.id, first.id]
    failed = jobs.ListJobs(jobs_pb2.ListJobsRequest(states=[jobs_pb2.JOB_STATE_FAILED]), timeout=TIMEOUT).jobs
    assert [(j.id, j.reason) for j in failed] == [(first.id, "no luck")]
    assert not jobs.ListJobs(jobs_pb2.ListJobsRequest(model="other"), timeout=TIMEOUT).jobs
    error = rpc_error(jobs.GetJobReport, jobs_pb2.GetJobReportRequest(id=first.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "only a succeeded job has a report" in error.details()
    error = rpc_error(jobs.ListJobs, jobs_pb2.ListJobsRequest(states=[jobs_pb2.JOB_STATE_UNSPECIFIED]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_ends_a_running_job_and_answers_once_it_has_ended(jobs: jobs_pb2_grpc.JobsStub, tmp_path: Path) -> None:
    job = create(jobs, {"started": str(tmp_path / "1"), "hang": True})
    queued = create(jobs)
    wait_for(lambda: (tmp_path / "1").exists(), "the worker to start")
    cancelled = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), timeout=TIMEOUT, metadata=[(SUBJECT_HEADER, "bob")]).job
    assert (cancelled.state, cancelled.reason, cancelled.version) == (jobs_pb2.JOB_STATE_CANCELLED, "cancelled by bob", "")
    assert watch(jobs, job.id)[-1].state == jobs_pb2.JOB_STATE_CANCELLED
    assert watch(jobs, queued.id)[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED  # the next one ran
    again = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id, reason="twice"), timeout=TIMEOUT).job
    assert again.reason == "cancelled by bob"  # idempotent
    error = rpc_error(jobs.CancelJob, jobs_pb2.CancelJobRequest(id=queued.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "succeeded already" in error.details()


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"dataset": "ds-ffffffffffffffff"}, grpc.StatusCode.NOT_FOUND, "no dataset ds-ffffffffffffffff"),
        ({"evaluation": jobs_pb2.Evaluation(test_dataset="ds-eeeeeeeeeeeeeeee")}, grpc.StatusCode.NOT_FOUND, "ds-eeeeeeeeeeeeeeee"),
        ({"model": "No Such Name"}, grpc.StatusCode.INVALID_ARGUMENT, "model name"),
        ({"model": ""}, grpc.StatusCode.INVALID_ARGUMENT, "model name '' is not valid"),  # a REST body without it
        ({"dataset": ""}, grpc.StatusCode.INVALID_ARGUMENT, "name the dataset"),
        ({"evaluation": jobs_pb2.Evaluation(test_fraction=1.5)}, grpc.StatusCode.INVALID_ARGUMENT, "test_fraction"),
    ],
)
def test_a_job_that_cannot_run_is_refused_when_it_is_created(
    jobs: jobs_pb2_grpc.JobsStub, fields: dict[str, Any], code: grpc.StatusCode, says: str
) -> None:
    request = jobs_pb2.CreateJobRequest(**{"model": "news", "dataset": DATASET, **fields})
    error = rpc_error(jobs.CreateJob, request)
    assert error.code() == code and says in error.details(), error.details()
    assert not jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=TIMEOUT).jobs


@pytest.mark.parametrize("call", ["GetJob", "CancelJob", "WatchJob", "GetJobReport"])
def test_unknown_jobs_are_not_found(jobs: jobs_pb2_grpc.JobsStub, call: str) -> None:
    request_type: Callable[..., Any] = getattr(jobs_pb2, f"{call}Request")
    error = rpc_error(getattr(jobs, call), request_type(id="job-404"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "job-404" in error.details()
