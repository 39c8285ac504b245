"""The process that runs one job (the jobs service starts one per running job):

    python -m fenlei.jobs.worker SERVICE_PID     the job as one JSON line on stdin (fenlei.jobs.core)

It reads the dataset through fenlei.v1.Datasets.ReadDataset, trains with
fenlei.training.core through the stage services and registers the version with the
registry, all at the addresses of the jobs workload (FENLEI_JOBS_<CALLEE>_ADDRESS). It
writes JSON lines on its stdout, which the service reads and records (the service alone
writes the jobs database): progress, then the result or the error. Anything else the
process prints goes to stderr. SIGTERM (a cancel, or the service gone) cancels the work:
the stage calls in flight end, the draft is removed, nothing is registered.

A job is a trace: a root span "job <id>", under it a span per phase of the training, and
under those the calls and the stage batches the phase made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

from fenlei import services
from fenlei.errors import FenleiError, InvalidInput
from fenlei.jobs.core import JobsSettings, die_with_parent
from fenlei.preprocessor.servicer import with_options as preprocess_with
from fenlei.runtime import tracing
from fenlei.runtime.models import ModelStore, check_name
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.runtime.server import channel_options
from fenlei.runtime.settings import load_settings
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter.servicer import with_options as segment_with
from fenlei.training.core import (
    CHUNK,
    DEFAULT_PREPROCESS,
    DEFAULT_SEGMENT,
    Corpus,
    CorpusStream,
    Progress,
    TrainingSpec,
    learns_batch_by_batch,
    train,
)
from fenlei.training.register import GrpcRegistry
from fenlei.training.stages import GrpcStages
from fenlei.training.tuning import SearchSpace
from fenlei.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, training_pb2

SERVICE = "jobs"
# Progress lines at most this often, but on every change of phase.
REPORT_EVERY_SECONDS = 0.5
READ_BATCH = CHUNK  # a chunk of the training a message
DEFAULT_TEST_FRACTION = 0.2


def spec_of(job: dict[str, Any]) -> TrainingSpec:
    """The training a job asks for (a Job's fields by name); InvalidInput names what is wrong."""
    config = json_format.ParseDict(job.get("config", {}), training_pb2.PipelineConfig())
    evaluation = json_format.ParseDict(job.get("evaluation", {}), jobs_pb2.Evaluation())
    method = evaluation.WhichOneof("method")
    test_fraction = evaluation.test_fraction if method == "test_fraction" else DEFAULT_TEST_FRACTION
    if not 0 < test_fraction < 1:
        raise InvalidInput(f"evaluation.test_fraction must be between 0 and 1, not {test_fraction}")
    classifier = json_format.MessageToDict(config.classifier, preserving_proto_field_name=True)
    classifier.setdefault("seed", evaluation.seed)
    return TrainingSpec(
        name=check_name(job.get("model", "")),
        segment=segment_with(DEFAULT_SEGMENT, config.segmenter) if config.HasField("segmenter") else DEFAULT_SEGMENT,
        preprocess=preprocess_with(DEFAULT_PREPROCESS, config.preprocessor) if config.HasField("preprocessor") else DEFAULT_PREPROCESS,
        features=json_format.MessageToDict(config.features, preserving_proto_field_name=True),
        classifier=classifier,
        test_fraction=test_fraction,
        folds=evaluation.folds if method == "folds" else 0,
        seed=evaluation.seed,
        tags=dict(job.get("tags", {})),
        job=job.get("id", ""),
        tuning=SearchSpace.from_proto(json_format.ParseDict(job.get("space", {}), jobs_pb2.TuningSpace())) if job.get("tune") else None,
    )


class ProgressLines:
    """The job's progress as JSON lines on the worker's stdout: the training's (phase,
    documents done of the phase's total, an estimate of the phase's remaining seconds from
    its pace so far) and the reading of the datasets before it, with the seconds since
    the job started. At most one line per REPORT_EVERY_SECONDS, but every change of phase."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()
        self.last: dict[str, Any] = {"phase": "starting"}
        self._written = 0.0

    def __call__(self, progress: Progress) -> None:
        current = dataclasses.asdict(progress)
        changed = current["phase"] != self.last["phase"] or current["documents_done"] == current["documents_total"]
        self.last = current
        if changed or time.monotonic() - self._written >= REPORT_EVERY_SECONDS:
            self.write()

    def phase(self, phase: str, total: int) -> Callable[[int], None]:
        """A phase of the worker's own; answers advance(documents done)."""
        began = time.monotonic()
        self(Progress(phase, 0, total, 0.0, 0.0))

        def advance(done: int) -> None:
            self(Progress(phase, done, total, 0.0, (time.monotonic() - began) / done * (total - done) if done else 0.0))

        return advance

    def write(self) -> None:
        self._written = time.monotonic()
        line = {**self.last, "elapsed_seconds": self._written - self.started}
        self.out.write(json.dumps({"progress": line}, ensure_ascii=False) + "\n")
        self.out.flush()

    async def keep_writing(self, every: float) -> None:
        """A line every `every` seconds however long a step takes: the service's lease on the worker."""
        while True:
            await asyncio.sleep(every)
            self.write()


def dataset_stream(stub: datasets_pb2_grpc.DatasetsStub, dataset: datasets_pb2.Dataset) -> CorpusStream:
    """A stored dataset as a stream the training reads batch by batch, again on every pass."""

    async def read() -> AsyncIterator[Corpus]:
        async for answer in stub.ReadDataset(datasets_pb2.ReadDatasetRequest(id=dataset.id, batch_documents=READ_BATCH)):
            yield Corpus([record.text for record in answer.records], [record.label for record in answer.records], source)

    source = f"dataset {dataset.id} ({dataset.file_name or dataset.name})"
    return CorpusStream(read, dataset.documents, dataset.sha256, source)


async def read_dataset(
    stub: datasets_pb2_grpc.DatasetsStub, dataset: str, progress: ProgressLines, phase: str, *, streamed: bool
) -> Corpus | CorpusStream:
    """A dataset from the datasets service: streamed when the training learns batch by batch
    (the SGD classifier, evaluated without k-fold or tuning), so no process holds it; else
    read into memory."""
    found = (await stub.GetDataset(datasets_pb2.GetDatasetRequest(id=dataset))).dataset
    stream = dataset_stream(stub, found)
    if streamed:
        return stream
    advance = progress.phase(phase, found.documents)
    texts: list[str] = []
    labels: list[str] = []
    with tracing.span(phase, attributes={tracing.DOCUMENTS: found.documents}):
        async for batch in stream.read():
            texts += batch.texts
            labels += batch.labels
            advance(len(texts))
    return Corpus(texts, labels, stream.source)


async def run(job: dict[str, Any], settings: JobsSettings, progress: ProgressLines) -> dict[str, Any]:
    """Trains and registers what the job asks for; returns the result line's content."""
    attributes = {"fenlei.model": str(job.get("model", "")), "fenlei.dataset": str(job.get("dataset", ""))}
    with tracing.span(f"job {job.get('id', '')}", attributes=attributes) as root:
        result = await _run(job, settings, progress)
        root.set_attribute("fenlei.version", result["version"])
        return result


async def _run(job: dict[str, Any], settings: JobsSettings, progress: ProgressLines) -> dict[str, Any]:
    spec = spec_of(job)
    addresses = {callee: getattr(settings, f"{callee}_address") for callee in services.BY_NAME[SERVICE].calls}
    missing = [callee for callee, address in addresses.items() if not address]
    if missing:
        raise InvalidInput(f"the jobs service has no address for {', '.join(missing)}: set FENLEI_JOBS_<SERVICE>_ADDRESS")
    options = channel_options(settings)
    streams = StageStreams({stage.name: addresses[stage.name] for stage in services.STAGES}, options)
    registry_channel = grpc.aio.insecure_channel(addresses["registry"], options=options, interceptors=tracing.client_interceptors())
    datasets_channel = grpc.aio.insecure_channel(addresses["datasets"], options=options, interceptors=tracing.client_interceptors())
    ticker = asyncio.create_task(progress.keep_writing(settings.lease_seconds / 4))
    try:
        datasets = datasets_pb2_grpc.DatasetsStub(datasets_channel)
        streamed = learns_batch_by_batch(spec.classifier) and not spec.folds and spec.tuning is None
        corpus = await read_dataset(datasets, job["dataset"], progress, "reading", streamed=streamed)
        test_dataset = job.get("evaluation", {}).get("test_dataset", "")
        test = await read_dataset(datasets, test_dataset, progress, "reading the test dataset", streamed=streamed) if test_dataset else None
        # The registry records the job's author, as vouched for by the jobs workload.
        author = str(job.get("created_by", "")).split(" via ")[0]
        registry = GrpcRegistry(registry_channel, [(SUBJECT_HEADER, author)] if author else [])
        report = await train(ModelStore(settings.home), spec, GrpcStages(streams), registry, corpus, test, progress=progress)
        return {"version": report.version, "report": report.training}
    finally:
        ticker.cancel()
        await streams.close()
        await registry_channel.close()
        await datasets_channel.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, FenleiError):
        return str(error)
    if isinstance(error, grpc.aio.AioRpcError):
        return f"a service it called answered {error.code().name}: {error.details()}"
    return f"internal error: {type(error).__name__}: {error}"


async def _main(job: dict[str, Any], settings: JobsSettings, out: TextIO) -> int:
    progress = ProgressLines(out)
    work = asyncio.ensure_future(run(job, settings, progress))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, work.cancel)
    try:
        result = await work
    except asyncio.CancelledError:
        print("cancelled: the stage calls ended and the draft was removed", file=sys.stderr)
        return 1
    except Exception as error:  # every failure is the job's reason
        traceback.print_exc()
        out.write(json.dumps({"error": _reason(error)}, ensure_ascii=False) + "\n")
        return 1
    out.write(json.dumps({"result": result}, ensure_ascii=False) + "\n")
    return 0


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    # The service reads stdout as the protocol: keep it to ourselves, and send whatever
    # else would print there (libraries) to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    job = json.loads(sys.stdin.readline())
    settings = load_settings(JobsSettings, SERVICE)
    tracing.configure(SERVICE)  # its spans leave at exit
    sys.exit(asyncio.run(_main(job, settings, out)))


if __name__ == "__main__":
    main()
