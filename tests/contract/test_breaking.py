"""The contract against its last release: the real `buf breaking` (buf-bin's buf) with the
rules of protos/buf.yaml, so any breaking change to what a release shipped fails the suite.
A release adds its image with `python scripts/gen.py --release` (protos/README.md)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from packaging.version import Version

# buf's exit status for "ran, and found breaking changes" (a failure to run is 1).
BREAKING_FOUND = 100


def _load_gen():
    spec = importlib.util.spec_from_file_location("fenlei_gen", REPO / "scripts" / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_gen()


def last_release() -> Path:
    images = sorted(gen.RELEASED.glob("fenlei-*.binpb"), key=lambda image: Version(image.stem.removeprefix("fenlei-")))
    assert images, f"no released image in {gen.RELEASED}: nothing to check the contract against"
    return images[-1]


def buf_breaking(proto_root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    image = tmp_path / "contract.binpb"
    gen.build_image(proto_root, image)
    command = [gen.buf(), "breaking", str(image), "--against", str(last_release()), "--config", str(gen.PROTO_ROOT / "buf.yaml")]
    # Imports (google/api, descriptor.proto) are other projects' to change.
    command += ["--exclude-imports", "--error-format", "json"]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_contract_keeps_what_the_last_release_shipped(tmp_path: Path) -> None:
    assert Version(last_release().stem.removeprefix("fenlei-")) <= Version(gen.project_version())
    result = buf_breaking(gen.PROTO_ROOT, tmp_path)
    assert result.returncode == 0, f"breaking changes against {last_release().name}:\n{result.stdout}{result.stderr}"


# file, what the release has, the edit; the rule that must fail it and what it must name.
EDITS = {
    "presence added": (
        "classifier.proto",
        "  uint32 top_k = 1;",
        "  optional uint32 top_k = 1;",
        "FIELD_SAME_CARDINALITY",
        'Field "1" with name "top_k" on message "PredictOptions" changed cardinality',
    ),
    "presence removed": (
        "segmenter.proto",
        "  optional bool pos_tags = 3;",
        "  bool pos_tags = 3;",
        "FIELD_SAME_CARDINALITY",
        'Field "3" with name "pos_tags" on message "SegmentOptions" changed cardinality',
    ),
    "number changed": (
        "common.proto",
        "  string version = 2;",
        "  string version = 3;",
        "FIELD_NO_DELETE",
        'field "2" with name "version" on message "ModelRef" was deleted',
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_buf_breaking_fails_a_changed_field_and_names_it(edit: str, tmp_path: Path) -> None:
    file, released, changed, rule, named = EDITS[edit]
    protos = tmp_path / "protos"
    shutil.copytree(gen.PROTO_ROOT, protos)
    proto = protos / gen.PACKAGE_DIR / file
    text = proto.read_text(encoding="utf-8")
    assert text.count(released + "\n") == 1, f"{file} no longer has {released.strip()!r}: pick another field to edit"
    proto.write_text(text.replace(released + "\n", changed + "\n"), encoding="utf-8")

    result = buf_breaking(protos, tmp_path)

    assert result.returncode == BREAKING_FOUND, result.stdout + result.stderr
    violations = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(v["path"], v["type"]) for v in violations] == [(f"fenlei/v1/{file}", rule)], result.stdout
    assert named in violations[0]["message"]
