"""Nothing lost, with real datasets processes (`python -m fenlei.datasets.servicer`): kill -9
during an upload, mid-stream and at points through its validation, rename and commit,
leaves no partial dataset (the store is empty or holds the whole dataset, its files exactly
its rows, no upload's temporary file once it has started again), and the upload can be
retried; what was answered is never lost."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from fenlei.training.lineage import corpus_sha256
from fenlei.v1 import datasets_pb2, datasets_pb2_grpc

TIMEOUT = 60  # a hang guard, not a speed requirement
CHUNK_BYTES = 64 * 1024


class DatasetsProcess:
    """A datasets process on a home, started again on the same home after each kill."""

    def __init__(self, spawn: Callable, home: Path) -> None:
        self.spawn, self.home = spawn, home
        self.process = None
        self.channel: grpc.Channel | None = None

    def start(self) -> datasets_pb2_grpc.DatasetsStub:
        self.process = self.spawn("datasets", home=self.home)
        self.channel = grpc.insecure_channel(self.process.address)
        return datasets_pb2_grpc.DatasetsStub(self.channel)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.popen.wait(timeout=TIMEOUT) == -signal.SIGKILL
        self.channel.close()

    def state(self, stub: datasets_pb2_grpc.DatasetsStub) -> list[str]:
        """The sha256 of every dataset, after checking that the store holds exactly their
        files, each whole, and no upload's temporary file."""
        datasets = list(stub.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=TIMEOUT).datasets)
        root = self.home / "datasets"
        files = {path.stem: path for path in (root / "sha256").glob("*/*.jsonl")}
        assert set(files) == {dataset.sha256 for dataset in datasets}
        for dataset in datasets:
            assert hashlib.sha256(files[dataset.sha256].read_bytes()).hexdigest() == dataset.sha256
        uploads = root / ".uploads"
        assert not (uploads.is_dir() and list(uploads.iterdir()))
        return [dataset.sha256 for dataset in datasets]


@pytest.fixture
def records(texts) -> tuple[list[str], list[str]]:
    chosen = [(" ".join(text.split()), label) for label in sorted(texts) for text in texts[label][:1500]]
    return [text for text, _ in chosen], [label for _, label in chosen]


def requests_of(data: bytes, stop_after: int | None = None, release: threading.Event | None = None) -> Iterator:
    """The upload's messages; with stop_after, that many chunks, then it waits for release."""
    for index, start in enumerate(range(0, len(data), CHUNK_BYTES)):
        if index == stop_after:
            assert release is not None
            release.wait(TIMEOUT)
            return
        first = {"name": "reviews", "file_name": "reviews.tsv"} if index == 0 else {}
        yield datasets_pb2.UploadDatasetRequest(chunk=data[start : start + CHUNK_BYTES], **first)


def test_kill_during_an_upload_leaves_no_partial_dataset_and_it_can_be_retried(spawn_service, tmp_path: Path, records, tools) -> None:
    texts, labels = records
    data = "".join(f"{text}\t{label}\n" for text, label in zip(texts, labels, strict=True)).encode()
    sha256 = corpus_sha256(texts, labels)
    assert len(data) > 8 * CHUNK_BYTES
    service = DatasetsProcess(spawn_service, tmp_path / "home")
    uploads = service.home / "datasets" / ".uploads"

    # mid-stream: half of the file has been written to the upload's temporary file
    stub = service.start()
    release = threading.Event()
    call = stub.UploadDataset.future(requests_of(data, stop_after=4, release=release), timeout=TIMEOUT)
    tools.wait_for(
        lambda: uploads.is_dir() and any(path.stat().st_size > CHUNK_BYTES for path in uploads.iterdir()), "the upload to be written"
    )
    service.kill()
    release.set()
    assert call.exception().code() == grpc.StatusCode.UNAVAILABLE
    stub = service.start()
    assert service.state(stub) == []

    # a whole upload, timed, then killed at points through its end (validation, rename, commit)
    started = time.monotonic()
    answer = stub.UploadDataset(requests_of(data), timeout=TIMEOUT)
    uploading = time.monotonic() - started
    assert answer.dataset.sha256 == sha256 and answer.dataset.documents == len(texts) and not answer.existed
    stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(id=answer.dataset.id), timeout=TIMEOUT)
    for share in (0.2, 0.5, 0.8, 0.95, 1.1):
        call = stub.UploadDataset.future(requests_of(data), timeout=TIMEOUT)
        time.sleep(min(uploading * share, 0.45))
        service.kill()
        answered = call.exception() is None
        stub = service.start()
        state = service.state(stub)
        assert state in ([], [sha256]), f"killed after {share:.0%} of an upload: a partial dataset"
        assert state == [sha256] or not answered, "an upload was answered, and lost"
        if state:
            stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(id=answer.dataset.id), timeout=TIMEOUT)

    # the retry stores the whole dataset, read back as it was sent
    retried = stub.UploadDataset(requests_of(data), timeout=TIMEOUT)
    assert retried.dataset.sha256 == sha256 and not retried.existed
    read = stub.ReadDataset(datasets_pb2.ReadDatasetRequest(id=retried.dataset.id, batch_documents=1000), timeout=TIMEOUT)
    back = [(record.text, record.label) for answer in read for record in answer.records]
    assert back == list(zip(texts, labels, strict=True))
    assert service.state(stub) == [sha256]
    service.kill()
