"""The `fenlei` command against the session mesh: status, train's report and model, classify."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fenlei.v1 import pipeline_pb2

TEXTS = ["姚明率领火箭队击败湖人", "沪指放量大涨 券商股集体涨停", "教育部公布高考招生新政策", "新款网络游戏公测开启"]


def test_status_json_reports_every_service_serving(mesh, tools) -> None:
    result = tools.cli(mesh.home, "status", "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert sorted(status) == sorted(tools.PROCESSES)
    for service, entry in status.items():
        assert entry["status"] == "SERVING", (service, entry)
        assert entry["address"] == mesh.address(service)
        assert entry["pid"] == mesh.state[service]["pid"] and tools.alive(entry["pid"])


def test_status_text_lists_every_service(mesh, tools) -> None:
    result = tools.cli(mesh.home, "status", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for service in tools.PROCESSES:
        [line] = [line for line in lines if line.split()[0] == service]
        assert mesh.address(service) in line and line.split()[-1] == "SERVING"


def test_train_printed_an_evaluation_and_published_a_data_only_model(mesh) -> None:
    out = mesh.train_output
    assert "model news v1" in out, out
    # ten classes: chance is 0.1; a model that learned anything is far above it
    assert mesh.accuracy >= 0.5, out
    assert "macro F1" in out
    for label in mesh.labels:  # a per-class report row with the class names, not indices
        assert any(line.split()[:1] == [label] for line in out.splitlines()), (label, out)

    version = mesh.home / "models" / "news" / "v1"
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    files = manifest["files"]
    for part in ("segmenter", "preprocessor", "features", "classifier"):
        assert any(name.startswith(f"{part}/") for name in files), (part, sorted(files))
    for name, digest in files.items():
        path = version / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        assert path.suffix in (".json", ".npy"), f"{name}: artifacts are JSON or NumPy arrays"
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)  # raises if the array needs pickle
        else:
            json.loads(path.read_text(encoding="utf-8"))
    on_disk = {str(p.relative_to(version)) for p in version.rglob("*") if p.is_file()}
    assert on_disk == set(files) | {"manifest.json"}


def _classify(mesh, text: str) -> pipeline_pb2.ClassifyResponse:
    return mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text, model="news", top_k=1), timeout=60)


def _check_lines(mesh, stdout: str) -> list[str]:
    lines = stdout.splitlines()
    assert len(lines) == len(TEXTS), stdout
    labels = []
    for text, line in zip(TEXTS, lines):
        label, score = line.split("\t")
        answer = _classify(mesh, text)
        assert label == answer.labels[0].label, (text, line)
        assert float(score) == pytest.approx(answer.labels[0].score, abs=1e-4)
        labels.append(label)
    return labels


def test_classify_prints_label_tab_score_per_text(mesh, tools) -> None:
    result = tools.cli(mesh.home, "classify", "--model", "news", *TEXTS, timeout=120)
    assert result.returncode == 0, result.stderr
    labels = _check_lines(mesh, result.stdout)
    assert set(labels) <= set(mesh.labels)


def test_classify_reads_stdin_lines(mesh, tools) -> None:
    result = tools.cli(mesh.home, "classify", "--model", "news", input="\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n", timeout=120)
    assert result.returncode == 0, result.stderr
    _check_lines(mesh, result.stdout)


def test_classify_unknown_model_fails_with_the_reason(mesh, tools) -> None:
    result = tools.cli(mesh.home, "classify", "--model", "no-such-model", TEXTS[0], timeout=120)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "NOT_FOUND" in result.stderr and "no-such-model" in result.stderr, result.stderr
