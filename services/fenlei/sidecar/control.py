"""The sidecars' control plane: which instances run, where each proxy's files are,
and turning the Istio policy into those files (as istiod pushes xDS to sidecars).

    <home>/mesh/ca/                      the CA and every workload's certificate
    <home>/mesh/applied/NNN-<file>.yaml  copies of the scenario files applied on top of the defaults
    <home>/mesh/topology.json            instances and their inbound ports
    <home>/mesh/proxies/<proxy>/         bootstrap.json, cds.json, rds-*.json, out-*.sock
    <home>/mesh/apps/<instance>.sock     where an app listens (only its sidecar connects)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from fenlei import services
from fenlei.envoy.config import route_configuration, write_bootstrap, write_resources
from fenlei.local.logs import access_log_file
from fenlei.sidecar import xds
from fenlei.sidecar.ca import CertificateAuthority, Identity
from fenlei.sidecar.policy import Policy, load
from fenlei.sidecar.xds import Instance

# Who calls whom: the outbound side of each client's proxy (the gateway's too).
CALLS = {**{w.name: w.calls for w in services.WORKLOADS if w.calls}, "gateway": services.GATEWAY_CALLS}
REPOSITORY_POLICY = Path(__file__).resolve().parents[3] / "mesh" / "istio"
# The defaults every mesh starts with; the other files in mesh/istio are scenarios.
BASE_POLICY = ("peer-authentication.yaml", "destination-rule-all-mtls.yaml", "virtual-service-all-v1.yaml", "authorization-policies.yaml")
# Files of mesh/istio that are neither: the ingress gateway and the kustomize list (Kubernetes only).
NOT_SCENARIOS = ("gateway.yaml", "kustomization.yaml")


@dataclass
class Topology:
    instances: list[Instance]

    @classmethod
    def plan(cls, versions: dict[str, list[str]]) -> Topology:
        """versions: service → one version label per instance (default one v1 each).
        Inbound ports are 0 until the sidecars have bound them (with_ports)."""
        instances = []
        for service in (w.name for w in services.WORKLOADS):
            counts: dict[str, int] = {}
            for version in versions.get(service, ["v1"]):
                instances.append(Instance(service, version, counts.get(version, 0), 0))
                counts[version] = counts.get(version, 0) + 1
        return cls(instances)

    def with_ports(self, ports: dict[str, int]) -> Topology:
        """The ports the sidecars bound (instance name → port): each Envoy picks its own
        free port, so no port is chosen here and lost to another process meanwhile."""
        return Topology([replace(i, inbound_port=ports[i.name]) for i in self.instances])

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    def key(self, instance: Instance) -> str:
        """The state name: the service itself for its first v1 instance."""
        return instance.service if (instance.version, instance.index) == ("v1", 0) else instance.name

    def sidecar(self, instance: Instance) -> str:
        """The state name of the instance's sidecar."""
        return f"{self.key(instance)}-sidecar"


class ControlPlane:
    def __init__(self, home: Path, policy_directory: Path | None = None) -> None:
        self.root = home / "mesh"
        self.policy_directory = policy_directory or Path(os.environ.get("FENLEI_MESH_POLICY", REPOSITORY_POLICY))
        self.ca = CertificateAuthority(self.root / "ca")

    # ------------------------------------------------------------------ files
    def proxy_directory(self, proxy: str) -> Path:
        return self.root / "proxies" / proxy

    def app_socket(self, instance: Instance) -> Path:
        return self.root / "apps" / f"{instance.name}.sock"

    def outbound_address(self, proxy: str, host: str) -> str:
        return f"unix:{xds.outbound_socket(self.proxy_directory(proxy), host)}"

    def save_topology(self, topology: Topology) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "topology.json").write_text(json.dumps([asdict(i) for i in topology.instances], indent=1))

    def topology(self) -> Topology:
        return Topology([Instance(**entry) for entry in json.loads((self.root / "topology.json").read_text())])

    # ------------------------------------------------------------------ policy
    @property
    def applied_directory(self) -> Path:
        return self.root / "applied"

    def applied(self) -> list[Path]:
        """Copies of the scenario files applied so far, in order: the policy does not
        change when the originals are edited or removed later."""
        return sorted(self.applied_directory.glob("*.yaml")) if self.applied_directory.exists() else []

    def policy(self, extra: Iterable[Path] = ()) -> Policy:
        base = [self.policy_directory / name for name in BASE_POLICY]
        missing = [str(p) for p in base if not p.exists()]
        if missing:
            raise FileNotFoundError(f"the mesh policy files are missing: {', '.join(missing)} (set FENLEI_MESH_POLICY to mesh/istio)")
        return load([*base, *self.applied(), *extra])

    def scenarios(self) -> dict[str, Path]:
        """The scenario files of the policy directory by name (fault-abort-classifier, ...)."""
        files = sorted(self.policy_directory.glob("*.yaml"))
        return {path.stem: path for path in files if path.name not in (*BASE_POLICY, *NOT_SCENARIOS)}

    def apply(self, files: Iterable[Path]) -> Policy:
        """Checks the files against the rest of the policy first: a bad file changes nothing."""
        files = [Path(f) for f in files]
        self.policy(files)
        self.applied_directory.mkdir(parents=True, exist_ok=True)
        start = len(self.applied())
        for index, path in enumerate(files, start):
            (self.applied_directory / f"{index:03d}-{path.name}").write_bytes(path.read_bytes())
        return self.policy()  # as read from the copies, which name the files in effect

    def reset(self) -> Policy:
        shutil.rmtree(self.applied_directory, ignore_errors=True)
        return self.policy()

    # ------------------------------------------------------------------ proxies
    def identity(self, account: str) -> Identity:
        return self.ca.issue(account)

    def sidecars(self, topology: Topology, collector: str = "") -> dict[str, dict]:
        """proxy name → bootstrap: one per instance. collector: where their spans go (host:port), if anywhere."""
        proxies = {}
        for instance in topology.instances:
            directory = self.proxy_directory(instance.name)
            identity = self.identity(instance.service)
            proxy = topology.sidecar(instance)
            proxies[instance.name] = xds.sidecar_bootstrap(
                instance.name, directory, identity, self.ca.root,
                inbound=(instance.inbound_port, self.app_socket(instance)), outbound=CALLS.get(instance.service, ()),
                proxy=proxy, access_log_file=access_log_file(self.root.parent, proxy), collector=collector,
            )  # fmt: skip
        return proxies

    def write_bootstraps(self, topology: Topology, collector: str = "") -> dict[str, Path]:
        (self.root / "apps").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "apps", 0o700)  # only this user (the sidecars) reaches the apps
        return {
            name: write_bootstrap(self.proxy_directory(name), bootstrap) for name, bootstrap in self.sidecars(topology, collector).items()
        }

    def push(self, topology: Topology, policy: Policy) -> int:
        """Writes every proxy's clusters and routes (what istiod's push does), but the
        gateway's routes (the supervisor's: they carry the live configuration too). An instance
        whose sidecar has not bound its inbound port yet is in no cluster: the proxies can
        start before their peers, and a new instance gets traffic once it is there."""
        version = int.from_bytes(os.urandom(4), "big")
        clients = {instance.name: instance.service for instance in topology.instances if instance.service in CALLS}
        for instance in topology.instances:
            directory = self.proxy_directory(instance.name)
            write_resources(directory, version, "rds", [xds.inbound_routes(policy, instance)], "rds-inbound.json")
        for proxy, account in [*clients.items(), ("gateway", "gateway")]:
            directory = self.proxy_directory(proxy)
            hosts = CALLS["gateway" if proxy == "gateway" else account]
            bound = [instance for instance in topology.instances if instance.inbound_port]
            # The gateway's /healthz is the health of the service it fronts: that cluster is checked.
            checked = [services.GATEWAY_FRONT.name] if proxy == "gateway" else []
            clusters = xds.mesh_clusters(policy, bound, hosts, self.identity(account), self.ca.root, health_checked=checked)
            write_resources(directory, version, "cds", clusters, "cds.json")
            if proxy == "gateway":
                continue
            for host in hosts:
                routes = route_configuration(f"outbound-{host}", xds.policy_routes(policy, host))
                write_resources(directory, version, "rds", [routes], f"rds-outbound-{host}.json")
        for instance in topology.instances:  # apps that call nobody have no outbound clusters
            directory = self.proxy_directory(instance.name)
            if instance.name not in clients:
                write_resources(directory, version, "cds", [], "cds.json")
        return version
