"""gRPC adapter of the jobs service (fenlei.v1.Jobs) over fenlei.jobs.core, and its server:

    python -m fenlei.jobs.servicer

A job is checked when it is created (its configuration, its datasets exist), then queued;
the scheduler runs it in a worker process (fenlei.jobs.worker).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format

from fenlei.jobs.core import JobsSettings, JobStore, Scheduler
from fenlei.runtime import metrics, rpc
from fenlei.runtime.messages import timestamp
from fenlei.runtime.server import Service, channel_options, serve
from fenlei.runtime.settings import load_settings
from fenlei.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, training_pb2

SERVICE = "jobs"
WORKER = (sys.executable, "-m", "fenlei.jobs.worker")
STATE_OF = {
    "queued": jobs_pb2.JOB_STATE_QUEUED,
    "running": jobs_pb2.JOB_STATE_RUNNING,
    "succeeded": jobs_pb2.JOB_STATE_SUCCEEDED,
    "failed": jobs_pb2.JOB_STATE_FAILED,
    "cancelled": jobs_pb2.JOB_STATE_CANCELLED,
}
NAME_OF = {value: name for name, value in STATE_OF.items()}
DATASET_SECONDS = 30.0


def _fields(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _progress(progress: dict[str, Any]) -> jobs_pb2.Progress:
    return json_format.ParseDict(progress, jobs_pb2.Progress(), ignore_unknown_fields=True)


def job_message(job: dict[str, Any]) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id=job["id"],
        model=job["model"],
        dataset=job["dataset"],
        state=STATE_OF[job["state"]],
        reason=job["reason"],
        config=json_format.ParseDict(job["config"], training_pb2.PipelineConfig()),
        evaluation=json_format.ParseDict(job["evaluation"], jobs_pb2.Evaluation()),
        tune=job["tune"],
        space=json_format.ParseDict(job["space"], jobs_pb2.TuningSpace()),
        tags=job["tags"],
        description=job["description"],
        created=timestamp(job["created"]),
        started=timestamp(job["started"]),
        finished=timestamp(job["finished"]),
        created_by=job["created_by"],
        progress=_progress(job["progress"]),
        version=job["version"],
    )


def event_message(event: dict[str, Any]) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(
        sequence=event["sequence"],
        at=timestamp(event["at"]),
        state=STATE_OF[event["state"]],
        progress=_progress(event["progress"]),
        message=event["message"],
    )


class JobsServicer(jobs_pb2_grpc.JobsServicer):
    def __init__(self, scheduler: Scheduler, datasets: datasets_pb2_grpc.DatasetsStub) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.datasets = datasets

    @rpc.unary
    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext) -> Any:
        # The training's modules (sklearn, jieba) load with the first job, not with the service.
        from fenlei.jobs.worker import spec_of

        fields = _fields(request)
        spec_of(fields)  # a configuration the training refuses is refused now, not when the job runs
        for dataset in {request.dataset, request.evaluation.test_dataset} - {""}:
            # NOT_FOUND from the datasets service passes through as it is.
            await self.datasets.GetDataset(datasets_pb2.GetDatasetRequest(id=dataset), timeout=DATASET_SECONDS)
        job = await self.scheduler.create(fields, rpc.caller(context))
        return jobs_pb2.CreateJobResponse(job=job_message(job))

    @rpc.unary
    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return jobs_pb2.GetJobResponse(job=job_message(await asyncio.to_thread(self.store.get, request.id)))

    @rpc.unary
    async def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        states = [NAME_OF.get(state, jobs_pb2.JobState.Name(state)) for state in request.states]
        jobs = await asyncio.to_thread(self.store.list_jobs, states, request.model, request.limit)
        return jobs_pb2.ListJobsResponse(jobs=[job_message(job) for job in jobs])

    @rpc.unary
    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext) -> Any:
        job = await self.scheduler.cancel(request.id, request.reason or f"cancelled by {rpc.caller(context)}")
        return jobs_pb2.CancelJobResponse(job=job_message(job))

    @rpc.streaming
    async def WatchJob(self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for event in self.scheduler.watch(request.id, request.after_sequence):
            if event is None:
                yield jobs_pb2.WatchJobResponse(jobs_ahead=await self.scheduler.jobs_ahead(request.id))
            else:
                yield jobs_pb2.WatchJobResponse(event=event_message(event))

    @rpc.unary
    async def GetJobReport(self, request: jobs_pb2.GetJobReportRequest, context: grpc.aio.ServicerContext) -> Any:
        report = await asyncio.to_thread(self.store.report, request.id)
        return jobs_pb2.GetJobReportResponse(
            report=json_format.ParseDict(report, training_pb2.TrainingReport(), ignore_unknown_fields=True)
        )


def pinning(stub: datasets_pb2_grpc.DatasetPinsStub) -> Callable[[list[tuple[str, str]]], Awaitable[None]]:
    async def pin(pins: list[tuple[str, str]]) -> None:
        request = datasets_pb2.SetPinsRequest(pins=[datasets_pb2.DatasetPin(job=job, dataset=dataset) for job, dataset in pins])
        await stub.SetPins(request, timeout=DATASET_SECONDS)

    return pin


def register(server: grpc.aio.Server, settings: JobsSettings) -> Service:
    channel = grpc.aio.insecure_channel(settings.datasets_address, options=channel_options(settings))
    scheduler = Scheduler(JobStore(settings.home), settings, WORKER, pinning(datasets_pb2_grpc.DatasetPinsStub(channel)))
    datasets = datasets_pb2_grpc.DatasetsStub(channel)
    metrics.watch_jobs(lambda: len(set(scheduler.store.queued()) - set(scheduler.runs)), lambda: len(scheduler.runs))
    jobs_pb2_grpc.add_JobsServicer_to_server(JobsServicer(scheduler, datasets), server)
    return Service([jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name], scheduler.open)


def main() -> None:
    serve(SERVICE, load_settings(JobsSettings, SERVICE), register)


if __name__ == "__main__":
    main()
