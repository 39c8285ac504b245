"""`fenlei datasets|jobs` against the session mesh, all through its gateway: uploads stored
once and validated with line numbers, list/show/delete, a job created with stage options
and watched to the end (plain lines, JSON events, a progress bar on a terminal), its
report, and a cancelled job (by `jobs cancel`, by an interrupted `fenlei train`) that registers nothing.

The jobs train a model of their own ("jobcli"), so the session model is left as it is."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

MODEL = "jobcli"


def run(tools, home: Path, *args: str, fails: bool = False) -> str:
    """`fenlei ARGS` under home: its stdout; with fails, its stderr once it failed (exit 1)."""
    result = tools.cli(home, *args, timeout=600)
    if fails:
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        return result.stderr
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def run_json(tools, home: Path, *args: str) -> dict:
    return json.loads(run(tools, home, *args, "--json"))


@pytest.fixture(scope="module")
def datasets(mesh, corpus, tools) -> SimpleNamespace:
    names = ("--label-names", corpus.label_names)
    train = run_json(tools, mesh.home, "datasets", "upload", corpus.train, *names)["dataset"]
    test = run_json(tools, mesh.home, "datasets", "upload", corpus.test, *names)["dataset"]
    return SimpleNamespace(train=train["id"], test=test["id"], train_documents=len(corpus.train.read_text().splitlines()))


@pytest.fixture(scope="module")
def finished(mesh, tools, datasets) -> SimpleNamespace:
    """A job of MODEL created with `--watch`, with options of every kind of stage, to its end."""
    result = tools.cli(
        mesh.home, "jobs", "create", "--model", MODEL, "--dataset", datasets.train, "--test-dataset", datasets.test,
        "--word-ngrams", "1-2", "--char-ngrams", "0", "--no-hmm", "--algorithm", "linear_svm", "--tag", "e2e=jobs", "--watch",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    first, *events = result.stdout.splitlines()
    job = first.split()[2].rstrip(":")
    assert first == f"created job {job}: {MODEL} on dataset {datasets.train}", first
    return SimpleNamespace(id=job, events=events)


def test_a_dataset_is_stored_once_listed_and_shown(mesh, corpus, tools, datasets) -> None:
    again = run(tools, mesh.home, "datasets", "upload", corpus.train, "--label-names", corpus.label_names, "--name", "again")
    assert again.startswith(f"already stored as dataset {datasets.train} ("), again
    assert f"{datasets.train_documents:,} documents, 3 labels" in again

    [row] = [line.split() for line in run(tools, mesh.home, "datasets", "list").splitlines() if line.startswith(datasets.train)]
    assert row[2:4] == [f"{datasets.train_documents:,}", "3"], row
    shown = run(tools, mesh.home, "datasets", "show", datasets.train).splitlines()
    assert shown[0].startswith(f"dataset {datasets.train}  ")
    assert f"file        {corpus.train.resolve()} (tsv)" in shown
    per_label = datasets.train_documents // 3
    for label in mesh.labels:  # label names, not the indices of the file
        assert f"  {label:<8}  {per_label:>9}  33.3%" in shown, shown
    assert any(line.startswith("  negative  ") for line in shown[shown.index("examples") :])


def test_a_bad_dataset_is_refused_with_line_numbers_and_nothing_stored(mesh, tools, tmp_path) -> None:
    before = run_json(tools, mesh.home, "datasets", "list")
    bad = tmp_path / "bad.txt"
    bad.write_text("很好用\tpositive\n没有标签的一行\n太差了\tnegative\n\tnegative\n", encoding="utf-8")
    refused = run(tools, mesh.home, "datasets", "upload", bad, fails=True)
    assert refused.startswith("fenlei datasets upload: INVALID_ARGUMENT: "), refused
    assert "line 2" in refused and "line 4" in refused, refused
    assert run_json(tools, mesh.home, "datasets", "list") == before


def test_delete_removes_a_dataset(mesh, corpus, tools) -> None:
    dataset = run_json(tools, mesh.home, "datasets", "upload", corpus.held_out, "--label-names", corpus.label_names)["dataset"]["id"]
    assert run(tools, mesh.home, "datasets", "delete", dataset) == f"deleted dataset {dataset}\n"
    assert "NOT_FOUND" in run(tools, mesh.home, "datasets", "show", dataset, fails=True)


def test_a_watched_job_shows_its_phases_and_ends_succeeded(mesh, tools, finished) -> None:
    states = [line.split("  ")[1] for line in finished.events]
    assert states[-1] == "succeeded" and "running" in states, finished.events
    phases = " ".join(finished.events)
    for phase in ("segmenting", "fitting features", "fitting classifier", "evaluating"):
        assert phase in phases, finished.events
    assert any("documents" in line and "elapsed" in line for line in finished.events)

    shown = run(tools, mesh.home, "jobs", "show", finished.id).splitlines()
    assert shown[0] == f"job {finished.id}: succeeded (registered {MODEL} v1)", shown
    assert "  preprocessor  char_ngrams=[0,0] word_ngrams=[1,2]" in shown
    assert "  segmenter     hmm=false" in shown and "  classifier    algorithm=ALGORITHM_LINEAR_SVM" in shown
    listed = run(tools, mesh.home, "jobs", "list", "--state", "succeeded", "--model", MODEL)
    assert any(line.split()[:1] == [finished.id] for line in listed.splitlines()), listed
    version = run_json(tools, mesh.home, "models", "show", f"{MODEL}:v1")["version"]
    assert version["tags"] == {"e2e": "jobs"}


def test_watch_replays_the_events_as_json(mesh, tools, finished) -> None:
    events = [json.loads(line) for line in run(tools, mesh.home, "jobs", "watch", finished.id, "--json").splitlines()]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[0]["state"] == "JOB_STATE_QUEUED" and events[-1]["state"] == "JOB_STATE_SUCCEEDED"
    # Off a terminal, `fenlei train` printed a line for each state and phase and for each phase done, not each step.
    steps = [(e["state"], e.get("progress", {}).get("phase", "")) for e in events]
    assert len({*steps}) <= len(finished.events) <= len(events)


def test_watch_draws_a_progress_bar_on_a_terminal(mesh, tools, finished) -> None:
    controller, terminal = os.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "fenlei.cli", "jobs", "watch", finished.id],
            env={**os.environ, "FENLEI_HOME": str(mesh.home)}, stdout=terminal, stderr=subprocess.PIPE, timeout=300,
        )  # fmt: skip
        os.close(terminal)
        drawn = b""
        while chunk := _read_terminal(controller):
            drawn += chunk
    finally:
        os.close(controller)
    assert process.returncode == 0, process.stderr
    shown = drawn.decode()
    assert "\r\x1b[K[########################] 100%  running  fitting features" in shown, shown
    # One bar redrawn in place for every event (events with a message print it on a line of their own), no plain lines.
    assert shown.count("\r\x1b[K[") == len(finished.events) and not re.search(r"\d{4}-\d\d-\d\dT", shown), shown
    assert shown.endswith("\r\n") and "succeeded" in shown.rsplit("\r\x1b[K", 1)[1]


def _read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the writing side is closed and everything was read
        return b""


def test_the_report_reads_in_the_terminal(mesh, tools, finished) -> None:
    report = run(tools, mesh.home, "jobs", "report", finished.id).splitlines()
    assert report[0] == f"job {finished.id}"
    assert report[1].startswith("evaluation  ") and report[2].startswith("accuracy ") and "weighted F1" in report[2]
    matrix = report.index("confusion matrix: true label (rows) by predicted label (columns)")
    labels = report[matrix + 1].split()
    assert sorted(labels) == sorted(mesh.labels) and [row.split()[0] for row in report[matrix + 2 : matrix + 5]] == labels
    for section in ("most informative features", "time per phase", "dataset", "config"):
        assert section in report, report
    assert any(line.startswith("misclassified (a sample of ") for line in report)
    assert any("test terms never seen in training: " in line for line in report)
    as_json = run_json(tools, mesh.home, "jobs", "report", finished.id)["report"]
    assert sorted(as_json["labels"]) == sorted(mesh.labels) and len(as_json["confusion"]) == 3


def test_a_cancelled_job_ends_cancelled_and_registers_nothing(mesh, tools, datasets, finished) -> None:
    versions = run_json(tools, mesh.home, "models", "list", MODEL)["versions"]
    created = run_json(tools, mesh.home, "jobs", "create", "--model", MODEL, "--dataset", datasets.train, "--folds", "5")["job"]
    assert (
        run(tools, mesh.home, "jobs", "cancel", created["id"], "--reason", "e2e cancel") == f"job {created['id']}: cancelled: e2e cancel\n"
    )
    refused = run(tools, mesh.home, "jobs", "watch", created["id"], fails=True)
    assert f"fenlei jobs watch: job {created['id']} cancelled: e2e cancel" in refused, refused
    assert run_json(tools, mesh.home, "models", "list", MODEL)["versions"] == versions
    assert "FAILED_PRECONDITION" in run(tools, mesh.home, "jobs", "report", created["id"], fails=True)


def test_an_interrupted_train_cancels_its_job(mesh, corpus, tools, datasets, finished) -> None:
    versions = run_json(tools, mesh.home, "models", "list", MODEL)["versions"]
    process = subprocess.Popen(
        [sys.executable, "-m", "fenlei.cli", "train", str(corpus.train), "--name", MODEL, "--label-names", str(corpus.label_names)],
        env={**os.environ, "FENLEI_HOME": str(mesh.home), "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        started = process.stderr.readline()  # "job ID: training ..." once the job is created
        assert started.startswith("job "), started + process.stderr.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=tools.HANG_GUARD) == 130
        assert process.stderr.read().endswith("fenlei train: interrupted\n")
    finally:
        process.kill()
        process.wait()
    job = started.split()[1].rstrip(":")
    shown = run(tools, mesh.home, "jobs", "show", job).splitlines()
    assert shown[0] == f"job {job}: cancelled: fenlei train was interrupted", shown
    assert run_json(tools, mesh.home, "models", "list", MODEL)["versions"] == versions


def test_a_tuning_job_reports_its_trials(mesh, tools, datasets) -> None:
    result = tools.cli(
        mesh.home, "jobs", "create", "--model", MODEL, "--dataset", datasets.test, "--tune", "--trials", "2", "--watch", timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert any("  trial 2/2  " in line for line in result.stdout.splitlines()), result.stdout  # Progress.trial of .trials
    job = result.stdout.split()[2].rstrip(":")
    report = run(tools, mesh.home, "jobs", "report", job).splitlines()
    trials = report.index(next(line for line in report if line.startswith("trials (2; ")))
    rows = [line.split() for line in report[trials + 2 : trials + 4]]
    assert [row[0] for row in rows] == ["1", "2"] and sum(row[1] == "*" for row in rows) == 1, report[trials:]
