"""The local mesh's supervisor: one process that starts every service instance, its
Envoy sidecar and the gateway, keeps the number of instances what was asked for (a
process that dies is started again, with backoff), carries out changes (scale, policy)
and stops everything in order.

    python -m fenlei.local.supervisor HOME      (`fenlei up` starts it, detached)

It alone writes the proxies' configuration and <home>/run/mesh.json. The `fenlei`
commands write <home>/run/plan.json and send SIGHUP for a change, SIGTERM to stop.

Starting goes as far at once as the calls allow: each app starts as soon as every service
it calls serves (with sidecars, those that call nobody start with the sidecars), the gateway
last.

Stopping drains from the front: the gateway stops taking connections and its calls in
flight finish; then each service, callers before the services they call (each drains:
NOT_SERVING, in-flight calls finish within its grace period); the sidecars go last, so
that no call in flight loses the proxy it passes through.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fenlei import services
from fenlei.envoy.admin import Admin
from fenlei.envoy.binary import envoy_command
from fenlei.gateway import config as gateway_config
from fenlei.gateway.auth import Authority
from fenlei.local import prometheus
from fenlei.local.health import app_health
from fenlei.local.logs import access_log_file
from fenlei.local.state import Files, MeshState, ProcessIdentity, ProcessRecord
from fenlei.runtime import live
from fenlei.runtime import logging as jsonlog
from fenlei.sidecar.control import ControlPlane, Topology
from fenlei.sidecar.xds import Instance
from fenlei.telemetry import collector
from fenlei.telemetry import envoy as envoy_tracing

log = logging.getLogger("fenlei.supervisor")

GATEWAY = "gateway"
COLLECTOR = collector.PART
# Backoff before the n-th restart in a row: 0.5 s, 1 s, 2 s, ... at most 30 s. A process
# that ran this long since its last start counts as healthy again.
BACKOFF_FIRST, BACKOFF_MAX, STABLE_SECONDS = 0.5, 30.0, 30.0
TICK = 0.1


class StartFailed(Exception):
    pass


class Stopping(Exception):
    """SIGTERM arrived while the supervisor waited for something."""


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the supervisor dies, so a
    killed supervisor leaves no process behind that nobody watches."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def levels(names: Iterable[str]) -> list[list[str]]:
    """Workloads grouped so that each group only calls workloads of earlier groups."""
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((of(callee) for callee in services.BY_NAME[name].calls), default=-1)
        return depth[name]

    grouped: dict[int, list[str]] = {}
    for name in names:
        grouped.setdefault(of(name), []).append(name)
    return [grouped[level] for level in sorted(grouped)]


class Supervisor:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.files = Files(home)
        self.logs = home / "logs"
        self.plan = self.files.read_plan()
        self.env = {**os.environ, "FENLEI_HOME": str(home)}
        self.settings = gateway_config.load_gateway_settings(self.env)
        self.control = ControlPlane(home)
        self.state = MeshState(
            supervisor=ProcessIdentity.of(os.getpid()),
            sidecars=self.plan.sidecars,
            gateway_settings=dataclasses.asdict(self.settings),
        )
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}  # restarts in a row, for the backoff
        self.due: dict[str, float] = {}  # record → when to start it again
        self.stopping = False
        self.change_requested = False
        self.topology: Topology | None = None
        self.collector = ""  # host:port of the collector the proxies send their spans to; "": none
        # The live configuration (fenlei.config's view), in the gateway's routes and the mesh policy.
        self.live_config = live.Follower(home)
        self.live = self.live_config.changed() or live.View()
        self.listener_port = self.settings.port  # of the running gateway's listener (0: any free port)

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_change)
        self.save()
        try:
            self.start()
        except Exception as error:  # whatever stops the start is told to `fenlei up`
            if not isinstance(error, Stopping):
                log.error("start failed", exc_info=not isinstance(error, StartFailed), extra={"fields": {"error": str(error)}})
                self.state.error = str(error)
            self.stop()
            self.state.phase = "failed"  # kept, so that `fenlei up` can say why
            self.save()
            return 1
        self.state.phase, self.state.generation = "ready", self.plan.generation
        live.write_applied(self.home, self.live.sequence)
        self.save()
        log.info("ready", extra={"fields": {"processes": sorted(self.state.processes)}})
        while not self.stopping:
            self.watch()
            self.follow_live_configuration()
            if self.change_requested:
                self.change_requested = False
                self.carry_out_change()
            time.sleep(TICK)
        self.stop()
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_change(self, signum: int, frame: object) -> None:
        self.change_requested = True

    def save(self) -> None:
        self.files.write_state(self.state)
        if self.plan.prometheus:
            prometheus.write_targets(self.home, self.state.processes.values())

    # ------------------------------------------------------------------ processes
    def spawn(self, record: ProcessRecord) -> None:
        log_file = open(self.logs / f"{record.name}.log", "ab")
        process = subprocess.Popen(
            list(record.command), env={**self.env, **record.env}, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log_file.close()
        self.children[record.name] = process
        self.started_at[record.name] = time.monotonic()
        record.identity = ProcessIdentity.of(process.pid, record.command)
        record.state = "starting"
        self.state.processes[record.name] = record
        self.save()

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float, watched: Sequence[str] = ()) -> None:
        """watched: the processes that must not exit meanwhile (a list the condition may add to)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.stopping:
                raise Stopping()
            for name in watched:
                if self.children[name].poll() is not None:
                    raise StartFailed(
                        f"{name} exited with {self.children[name].returncode} while starting; see {self.logs / (name + '.log')}"
                    )
            if time.monotonic() > deadline:
                raise StartFailed(f"{what} not ready after {timeout:.0f} s; see {self.logs}")
            time.sleep(0.05)

    def app_record(self, name: str, workload: services.Workload, env: dict[str, str], instance: str = "") -> ProcessRecord:
        address_file = self.files.run / f"{name}.json"
        env = {**env, f"FENLEI_{workload.name.upper()}_ADDRESS_FILE": str(address_file)}
        return ProcessRecord(name, "app", workload.name, instance, command=(sys.executable, "-m", workload.module), env=env)

    def app_ready(self, record: ProcessRecord) -> bool:
        address_file = Path(record.env[f"FENLEI_{record.service.upper()}_ADDRESS_FILE"])
        if not address_file.exists():
            return False
        written = json.loads(address_file.read_text())
        address = written["address"]
        if app_health(address) != "SERVING":
            return False
        record.address, record.metrics, record.state = address, written.get("metrics", ""), "running"
        return True

    def proxy_ready(self, record: ProcessRecord) -> bool:
        admin_file = self.files.run / f"{record.name}-admin.txt"
        admin = admin_file.read_text().strip() if admin_file.exists() else ""
        if not (admin and Admin(admin).ready()):
            return False
        record.admin, record.state = admin, "running"
        if record.kind == "gateway":
            record.address = f"{self.settings.host}:{Admin(admin).listener_port()}"
        else:  # a sidecar
            record.address = f"127.0.0.1:{Admin(admin).listener_port('inbound')}"
        return True

    def prometheus_ready(self, record: ProcessRecord) -> bool:
        if not prometheus.ready(record.address):
            return False
        record.state = "running"
        return True

    def ready(self, record: ProcessRecord) -> bool:
        """Whether a starting process has come up; records what it bound."""
        if record.kind == "app":
            return self.app_ready(record)
        return self.prometheus_ready(record) if record.kind == prometheus.NAME else self.proxy_ready(record)

    def envoy_record(
        self, name: str, kind: str, bootstrap: Path, *, workers: int = 1, service: str = "", instance: str = "", app: str = ""
    ) -> ProcessRecord:
        admin_file = self.files.run / f"{name}-admin.txt"
        admin_file.unlink(missing_ok=True)
        command = envoy_command(bootstrap, admin_file, workers=workers, drain_seconds=self.grace)
        return ProcessRecord(name, kind, service=service, instance=instance, app=app, command=tuple(command))

    @property
    def grace(self) -> float:
        return float(self.env.get("FENLEI_GRACE_SECONDS", "10"))

    def start_and_wait(self, records: list[ProcessRecord], what: str, also_watched: Sequence[str] = ()) -> None:
        for record in records:
            self.spawn(record)
        self.wait_until(
            lambda: all(r.state == "running" or self.ready(r) for r in records), what, self.plan.timeout,
            [*(r.name for r in records), *also_watched],
        )  # fmt: skip
        self.save()

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        for directory in (self.logs, self.files.run):
            directory.mkdir(parents=True, exist_ok=True)
        self.start_collector()
        if self.plan.sidecars:
            self.start_with_sidecars()
        else:
            self.start_direct()
        if self.plan.prometheus:
            self.start_prometheus()

    def start_prometheus(self) -> None:
        """Last, once every address it scrapes is known (save() keeps its targets current)."""
        if not prometheus.BINARY.exists():
            raise StartFailed(prometheus.MISSING)
        self.start_and_wait([prometheus.record(self.home)], "Prometheus")

    def start_collector(self) -> None:
        """The trace collector, before everything else: every process started after it gets
        the standard OTEL_* variables that send it their spans, unless the user's
        environment sets them (then the user's collector gets the spans)."""
        address_file = self.files.run / f"{COLLECTOR}.json"
        env = {f"FENLEI_{COLLECTOR.upper()}_ADDRESS_FILE": str(address_file)}
        record = ProcessRecord(COLLECTOR, "app", COLLECTOR, command=(sys.executable, "-m", collector.__name__), env=env)
        self.start_and_wait([record], "the trace collector")
        # Spans leave each process within a second, so `fenlei trace` soon finds a request's.
        exporting = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{record.address}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BSP_SCHEDULE_DELAY": "1000",
        }
        self.env = {**exporting, **self.env}
        self.collector = envoy_tracing.endpoint(self.env)

    def start_in_order(self, starts: list[tuple[str, Callable[[], ProcessRecord]]], started: Sequence[ProcessRecord] = ()) -> None:
        """Starts each app (service, its record made when it starts) as soon as every service
        it calls serves, since an app may call them as it starts (the jobs service sends the
        datasets in use); returns once all serve, these and those already started."""
        waiting, started = list(starts), list(started)
        watched = [r.name for r in started]

        def all_serving() -> bool:
            not_serving = {r.service for r in started if not (r.state == "running" or self.ready(r))} | {s for s, _ in waiting}
            for start in [start for start in waiting if not_serving.isdisjoint(services.BY_NAME[start[0]].calls)]:
                waiting.remove(start)
                record = start[1]()
                self.spawn(record)
                started.append(record)
                watched.append(record.name)
            return not not_serving

        what = ", ".join(sorted({r.service for r in started} | {s for s, _ in waiting}))
        self.wait_until(all_serving, what, self.plan.timeout, watched)
        self.save()

    def start_direct(self) -> None:
        def record_of(workload: services.Workload) -> Callable[[], ProcessRecord]:
            def make() -> ProcessRecord:  # the addresses of the services it calls, bound by now
                prefix = f"FENLEI_{workload.name.upper()}"
                env = {f"{prefix}_{callee.upper()}_ADDRESS": self.state.processes[callee].address for callee in workload.calls}
                return self.app_record(workload.name, workload, env)

            return make

        self.start_in_order([(w.name, record_of(w)) for w in services.WORKLOADS])
        upstreams = {w.name: self.state.processes[w.name].address for w in services.WORKLOADS}
        xds = self.control.proxy_directory(GATEWAY)
        self.push()
        self.start_gateway(gateway_config.build(self.settings, upstreams, xds_directory=xds, collector=self.collector))

    def start_with_sidecars(self) -> None:
        self.control.policy()  # a broken policy file stops the start before anything runs
        self.topology = Topology.plan(self.plan.versions)
        self.start_sidecars_and_apps(self.topology.instances)
        xds = self.control.proxy_directory(GATEWAY)
        self.start_gateway(gateway_config.build(self.settings, {}, xds_directory=xds, collector=self.collector))

    def start_sidecars_and_apps(self, instances: list[Instance]) -> None:
        """Starts these instances: the sidecars and, with them, the apps that call nobody
        (nothing reaches an app through its sidecar before its callers start); the other
        apps once the sidecars have their clusters, each when the services it calls serve."""
        assert self.topology is not None
        bootstraps = self.control.write_bootstraps(self.topology, self.collector)
        self.push()  # every proxy finds its files when it starts
        sidecars = [
            self.envoy_record(self.topology.sidecar(i), "proxy", bootstraps[i.name], service=i.service, instance=i.name, app=self.topology.key(i))
            for i in instances
        ]  # fmt: skip
        apps = [(i.service, self.app_record_of(i)) for i in instances]
        callers = [(service, record_of) for service, record_of in apps if services.BY_NAME[service].calls]
        alone = [record_of() for service, record_of in apps if not services.BY_NAME[service].calls]
        for record in alone:
            self.spawn(record)
        self.start_and_wait(sidecars, "the sidecars", also_watched=[r.name for r in alone])
        self.learn_ports(sidecars)
        clients = [r for r in sidecars if services.BY_NAME[r.service].calls]
        self.wait_until(
            lambda: all(Admin(r.admin).has_cluster(services.BY_NAME[r.service].calls[-1] + "::") for r in clients),
            "the sidecars' clusters",
            self.plan.timeout,
        )
        self.start_in_order(callers, alone)

    def learn_ports(self, sidecars: list[ProcessRecord]) -> None:
        """Records the ports the sidecars bound in the topology and the proxies' files."""
        assert self.topology is not None
        ports = {r.instance: int(r.address.rsplit(":", 1)[1]) for r in sidecars}
        self.topology = Topology([dataclasses.replace(i, inbound_port=ports.get(i.name, i.inbound_port)) for i in self.topology.instances])
        self.control.save_topology(self.topology)
        self.control.write_bootstraps(self.topology, self.collector)  # with the bound ports: a restarted sidecar binds its own again
        self.push()

    def app_record_of(self, instance: Instance) -> Callable[[], ProcessRecord]:
        """The record of an instance's app, on its socket, calling through its sidecar."""
        assert self.topology is not None
        topology = self.topology
        workload = services.BY_NAME[instance.service]
        prefix = f"FENLEI_{instance.service.upper()}"
        env = {f"{prefix}_LISTEN": f"unix:{self.control.app_socket(instance)}"}
        env.update(
            {f"{prefix}_{callee.upper()}_ADDRESS": self.control.outbound_address(instance.name, callee) for callee in workload.calls}
        )
        return lambda: self.app_record(topology.key(instance), workload, env, instance.name)

    def start_gateway(self, bootstrap: dict[str, Any]) -> None:
        """bootstrap: the Envoy bootstrap (its listener and routes: push())."""
        config_file = self.files.run / "gateway.json"
        gateway_config.write(config_file, bootstrap)
        record = self.envoy_record(GATEWAY, "gateway", config_file, workers=self.settings.workers)
        self.start_and_wait([record], "the gateway")
        if self.settings.port == 0:
            # A restarted gateway must come back on the port its callers know (restart()
            # writes its listener so); this one's listener keeps the address it was made with.
            self.settings = dataclasses.replace(self.settings, port=int(record.address.rsplit(":", 1)[1]))
            self.state.gateway_settings = dataclasses.asdict(self.settings)
            self.save()

    @property
    def jwks(self) -> str:
        return Authority(self.home / "gateway", self.settings.issuer, self.settings.audience).jwks()

    # ------------------------------------------------------------------ policy
    def push(self, gateway_only: bool = False) -> str:
        """Every proxy's configuration from the policy (with sidecars) and the live
        configuration, or the gateway's alone (a change only it carries: its limits, the deny
        list); returns the push's version."""
        if self.topology is None:
            policy, version = None, int.from_bytes(os.urandom(4), "big")
        else:
            policy = self.control.policy()
            version = int.from_bytes(os.urandom(4), "big") if gateway_only else self.control.push(self.topology, policy)
        # The listener's address is the one the running gateway was started with: Envoy
        # updates a listener in place only while its address stays.
        settings = dataclasses.replace(self.live.gateway(self.settings), port=self.listener_port)
        routes = gateway_config.route_table(settings, policy, self.live.deny_rules)
        gateway_config.write_dynamic(
            self.control.proxy_directory(GATEWAY), version, settings, self.jwks, routes,
            access_log_file=access_log_file(self.home, GATEWAY), collector=self.collector,
        )  # fmt: skip
        return str(version)

    def push_and_wait(self, gateway_only: bool = False) -> None:
        version = self.push(gateway_only)
        placed = {i.name for i in self.topology.instances} if self.topology else set()
        admins = [
            Admin(r.admin)
            for r in self.state.processes.values()
            if r.admin and r.state == "running" and (not r.instance or r.instance in placed) and (not gateway_only or r.name == GATEWAY)
        ]
        self.wait_until(lambda: all(a.route_versions() == {version} for a in admins), "the proxies' new configuration", self.plan.timeout)

    def follow_live_configuration(self) -> None:
        """Applies a change of the live configuration: the scenarios it names replace those
        applied (only when it names others than before) and every proxy gets its push; any
        other change is the gateway's alone."""
        view = self.live_config.changed()
        if view is None:
            return
        previous, self.live = self.live, view
        try:
            scenarios_changed = self.plan.sidecars and view.settings.get(live.SCENARIOS) != previous.settings.get(live.SCENARIOS)
            if scenarios_changed:
                self.control.reset()
                scenarios = self.control.scenarios()
                self.control.apply([scenarios[name] for name in view.scenarios() if name in scenarios])
            self.push_and_wait(gateway_only=not scenarios_changed)
            live.write_applied(self.home, view.sequence)
            log.info("live configuration applied", extra={"fields": {"sequence": view.sequence, "scenarios": view.scenarios()}})
        except (StartFailed, OSError, ValueError) as error:
            log.error("applying the live configuration failed", extra={"fields": {"sequence": view.sequence, "error": str(error)}})

    # ------------------------------------------------------------------ keeping it running
    def watch(self) -> None:
        """Reaps what exited, starts again what is due, and follows what is starting."""
        now = time.monotonic()
        for name, process in list(self.children.items()):
            record = self.state.processes[name]
            if record.state == "backoff":
                continue
            if process.poll() is None:
                if record.state == "starting" and self.ready(record):
                    self.save()
                continue
            ran = now - self.started_at[name]
            self.failures[name] = 1 if ran > STABLE_SECONDS else self.failures.get(name, 0) + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures[name] - 1))
            record.state, record.last_exit = "backoff", f"{_exit_text(process.returncode)} at {_now()}"
            self.due[name] = now + delay
            log.warning(
                "process exited; starting it again", extra={"fields": {"process": name, "exit": record.last_exit, "in_seconds": delay}}
            )
            self.save()
        for name, when in list(self.due.items()):
            if when <= now:
                del self.due[name]
                self.restart(self.state.processes[name])

    def restart(self, record: ProcessRecord) -> None:
        """Starts a process again as it was: same socket or port, same sidecar."""
        record.restarts += 1
        if record.kind == "app":
            Path(record.env[f"FENLEI_{record.service.upper()}_ADDRESS_FILE"]).unlink(missing_ok=True)
            if record.address and not record.address.startswith("unix:"):
                # Without sidecars its callers know its port: keep it.
                record.env[f"FENLEI_{record.service.upper()}_PORT"] = record.address.rsplit(":", 1)[1]
        else:
            (self.files.run / f"{record.name}-admin.txt").unlink(missing_ok=True)
        if record.name == GATEWAY:
            self.listener_port = self.settings.port  # the port it had, now known
            self.push()
        self.spawn(record)

    # ------------------------------------------------------------------ changes
    def carry_out_change(self) -> None:
        plan = self.files.read_plan()
        try:
            if plan.sidecars != self.plan.sidecars:
                raise StartFailed(
                    "the mesh runs " + ("with" if self.plan.sidecars else "without") + " sidecars; `fenlei down` first to change that"
                )
            self.plan = dataclasses.replace(self.plan, versions=plan.versions, generation=plan.generation)
            if self.plan.sidecars:
                self.scale(plan.versions)
                self.push_and_wait()
            self.state.error = ""
        except (StartFailed, OSError, ValueError) as error:
            log.error("change failed", extra={"fields": {"error": str(error)}})
            self.state.error = str(error)
        self.state.generation = plan.generation
        self.save()

    def scale(self, versions: dict[str, list[str]]) -> None:
        assert self.topology is not None
        current = {i.name: i for i in self.topology.instances}
        wanted = Topology.plan(versions).instances
        added = [i for i in wanted if i.name not in current]
        removed = [i for i in self.topology.instances if i.name not in {w.name for w in wanted}]
        if added:
            self.topology = Topology([*self.topology.instances, *added])
            self.start_sidecars_and_apps(added)
        if removed:
            # Out of every proxy's clusters first, then drained: no call is sent to an instance on its way out.
            self.topology = Topology([i for i in self.topology.instances if i not in removed])
            self.control.save_topology(self.topology)
            self.push_and_wait()
            gone = [self.topology.key(i) for i in removed]
            self.terminate(gone, self.grace + 5)
            self.terminate([self.topology.sidecar(i) for i in removed], self.grace)
        log.info("scaled", extra={"fields": {"added": [i.name for i in added], "removed": [i.name for i in removed]}})

    # ------------------------------------------------------------------ stopping
    def terminate(self, names: list[str], grace: float) -> None:
        """SIGTERM, then SIGKILL after grace seconds; the records are dropped."""
        names = [n for n in names if n in self.children]
        for name in names:
            self.due.pop(name, None)
            self.state.processes[name].state = "stopping"
            if self.children[name].poll() is None:
                self.children[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(self.children[n].poll() is None for n in names) and time.monotonic() < deadline:
            time.sleep(0.05)
        for name in names:
            process = self.children.pop(name)
            if process.poll() is None:
                log.warning("did not stop within the grace period; killing it", extra={"fields": {"process": name}})
                process.kill()
                process.wait()
            del self.state.processes[name]
        self.save()

    def stop(self) -> None:
        self.state.phase = "stopping"
        self.due.clear()
        self.save()
        gateway = self.state.processes.get(GATEWAY)
        if gateway and gateway.admin and GATEWAY in self.children and self.children[GATEWAY].poll() is None:
            self.drain_gateway(Admin(gateway.admin))
        self.terminate([GATEWAY], self.grace)
        apps = [r for r in self.state.processes.values() if r.kind == "app" and r.name != COLLECTOR]
        for group in reversed(levels({r.service for r in apps})):
            self.terminate([r.name for r in apps if r.service in group], self.grace + 5)
        self.terminate([name for name in self.children if name != COLLECTOR], self.grace)
        self.terminate([COLLECTOR], self.grace)  # last, so that it takes the spans of every process it outlived
        self.clean()

    def drain_gateway(self, admin: Admin) -> None:
        """No new connections; the calls in flight finish (within the grace period)."""
        admin.drain_listeners()
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            active = admin.stats("http.gateway.downstream_rq_active").get("http.gateway.downstream_rq_active", 0)
            if not active:
                return
            time.sleep(0.05)

    def clean(self) -> None:
        """Run files and sockets of processes that no longer run."""
        for path in self.files.run.glob("*"):
            if path != self.files.state and path != self.files.plan:
                path.unlink(missing_ok=True)
        root = self.home / "mesh"
        for socket in [*root.glob("apps/*.sock"), *root.glob("proxies/*/out-*.sock")]:
            socket.unlink(missing_ok=True)
        self.files.state.unlink(missing_ok=True)
        self.files.plan.unlink(missing_ok=True)
        live.applied_path(self.home).unlink(missing_ok=True)


def _exit_text(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main() -> None:
    home = Path(sys.argv[1]).resolve()
    jsonlog.configure("supervisor")
    sys.exit(Supervisor(home).run())


if __name__ == "__main__":
    main()
