"""`fenlei bench`: accuracy and speed of one configuration, in-process and through the
services, measured in the same run so the ratios hold on a noisy machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fenlei import services
from fenlei.classifier.core import ClassifierConfig, ClassifierTrainer
from fenlei.client import Client
from fenlei.features.core import FeatureConfig, FeatureFitter
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.monolith import Monolith, Terms
from fenlei.pipeline.servicer import TRACE_ID_HEADER
from fenlei.segmenter.core import SegmentConfig, Segmenter
from fenlei.telemetry import spans
from fenlei.training.core import Corpus, TrainingSpec, evaluate, read_corpus
from fenlei.v1 import classifier_pb2, common_pb2, jobs_pb2, pipeline_pb2, pipeline_pb2_grpc, registry_pb2, training_pb2

MODEL = "bench"
STREAM_BATCH = 256
REPEATS = 3
QUIET_GATEWAY = {"FENLEI_GATEWAY_PORT": "0"}  # never in the way of a running mesh


def median_rate(count: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Documents per second, the median of REPEATS runs, and the last run's result."""
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = run()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates), result


def in_process(train: Corpus, test: Corpus) -> tuple[float, float, list[str]]:
    """Fits and predicts with the cores directly: no gRPC, no serialization. Answers the
    seconds of the training (fitting, then predicting the test corpus once, as a job
    evaluates), the median prediction rate and the predicted labels."""
    started = time.perf_counter()
    defaults = TrainingSpec(name=MODEL)  # what `fenlei train` uses
    terms = Terms(defaults.segment, defaults.preprocess)
    fitter = FeatureFitter(FeatureConfig())
    train_terms = terms(train.texts)
    fitter.add(train_terms, train.labels)
    space = fitter.finish()
    trainer = ClassifierTrainer(ClassifierConfig(), space.dimension, classes=sorted(set(train.labels)))
    trainer.add(space.transform(train_terms), train.labels)
    monolith = Monolith(terms, space, trainer.finish())

    def predict() -> list[str]:
        return [p.labels[0].label for p in monolith.classify(test.texts, top_k=1)]

    predict()
    seconds = time.perf_counter() - started
    rate, labels = median_rate(len(test.texts), predict)
    return seconds, rate, labels


ENDED = (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


def train_through_jobs(
    mesh: Mesh, train: Path, test: Path | None, label_names: Sequence[str], config: training_pb2.PipelineConfig | None = None
) -> tuple[float, jobs_pb2.Job, training_pb2.TrainingReport]:
    """Uploads the corpus (and the test corpus) through the gateway and runs a training job
    of the jobs service on it, as `fenlei train` does: the seconds from the job's creation
    to its end, the job and its report."""
    with Client(mesh.address("gateway"), token=mesh.authority().mint("trainer"), timeout=24 * 3600) as client:
        request = jobs_pb2.CreateJobRequest(model=MODEL, config=config)
        request.dataset = client.upload_dataset(train, label_names=label_names).dataset.id
        if test is not None:
            request.evaluation.test_dataset = client.upload_dataset(test, label_names=label_names).dataset.id
        started = time.perf_counter()
        job = client.jobs.CreateJob(request).job
        for answer in client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id)):
            if answer.event.state in ENDED:
                break
        seconds = time.perf_counter() - started
        job = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id)).job
        if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"the benchmark's job {job.id} ended {jobs_pb2.JobState.Name(job.state)}: {job.reason}")
        return seconds, job, client.jobs.GetJobReport(jobs_pb2.GetJobReportRequest(id=job.id)).report


class PeakMemory:
    """The peak resident memory (VmHWM) of every process of a mesh and of their children
    (the jobs service's workers), sampled in a thread while the block runs: a process that
    lives between two samples is missed, one that ends keeps its last sample."""

    EVERY_SECONDS = 0.2

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        named = {record.pid: name for name, record in self.mesh.processes().items() if record.pid}
        while not self._stop.wait(self.EVERY_SECONDS):
            for pid, parent in _parents().items():
                name = named.get(pid) or (f"{named[parent]} worker" if parent in named else None)
                if name is not None and (peak := _peak_bytes(pid)) is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0), peak)


def _parents() -> dict[int, int]:
    """Every process's parent, by pid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry)] = int(fields[1])
    return parents


def _peak_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def perturbed_corpus(corpus: Corpus, documents: int, path: Path, seed: int = 1) -> Path:
    """`documents` labelled titles as text<TAB>label lines: the corpus once, then again and
    again, each copy perturbed (a character dropped, doubled or swapped with its neighbour)
    so the copies are new documents to the features, as a large real corpus's would be."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(documents):
            text, label = corpus.texts[i % corpus.documents], corpus.labels[i % corpus.documents]
            if i >= corpus.documents and len(text) > 2:
                at = rng.randrange(len(text) - 1)
                text = rng.choice(
                    (text[:at] + text[at + 1 :], text[:at] + text[at] + text[at:], text[:at] + text[at + 1] + text[at] + text[at + 2 :])
                )
            out.write(f"{text}\t{label}\n")
    return path


def streamed_sgd(scratch: Path, corpus: Corpus, documents: int, epochs: int) -> dict[str, Any]:
    """The SGD path on a corpus of `documents` streamed from the dataset store: a fresh mesh
    (so every peak is this job's), a held-out fifth for the evaluation."""
    path = perturbed_corpus(corpus, documents, scratch / "streamed.txt")
    config = training_pb2.PipelineConfig(classifier=classifier_pb2.ClassifierOptions(algorithm=classifier_pb2.ALGORITHM_SGD, epochs=epochs))
    with running_mesh(scratch / "streamed", sidecars=False) as mesh, PeakMemory(mesh) as memory:
        seconds, job, report = train_through_jobs(mesh, path, None, (), config)
    passes = epochs + 2  # the features' pass, the classifier's epochs, the evaluation's pass
    return {
        "stream_documents": documents,
        "stream_file_bytes": path.stat().st_size,
        "stream_epochs": epochs,
        "stream_seconds": seconds,
        "stream_docs_per_s": documents / seconds,
        "stream_pass_docs_per_s": documents * passes / seconds,
        "stream_accuracy": report.accuracy,
        "stream_peak_bytes": dict(sorted(memory.peaks.items())),
    }


async def stream_classify(address: str, texts: Sequence[str], version: str, metadata: Sequence[tuple[str, str]] = ()) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pipeline_pb2_grpc.PipelineStub(channel)

        async def requests():
            for start in range(0, len(texts), STREAM_BATCH):
                yield pipeline_pb2.ClassifyStreamRequest(
                    documents=[common_pb2.Document(id=str(i), text=texts[i]) for i in range(start, min(start + STREAM_BATCH, len(texts)))],
                    model=MODEL,
                    version=version,
                    top_k=1,
                )

        return [p.labels[0].label async for answer in stub.ClassifyStream(requests(), metadata=metadata) for p in answer.predictions]


async def unary_latencies(address: str, texts: Sequence[str], calls: int, concurrency: int) -> tuple[list[float], float]:
    """Per-call latencies in ms and calls per second with `concurrency` callers."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pipeline_pb2_grpc.PipelineStub(channel)
        latencies: list[float] = []

        async def caller(offset: int) -> None:
            for i in range(offset, calls, concurrency):
                started = time.perf_counter()
                await stub.Classify(pipeline_pb2.ClassifyRequest(text=texts[i % len(texts)], model=MODEL, top_k=1))
                latencies.append((time.perf_counter() - started) * 1000)

        for i in range(20):  # warm up the streams
            await stub.Classify(pipeline_pb2.ClassifyRequest(text=texts[i], model=MODEL))
        started = time.perf_counter()
        await asyncio.gather(*(caller(offset) for offset in range(concurrency)))
        return latencies, calls / (time.perf_counter() - started)


def gateway_latencies(mesh: Mesh, texts: Sequence[str], calls: int) -> dict[str, list[float]]:
    """Sequential unary Classify latencies in ms: straight to the pipeline, gRPC through
    the gateway and REST through the gateway, interleaved so they share the noise."""
    token = mesh.authority().mint("viewer")
    metadata = [("authorization", f"Bearer {token}")]
    rest_host, rest_port = mesh.address("gateway").rsplit(":", 1)
    rest = http.client.HTTPConnection(rest_host, int(rest_port), timeout=30)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def over_rest(text: str) -> None:
        rest.request("POST", "/v1/classify", json.dumps({"text": text, "model": MODEL, "topK": 1}), headers)
        answer = rest.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"REST through the gateway answered {answer.status}: {body[:200]!r}")

    with grpc.insecure_channel(mesh.address()) as direct_channel, grpc.insecure_channel(mesh.address("gateway")) as gateway_channel:
        direct = pipeline_pb2_grpc.PipelineStub(direct_channel).Classify
        through = pipeline_pb2_grpc.PipelineStub(gateway_channel).Classify
        paths: dict[str, Callable[[str], Any]] = {
            "direct": lambda text: direct(pipeline_pb2.ClassifyRequest(text=text, model=MODEL, top_k=1)),
            "gateway_grpc": lambda text: through(pipeline_pb2.ClassifyRequest(text=text, model=MODEL, top_k=1), metadata=metadata),
            "gateway_rest": over_rest,
        }
        latencies = interleaved_latencies(paths, texts, calls)
    rest.close()
    return latencies


def interleaved_latencies(paths: Mapping[str, Callable[[str], Any]], texts: Sequence[str], calls: int) -> dict[str, list[float]]:
    """Sequential calls in ms, one path after the other in turn, so they share the noise."""
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(calls + 20):
        for name, call in paths.items():
            started = time.perf_counter()
            call(texts[i % len(texts)])
            if i >= 20:  # the first calls open connections and streams
                latencies[name].append((time.perf_counter() - started) * 1000)
    return latencies


def copy_registry(source: Mesh, target: Mesh) -> None:
    """Everything the source mesh's registry holds into the target's, as `fenlei registry
    export` and `import` do, through both gateways."""
    with (
        Client(source.address("gateway"), token=source.authority().mint("admin"), timeout=600) as exporting,
        Client(target.address("gateway"), token=target.authority().mint("admin"), timeout=600) as importing,
    ):
        archive = exporting.model_registry.ExportRegistry(registry_pb2.ExportRegistryRequest())
        importing.model_registry.ImportRegistry(registry_pb2.ImportRegistryRequest(chunk=answer.chunk) for answer in archive)


@dataclass(frozen=True)
class Target:
    """Where a Pipeline is served, and the metadata its callers send."""

    address: str
    metadata: Sequence[tuple[str, str]] = ()


def through_gateway(mesh: Mesh) -> Target:
    return Target(mesh.address("gateway"), [("authorization", f"Bearer {mesh.authority().mint('viewer')}")])


def compare(targets: Mapping[str, Target], texts: Sequence[str], version: str, calls: int) -> dict[str, Any]:
    """The same model at each target, measured in turn so they share the noise: ClassifyStream
    docs/s (median of rounds), unary latencies, and whether each predicts as the first does."""
    rates: dict[str, list[float]] = {mode: [] for mode in targets}
    labels: dict[str, list[str]] = {}
    for _ in range(REPEATS):
        for mode, target in targets.items():
            started = time.perf_counter()
            labels[mode] = asyncio.run(stream_classify(target.address, texts, version, target.metadata))
            rates[mode].append(len(texts) / (time.perf_counter() - started))
    channels = {mode: grpc.insecure_channel(target.address) for mode, target in targets.items()}
    try:
        stubs = {mode: pipeline_pb2_grpc.PipelineStub(channel).Classify for mode, channel in channels.items()}
        paths = {
            mode: (lambda text, stub=stubs[mode], metadata=targets[mode].metadata: stub(pipeline_pb2.ClassifyRequest(text=text, model=MODEL, top_k=1), metadata=metadata))
            for mode in targets
        }  # fmt: skip
        latencies = interleaved_latencies(paths, texts, calls)
    finally:
        for channel in channels.values():
            channel.close()
    figures: dict[str, Any] = {}
    first = next(iter(targets))
    for mode in targets:
        figures[f"{mode}_stream_docs_per_s"] = statistics.median(rates[mode])
        figures[f"{mode}_unary_p50_ms"] = percentile(latencies[mode], 0.5)
        figures[f"{mode}_unary_p99_ms"] = percentile(latencies[mode], 0.99)
        if mode != first:
            figures[f"{mode}_identical_predictions"] = labels[mode] == labels[first]
    return figures


@contextlib.contextmanager
def running_mesh(home: Path, sidecars: bool, env: Mapping[str, str] | None = None) -> Iterator[Mesh]:
    mesh = Mesh(home)
    try:
        mesh.up(extra_env={**QUIET_GATEWAY, **(env or {})}, sidecars=sidecars)
        yield mesh
    finally:
        mesh.down()


@contextlib.contextmanager
def monolith_server(home: Path, version: str) -> Iterator[Target]:
    """fenlei.monolith serving the model version of a mesh's home, in a process of its own
    (as a user's would be, and off the bench's own interpreter)."""
    process = subprocess.Popen([sys.executable, "-m", "fenlei.monolith", str(home), MODEL, version], stdout=subprocess.PIPE, text=True)
    try:
        address = process.stdout.readline().strip() if process.stdout else ""
        if not address:
            raise RuntimeError(f"the monolith ended before it served (exit code {process.wait()})")
        yield Target(address)
    finally:
        process.terminate()
        process.wait()


# Where a unary Classify spends its time, from its trace (fenlei.telemetry.spans).
CLIENT_HOP = "client <-> gateway"
PIPELINE_LESS_STAGES = "pipeline span less stage batches"
TOTAL = "total, as the client measured"


def traced_calls(target: Target, texts: Sequence[str], calls: int) -> dict[str, float]:
    """Sequential unary Classify calls: each call's trace id (its answer names it) and latency in ms."""
    traced: dict[str, float] = {}
    with grpc.insecure_channel(target.address) as channel:
        classify = pipeline_pb2_grpc.PipelineStub(channel).Classify
        for i in range(calls + 20):
            started = time.perf_counter()
            _, call = classify.with_call(
                pipeline_pb2.ClassifyRequest(text=texts[i % len(texts)], model=MODEL, top_k=1), metadata=target.metadata
            )
            if i >= 20:  # the first calls open connections and streams
                traced[dict(call.initial_metadata() or ())[TRACE_ID_HEADER]] = (time.perf_counter() - started) * 1000
    return traced


def collected_traces(home: Path, trace_ids: Collection[str], spans_per_trace: int, timeout: float = 60.0) -> dict[str, list[spans.Span]]:
    """The traces' spans once the mesh's collector has written all of them (the services
    export every second, Envoy every five)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[spans.Span]] = {trace_id: [] for trace_id in trace_ids}
        for span in spans.read(home):
            if span.trace_id in found:
                found[span.trace_id].append(span)
        complete = sum(len(trace) >= spans_per_trace for trace in found.values())
        if complete == len(found):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"{complete} of {len(found)} traces reached {spans.directory(home)} whole within {timeout:.0f} s")
        time.sleep(0.25)


def hops(trace: Sequence[spans.Span], client_ms: float) -> dict[str, float]:
    """Where one call's time went, in ms, in the order it passed: the client's side, each
    proxy's span less its child's (the gateway, the pipeline's sidecar), then within the
    pipeline's span its stage batches and the gaps around them (the pipeline's own work and
    the hops to and from the stages, through their sidecars when the mesh has them). They
    add up to TOTAL, the client's latency; PIPELINE_LESS_STAGES, after it, sums the pipeline's gaps."""
    children: dict[str, list[spans.Span]] = {}
    for span in trace:
        children.setdefault(span.parent_span_id, []).append(span)
    span = spans.roots(list(trace))[0]
    times = {CLIENT_HOP: client_ms - span.duration_ms}
    while len(below := children.get(span.span_id, [])) == 1:
        times[span.service] = span.duration_ms - below[0].duration_ms
        span = below[0]
    caller, since = span.service, span.start_ns
    for batch in sorted(below, key=lambda batch: batch.start_ns):
        times[f"{caller} -> {batch.service}"] = (batch.start_ns - since) / 1e6
        times[f"{batch.service} batch"] = batch.duration_ms
        caller, since = batch.service, batch.end_ns
    times[f"{caller} -> {span.service}"] = (span.end_ns - since) / 1e6
    times[TOTAL] = client_ms
    times[PIPELINE_LESS_STAGES] = span.duration_ms - sum(batch.duration_ms for batch in below)
    return times


def median_hops(traces: Mapping[str, Sequence[spans.Span]], latencies: Mapping[str, float]) -> dict[str, float]:
    """Each hop's median over the calls (medians of the parts need not add up to the total's)."""
    every = [hops(trace, latencies[trace_id]) for trace_id, trace in traces.items()]
    return {name: statistics.median(times[name] for times in every) for name in every[0]}


def hop_breakdown(mesh: Mesh, texts: Sequence[str], calls: int) -> dict[str, float]:
    """Median hops of `calls` unary Classify calls through a mesh's gateway."""
    latencies = traced_calls(through_gateway(mesh), texts, calls)
    proxies = 2 if mesh.with_sidecars() else 1  # the gateway, and the pipeline's sidecar
    traces = collected_traces(mesh.home, latencies, proxies + 1 + len(services.STAGES))
    return median_hops(traces, latencies)


def format_hops(columns: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One row per hop, one column per mesh; "-" where a mesh has no such hop."""
    names = list(columns[max(columns, key=lambda title: len(columns[title]))])
    names += [name for column in columns.values() for name in column if name not in names]
    width = max(map(len, names))
    lines = [f"  {'':{width}}" + "".join(f"  {title:>14}" for title in columns)]
    for name in names:
        cells = "".join(f"  {column[name]:11.3f} ms" if name in column else f"  {'-':>14}" for column in columns.values())
        lines.append(f"  {name:{width}}{cells}")
    return lines


def mesh_costs(direct: Mesh, scratch: Path, texts: Sequence[str], version: str, calls: int) -> dict[str, Any]:
    """What the sidecars, tracing and the mesh as a whole cost, in one run: `direct` (no
    sidecars) against a mesh with sidecars, one with sidecars and tracing off
    (OTEL_SDK_DISABLED=true in every process, Envoy's included), both serving a copy of
    `direct`'s model, and the monolith serving its files; then where a unary Classify spends
    its time in each traced mesh, from the traces."""
    with (
        running_mesh(scratch / "with-sidecars", sidecars=True) as meshed,
        running_mesh(scratch / "untraced", sidecars=True, env={"OTEL_SDK_DISABLED": "true"}) as untraced,
        monolith_server(direct.home, version) as monolith,
    ):
        for copy in (meshed, untraced):
            copy_registry(direct, copy)
        targets = {
            "direct": through_gateway(direct),
            "mesh": through_gateway(meshed),
            "untraced": through_gateway(untraced),
            "monolith": monolith,
        }
        figures = compare(targets, texts, version, calls)
        figures["hops_ms"] = {"direct": hop_breakdown(direct, texts, calls), "mesh": hop_breakdown(meshed, texts, calls)}
    figures["mesh_stream_ratio"] = figures["mesh_stream_docs_per_s"] / figures["direct_stream_docs_per_s"]
    figures["tracing_stream_ratio"] = figures["mesh_stream_docs_per_s"] / figures["untraced_stream_docs_per_s"]
    figures["tracing_unary_p50_ratio"] = figures["mesh_unary_p50_ms"] / figures["untraced_unary_p50_ms"]
    figures["monolith_stream_ratio"] = figures["mesh_stream_docs_per_s"] / figures["monolith_stream_docs_per_s"]
    figures["monolith_unary_p50_ratio"] = figures["mesh_unary_p50_ms"] / figures["monolith_unary_p50_ms"]
    figures["unary_tax_p50_ms"] = figures["mesh_unary_p50_ms"] - figures["monolith_unary_p50_ms"]
    return figures


def print_mesh_costs(figures: Mapping[str, Any], calls: int) -> None:
    print(
        f"mesh:       ClassifyStream {figures['mesh_stream_docs_per_s']:,.0f} docs/s with sidecars vs "
        f"{figures['direct_stream_docs_per_s']:,.0f} without (ratio {figures['mesh_stream_ratio']:.2f}); unary p50 "
        f"{figures['mesh_unary_p50_ms']:.2f} ms vs {figures['direct_unary_p50_ms']:.2f} ms (both through the gateway)",
        f"tracing:    ClassifyStream {figures['mesh_stream_docs_per_s']:,.0f} docs/s traced vs {figures['untraced_stream_docs_per_s']:,.0f} "
        f"untraced (ratio {figures['tracing_stream_ratio']:.2f}); unary p50 {figures['mesh_unary_p50_ms']:.2f} ms vs "
        f"{figures['untraced_unary_p50_ms']:.2f} ms (ratio {figures['tracing_unary_p50_ratio']:.2f}); both with sidecars, "
        f"identical predictions: {figures['untraced_identical_predictions']}",
        f"monolith:   one process, the four cores behind gRPC: ClassifyStream {figures['monolith_stream_docs_per_s']:,.0f} docs/s "
        f"(the mesh's ratio {figures['monolith_stream_ratio']:.2f}), unary p50 {figures['monolith_unary_p50_ms']:.2f} ms "
        f"(the mesh's ratio {figures['monolith_unary_p50_ratio']:.2f}, tax {figures['unary_tax_p50_ms']:.2f} ms), "
        f"identical predictions: {figures['monolith_identical_predictions']}",
        f"hops:       median of {calls} unary Classify calls through the gateway, from their traces",
        *format_hops({"no sidecars": figures["hops_ms"]["direct"], "sidecars": figures["hops_ms"]["mesh"]}),
        sep="\n",
        flush=True,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def segmentation_f1(gold_file: Path) -> float:
    """Word-boundary F1 of the default segmentation against a word/tag gold standard."""
    gold_sentences = []
    for line in gold_file.read_text(encoding="utf-8").splitlines():
        words = [item.rsplit("/", 1)[0] for item in line.split()]
        if words:
            gold_sentences.append(words)
    predicted = Segmenter().segment(["".join(words) for words in gold_sentences], SegmentConfig())

    def spans(words: Sequence[str]) -> set[tuple[int, int]]:
        result, start = set(), 0
        for word in words:
            result.add((start, start + len(word)))
            start += len(word)
        return result

    correct = gold_total = predicted_total = 0
    for gold, guess in zip(gold_sentences, predicted):
        g, p = spans(gold), spans([t for t in guess.tokens])
        correct += len(g & p)
        gold_total += len(g)
        predicted_total += len(p)
    precision, recall = correct / predicted_total, correct / gold_total
    return 2 * precision * recall / (precision + recall)


def run_bench(args: argparse.Namespace) -> int:
    label_file = args.data / "class.txt"
    names = label_file.read_text(encoding="utf-8").split() if label_file.exists() else []
    train = read_corpus(args.data / "dev.txt", label_names=names)
    test = read_corpus(args.data / "test.txt", label_names=names)
    figures: dict[str, Any] = {"train_documents": len(train.texts), "test_documents": len(test.texts)}

    inproc_seconds, inproc_rate, inproc_labels = in_process(train, test)
    figures["inproc_accuracy"] = evaluate(test.labels, inproc_labels)[0]
    figures["inproc_docs_per_s"] = inproc_rate
    figures["inproc_train_seconds"] = inproc_seconds
    print(
        f"in-process: accuracy {figures['inproc_accuracy']:.4f}, trained in {inproc_seconds:.1f} s, {inproc_rate:,.0f} docs/s",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="fenlei-bench-") as scratch:
        with running_mesh(Path(scratch), sidecars=False) as mesh:
            job_seconds, job, _ = train_through_jobs(mesh, args.data / "dev.txt", args.data / "test.txt", names)
            figures.update(job_seconds=job_seconds, ratio_job_vs_inproc=job_seconds / inproc_seconds)
            print(
                f"job:        trained by the jobs service in {job_seconds:.1f} s (ratio {job_seconds / inproc_seconds:.2f} "
                "to in-process), from its creation to its registered version",
                flush=True,
            )
            address = mesh.address()
            stream_rate, stream_labels = median_rate(
                len(test.texts), lambda: asyncio.run(stream_classify(address, test.texts, job.version))
            )
            accuracy, macro_f1, _ = evaluate(test.labels, stream_labels)
            figures.update(
                accuracy=accuracy,
                macro_f1=macro_f1,
                stream_docs_per_s=stream_rate,
                ratio_stream_vs_inproc=stream_rate / inproc_rate,
                identical_predictions=stream_labels == inproc_labels,
            )
            print(
                f"services:   accuracy {accuracy:.4f}, macro F1 {macro_f1:.4f}, {stream_rate:,.0f} docs/s "
                f"(ratio {stream_rate / inproc_rate:.2f}), identical predictions: {stream_labels == inproc_labels}",
                flush=True,
            )
            latencies, _ = asyncio.run(unary_latencies(address, test.texts, args.unary_calls, 1))
            _, rps = asyncio.run(unary_latencies(address, test.texts, args.unary_calls, 8))
            figures.update(unary_p50_ms=percentile(latencies, 0.5), unary_p99_ms=percentile(latencies, 0.99), unary_rps_c8=rps)
            print(
                f"unary:      p50 {figures['unary_p50_ms']:.2f} ms, p99 {figures['unary_p99_ms']:.2f} ms, "
                f"{rps:,.0f} calls/s at concurrency 8",
                flush=True,
            )
            by_path = gateway_latencies(mesh, test.texts, args.unary_calls)
            for name, values in by_path.items():
                figures[f"{name}_p50_ms"] = percentile(values, 0.5)
                figures[f"{name}_p99_ms"] = percentile(values, 0.99)
            figures["gateway_added_p50_ms"] = figures["gateway_grpc_p50_ms"] - figures["direct_p50_ms"]
            print(
                "gateway:    "
                + ", ".join(
                    f"{name.replace('_', ' ')} p50 {figures[name + '_p50_ms']:.2f} ms (p99 {figures[name + '_p99_ms']:.2f})"
                    for name in by_path
                ),
                flush=True,
            )
            figures.update(mesh_costs(mesh, Path(scratch), test.texts, job.version, args.unary_calls))
            print_mesh_costs(figures, args.unary_calls)
        if args.stream_documents:
            figures.update(
                streamed_sgd(
                    Path(scratch), Corpus(train.texts + test.texts, train.labels + test.labels), args.stream_documents, args.stream_epochs
                )
            )
            peaks = ", ".join(f"{name} {peak / 2**20:,.0f}" for name, peak in figures["stream_peak_bytes"].items())
            print(
                f"streamed:   SGD on {args.stream_documents:,} documents ({figures['stream_file_bytes'] / 2**20:,.0f} MiB) streamed from the "
                f"dataset store, {args.stream_epochs} epoch(s): {figures['stream_seconds']:.0f} s, {figures['stream_docs_per_s']:,.0f} docs/s "
                f"({figures['stream_pass_docs_per_s']:,.0f} document passes/s), accuracy {figures['stream_accuracy']:.4f} on the held-out fifth",
                flush=True,
            )
            print(f"            peak memory (MiB): {peaks}", flush=True)

    if args.segmentation_gold:
        figures["segmentation_f1"] = segmentation_f1(args.segmentation_gold)
        print(f"segmentation F1: {figures['segmentation_f1']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0
