"""Fixtures for the gateway's end-to-end tests: the session mesh's Envoy (`gateway`, no
sidecars), the Envoy of the session mesh with sidecars (`sidecar_gateway`: its routes come
from the policy, through the mesh's control plane; modules that use it carry the
`xdist_group("sidecar_mesh")` mark) and private Envoys built by the test from the same
config builder (`private_gateway` in front of the session mesh, `gateway_in_front_of` a
server of the test's own).

This directory sits under tests/e2e so that the session `mesh` (and `tools`) of
tests/e2e/conftest.py are visible here; test modules import nothing but fixtures.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from fenlei import services
from fenlei.envoy.binary import envoy_command
from fenlei.gateway import config as gateway_config
from fenlei.gateway.auth import Authority

TIMEOUT = 30.0  # a hang guard, not a speed assertion


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")  # fails unless the body is valid UTF-8

    def lines(self) -> list[Any]:
        """A streaming answer: newline-delimited JSON."""
        return [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]

    def status_body(self) -> dict[str, Any]:
        """The google.rpc.Status JSON body every error must carry; fails if it is not one."""
        assert self.headers.get("content-type", "").startswith("application/json"), (self.status, self.headers, self.body[:300])
        body = self.json()
        assert isinstance(body, dict) and isinstance(body.get("code"), int) and isinstance(body.get("message"), str), body
        assert set(body) <= {"code", "message", "details"}, body
        return body


@dataclass
class Gateway:
    address: str
    admin: str
    authority: Authority
    channels: list[grpc.Channel] = field(default_factory=list)

    def token(self, role: str = "viewer") -> str:
        return self.authority.mint(role, ttl_seconds=600)

    def craft(self, key: Any = None, **claims: Any) -> str:
        """A token signed with the home's key (or `key`), claims overridden by `claims`."""
        now = int(time.time())
        payload = {"iss": self.authority.issuer, "aud": self.authority.audience, "sub": "t", "iat": now, "exp": now + 600, "role": "viewer"}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.authority._private_key(), algorithm="RS256", headers={"kid": "fenlei-local"})

    def rest(
        self,
        path: str,
        body: Any = None,
        *,
        token: str | None = "viewer",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        source: str = "127.0.0.1",
    ) -> Reply:
        """token: a role name to mint for, a token itself, or None for no authorization header.
        headers: added to (or, with the value None, taken from) content-type and authorization.
        source: the client's address (any of 127.0.0.0/8)."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"))
        sent: dict[str, str | None] = {"content-type": "application/json"}
        if token is not None:
            sent["authorization"] = f"Bearer {self.token(token) if token in ('viewer', 'trainer', 'admin') else token}"
        sent = {name: value for name, value in {**sent, **(headers or {})}.items() if value is not None}
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT, source_address=(source, 0))
        try:
            connection.request(method, path, body=data if method != "GET" else None, headers=sent)
            answer = connection.getresponse()
            return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            connection.close()

    def rest_cut_short(self, path: str, body: Any, sent: int, headers: dict[str, str]) -> Reply:
        """A slow client: the headers (content-length the whole body's) and the body's first
        `sent` bytes, then it waits for the answer."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        sent_headers = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "authorization": f"Bearer {self.token()}",
            **headers,
        }
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            connection.putrequest("POST", path)
            for name, value in sent_headers.items():
                connection.putheader(name, value)
            connection.endheaders(data[:sent])
            answer = connection.getresponse()
            return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            connection.close()

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        )
        self.channels.append(channel)
        return channel

    def metadata(self, role: str | None = "viewer") -> list[tuple[str, str]]:
        return [] if role is None else [("authorization", f"Bearer {self.token(role) if role in ('viewer', 'trainer', 'admin') else role}")]

    def admin_get(self, path: str) -> str:
        host, port = self.admin.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def stats(self) -> dict[str, int]:
        counters = {}
        for line in self.admin_get("/stats").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                counters[name] = int(value)
        return counters

    def upstream_requests(self, service: str = "pipeline") -> int:
        """Requests the gateway sent to the service: to its cluster and (with sidecars) its subsets' (`pipeline|v1`)."""
        return sum(
            value for name, value in self.stats().items()
            if name.endswith(".upstream_rq_total") and name.removesuffix(".upstream_rq_total").partition("|")[0] == f"cluster.{service}"
        )  # fmt: skip

    def memory(self) -> int:
        """Bytes of heap Envoy holds (admin /memory): what it took for buffers stays taken."""
        return int(json.loads(self.admin_get("/memory"))["heap_size"])

    def healthz(self) -> Reply:
        return self.rest("/healthz", token=None, method="GET")

    def send_oversized(
        self, path: str, size: int, opening: bytes, *, chunked: bool = False, token: str = "viewer"
    ) -> tuple[int, int, bytes]:
        """POSTs some `size` bytes: `opening` (JSON up to a string) and a string that never
        ends (what a parser must hold on to), as fast as the gateway takes them, then reads
        the answer: (bytes of the body, bytes the gateway took before it closed, the answer)."""
        body = opening + "中".encode() * ((size - len(opening)) // 3)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        host, port = self.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as connection:
            connection.sendall(
                f"POST {path} HTTP/1.1\r\nHost: {self.address}\r\nAuthorization: Bearer {self.token(token)}\r\n"
                f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
            )
            sent = 0
            try:
                for start in range(0, len(body), 64 * 1024):
                    piece = body[start : start + 64 * 1024]
                    connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    sent += len(piece)
                if chunked:
                    connection.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the gateway closed the connection: it refused the rest
            answer = b""
            try:
                while data := connection.recv(65536):
                    answer += data
            except OSError:
                pass  # reset after its answer
        return len(body), sent, answer

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def gateway_of(home: Path, entry: dict) -> Gateway:
    """The gateway a mesh's supervisor recorded (`entry`), with the mesh's token authority."""
    settings = gateway_config.GatewaySettings()
    return Gateway(entry["address"], entry["admin"], Authority(home / "gateway", settings.issuer, settings.audience))


@pytest.fixture(scope="session")
def gateway(mesh) -> Iterator[Gateway]:
    """The session mesh's gateway (started by `fenlei up`)."""
    found = gateway_of(mesh.home, mesh.state["gateway"])
    yield found
    found.close()


@pytest.fixture(scope="session")
def sidecar_gateway(sidecar_mesh) -> Iterator[Gateway]:
    """The gateway of the session mesh with sidecars (tests/e2e/conftest.py): its routes and
    clusters come from the files the mesh's control plane writes."""
    found = gateway_of(sidecar_mesh.home, sidecar_mesh.processes()["gateway"])
    yield found
    found.close()


class Envoys:
    """Gateways a test starts: Envoys of its own, built with fenlei.gateway.config.build
    (tokens checked against `authority`), on port 0; `stop` ends them all."""

    def __init__(self, directory: Path, authority: Authority) -> None:
        self.directory = directory
        self.authority = authority
        self.started: list[tuple[subprocess.Popen, Gateway]] = []

    def start(self, addresses: dict[str, str], **overrides: Any) -> Gateway:
        """addresses: service name → address, for every upstream of the gateway."""
        index = len(self.started)
        settings = gateway_config.GatewaySettings(**{"port": 0, "admin_port": 0, "workers": 2, **overrides})
        config_file = self.directory / f"gateway-{index}.json"
        gateway_config.write(config_file, gateway_config.build(settings, addresses, self.authority.jwks()))
        admin_file = self.directory / f"gateway-{index}-admin.txt"
        log = self.directory / f"gateway-{index}.log"
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                envoy_command(config_file, admin_file, workers=settings.workers),
                stdout=handle, stderr=handle, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        private = Gateway("", "", self.authority)
        self.started.append((process, private))
        deadline = time.monotonic() + TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the private envoy exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            admin = admin_file.read_text().strip() if admin_file.exists() else ""
            if admin:
                private.admin = admin
                try:
                    if private.admin_get("/ready").strip() == "LIVE":
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"the private envoy was not ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        listeners = json.loads(private.admin_get("/listeners?format=json"))
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        private.address = f"127.0.0.1:{port}"
        return private

    def stop(self) -> None:
        for process, private in self.started:
            private.close()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def private_gateway(mesh, gateway, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """start(upstreams={...overrides}, **GatewaySettings fields) → a Gateway in front of the
    session mesh's services (overridable per upstream), with the session's token authority."""
    envoys = Envoys(tmp_path, gateway.authority)
    addresses = {name: entry["address"] for name, entry in mesh.state.items() if name != "gateway"}

    def start(upstreams: dict[str, str] | None = None, **overrides: Any) -> Gateway:
        return envoys.start({**addresses, **(upstreams or {})}, **overrides)

    try:
        yield start
    finally:
        envoys.stop()


@pytest.fixture
def gateway_in_front_of(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """start(address, **GatewaySettings fields) → a Gateway whose every upstream is the one
    server at `address` (a test's own), with a token authority of its own: no mesh."""
    settings = gateway_config.GatewaySettings()
    envoys = Envoys(tmp_path, Authority(tmp_path / "authority", settings.issuer, settings.audience))

    def start(address: str, **overrides: Any) -> Gateway:
        return envoys.start({name: address for name in services.GATEWAY_CALLS}, **overrides)

    try:
        yield start
    finally:
        envoys.stop()
