"""The local mesh as the `fenlei` commands see it: start it (a detached supervisor,
fenlei.local.supervisor, does the work), ask for changes, read its state, stop it.

    <home>/run/           plan.json, mesh.json (fenlei.local.state), address and admin files
    <home>/gateway/       the token signing key (`fenlei token` mints with it)
    <home>/mesh/          the CA, the proxies' configuration, the applied policy (fenlei.sidecar)
    <home>/logs/<name>.log  each process's log, the supervisor's too
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fenlei import services
from fenlei.envoy.admin import Admin
from fenlei.gateway import config as gateway_config
from fenlei.gateway.auth import Authority
from fenlei.local import prometheus as local_prometheus
from fenlei.local.health import app_health
from fenlei.local.state import Files, MeshState, Plan, ProcessRecord
from fenlei.sidecar.control import ControlPlane, Topology
from fenlei.sidecar.policy import Policy


class MeshError(Exception):
    pass


INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_ENVOY = 3  # its file watches and the runtime's, with room to spare


def inotify_instances(process: Path) -> int:
    """The inotify instances a process (/proc/<pid>) holds."""
    count = 0
    for fd in (process / "fd").iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:  # closed meanwhile (the listing's own descriptor, for one)
            continue
    return count


def inotify_in_use() -> int:
    """The inotify instances this user's processes hold (the kernel's limit is per user)."""
    uid, count = os.getuid(), 0
    for process in Path("/proc").iterdir():
        try:
            if process.name.isdigit() and process.stat().st_uid == uid:
                count += inotify_instances(process)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return count


def check_inotify_room(envoys: int) -> None:
    """Refuses to start Envoys that would run out of inotify instances: one that cannot get
    one aborts at start (`inotify_fd_ >= 0`), which would look like a crash."""
    try:
        limit = int(INOTIFY_LIMIT.read_text())
    except (OSError, ValueError):
        return  # not Linux's /proc: nothing to check
    needed, free = envoys * INOTIFY_PER_ENVOY, limit - inotify_in_use()
    if needed > free:
        raise MeshError(
            f"this mesh's {envoys} Envoy processes need about {needed} inotify instances and this user has {free} of "
            f"{limit} left (fs.inotify.max_user_instances; other meshes or editors hold the rest): stop another mesh "
            "(`fenlei down` in its home), or raise the limit (sysctl fs.inotify.max_user_instances=512)"
        )


@dataclass
class LocalMesh:
    home: Path

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()  # the proxies' files name paths under it
        self.files = Files(self.home)

    @property
    def control(self) -> ControlPlane:
        return ControlPlane(self.home)

    # ------------------------------------------------------------------ reading
    def state(self) -> MeshState | None:
        return self.files.read_state()

    def processes(self) -> dict[str, ProcessRecord]:
        state = self.state()
        return state.processes if state else {}

    def running(self) -> bool:
        state = self.state()
        return bool(state and state.supervisor and state.supervisor.alive() and state.phase == "ready")

    def with_sidecars(self) -> bool:
        state = self.state()
        return bool(state and state.sidecars)

    def address(self, name: str = "pipeline") -> str:
        record = self.processes().get(name)
        if record is None or not record.address:
            raise MeshError(f"the mesh under {self.home} is not running (or has no {name}); start it with `fenlei up`")
        return record.address

    def gateway_settings(self) -> gateway_config.GatewaySettings:
        """The gateway's settings as the running mesh was started with; else from the environment."""
        state = self.state()
        if state and state.gateway_settings:
            return gateway_config.GatewaySettings(**state.gateway_settings)
        return gateway_config.load_gateway_settings()

    def authority(self) -> Authority:
        settings = self.gateway_settings()
        return Authority(self.home / "gateway", settings.issuer, settings.audience)

    def status(self) -> dict[str, dict[str, Any]]:
        """Every process: pid, address, status (SERVING, NOT_SERVING, DOWN, ...), restarts, last exit."""
        processes = self.processes()
        answers: dict[str, str] = {}

        def status_of(record: ProcessRecord) -> str:
            if record.name in answers:
                return answers[record.name]
            if record.state == "backoff" or not record.alive():
                answer = "DOWN"
            elif record.kind == "app":
                answer = app_health(record.address) if record.address else "STARTING"
            elif record.kind == local_prometheus.NAME:
                answer = "SERVING" if local_prometheus.ready(record.address) else "NOT_SERVING"
            elif not (record.admin and Admin(record.admin).ready()):
                answer = "NOT_SERVING"
            elif record.app and status_of(processes[record.app]) != "SERVING":
                answer = f"NOT_SERVING (its app {record.app} is {status_of(processes[record.app])})"
            else:
                answer = "SERVING"
            answers[record.name] = answer
            return answer

        return {
            name: {
                "pid": r.pid,
                "address": r.address,
                "admin": r.admin,
                "status": status_of(r),
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                **_scraped_at(r),
            }
            for name, r in processes.items()
        }

    # ------------------------------------------------------------------ starting and changing
    def up(self, timeout: float = 60.0, extra_env: dict[str, str] | None = None, *, sidecars: bool = True,
           versions: dict[str, list[str]] | None = None, prometheus: bool = False) -> dict[str, ProcessRecord]:  # fmt: skip
        """Starts the mesh and returns once every process is healthy; on a running mesh,
        carries out what differs (instances per service). versions (with sidecars):
        service → a version label per instance, e.g. {"classifier": ["v1", "v1"]}.
        prometheus: also run Prometheus, scraping every process (fenlei.local.prometheus)."""
        versions = versions or {}
        for service, labels in versions.items():
            if services.workload(service).single_writer and len(labels) > 1:
                # A second instance would be a second writer of its state (and for the jobs, a second queue).
                raise MeshError(f"{service} is the only writer of its database, so it runs one instance, not {len(labels)}")
        if versions and not sidecars:
            raise MeshError("replicas and canaries need the sidecars (leave out --no-sidecars)")
        if prometheus and not local_prometheus.BINARY.exists():
            raise MeshError(local_prometheus.MISSING)
        if self.running():
            return self._change(sidecars, versions, timeout, prometheus)
        # Each Envoy watches its xDS files: one gateway, and one sidecar per instance.
        check_inotify_room(1 + (len(Topology.plan(versions).instances) if sidecars else 0))
        self._clear_stale()
        for directory in (self.home / "logs", self.files.run):
            directory.mkdir(parents=True, exist_ok=True)
        self.files.write_plan(Plan(sidecars, versions, timeout, generation=1, prometheus=prometheus))
        env = {**os.environ, **(extra_env or {}), "FENLEI_HOME": str(self.home)}
        log = open(self.home / "logs" / "supervisor.log", "ab")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "fenlei.local.supervisor", str(self.home)], env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,  # outlives the terminal that ran `fenlei up`
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout + 30
        while True:
            state = self.state()
            if state and state.phase == "ready":
                return state.processes
            if supervisor.poll() is not None:
                state = self.state()
                reason = state.error if state and state.error else f"the supervisor exited with {supervisor.returncode}"
                raise MeshError(f"{reason}; see {self.home / 'logs'}")
            if time.monotonic() > deadline:
                self.down()
                raise MeshError(f"the mesh did not start within {timeout:.0f} s; see {self.home / 'logs'}")
            time.sleep(0.05)

    def _change(self, sidecars: bool, versions: dict[str, list[str]], timeout: float, prometheus: bool) -> dict[str, ProcessRecord]:
        plan = self.files.read_plan()
        if prometheus and not plan.prometheus:
            raise MeshError(f"the mesh under {self.home} runs without Prometheus; `fenlei down` first, then `fenlei up --prometheus`")
        if sidecars != plan.sidecars:
            raise MeshError(
                f"the mesh under {self.home} runs {'with' if plan.sidecars else 'without'} sidecars; `fenlei down` first to change that"
            )
        current = dict(plan.versions)
        wanted = {**current, **versions}
        if wanted == current:
            return self.processes()
        self._carry_out(dataclasses.replace(plan, versions=wanted, timeout=timeout, generation=plan.generation + 1))
        return self.processes()

    def _carry_out(self, plan: Plan) -> None:
        """Hands the supervisor a new plan and waits until it has carried it out."""
        state = self.state()
        assert state and state.supervisor
        self.files.write_plan(plan)
        state.supervisor.signal(signal.SIGHUP)
        deadline = time.monotonic() + plan.timeout + 30
        while True:
            state = self.state()
            if state is None or not (state.supervisor and state.supervisor.alive()):
                raise MeshError(f"the mesh stopped while changing; see {self.home / 'logs' / 'supervisor.log'}")
            if state.generation >= plan.generation:
                if state.error:
                    raise MeshError(state.error)
                return
            if time.monotonic() > deadline:
                raise MeshError(f"the mesh did not carry out the change within {plan.timeout:.0f} s; see {self.home / 'logs'}")
            time.sleep(0.05)

    def _clear_stale(self) -> None:
        """After a crash or a reboot: stop what is left of an old mesh (only processes that
        are provably its own), then forget it."""
        state = self.state()
        if state is None:
            return
        if state.supervisor and state.supervisor.alive():
            self.down()
            return
        for record in state.processes.values():
            if record.identity:
                record.identity.signal(signal.SIGKILL)
        self.files.state.unlink(missing_ok=True)

    # ------------------------------------------------------------------ policy
    def apply(self, files: Iterable[Path]) -> Policy:
        """Applies Istio files on top of the running policy; returns once every proxy has
        loaded it (they reload without restarts)."""
        policy = self.control.apply(files)
        self._push()
        return policy

    def reset_policy(self) -> Policy:
        policy = self.control.reset()
        self._push()
        return policy

    def _push(self) -> None:
        if self.with_sidecars() and self.running():
            plan = self.files.read_plan()
            self._carry_out(dataclasses.replace(plan, generation=plan.generation + 1))
        # else the next `fenlei up` starts with it

    # ------------------------------------------------------------------ stopping
    def down(self, grace: float = 30.0) -> list[str]:
        """Stops the mesh in order (the supervisor drains the gateway, then the services,
        then the sidecars); returns the names of the processes that were running."""
        state = self.state()
        if state is None:
            return []
        names = sorted(name for name, record in state.processes.items() if record.alive())
        if state.supervisor and state.supervisor.signal(signal.SIGTERM):
            deadline = time.monotonic() + grace + 60
            while state.supervisor.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            state.supervisor.signal(signal.SIGKILL)
        for record in state.processes.values():  # what a dead or stuck supervisor left
            if record.identity:
                record.identity.signal(signal.SIGKILL)
        self.files.state.unlink(missing_ok=True)
        self.files.plan.unlink(missing_ok=True)
        return names


def _scraped_at(record: ProcessRecord) -> dict[str, str]:
    """Where Prometheus scrapes a process: an app's /metrics, an Envoy's admin stats."""
    if record.kind == "app":
        return {"metrics": f"http://{record.metrics}/metrics" if record.metrics else ""}
    if record.kind in local_prometheus.ENVOY_KINDS:
        return {"stats": f"http://{record.admin}/stats/prometheus" if record.admin else ""}
    return {}
