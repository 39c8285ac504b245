"""`fenlei models|experiments|feedback|registry` against the session mesh, all through its
gateway: versions registered by `fenlei train` with their lineage, aliases that route
Classify and move back, history, tags, deletion refused while an alias holds a version,
roles, experiments with feedback, and export → import into a fresh home.

The tests use a model of their own ("shelf", two versions), so the session model keeps
answering as the other tests expect; each test sets the aliases it relies on."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import grpc
import jieba
import pytest

from fenlei.local.mesh import LocalMesh
from fenlei.preprocessor.core import read_stopwords
from fenlei.v1 import registry_pb2

# Its export/import starts a mesh of its own beside the session's: one such module at a time,
# or CI's 128 inotify instances run out while two meshes with sidecars run on the other worker.
pytestmark = pytest.mark.xdist_group("own_sidecar_mesh")
MODEL = "shelf"
TEXTS = ["质量很好，物流也快，非常满意", "太差了，用了两天就坏了", "国务院召开常务会议部署经济工作"]


def run(tools, home: Path, *args: str, fails: bool = False) -> str:
    """`fenlei ARGS` under home: its stdout; with fails, its stderr once it failed with a gRPC status (exit 1)."""
    result = tools.cli(home, *args, timeout=600)
    if fails:
        assert result.returncode == 1 and result.stdout == "", (args, result.stdout, result.stderr)
        return result.stderr
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def run_json(tools, home: Path, *args: str) -> dict:
    return json.loads(run(tools, home, *args, "--json"))


@pytest.fixture(scope="module")
def shelf(mesh, corpus, tools) -> SimpleNamespace:
    """Two versions of "shelf": v1 with the defaults, v2 with character 1-3-grams and tags."""
    common = ("train", corpus.train, "--name", MODEL, "--label-names", corpus.label_names, "--test", corpus.test)
    first = run(tools, mesh.home, *common)
    second = run(tools, mesh.home, *common, "--char-ngrams", "1-3", "--tag", "stage=candidate", "--tag", "team=search")
    return SimpleNamespace(first=first, second=second)


def route(tools, mesh, *args: str) -> list[list[str]]:
    """`fenlei classify --show-route` of TEXTS: label, score, version, arm, request id, document id per line."""
    lines = run(tools, mesh.home, "classify", "--model", MODEL, "--show-route", *args, *TEXTS).splitlines()
    assert len(lines) == len(TEXTS), lines
    return [line.split("\t") for line in lines]


def answered_version(api, **request) -> str:
    return api("viewer").classify(TEXTS[0], model=MODEL, **request).version


def set_alias(tools, mesh, alias: str, version: str, reason: str = "") -> str:
    return run(tools, mesh.home, "models", "alias", MODEL, alias, version, *(["--reason", reason] if reason else []))


def corpus_sha256(path: Path, names: list[str]) -> str:
    """The lineage's dataset checksum, computed here from the file: [text, label name] as JSON, a line each."""
    digest = hashlib.sha256()
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        digest.update(json.dumps([text, names[int(label)]], ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def test_train_registers_each_version_with_its_lineage_and_metrics(mesh, corpus, tools, shelf) -> None:
    assert f"registered {MODEL} v1 by {getpass.getuser()}" in shelf.first, shelf.first
    assert f"registered {MODEL} v2 by {getpass.getuser()}" in shelf.second, shelf.second
    version = run_json(tools, mesh.home, "models", "show", f"{MODEL}:v1")["version"]
    names = corpus.label_names.read_text(encoding="utf-8").split()
    lineage = version["lineage"]
    assert lineage["datasetSha256"] == corpus_sha256(corpus.train, names)
    assert lineage["testDatasetSha256"] == corpus_sha256(corpus.test, names)
    # Trained by a job on the dataset `fenlei train` uploaded: its id and the file it came from.
    dataset = f"ds-{lineage['datasetSha256'][:16]}"
    assert (int(lineage["datasetDocuments"]), lineage["datasetSource"], lineage["job"].startswith("job-")) == (
        len(corpus.train.read_text().splitlines()),
        f"dataset {dataset} ({corpus.train.resolve()})",
        True,
    )
    with jieba.Tokenizer().get_dict_file() as dictionary:
        assert lineage["dictionarySha256"] == hashlib.sha256(dictionary.read()).hexdigest()
    stopwords = "".join(f"{word}\n" for word in sorted(read_stopwords()))
    assert lineage["stopwordsSha256"] == hashlib.sha256(stopwords.encode()).hexdigest()
    assert lineage["codeVersion"].startswith(importlib.metadata.version("fenlei"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    if head.returncode == 0:  # run from a checkout: the commit is part of the code version
        assert f"+git.{head.stdout.strip()}" in lineage["codeVersion"]
    config = lineage["config"]
    assert set(config) == {"segmenter", "preprocessor", "features", "classifier", "training"}
    assert config["segmenter"]["mode"] == "accurate" and config["preprocessor"]["char_ngrams"] == [1, 2]
    test_dataset = f"ds-{lineage['testDatasetSha256'][:16]}"
    assert config["training"] == {
        "test_fraction": 0.2, "seed": 0, "evaluated_on": "test corpus", "test_source": f"dataset {test_dataset} ({corpus.test.resolve()})"
    }  # fmt: skip
    assert version["createdBy"] == getpass.getuser() and version["labels"] == sorted(names)

    metrics = version["metrics"]
    printed = next(line for line in shelf.first.splitlines() if line.startswith("accuracy "))
    assert f"accuracy {metrics['accuracy']:.4f}" in printed and f"macro F1 {metrics['macroF1']:.4f}" in printed
    assert set(metrics["perClass"]) == set(names)
    assert (
        sum(row["support"] for row in metrics["perClass"].values()) == metrics["testDocuments"] == len(corpus.test.read_text().splitlines())
    )
    # v2's options are in its lineage, and its tags from `train --tag`
    second = run_json(tools, mesh.home, "models", "show", f"{MODEL}:v2")["version"]
    assert second["lineage"]["config"]["preprocessor"]["char_ngrams"] == [1, 3]
    assert second["tags"] == {"stage": "candidate", "team": "search"}
    assert second["lineage"]["datasetSha256"] == lineage["datasetSha256"]  # the same data, another configuration

    text = run(tools, mesh.home, "models", "show", f"{MODEL}:v1")
    assert text.startswith(f"model {MODEL} v1") and f"by {getpass.getuser()}" in text
    for row in (f"  dataset      sha256 {lineage['datasetSha256']} ", f"  dictionary   sha256 {lineage['dictionarySha256']}", "config"):
        assert row in text, text
    for label in names:  # the per-class report, to four decimals
        [line] = [line for line in text.splitlines() if line.split()[:1] == [label]]
        assert f"{metrics['perClass'][label]['f1']:.4f}" in line


def test_models_list_and_search(mesh, tools, shelf) -> None:
    set_alias(tools, mesh, "production", "v1")
    listed = run(tools, mesh.home, "models", "list").splitlines()
    assert listed[0].split() == ["model", "versions", "newest", "aliases", "experiment"]
    [row] = [line for line in listed if line.split()[0] == MODEL]
    assert row.split()[1:4] == ["2", "v2", "production=v1"]
    models = {m["name"]: m for m in run_json(tools, mesh.home, "models", "list")["models"]}
    assert models[MODEL]["versions"] == 2 and models[MODEL]["aliases"]["production"] == "v1"

    versions = run(tools, mesh.home, "models", "list", MODEL).splitlines()
    assert [line.split()[1] for line in versions[1:]] == ["v2", "v1"]  # newest first
    assert "production" in versions[2] and "team=search" in versions[1]
    tagged = run_json(tools, mesh.home, "models", "list", MODEL, "--tag", "team=search")["versions"]
    assert [v["version"] for v in tagged] == ["v2"] and all(v["aliases"] == [] for v in tagged)
    best = run_json(tools, mesh.home, "models", "list", MODEL, "--metric", "accuracy", "--by-metric")["versions"]
    assert [v["metrics"]["accuracy"] for v in best] == sorted((v["metrics"]["accuracy"] for v in best), reverse=True)


def test_an_alias_routes_classify_moves_back_and_keeps_its_history(mesh, tools, api, shelf) -> None:
    set_alias(tools, mesh, "production", "v1", "first")
    tools.wait_for(lambda: answered_version(api) == "v1", "the name to answer with production's v1", timeout=tools.HANG_GUARD)
    assert {line[2] for line in route(tools, mesh)} == {"v1"}
    assert {line[3] for line in route(tools, mesh)} == {"-"}  # no experiment

    moved = set_alias(tools, mesh, "production", "v2", "better macro F1")
    assert moved.startswith(f"{MODEL} production: v1 -> v2  (move ") and f"by {getpass.getuser()}" in moved and "better macro F1" in moved
    tools.wait_for(lambda: answered_version(api) == "v2", "the promotion to take effect", timeout=tools.HANG_GUARD)
    lines = route(tools, mesh)
    assert {line[2] for line in lines} == {"v2"}
    assert len({line[4] for line in lines}) == 1 and [line[5] for line in lines] == ["0", "1", "2"]  # one stream, documents by position
    assert {line[2] for line in route(tools, mesh, "--version", "v1")} == {"v1"}  # a version named wins over the alias
    assert {line[2] for line in route(tools, mesh, "--version", "production")} == {"v2"}  # an alias named

    rolled = run(tools, mesh.home, "models", "rollback", MODEL, "production", "--reason", "v2 misfiles news")
    assert rolled.startswith(f"{MODEL} production: v2 -> v1"), rolled
    tools.wait_for(lambda: answered_version(api) == "v1", "the rollback to take effect", timeout=tools.HANG_GUARD)

    moves = run_json(tools, mesh.home, "models", "history", MODEL, "--alias", "production")["moves"]
    last = moves[-3:]
    assert [(m["fromVersion"], m["toVersion"], m["reason"]) for m in last[1:]] == [
        ("v1", "v2", "better macro F1"),
        ("v2", "v1", "v2 misfiles news"),
    ]
    assert [m["sequence"] for m in moves] == sorted(m["sequence"] for m in moves) and all(m["movedBy"] == getpass.getuser() for m in last)
    table = run(tools, mesh.home, "models", "history", MODEL).splitlines()
    assert table[0].split() == ["move", "moved", "alias", "from", "to", "by", "reason"]
    assert table[-1].split()[2:6] == ["production", "v2", "v1", getpass.getuser()] and table[-1].endswith("v2 misfiles news")


def test_tags_are_set_and_removed(mesh, tools, shelf) -> None:
    assert (
        run(tools, mesh.home, "models", "tag", MODEL, "v1", "owner=nlp", "reviewed=yes").strip()
        == f"{MODEL} v1 tags: owner=nlp reviewed=yes"
    )
    assert run(tools, mesh.home, "models", "tag", MODEL, "v1", "--remove", "reviewed").strip() == f"{MODEL} v1 tags: owner=nlp"
    assert [v["version"] for v in run_json(tools, mesh.home, "models", "list", "--tag", "owner=nlp")["versions"]] == ["v1"]
    assert "a tag takes KEY=VALUE" in tools.cli(mesh.home, "models", "tag", MODEL, "v1", "owner").stderr


def test_a_version_an_alias_holds_cannot_be_deleted(mesh, corpus, tools, api, shelf) -> None:
    set_alias(tools, mesh, "staging", "v1")
    refused = run(tools, mesh.home, "models", "delete", MODEL, "v1", fails=True)
    assert refused.startswith("fenlei models delete: FAILED_PRECONDITION: ") and "staging" in refused, refused
    assert run_json(tools, mesh.home, "models", "show", f"{MODEL}:v1")["version"]["version"] == "v1"  # still there

    run(tools, mesh.home, "train", corpus.train, "--name", MODEL, "--label-names", corpus.label_names, "--test", corpus.test, "--seed", "3")
    assert run(tools, mesh.home, "models", "delete", MODEL, "v3").strip() == f"deleted {MODEL} v3"
    gone = run(tools, mesh.home, "models", "show", f"{MODEL}:v3", fails=True)
    assert gone.startswith("fenlei models show: NOT_FOUND: "), gone
    with pytest.raises(grpc.RpcError) as error:
        api("viewer").classify(TEXTS[0], model=MODEL, version="v3")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_viewer_reads_but_cannot_move_an_alias(mesh, tools, api, shelf) -> None:
    assert api("viewer").model_registry.GetVersion(registry_pb2.GetVersionRequest(name=MODEL, version="v1")).version.version == "v1"
    request = registry_pb2.SetAliasRequest(name=MODEL, alias="production", version="v2")
    with pytest.raises(grpc.RpcError) as refused:
        api("viewer").model_registry.SetAlias(request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as refused:
        api("trainer").model_registry.SetAlias(request)  # trainers register and tag, admins move aliases
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    authority = LocalMesh(mesh.home).authority()

    def put(role: str) -> tuple[int, dict]:
        rest = urllib.request.Request(
            f"http://{mesh.address('gateway')}/v1/models/{MODEL}/aliases/canary",
            data=json.dumps({"version": "v2", "reason": "over REST"}).encode(),
            method="PUT",
            headers={"authorization": f"Bearer {authority.mint(role, ttl_seconds=600)}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(rest, timeout=tools.HANG_GUARD) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = put("viewer")
    assert (status, body["code"]) == (403, grpc.StatusCode.PERMISSION_DENIED.value[0]), body
    status, body = put("admin")
    assert status == 200 and body["move"]["toVersion"] == "v2" and body["move"]["movedBy"] == "admin", body
    assert run(tools, mesh.home, "models", "unalias", MODEL, "canary").startswith(f"{MODEL} canary: v2 -> (removed)")


def test_an_experiment_from_the_command_line(mesh, tools, api, shelf) -> None:
    set_alias(tools, mesh, "production", "v1")
    created = run(tools, mesh.home, "experiments", "create", "shelf-ab", "--model", MODEL, "--arm", "a=production:0.5", "--arm", "b=v2:0.5")
    try:
        assert created.startswith(f"experiment shelf-ab on model {MODEL}: running, fixed weights"), created
        arms = {line.split()[0]: line.split() for line in created.splitlines() if line.split()[:1] in (["a"], ["b"])}
        assert arms["a"][1:5] == ["production", "v1", "0.5000", "50.0%"] and arms["b"][1:4] == ["v2", "v2", "0.5000"]
        listed = run(tools, mesh.home, "experiments", "list")
        assert "shelf-ab" in listed and "a=production(v1):0.50 b=v2(v2):0.50" in listed

        # one routing key, one arm, also once the weights change
        def routed() -> list[str] | None:
            line = route(tools, mesh, "--key", "user-7")[0]
            return line if line[3] != "-" else None  # the pipeline reads the experiment within about a second

        first = tools.wait_for(routed, "an arm to answer", timeout=tools.HANG_GUARD)
        arm, version = first[3], first[2]
        assert (arm, version) in (("a", "v1"), ("b", "v2"))
        other = "b" if arm == "a" else "a"
        run(tools, mesh.home, "experiments", "weights", "shelf-ab", f"{arm}=0", f"{other}=1")
        assert {(line[3], line[2]) for line in route(tools, mesh, "--key", "user-7")} == {(arm, version)}

        # feedback on one prediction, by its request id and document id
        answer = route(tools, mesh, "--key", "user-7")[1]
        label, request_id, document = answer[0], answer[4], answer[5]

        def send() -> str:
            result = tools.cli(mesh.home, "feedback", request_id, label, "--document", document, timeout=120)
            assert result.returncode == 0 or "NOT_FOUND" in result.stderr, result.stderr  # recorded within about a second
            return result.stdout

        told = tools.wait_for(send, "the prediction to be recorded", timeout=tools.HANG_GUARD)
        assert told.strip() == f"feedback on {request_id} document {document}: experiment shelf-ab, arm {arm}: the prediction was correct"
        shown = run_json(tools, mesh.home, "experiments", "show", "shelf-ab")["experiment"]
        [score] = [s for s in shown["scores"] if s["arm"] == arm]
        assert (int(score["feedback"]), int(score["correct"]), score["accuracy"]) == (1, 1, 1.0)
        assert shown["leader"] == arm and score["confusion"] == {label: {"counts": {label: "1"}}}
        text = run(tools, mesh.home, "experiments", "show", "shelf-ab")
        assert f"leader: {arm} (online accuracy 1.0000 on 1 feedback)" in text
        assert f"arm {arm}: true label (rows) by predicted label (columns)" in text

        ended = run(tools, mesh.home, "experiments", "end", "shelf-ab", "--promote", "production", "--winner", "b", "--reason", "b won")
        assert "shelf-ab on model shelf: ended " in ended and "production: v1 -> v2" in ended.splitlines()[-1]
        tools.wait_for(lambda: answered_version(api) == "v2", "the promotion of the winner", timeout=tools.HANG_GUARD)
        assert "shelf-ab" not in run(tools, mesh.home, "experiments", "list") and "shelf-ab" in run(
            tools, mesh.home, "experiments", "list", "--all"
        )
    finally:
        tools.cli(mesh.home, "experiments", "end", "shelf-ab", timeout=120)  # ended already, unless the test failed


def test_export_then_import_into_a_fresh_home_gives_identical_predictions(mesh, tools, shelf, tmp_path_factory) -> None:
    set_alias(tools, mesh, "production", "v2", "before the backup")
    archive = tmp_path_factory.mktemp("backup") / "registry.tar"
    exported = run(tools, mesh.home, "registry", "export", archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert exported.strip() == f"exported the registry to {archive}: {archive.stat().st_size:,} bytes, sha256 {digest}"

    held_out = [line.split("\t")[0] for line in mesh.test_file.read_text(encoding="utf-8").splitlines()][:200]
    stdin = "\n".join(held_out) + "\n"

    def predictions(home: Path, *args: str) -> str:
        result = tools.cli(home, "classify", "--model", MODEL, *args, input=stdin, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    home = tmp_path_factory.mktemp("fresh")
    watchdog = tools.start_watchdog(home)
    try:
        up = tools.cli(home, "up", "--no-sidecars", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        imported = json.loads(run(tools, home, "registry", "import", archive, "--json"))
        assert {f"{MODEL}/v1", f"{MODEL}/v2"} <= set(imported["added"]) and imported["unchanged"] == []
        again = run(tools, home, "registry", "import", archive)  # merging the same archive changes nothing
        assert "added no versions" in again and f"{MODEL}/v1" in again

        for args in ((), ("--version", "v1"), ("--version", "v2")):
            assert predictions(home, *args) == predictions(mesh.home, *args), args
        for command in (("models", "history", MODEL), ("models", "show", MODEL), ("models", "show", f"{MODEL}:v1")):
            assert run_json(tools, home, *command) == run_json(tools, mesh.home, *command), command

        # one byte of the metadata changed: refused before anything changes
        with tarfile.open(archive) as tar:
            metadata = tar.getmember("registry.json")
        data = bytearray(archive.read_bytes())
        data[metadata.offset_data + metadata.size // 2] ^= 0x01
        damaged = archive.with_name("damaged.tar")
        damaged.write_bytes(bytes(data))
        refused = run(tools, home, "registry", "import", damaged, fails=True)
        assert refused.startswith("fenlei registry import: ") and "registry.json" in refused, refused
        assert run_json(tools, home, "models", "history", MODEL) == run_json(tools, mesh.home, "models", "history", MODEL)
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()
