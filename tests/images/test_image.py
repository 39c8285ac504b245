"""The image, built, published and run (issue 13).

scripts/image.sh builds mesh/Dockerfile on a Debian base that debootstrap makes (no image
registry serves python:3.11-slim here), pushes it to Debian's docker-registry started on
loopback with its own configuration and storage, and writes the overlays' `images:`
entry into a copy of mesh/k8s. The image is then pulled back into an image store of its
own (every layer comes from the registry) and checked: its digest is the one pushed, its
labels and user are what the manifests assume, and its own fenlei runs the whole local
mesh (services, catalog, collector, Envoy sidecars and gateway) from its files, on its
read-only root, as uid 10001: every service answers health, and a model trained through
it classifies held-out texts through its gateway.

`podman run` fails on these machines (their cgroup layout), so the check runs the image's
files the way a runtime would without one: the pulled image mounted read-only
(`podman image mount`), in a mount namespace of its own with /proc, /dev, a home volume
and /tmp mounted in it, then chroot to it. The namespace holder watches the test process:
if pytest dies, it stops the mesh and the namespace goes with it. Needs root, podman,
buildah, debootstrap and docker-registry (scripts/debian-packages.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from testkit import wait_for

REPO = Path(__file__).resolve().parents[2]
USER = "10001:10001"
LABELS = ("news", "positive")  # newspaper paragraphs and product reviews: a small model tells them apart
TRAIN_PER_CLASS, TEST_PER_CLASS, HELD_OUT_PER_CLASS = 150, 40, 30
# What `fenlei up` runs: the trace collector, every workload, the gateway.
PROCESSES_AT_LEAST = {
    "collector",
    "segmenter",
    "preprocessor",
    "features",
    "classifier",
    "pipeline",
    "registry",
    "catalog",
    "datasets",
    "jobs",
    "gateway",
}

pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(1800),
    pytest.mark.xdist_group("own_sidecar_mesh"),
]  # one at a time: each starts a mesh with sidecars of its own (inotify, see tests/e2e/conftest.py)


def run(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


# ---------------------------------------------------------------- the registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (Docker Distribution, registry v2) on 127.0.0.1 at a port the
    kernel picks, storing under a temporary folder; host:port."""
    folder = tmp_path_factory.mktemp("registry")
    config = folder / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "info", "formatter": "text"},
                "storage": {"filesystem": {"rootdirectory": str(folder / "storage")}, "delete": {"enabled": True}},
                "http": {"addr": "127.0.0.1:0"},
            }
        )
    )
    log = folder / "registry.log"
    with log.open("w") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        yield wait_for(lambda: _listening(log), "docker-registry to listen")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _listening(log: Path) -> str:
    match = re.search(r'msg="listening on (127\.0\.0\.1:\d+)"', log.read_text())
    return match.group(1) if match else ""


# ---------------------------------------------------------------- build and push


@dataclass(frozen=True)
class Built:
    output: str
    local: str  # localhost/fenlei:<tag>
    repository: str  # <registry>/fenlei
    tag: str
    digest: str  # what the registry holds
    k8s: Path  # a copy of mesh/k8s with the images: entry the build wrote

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


@pytest.fixture(scope="module")
def built(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    mesh = tmp_path_factory.mktemp("manifests") / "mesh"
    shutil.copytree(REPO / "mesh", mesh)  # k8s/ with the istio/ its components include
    k8s = mesh / "k8s"
    tag = f"test-{os.getpid()}"
    repository = f"{registry}/fenlei"
    started = time.monotonic()
    result = run(
        "bash", "scripts/image.sh", "--debootstrap", "--tag", tag, "--push", repository, "--tls-verify", "false",
        "--kustomization", str(k8s / "components" / "image"),
        cwd=REPO, timeout=1500,
    )  # fmt: skip
    print(f"scripts/image.sh, {time.monotonic() - started:.1f} s:\n{result.stdout}")
    pushed = re.search(rf"^pushed {re.escape(repository)}:{tag}@(sha256:[0-9a-f]{{64}}) in ", result.stdout, re.M)
    assert pushed, result.stdout
    try:
        yield Built(result.stdout, f"localhost/fenlei:{tag}", repository, tag, pushed.group(1), k8s)
    finally:
        # the tag, and the image if nothing else names it (its layers stay in the build cache)
        subprocess.run(["podman", "rmi", f"localhost/fenlei:{tag}"], capture_output=True, timeout=120)


@dataclass(frozen=True)
class Store:
    """An image store of its own (podman --root/--runroot in a temporary folder)."""

    root: Path

    def podman(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        options = ("--root", str(self.root / "storage"), "--runroot", str(self.root / "run"), "--storage-driver", "overlay")
        return run("podman", *options, *args, timeout=timeout)


@pytest.fixture(scope="module")
def pulled(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The pushed image pulled back, by its digest, into an empty store: every layer from the registry."""
    # podman refuses a runroot path of more than 50 characters (pytest's own, under xdist, is longer)
    store = Store(Path(tempfile.mkdtemp(prefix="fenlei-pulled-")))
    try:
        started = time.monotonic()
        store.podman("pull", "--quiet", "--tls-verify=false", built.reference)
        print(f"pulled {built.reference} in {time.monotonic() - started:.1f} s")
        yield store
    finally:
        store.podman("rmi", "--all", "--force")
        shutil.rmtree(store.root, ignore_errors=True)


def test_the_registry_holds_the_pushed_image_and_gives_it_back(built: Built, pulled: Store, registry: str) -> None:
    request = urllib.request.Request(
        f"http://{registry}/v2/fenlei/manifests/{built.tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["Docker-Content-Digest"] == built.digest
    image = json.loads(pulled.podman("image", "inspect", built.reference).stdout)[0]
    assert image["Digest"] == built.digest
    local = json.loads(run("podman", "image", "inspect", built.local).stdout)[0]
    assert image["Id"] == local["Id"], "the image pulled back is not the image built"


def test_the_image_is_labelled_lean_and_runs_as_its_user(built: Built, pulled: Store) -> None:
    image = json.loads(pulled.podman("image", "inspect", built.reference).stdout)[0]
    config = image["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]
    revision = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", labels["org.opencontainers.image.revision"])
    assert revision, labels
    run("git", "cat-file", "-e", f"{revision[1]}^{{commit}}", cwd=REPO)  # a commit of this repository
    assert "org.opencontainers.image.source" in labels
    assert config["User"] == USER
    assert not any(e.startswith(("FENLEI_HOST=", "FENLEI_PORT=")) for e in config["Env"]), "the manifests set them per container"
    size = int(image["Size"])
    match = re.search(r"^built .*: (\d+) MB$", built.output, re.M)
    assert match and abs(int(match.group(1)) - size // 1_000_000) <= 1, "the build reports the image's size"
    root = Path(pulled.podman("image", "mount", built.reference).stdout.strip())
    try:
        venv = root / "opt" / "venv"
        assert (venv / "bin" / "envoy").exists() and (venv / "bin" / "fenlei").exists()
        # multi-stage: the final stage holds no installer, no compiler, no package caches
        assert not (venv / "bin" / "pip").exists() and not list(venv.glob("lib/python3.11/site-packages/pip"))
        assert not list(root.glob("usr/bin/gcc*")) and not list(root.glob("var/cache/apt/archives/*.deb"))
        assert not list((venv / "lib" / "python3.11" / "site-packages" / "sklearn").glob("**/tests"))
        assert (root / "app" / "services" / "fenlei" / "v1" / "fenlei.binpb").exists()  # what the gateway's transcoder reads
        assert (root / "app" / "mesh" / "istio" / "virtual-service-all-v1.yaml").exists()  # what `fenlei up`'s sidecars translate
    finally:
        pulled.podman("image", "unmount", built.reference)


def test_every_overlay_names_the_pushed_image_by_tag_and_digest(built: Built) -> None:
    entry = yaml.safe_load((built.k8s / "components" / "image" / "kustomization.yaml").read_text())["images"]
    assert entry == [{"name": "fenlei", "newName": built.repository, "newTag": built.tag, "digest": built.digest}]
    for overlay in ("local", "istio", "istio-canary"):
        objects = [o for o in yaml.safe_load_all(run("kubectl", "kustomize", str(built.k8s / "overlays" / overlay)).stdout) if o]
        images = {
            container["image"]
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] != "otel-collector"
            for container in [*o["spec"]["template"]["spec"].get("initContainers", []), *o["spec"]["template"]["spec"]["containers"]]
            if container["image"] != "auto"  # Istio's injected proxy
        }
        assert images == {built.reference}, overlay


# ---------------------------------------------------------------- the image's own fenlei


# Runs as the namespace's first process: mounts what a runtime would, then waits for the
# test process; when it is gone (pytest killed), stops the mesh, and the namespace ends.
HOLDER = r"""
set -eu
root=$1 home=$2 scratch=$3 parent=$4; shift 4
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$home" "$root/var/lib/fenlei"
mount --bind "$scratch" "$root/tmp"
mount --bind /etc/hosts "$root/etc/hosts"
echo mounted
while [ -e "/proc/$parent" ]; do sleep 1; done
chroot --userspec=10001:10001 "$root" /usr/bin/env -i "$@" fenlei down >/dev/null 2>&1 || true
"""


@dataclass
class Sandbox:
    root: Path  # the image, mounted read-only
    home: Path  # /var/lib/fenlei inside
    holder: subprocess.Popen
    env: list[str]  # the image's own environment

    def fenlei(self, *args: str, input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`fenlei ARGS` from the image, as its user, with the image's environment only."""
        command = ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", "chroot", f"--userspec={USER}", str(self.root)]
        return subprocess.run(
            [*command, "/usr/bin/env", "-i", *self.env, "fenlei", *args], input=input, capture_output=True, text=True, timeout=timeout
        )

    def processes(self) -> list[int]:
        """Every process whose root is the image (they all run from its files)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "root") == str(self.root):
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found


@pytest.fixture(scope="module")
def sandbox(built: Built, pulled: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder = tmp_path_factory.mktemp("s")  # short: the mesh's Unix sockets live under home
    home, scratch = folder / "home", folder / "tmp"
    home.mkdir()
    scratch.mkdir()
    os.chown(home, 10001, 10001)
    scratch.chmod(0o1777)
    image = json.loads(pulled.podman("image", "inspect", built.reference).stdout)[0]
    env = [*image["Config"]["Env"], "FENLEI_GATEWAY_PORT=0"]  # a free port, not 8080
    root = Path(pulled.podman("image", "mount", built.reference).stdout.strip())
    holder = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            HOLDER,
            "sh",
            str(root),
            str(home),
            str(scratch),
            str(os.getpid()),
            *env,
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sandbox = Sandbox(root, home, holder, env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mounted"
        yield sandbox
    finally:
        down = sandbox.fenlei("down", timeout=120)
        survivors = sandbox.processes()
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        holder.kill()
        holder.wait(timeout=30)
        pulled.podman("image", "unmount", built.reference)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not survivors, f"`fenlei down` left processes of the image running: {survivors}"


@dataclass(frozen=True)
class Mesh:
    up: str
    gateway: str  # host:port on loopback, reached from outside the image
    status: dict[str, dict]


@pytest.fixture(scope="module")
def mesh(sandbox: Sandbox) -> Mesh:
    up = sandbox.fenlei("up", timeout=600)
    assert up.returncode == 0, f"fenlei up from the image failed:\n{up.stdout}\n{up.stderr}"
    status = sandbox.fenlei("status", "--json", timeout=120)
    assert status.returncode == 0, f"not every process of the image's mesh is SERVING:\n{status.stdout}\n{status.stderr}"
    gateway = re.search(r"gateway on (127\.0\.0\.1:\d+)", up.stdout)
    assert gateway, up.stdout
    return Mesh(up.stdout, gateway.group(1), json.loads(status.stdout))


def test_every_service_of_the_image_starts_and_answers_health(sandbox: Sandbox, mesh: Mesh) -> None:
    assert PROCESSES_AT_LEAST <= set(mesh.status), mesh.status
    assert all(entry["status"] == "SERVING" for entry in mesh.status.values()), mesh.status
    assert "Envoy sidecars" in mesh.up or "sidecars" in mesh.up, mesh.up
    # they all run from the image's files, as its user, on its read-only root
    pids = sandbox.processes()
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in pids]
    assert any(c.endswith("envoy") or "/envoy" in c for c in commands), commands
    assert all(Path(f"/proc/{pid}").stat().st_uid == 10001 for pid in pids)
    mounts = {line.split()[1]: line.split()[3] for line in Path(f"/proc/{pids[0]}/mounts").read_text().splitlines()}
    assert mounts["/"].split(",")[0] == "ro", mounts["/"]
    with urllib.request.urlopen(f"http://{mesh.gateway}/healthz", timeout=30) as answer:
        assert answer.status == 200


def _write_corpus(folder: Path, texts: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    shares = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS, "held-out": HELD_OUT_PER_CLASS}
    rows: dict[str, list[tuple[str, str]]] = {share: [] for share in shares}
    for label in LABELS:
        drawn = texts[label][:: len(texts[label]) // sum(shares.values())]
        start = 0
        for share, count in shares.items():
            rows[share] += [(text, label) for text in drawn[start : start + count]]
            start += count
    for share, lines in rows.items():
        path = folder / f"{share}.txt"
        path.write_text("".join(f"{text}\t{label}\n" for text, label in lines), encoding="utf-8")
        os.chown(path, 10001, 10001)
    return rows


def test_a_model_trained_in_the_image_classifies_through_its_gateway(sandbox: Sandbox, mesh: Mesh, texts: dict[str, list[str]]) -> None:
    corpus = sandbox.home / "corpus"
    corpus.mkdir()
    os.chown(corpus, 10001, 10001)
    rows = _write_corpus(corpus, texts)
    inside = "/var/lib/fenlei/corpus"
    train = sandbox.fenlei("train", f"{inside}/train.txt", "--name", "image", "--test", f"{inside}/test.txt", timeout=900)
    assert train.returncode == 0, f"fenlei train in the image failed:\n{train.stdout}\n{train.stderr}"
    assert "registered image v1 by " in train.stdout, train.stdout

    held_out = rows["held-out"]
    classify = sandbox.fenlei("classify", "--model", "image", input="".join(f"{text}\n" for text, _ in held_out), timeout=300)
    assert classify.returncode == 0, classify.stdout + classify.stderr
    predicted = [line.split("\t")[0] for line in classify.stdout.splitlines()]
    assert len(predicted) == len(held_out)
    correct = sum(p == label for p, (_, label) in zip(predicted, held_out))
    assert correct >= 0.9 * len(held_out), f"{correct}/{len(held_out)} held-out texts classified correctly"

    # and over REST, from outside the image, with a token of the image's mesh
    token = sandbox.fenlei("token", "viewer", timeout=60)
    assert token.returncode == 0, token.stderr
    text, label = held_out[0]
    request = urllib.request.Request(
        f"http://{mesh.gateway}/v1/classify",
        data=json.dumps({"text": text, "model": "image"}).encode(),
        headers={"Authorization": f"Bearer {token.stdout.strip()}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = json.loads(answer.read())
    assert body["model"] == "image" and body["version"] == "v1"
    assert body["labels"][0]["label"] == predicted[0]
