"""Jobs: what the jobs service keeps and decides, without gRPC.

`JobStore` is the SQLite database `<home>/jobs/jobs.db`: every job with its request, state
and latest progress, and the events of each (sequence 1, 2, ...), which a watcher replays
from any point. Only the service writes it.

`Scheduler` runs the queue: at most `max_concurrent_jobs` jobs at once, first come first
served, each in a worker process of its own (`python -m fenlei.jobs.worker`, dying with the
service: PR_SET_PDEATHSIG). The worker reads the job as one JSON line on stdin and writes
JSON lines on stdout: {"progress": {...}} now and then (at least every lease/4 seconds),
then {"result": {"version": ..., "report": {...}}} or {"error": "why"}. A worker that
exits without a result, or is silent for `lease_seconds`, fails its job with the reason,
so no job stays running after its worker is gone. A job still "running" when the service
starts lost its worker with the previous service: it is failed (not re-queued: its
training may have been half-way through registering).

States: queued → running → succeeded | failed | cancelled; queued → cancelled.
Jobs and events are dicts with the contract's field names (Job, JobEvent, Progress):
states by their short names ("running"), times in seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote
from fenlei.runtime.db import Database
from fenlei.runtime.models import check_name
from fenlei.runtime.settings import ServiceSettings

log = logging.getLogger("fenlei.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ENDED = frozenset({"succeeded", "failed", "cancelled"})
MOVES = {"queued": {"running", "cancelled"}, "running": {"succeeded", "failed", "cancelled"}}
RESTARTED = "the jobs service stopped while it ran (its worker stopped with it); create the job again"
# The last lines a worker wrote on stderr, kept for the reason when it dies.
STDERR_LINES = 20
# A worker's JSON lines can carry a whole report.
LINE_LIMIT = 64 * 1024 * 1024

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            number INTEGER PRIMARY KEY,  -- the id is job-<number>
            model TEXT NOT NULL,
            dataset TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL,  -- JSON of fenlei.v1.PipelineConfig, by field name
            evaluation TEXT NOT NULL,  -- JSON of fenlei.v1.Evaluation
            tune INTEGER NOT NULL,
            space TEXT NOT NULL,  -- JSON of fenlei.v1.TuningSpace
            tags TEXT NOT NULL,  -- JSON object
            description TEXT NOT NULL,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            created_by TEXT NOT NULL,
            progress TEXT NOT NULL,  -- JSON of the last fenlei.v1.Progress
            version TEXT NOT NULL DEFAULT '',
            report TEXT)  -- JSON of fenlei.v1.TrainingReport, once succeeded""",
        "CREATE INDEX jobs_by_state ON jobs(state, number)",
        """CREATE TABLE job_events (
            number INTEGER NOT NULL REFERENCES jobs(number),
            sequence INTEGER NOT NULL,
            at REAL NOT NULL,
            state TEXT NOT NULL,
            progress TEXT NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (number, sequence))""",
    ),
)


@dataclasses.dataclass(frozen=True)
class JobsSettings(ServiceSettings):
    # The workloads it calls (fenlei.services): FENLEI_JOBS_<CALLEE>_ADDRESS. Its workers read them too.
    segmenter_address: str = ""
    preprocessor_address: str = ""
    features_address: str = ""
    classifier_address: str = ""
    registry_address: str = ""
    datasets_address: str = ""
    max_concurrent_jobs: int = 1
    # A worker that reports nothing for this long is killed and its job failed.
    lease_seconds: float = 60.0
    # How long a cancelled worker has to stop its stage calls and remove its draft before it is killed.
    cancel_grace_seconds: float = 10.0
    # A watch of a job with no event for this long gets a keep-alive: well within the
    # gateway's stream idle timeout (300 s), which would end the watch of a queued job.
    watch_keepalive_seconds: float = 60.0


def job_id(number: int) -> str:
    return f"job-{number}"


def _number(job: str) -> int:
    prefix, _, digits = job.partition("-")
    if prefix != "job" or not digits.isdigit():
        raise InvalidInput(f"job id {quote(job)} is not valid: job ids look like job-1, job-2, ...")
    return int(digits)


def _job(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": job_id(row["number"]),
        "model": row["model"],
        "dataset": row["dataset"],
        "state": row["state"],
        "reason": row["reason"],
        "config": json.loads(row["config"]),
        "evaluation": json.loads(row["evaluation"]),
        "tune": bool(row["tune"]),
        "space": json.loads(row["space"]),
        "tags": json.loads(row["tags"]),
        "description": row["description"],
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        "created_by": row["created_by"],
        "progress": json.loads(row["progress"]),
        "version": row["version"],
    }


def _event(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "sequence": row["sequence"],
        "at": row["at"],
        "state": row["state"],
        "progress": json.loads(row["progress"]),
        "message": row["message"],
    }


class JobStore:
    def __init__(self, home: Path) -> None:
        self.db = Database(Path(home) / "jobs" / "jobs.db", MIGRATIONS, "jobs")

    def create(self, request: Mapping[str, Any], created_by: str) -> dict[str, Any]:
        """A queued job from a CreateJobRequest's fields (model, dataset, config, evaluation,
        tune, space, tags, description)."""
        check_name(request.get("model", ""))
        if not request.get("dataset"):
            raise InvalidInput("name the dataset (ds-...) the job trains on; `fenlei datasets upload FILE` stores one")
        with self.db.transaction() as conn:
            cursor = conn.execute(
                """INSERT INTO jobs (model, dataset, state, config, evaluation, tune, space, tags, description, created,
                                     created_by, progress)
                   VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    request["model"],
                    request["dataset"],
                    json.dumps(request.get("config", {}), ensure_ascii=False),
                    json.dumps(request.get("evaluation", {}), ensure_ascii=False),
                    int(bool(request.get("tune", False))),
                    json.dumps(request.get("space", {}), ensure_ascii=False),
                    json.dumps(dict(request.get("tags", {})), ensure_ascii=False),
                    request.get("description", ""),
                    time.time(),
                    created_by,
                    json.dumps({"phase": "queued"}),
                ),
            )
            number = cursor.lastrowid
            assert number is not None
            self._add_event(conn, number, "queued", {"phase": "queued"}, f"queued by {created_by}")
        return self.get(job_id(number))

    def get(self, job: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE number = ?", (_number(job),)).fetchone()
        if row is None:
            raise NotFound(f"no job {quote(job)}; `fenlei jobs list` shows the jobs there are")
        return _job(row)

    def list_jobs(self, states: Sequence[str] = (), model: str = "", limit: int = 0) -> list[dict[str, Any]]:
        """Newest first."""
        unknown = [state for state in states if state not in STATES]
        if unknown:
            raise InvalidInput(f"unknown job state(s) {', '.join(map(quote, unknown))}; the states are {', '.join(STATES)}")
        where: list[str] = []
        values: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            values.extend(states)
        if model:
            where.append("model = ?")
            values.append(model)
        query = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY number DESC"
        if limit:
            query += f" LIMIT {int(limit)}"
        with self.db.read() as conn:
            return [_job(row) for row in conn.execute(query, values)]

    def queued(self) -> list[str]:
        """The queue, first come first."""
        with self.db.read() as conn:
            return [job_id(row[0]) for row in conn.execute("SELECT number FROM jobs WHERE state = 'queued' ORDER BY number")]

    def pins(self) -> list[tuple[str, str]]:
        """(job, dataset) for every dataset a queued or running job uses: its own and its test dataset."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT number, dataset, evaluation FROM jobs WHERE state IN ('queued', 'running') ORDER BY number")
            pins = []
            for row in rows:
                for dataset in dict.fromkeys([row["dataset"], json.loads(row["evaluation"]).get("test_dataset", "")]):
                    if dataset:
                        pins.append((job_id(row["number"]), dataset))
            return pins

    def events(self, job: str, after: int = 0) -> tuple[list[dict[str, Any]], bool]:
        """The job's events after sequence `after`, and whether the job has ended."""
        number = _number(job)
        with self.db.read() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise NotFound(f"no job {quote(job)}; `fenlei jobs list` shows the jobs there are")
            events = conn.execute("SELECT * FROM job_events WHERE number = ? AND sequence > ? ORDER BY sequence", (number, after))
            return [_event(event) for event in events], row["state"] in ENDED

    def report(self, job: str) -> dict[str, Any]:
        found = self.get(job)
        with self.db.read() as conn:
            report = conn.execute("SELECT report FROM jobs WHERE number = ?", (_number(job),)).fetchone()["report"]
        if report is None:
            raise FailedPrecondition(f"{job} is {found['state']}: only a succeeded job has a report")
        return dict(json.loads(report))

    def start(self, job: str) -> dict[str, Any] | None:
        """queued → running; None when it is no longer queued (cancelled meanwhile)."""
        return self._move(job, "running", {"phase": "starting"}, "started", started=time.time())

    def progress(self, job: str, progress: Mapping[str, Any], message: str = "") -> dict[str, Any] | None:
        """An event of a running job (None once it has ended)."""
        with self.db.transaction() as conn:
            number = _number(job)
            row = conn.execute("SELECT state FROM jobs WHERE number = ?", (number,)).fetchone()
            if row is None or row["state"] != "running":
                return None
            return self._add_event(conn, number, "running", progress, message)

    def finish(
        self, job: str, state: str, reason: str = "", version: str = "", report: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """running (or queued, for a cancel) → an ended state; None when that move is not
        possible (it had ended already)."""
        fields: dict[str, Any] = {"finished": time.time(), "reason": reason, "version": version}
        if report is not None:
            fields["report"] = json.dumps(report, ensure_ascii=False)
        return self._move(job, state, None, reason or f"registered version {version}", **fields)

    def recover(self) -> list[str]:
        """Fails the jobs a previous service left running; returns their ids."""
        with self.db.transaction() as conn:
            numbers = [row[0] for row in conn.execute("SELECT number FROM jobs WHERE state = 'running'")]
        for number in numbers:
            self.finish(job_id(number), "failed", RESTARTED)
        return [job_id(number) for number in numbers]

    def _move(self, job: str, state: str, progress: Mapping[str, Any] | None, message: str, **fields: Any) -> dict[str, Any] | None:
        number = _number(job)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT state, progress FROM jobs WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise NotFound(f"no job {quote(job)}")
            if state not in MOVES.get(row["state"], ()):
                return None
            assignments = ", ".join(f"{name} = ?" for name in ["state", *fields])
            conn.execute(f"UPDATE jobs SET {assignments} WHERE number = ?", (state, *fields.values(), number))
            # An ended job's last event keeps the progress it had reached, under its final state.
            return self._add_event(conn, number, state, json.loads(row["progress"]) if progress is None else progress, message)

    def _add_event(self, conn: sqlite3.Connection, number: int, state: str, progress: Mapping[str, Any], message: str) -> dict[str, Any]:
        last = conn.execute("SELECT MAX(sequence) FROM job_events WHERE number = ?", (number,)).fetchone()[0] or 0
        progress_json = json.dumps(dict(progress), ensure_ascii=False)
        at = time.time()
        conn.execute(
            "INSERT INTO job_events (number, sequence, at, state, progress, message) VALUES (?, ?, ?, ?, ?, ?)",
            (number, last + 1, at, state, progress_json, message),
        )
        conn.execute("UPDATE jobs SET progress = ? WHERE number = ?", (progress_json, number))
        return {"sequence": last + 1, "at": at, "state": state, "progress": dict(progress), "message": message}

    def close(self) -> None:
        self.db.close()


def die_with_parent(parent: int) -> None:
    """In a worker, first thing: the kernel sends it SIGTERM when the service dies (kill -9
    included), so a worker never outlives the service that watches it. `parent`: the
    service's pid, in case it died before this ran. (Set in the worker rather than between
    fork and exec: Python code run there in a process with gRPC's threads can crash.)"""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def exit_text(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


# Sends every (job, dataset) pin there is (the datasets service's DatasetPins.SetPins).
Pin = Callable[[list[tuple[str, str]]], Awaitable[None]]


@dataclasses.dataclass
class _Run:
    """A job the scheduler has taken from the queue."""

    process: asyncio.subprocess.Process | None = None
    cancel_reason: str = ""
    ended: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class Scheduler:
    """The queue and the workers, on the service's event loop. The database work runs in
    threads; events are announced to watchers through one asyncio.Condition per job."""

    def __init__(self, store: JobStore, settings: JobsSettings, command: Sequence[str], pin: Pin | None = None) -> None:
        """command: the worker's (it gets the service's environment, and its pid as an argument).
        pin: sends the datasets service every (job, dataset) in use, after each change."""
        self.store = store
        self.settings = settings
        self.command = list(command)
        self.pin = pin
        self._pinning = asyncio.Lock()
        self.runs: dict[str, _Run] = {}
        self._latest: dict[str, int] = {}  # job → the sequence of its newest event
        self._conditions: dict[str, asyncio.Condition] = collections.defaultdict(asyncio.Condition)
        self._tasks: set[asyncio.Task[None]] = set()
        self._filling = asyncio.Lock()
        self.closing = False

    async def open(self) -> None:
        """Fails what a previous service left running, then starts what is queued."""
        failed = await asyncio.to_thread(self.store.recover)
        if failed:
            log.warning("failed the jobs a previous service left running", extra={"fields": {"jobs": failed}})
        await self.sync_pins()
        await self.fill()

    async def sync_pins(self) -> None:
        """The datasets in use, to the datasets service (which refuses to delete them). A
        failure is logged: the next change sends the whole set again."""
        if self.pin is None:
            return
        async with self._pinning:  # one at a time, each with the set as it is when it goes
            try:
                await self.pin(await asyncio.to_thread(self.store.pins))
            except Exception as error:  # noqa: BLE001 - a pin lost now is put right by the next change
                log.warning("could not send the datasets in use to the datasets service", extra={"fields": {"error": str(error)}})

    async def create(self, request: Mapping[str, Any], created_by: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.store.create, request, created_by)
        await self.sync_pins()
        await self.fill()
        return job

    async def fill(self) -> None:
        """Starts queued jobs while fewer than max_concurrent_jobs run."""
        async with self._filling:
            free = self.settings.max_concurrent_jobs - len(self.runs)
            if free <= 0 or self.closing:
                return
            # A job taken from the queue stays "queued" until its run has started it.
            waiting = [job for job in await asyncio.to_thread(self.store.queued) if job not in self.runs]
            for job in waiting[:free]:
                self.runs[job] = _Run()
                task = asyncio.create_task(self._run(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def cancel(self, job: str, reason: str) -> dict[str, Any]:
        """Stops a queued or running job; a running one's worker gets SIGTERM (it ends its
        stage calls and removes its draft), and SIGKILL after cancel_grace_seconds. Returns
        the job once it has ended."""
        found = await asyncio.to_thread(self.store.get, job)
        run = self.runs.get(job)
        if run is not None:
            run.cancel_reason = reason
            if run.process is not None and run.process.returncode is None:
                run.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(run.ended.wait()), self.settings.cancel_grace_seconds)
            except TimeoutError:
                if run.process is not None and run.process.returncode is None:
                    log.warning("a cancelled worker did not stop in time; killing it", extra={"fields": {"job": job}})
                    run.process.kill()
                await run.ended.wait()
        elif found["state"] == "queued":
            await self._announce(job, await asyncio.to_thread(self.store.finish, job, "cancelled", reason))
            await self.sync_pins()
        found = await asyncio.to_thread(self.store.get, job)
        if found["state"] != "cancelled" and found["state"] in ENDED and run is None:
            raise FailedPrecondition(f"{job} has {found['state']} already: only a queued or running job can be cancelled")
        return found

    async def watch(self, job: str, after: int = 0) -> AsyncIterator[dict[str, Any] | None]:
        """The job's events after `after`, then each new one, until the job has ended; None
        (a keep-alive) when the job has had no event for watch_keepalive_seconds."""
        condition = self._conditions[job]
        while True:
            events, ended = await asyncio.to_thread(self.store.events, job, after)
            for event in events:
                yield event
                after = event["sequence"]
            if ended:
                return
            async with condition:
                try:
                    await asyncio.wait_for(
                        condition.wait_for(functools.partial(self._has_events_after, job, after)), self.settings.watch_keepalive_seconds
                    )
                except TimeoutError:
                    pass
                else:
                    continue
            yield None

    async def jobs_ahead(self, job: str) -> int:
        """How many jobs run or wait in the queue before a queued one; 0 for any other."""
        queued = [waiting for waiting in await asyncio.to_thread(self.store.queued) if waiting not in self.runs]
        return len(self.runs) + queued.index(job) if job in queued else 0

    def _has_events_after(self, job: str, sequence: int) -> bool:
        return self._latest.get(job, 0) > sequence

    async def close(self) -> None:
        """Stops every worker (their jobs fail as when the service stops) and waits for them."""
        self.closing = True
        for run in self.runs.values():
            if run.process is not None and run.process.returncode is None:
                run.process.send_signal(signal.SIGTERM)
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _announce(self, job: str, event: dict[str, Any] | None) -> None:
        if event is None:
            return
        self._latest[job] = event["sequence"]
        condition = self._conditions[job]
        async with condition:
            condition.notify_all()

    async def _run(self, job: str) -> None:
        run = self.runs[job]
        try:
            started = await asyncio.to_thread(self.store.start, job)
            if started is None:
                return  # cancelled between the queue's read and now
            await self._announce(job, started)
            if run.cancel_reason:
                await self._announce(job, await asyncio.to_thread(self.store.finish, job, "cancelled", run.cancel_reason))
                return
            state, reason, result = await self._work(job, run)
            event = await asyncio.to_thread(
                self.store.finish, job, state, reason, result.get("version", ""), result.get("report") if state == "succeeded" else None
            )
            await self._announce(job, event)
            log.info("job ended", extra={"fields": {"job": job, "state": state, "reason": reason}})
        except Exception:
            log.exception("running a job failed", extra={"fields": {"job": job}})
            if run.process is not None and run.process.returncode is None:
                run.process.kill()
            with contextlib.suppress(Exception):
                event = await asyncio.to_thread(self.store.finish, job, "failed", "the jobs service could not run it; see its log")
                await self._announce(job, event)
        finally:
            run.ended.set()
            del self.runs[job]
            await self.sync_pins()
            await self.fill()

    async def _work(self, job: str, run: _Run) -> tuple[str, str, dict[str, Any]]:
        """Runs the job's worker to its end: (state, reason, result)."""
        request = await asyncio.to_thread(self.store.get, job)
        try:
            process = run.process = await asyncio.create_subprocess_exec(
                *self.command,
                str(os.getpid()),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
        except OSError as error:
            return "failed", f"its worker could not start: {error}", {}
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        if run.cancel_reason or self.closing:  # cancelled, or the scheduler closed, while it started
            process.send_signal(signal.SIGTERM)
        process.stdin.write(json.dumps(request, ensure_ascii=False).encode("utf-8") + b"\n")
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        stderr = asyncio.create_task(self._collect(process.stderr, tail, job))
        result: dict[str, Any] = {}
        failure = ""
        silent = False
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), self.settings.lease_seconds)
            except TimeoutError:
                silent = True
                process.kill()
                break
            if not line:
                break
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                log.warning(
                    "a worker wrote a line that is not JSON", extra={"fields": {"job": job, "line": line[:200].decode(errors="replace")}}
                )
                continue
            if "progress" in message:
                await self._announce(job, await asyncio.to_thread(self.store.progress, job, message["progress"]))
            elif "result" in message:
                result = message["result"]
            elif "error" in message:
                failure = str(message["error"])
        code = await process.wait()
        await stderr
        if result:
            return "succeeded", "", result
        if run.cancel_reason:
            return "cancelled", run.cancel_reason, {}
        if failure:
            return "failed", failure, {}
        if silent:
            return "failed", f"its worker reported nothing for {self.settings.lease_seconds:g} s (its lease ran out) and was killed", {}
        last = next((line for line in reversed(tail) if line.strip()), "")
        return "failed", f"its worker exited with {exit_text(code)} without a result" + (f": {last}" if last else ""), {}

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, tail: collections.deque[str], job: str) -> None:
        """A worker's stderr: logged, and its last lines kept for the reason it died."""
        async for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                tail.append(line)
                log.info("worker", extra={"fields": {"job": job, "line": line[:2000]}})
