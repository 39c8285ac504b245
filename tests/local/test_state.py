"""Trusting a recorded pid (fenlei.local.state) and the start order of the supervisor."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys

from fenlei import services
from fenlei.local.state import Files, MeshState, Plan, ProcessIdentity, ProcessRecord
from fenlei.local.supervisor import levels


def test_a_process_is_known_by_pid_start_time_and_command_line() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = ProcessIdentity.of(child.pid)
        assert identity is not None and identity.alive()
        assert identity.command == (sys.executable, "-c", "import time; time.sleep(60)")
        # the same pid with another start time or command line is another process
        assert not dataclasses.replace(identity, start_ticks=identity.start_ticks + 1).alive()
        assert not dataclasses.replace(identity, command=("envoy",)).alive()
        assert not dataclasses.replace(identity, start_ticks=identity.start_ticks + 1).signal(signal.SIGKILL)
        assert child.poll() is None, "a stranger holding a recorded pid was signalled"
        assert identity.signal(signal.SIGTERM)
        child.wait(timeout=30)
        assert not identity.alive() and not identity.signal(signal.SIGTERM)
    finally:
        child.kill()
        child.wait()


def test_the_state_file_round_trips(tmp_path) -> None:
    files = Files(tmp_path)
    identity = ProcessIdentity(12, 34, ("envoy", "-c", "x"))
    record = ProcessRecord("classifier-sidecar", "proxy", "classifier", "classifier-v1-0", "classifier", identity.command,
                           {"A": "1"}, identity, "127.0.0.1:5", "127.0.0.1:6", "running", 2, "signal SIGKILL at t")  # fmt: skip
    state = MeshState(identity, True, "ready", "", 3, {"port": 8080}, {record.name: record})
    files.write_state(state)
    assert files.read_state() == state
    files.write_plan(Plan(True, {"classifier": ["v1", "v1"]}, 60.0, 4))
    assert files.read_plan() == Plan(True, {"classifier": ["v1", "v1"]}, 60.0, 4)
    assert Files(tmp_path / "elsewhere").read_state() is None


def test_every_service_starts_after_the_services_it_calls() -> None:
    groups = levels(w.name for w in services.WORKLOADS)
    assert sorted(n for group in groups for n in group) == sorted(w.name for w in services.WORKLOADS)
    position = {name: index for index, group in enumerate(groups) for name in group}
    for workload in services.WORKLOADS:
        for callee in workload.calls:
            assert position[callee] < position[workload.name], (workload.name, callee)
    assert position["pipeline"] > position["segmenter"]
