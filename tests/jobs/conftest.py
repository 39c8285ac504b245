"""Fixtures of the jobs tests: a stand-in for fenlei.jobs.worker, and job requests for it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

# Reads the job like fenlei.jobs.worker, then follows the plan in its description.
SCRIPT = r"""
import json, os, signal, sys, time
from fenlei.jobs.core import die_with_parent
die_with_parent(int(sys.argv[1]))
job = json.loads(sys.stdin.readline())
plan = json.loads(job["description"] or "{}")
def say(**line):
    print(json.dumps(line), flush=True)
if plan.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "started" in plan:
    open(plan["started"], "w").close()
for step in plan.get("progress", []):
    say(progress=step)
if "release" in plan:  # a file the test creates when the worker may go on
    while not os.path.exists(plan["release"]):
        time.sleep(0.01)
while plan.get("hang"):
    signal.pause()
if "stderr" in plan:
    print(plan["stderr"], file=sys.stderr, flush=True)
if plan.get("kill"):
    os.kill(os.getpid(), signal.SIGKILL)
if "exit" in plan:
    sys.exit(plan["exit"])
if "error" in plan:
    say(error=plan["error"])
    sys.exit(1)
say(result={"version": "v7", "report": {"accuracy": 0.75, "evaluation": job["id"]}})
"""


DATASET = "ds-0123456789abcdef"


@pytest.fixture(scope="session")
def stand_in() -> list[str]:
    """The command of the stand-in worker."""
    return [sys.executable, "-c", SCRIPT]


def _request(plan: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"model": "news", "dataset": DATASET, "description": json.dumps(plan or {}), **fields}


@pytest.fixture(scope="session")
def job_fields() -> Callable[..., dict[str, Any]]:
    """job_fields(plan, **fields): a job's fields (a CreateJobRequest's, by name) whose
    stand-in worker follows `plan`; dataset DATASET."""
    return _request
