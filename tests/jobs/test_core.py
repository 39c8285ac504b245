"""fenlei.jobs.core: the job store's states and events, and the scheduler's queue, workers,
leases and cancels, with a stand-in worker (a Python script that does what the job's
description tells it) instead of training."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.jobs.core import RESTARTED, JobsSettings, JobStore, Scheduler

# Guards against a hang; not a speed requirement.
HANG_GUARD = 60.0


def run(home: Path, worker: list[str], body: Callable[[Scheduler], Awaitable[Any]], **settings: Any) -> Any:
    """body(scheduler) on a scheduler with the worker `worker`; its workers stopped at the end."""

    async def main() -> Any:
        store = JobStore(home)
        scheduler = Scheduler(store, JobsSettings(home=home, **settings), worker)
        await scheduler.open()
        try:
            return await body(scheduler)
        finally:
            await scheduler.close()
            store.close()

    return asyncio.run(asyncio.wait_for(main(), HANG_GUARD))


async def events_until_end(scheduler: Scheduler, job: str, after: int = 0) -> list[dict[str, Any]]:
    return [event async for event in scheduler.watch(job, after)]


async def wait_for_file(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- the store


def test_a_created_job_is_queued_with_its_request_and_a_first_event(tmp_path: Path, job_fields: Callable[..., dict[str, Any]]) -> None:
    store = JobStore(tmp_path)
    job = store.create(job_fields(config={"classifier": {"algorithm": "ALGORITHM_SGD"}}, tags={"owner": "ml"}, tune=False), "alice")
    assert job["id"] == "job-1" and job["state"] == "queued" and job["created_by"] == "alice"
    assert job["config"] == {"classifier": {"algorithm": "ALGORITHM_SGD"}} and job["tags"] == {"owner": "ml"}
    assert job["started"] is None and job["finished"] is None and job["progress"] == {"phase": "queued"}
    events, ended = store.events("job-1")
    assert [(e["sequence"], e["state"], e["message"]) for e in events] == [(1, "queued", "queued by alice")] and not ended
    assert store.create(job_fields(), "bob")["id"] == "job-2"
    assert store.queued() == ["job-1", "job-2"]


def test_the_store_refuses_what_no_job_can_be(tmp_path: Path, job_fields: Callable[..., dict[str, Any]]) -> None:
    store = JobStore(tmp_path)
    with pytest.raises(InvalidInput, match="model name"):
        store.create(job_fields(model="Not A Name"), "alice")
    with pytest.raises(InvalidInput, match="dataset"):
        store.create(job_fields(dataset=""), "alice")
    with pytest.raises(InvalidInput, match="job-1, job-2"):
        store.get("42")
    with pytest.raises(NotFound, match="job-9"):
        store.get("job-9")
    with pytest.raises(InvalidInput, match="unknown job state"):
        store.list_jobs(["sleeping"])
    assert store.list_jobs() == []


def test_states_move_only_forward_and_each_move_is_an_event(tmp_path: Path, job_fields: Callable[..., dict[str, Any]]) -> None:
    store = JobStore(tmp_path)
    store.create(job_fields(), "alice")
    assert store.start("job-1")["state"] == "running"
    assert store.start("job-1") is None  # running already
    assert store.progress("job-1", {"phase": "segmenting", "documents_done": 5, "documents_total": 10})["sequence"] == 3
    with pytest.raises(FailedPrecondition, match="only a succeeded job has a report"):
        store.report("job-1")
    final = store.finish("job-1", "succeeded", version="v3", report={"accuracy": 0.9})
    assert final["state"] == "succeeded" and final["message"] == "registered version v3"
    assert final["progress"]["phase"] == "segmenting"  # the progress it had reached
    assert store.finish("job-1", "failed", "too late") is None
    assert store.progress("job-1", {"phase": "late"}) is None
    job = store.get("job-1")
    assert (job["state"], job["version"], job["reason"]) == ("succeeded", "v3", "") and job["finished"] >= job["started"]
    assert store.report("job-1") == {"accuracy": 0.9}
    events, ended = store.events("job-1", after=1)
    assert [e["sequence"] for e in events] == [2, 3, 4] and ended
    assert store.events("job-1", after=4) == ([], True)


def test_a_queued_job_can_be_cancelled_but_not_succeed(tmp_path: Path, job_fields: Callable[..., dict[str, Any]]) -> None:
    store = JobStore(tmp_path)
    store.create(job_fields(), "alice")
    assert store.finish("job-1", "succeeded", version="v1") is None
    assert store.finish("job-1", "cancelled", "not needed")["state"] == "cancelled"
    assert store.start("job-1") is None
    assert store.get("job-1")["reason"] == "not needed"


def test_lists_are_newest_first_and_filtered(tmp_path: Path, job_fields: Callable[..., dict[str, Any]]) -> None:
    store = JobStore(tmp_path)
    for model in ("news", "reviews", "news"):
        store.create(job_fields(model=model), "alice")
    store.start("job-1")
    assert [j["id"] for j in store.list_jobs()] == ["job-3", "job-2", "job-1"]
    assert [j["id"] for j in store.list_jobs(["queued"])] == ["job-3", "job-2"]
    assert [j["id"] for j in store.list_jobs(["queued", "running"], model="news")] == ["job-3", "job-1"]
    assert [j["id"] for j in store.list_jobs(limit=1)] == ["job-3"]


def test_jobs_left_running_by_a_stopped_service_fail_when_it_starts_again(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]]
) -> None:
    store = JobStore(tmp_path)
    store.create(job_fields(), "alice")
    store.create(job_fields(), "alice")
    store.start("job-1")
    store.close()
    again = JobStore(tmp_path)  # a new service on the same database
    assert again.recover() == ["job-1"]
    assert (again.get("job-1")["state"], again.get("job-1")["reason"]) == ("failed", RESTARTED)
    assert again.get("job-2")["state"] == "queued"


# ---------------------------------------------------------------- the scheduler


def test_a_job_runs_in_a_worker_and_its_progress_and_result_are_recorded(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    progress = [
        {"phase": "reading", "documents_done": 0, "documents_total": 4},
        {"phase": "reading", "documents_done": 4, "documents_total": 4, "elapsed_seconds": 0.5, "remaining_seconds": 0.0},
    ]

    async def body(scheduler: Scheduler) -> None:
        job = await scheduler.create(job_fields({"progress": progress}), "alice")
        events = await events_until_end(scheduler, job["id"])
        assert [e["state"] for e in events] == ["queued", "running", "running", "running", "succeeded"]
        assert [e["progress"] for e in events[2:4]] == progress
        assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]
        done = scheduler.store.get(job["id"])
        assert (done["state"], done["version"], done["progress"]["documents_done"]) == ("succeeded", "v7", 4)
        assert scheduler.store.report(job["id"]) == {"accuracy": 0.75, "evaluation": job["id"]}  # the worker read the job
        assert not scheduler.runs

    run(tmp_path, stand_in, body)


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ({"error": "the dataset ds-1 is gone"}, "the dataset ds-1 is gone"),
        ({"stderr": "MemoryError", "exit": 3}, "its worker exited with exit code 3 without a result: MemoryError"),
        ({"kill": True}, "its worker exited with signal SIGKILL without a result"),
    ],
)
def test_a_worker_that_ends_without_a_result_fails_its_job_with_the_reason(
    tmp_path: Path, plan: dict, reason: str, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    async def body(scheduler: Scheduler) -> None:
        job = await scheduler.create(job_fields(plan), "alice")
        events = await events_until_end(scheduler, job["id"])
        assert events[-1]["state"] == "failed" and events[-1]["message"] == reason
        assert scheduler.store.get(job["id"])["reason"] == reason

    run(tmp_path, stand_in, body)


def test_a_silent_worker_loses_its_lease_and_its_job_fails(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    async def body(scheduler: Scheduler) -> None:
        job = await scheduler.create(job_fields({"hang": True}), "alice")
        events = await events_until_end(scheduler, job["id"])
        assert events[-1]["state"] == "failed"
        assert "reported nothing for 0.3 s (its lease ran out) and was killed" in events[-1]["message"]

    run(tmp_path, stand_in, body, lease_seconds=0.3)


def test_jobs_run_first_come_first_served_at_most_max_concurrent_at_once(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    release = tmp_path / "release"

    async def body(scheduler: Scheduler) -> None:
        first = await scheduler.create(job_fields({"started": str(tmp_path / "1"), "release": str(release)}), "alice")
        second = await scheduler.create(job_fields({"started": str(tmp_path / "2"), "release": str(release)}), "alice")
        third = await scheduler.create(job_fields({"started": str(tmp_path / "3")}), "alice")
        await wait_for_file(tmp_path / "1")
        await wait_for_file(tmp_path / "2")
        assert [scheduler.store.get(j["id"])["state"] for j in (first, second, third)] == ["running", "running", "queued"]
        release.touch()
        for job in (first, second, third):
            assert (await events_until_end(scheduler, job["id"]))[-1]["state"] == "succeeded"
        started = [scheduler.store.get(j["id"])["started"] for j in (first, second, third)]
        finished = [scheduler.store.get(j["id"])["finished"] for j in (first, second)]
        assert started[2] >= min(finished)  # the third waited for a free place

    run(tmp_path, stand_in, body, max_concurrent_jobs=2)


def test_cancel_stops_a_running_worker_and_a_queued_job_at_once(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    async def body(scheduler: Scheduler) -> None:
        running = await scheduler.create(job_fields({"started": str(tmp_path / "1"), "hang": True}), "alice")
        queued = await scheduler.create(job_fields(), "alice")
        await wait_for_file(tmp_path / "1")
        process = scheduler.runs[running["id"]].process
        assert process is not None
        cancelled = await scheduler.cancel(running["id"], "cancelled by alice")
        assert (cancelled["state"], cancelled["reason"], cancelled["version"]) == ("cancelled", "cancelled by alice", "")
        assert process.returncode == -15  # SIGTERM ended it
        # the place it freed went to the queued job, which ran
        assert (await events_until_end(scheduler, queued["id"]))[-1]["state"] == "succeeded"
        waiting = await scheduler.create(job_fields({"started": str(tmp_path / "3"), "hang": True}), "alice")
        behind = await scheduler.create(job_fields({"started": str(tmp_path / "never")}), "alice")
        assert (await scheduler.cancel(behind["id"], "not needed"))["state"] == "cancelled"
        await scheduler.cancel(waiting["id"], "done with it")
        assert not (tmp_path / "never").exists()  # it never started
        assert (await scheduler.cancel(behind["id"], "again"))["reason"] == "not needed"  # idempotent
        with pytest.raises(FailedPrecondition, match="has succeeded already"):
            await scheduler.cancel(queued["id"], "too late")

    run(tmp_path, stand_in, body)


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    async def body(scheduler: Scheduler) -> None:
        job = await scheduler.create(job_fields({"started": str(tmp_path / "1"), "ignore_sigterm": True, "hang": True}), "alice")
        await wait_for_file(tmp_path / "1")
        process = scheduler.runs[job["id"]].process
        assert process is not None
        assert (await scheduler.cancel(job["id"], "stop"))["state"] == "cancelled"
        assert process.returncode == -9

    run(tmp_path, stand_in, body, cancel_grace_seconds=0.2)


def test_a_watcher_resumes_after_the_last_event_it_saw_and_sees_live_ones(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    release = tmp_path / "release"
    steps = [{"phase": "segmenting", "documents_done": n, "documents_total": 2} for n in (1, 2)]

    async def body(scheduler: Scheduler) -> None:
        job = await scheduler.create(job_fields({"progress": steps, "release": str(release)}), "alice")
        seen: list[int] = []
        async for event in scheduler.watch(job["id"]):
            seen.append(event["sequence"])
            if event["progress"].get("documents_done") == 1:
                break  # the watcher goes away after event 3
        assert seen == [1, 2, 3]
        resumed = asyncio.ensure_future(events_until_end(scheduler, job["id"], after=3))
        await asyncio.sleep(0)
        release.touch()  # the rest happens while it watches
        events = await resumed
        assert [e["sequence"] for e in events] == [4, 5] and events[-1]["state"] == "succeeded"
        assert await events_until_end(scheduler, job["id"], after=5) == []  # ended: nothing to wait for

    run(tmp_path, stand_in, body)


def test_a_restarted_scheduler_fails_what_ran_and_runs_what_was_queued(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    store = JobStore(tmp_path)
    store.create(job_fields(), "alice")
    store.create(job_fields(), "alice")
    store.start("job-1")
    store.close()

    async def body(scheduler: Scheduler) -> None:
        assert scheduler.store.get("job-1")["reason"] == RESTARTED
        assert (await events_until_end(scheduler, "job-2"))[-1]["state"] == "succeeded"

    run(tmp_path, stand_in, body)


def test_the_worker_dies_with_its_service(tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]) -> None:
    """PR_SET_PDEATHSIG: a scheduler in a process that is killed takes its workers along."""
    service = f"""
import asyncio, sys
from pathlib import Path
from fenlei.jobs.core import JobsSettings, JobStore, Scheduler
async def main():
    home = Path(sys.argv[1])
    scheduler = Scheduler(JobStore(home), JobsSettings(home=home), {stand_in!r})
    await scheduler.open()
    await asyncio.Event().wait()
asyncio.run(main())
"""
    store = JobStore(tmp_path)
    store.create(job_fields({"started": str(tmp_path / "pid"), "hang": True}), "alice")

    async def main() -> None:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", service, str(tmp_path))
        await wait_for_file(tmp_path / "pid")
        workers = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _parent(pid) == process.pid]
        assert len(workers) == 1
        process.kill()
        await process.wait()
        while _alive(workers[0]):
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD))
    assert store.get("job-1")["state"] == "running"  # until a service starts again
    assert store.recover() == ["job-1"]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_datasets_of_queued_and_running_jobs_are_pinned_until_they_end(
    tmp_path: Path, job_fields: Callable[..., dict[str, Any]], stand_in: list[str]
) -> None:
    sent: list[list[tuple[str, str]]] = []

    async def pin(pins: list[tuple[str, str]]) -> None:
        sent.append(pins)

    async def main() -> None:
        store = JobStore(tmp_path)
        store.create(job_fields(dataset="ds-left-queued"), "alice")  # by a previous service
        scheduler = Scheduler(store, JobsSettings(home=tmp_path), stand_in, pin)
        await scheduler.open()
        try:
            assert sent[0] == [("job-1", "ds-left-queued")]  # sent when it starts
            job = await scheduler.create(job_fields({"release": str(tmp_path / "go")}, evaluation={"test_dataset": "ds-test"}), "alice")
            assert ("job-2", "ds-0123456789abcdef") in sent[-1] and ("job-2", "ds-test") in sent[-1]
            (tmp_path / "go").touch()
            await events_until_end(scheduler, job["id"])
            while sent[-1]:  # the last run's end sends the empty set
                await asyncio.sleep(0.01)
        finally:
            await scheduler.close()
            store.close()

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD))
