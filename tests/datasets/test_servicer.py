"""The datasets servicer in-process (fenlei.v1.Datasets): an upload streamed in chunks,
shown, listed, read back in batches from an offset and deleted; the same records again are
the same dataset; refusals and limits as statuses naming the lines; pins that block
deletion until the jobs say otherwise."""

from __future__ import annotations

import grpc
import pytest

from fenlei.datasets import servicer
from fenlei.training.lineage import corpus_sha256
from fenlei.v1 import datasets_pb2, datasets_pb2_grpc

TEXTS = ["姚明率领火箭队击败湖人", "沪指放量大涨", "国足取胜晋级", "银行利率上涨", "梅西进球", "基金净值下跌"]
LABELS = ["sports", "stocks"] * 3


def tsv(texts=TEXTS, labels=LABELS) -> bytes:
    return "".join(f"{text}\t{label}\n" for text, label in zip(texts, labels, strict=True)).encode()


def upload_requests(data: bytes, size: int = 5, **first) -> list[datasets_pb2.UploadDatasetRequest]:
    first.setdefault("name", "news")
    first.setdefault("file_name", "news.tsv")
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [datasets_pb2.UploadDatasetRequest(chunk=pieces[0], **first)] + [datasets_pb2.UploadDatasetRequest(chunk=p) for p in pieces[1:]]


@pytest.fixture
def served(servers, helpers, tmp_path_factory):
    settings = helpers.settings_for(tmp_path_factory.mktemp("datasets"), servicer.DatasetsSettings, max_dataset_bytes=4096)
    return servers.start("datasets", servicer.register, settings)


@pytest.fixture
def stub(served) -> datasets_pb2_grpc.DatasetsStub:
    return datasets_pb2_grpc.DatasetsStub(served.channel)


def upload(stub, data: bytes = b"", **first) -> datasets_pb2.UploadDatasetResponse:
    return stub.UploadDataset(iter(upload_requests(data or tsv(), **first)), metadata=[("x-fenlei-subject", "alice")], timeout=30)


def test_a_dataset_is_uploaded_shown_listed_read_and_deleted(stub) -> None:
    answer = upload(stub)
    dataset = answer.dataset
    assert not answer.existed and dataset.sha256 == corpus_sha256(TEXTS, LABELS) and dataset.id == "ds-" + dataset.sha256[:16]
    assert (dataset.name, dataset.file_name, dataset.format) == ("news", "news.tsv", datasets_pb2.DATASET_FORMAT_TSV)
    assert (dataset.documents, dataset.characters, dict(dataset.label_counts)) == (6, sum(map(len, TEXTS)), {"sports": 3, "stocks": 3})
    assert [(e.text, e.label) for e in dataset.examples] == [(TEXTS[i], LABELS[i]) for i in (0, 2, 4, 1, 3, 5)]
    assert dataset.created_by == "alice" and dataset.created.seconds > 0 and dataset.bytes > 0
    assert stub.GetDataset(datasets_pb2.GetDatasetRequest(id=dataset.id), timeout=30).dataset == dataset
    assert list(stub.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=30).datasets) == [dataset]

    jsonl = "".join(f'{{"text": "{t}", "label": "{label}"}}\n' for t, label in zip(TEXTS, LABELS, strict=True)).encode()
    again = upload(stub, jsonl, name="again", file_name="x.data", format=datasets_pb2.DATASET_FORMAT_JSONL)
    assert again.existed and again.dataset == dataset

    read = stub.ReadDataset(datasets_pb2.ReadDatasetRequest(id=dataset.id, batch_documents=2, offset=1), timeout=30)
    batches = [[(r.index, r.text, r.label) for r in answer.records] for answer in read]
    assert batches == [
        [(1, TEXTS[1], LABELS[1]), (2, TEXTS[2], LABELS[2])],
        [(3, TEXTS[3], LABELS[3]), (4, TEXTS[4], LABELS[4])],
        [(5, TEXTS[5], LABELS[5])],
    ]
    default = list(stub.ReadDataset(datasets_pb2.ReadDatasetRequest(id=dataset.id), timeout=30))
    assert len(default) == 1 and len(default[0].records) == 6

    assert stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(id=dataset.id), timeout=30).id == dataset.id
    assert not stub.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=30).datasets


def test_refusals_and_limits_are_statuses_that_say_what_to_fix(stub, helpers) -> None:
    bad = tsv() + "没有制表符\n\tsports\n".encode()
    error = helpers.rpc_error(stub.UploadDataset, iter(upload_requests(bad)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "'news.tsv' is refused and nothing was stored: 2 problem(s): line 7: expected text<TAB>label, found no tab; line 8: empty text"
    )
    one_label = helpers.rpc_error(stub.UploadDataset, iter(upload_requests(tsv(labels=["sports"] * 6))))
    assert one_label.code() == grpc.StatusCode.INVALID_ARGUMENT and "one label only ('sports')" in one_label.details()
    long_text = helpers.rpc_error(stub.UploadDataset, iter(upload_requests(tsv() + b"a" * 2001 + b"\tsports\n", size=1000)))
    assert "line 7: a text of 2,001 characters; the limit is 2,000" in long_text.details()
    too_big = helpers.rpc_error(stub.UploadDataset, iter(upload_requests(tsv() * 40, size=1000)))
    assert too_big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the limit of 4,096 bytes an upload (FENLEI_DATASETS_MAX_DATASET_BYTES)" in too_big.details()
    nothing = helpers.rpc_error(stub.UploadDataset, iter([]))
    assert nothing.code() == grpc.StatusCode.INVALID_ARGUMENT and "at least one message" in nothing.details()
    assert not stub.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=30).datasets

    missing = helpers.rpc_error(stub.GetDataset, datasets_pb2.GetDatasetRequest(id="ds-0123"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "no dataset 'ds-0123'" in missing.details()
    dataset = upload(stub).dataset
    big_batches = helpers.rpc_error(stub.ReadDataset, datasets_pb2.ReadDatasetRequest(id=dataset.id, batch_documents=65))
    assert big_batches.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit of 64" in big_batches.details()
    past = helpers.rpc_error(stub.ReadDataset, datasets_pb2.ReadDatasetRequest(id=dataset.id, offset=7))
    assert past.code() == grpc.StatusCode.INVALID_ARGUMENT and "offset 7 is past the end" in past.details()


def test_a_pinned_dataset_is_refused_deletion_until_the_jobs_release_it(stub, served, helpers) -> None:
    dataset = upload(stub).dataset
    pins = datasets_pb2_grpc.DatasetPinsStub(served.channel)
    pins.SetPins(datasets_pb2.SetPinsRequest(pins=[datasets_pb2.DatasetPin(job="job-7", dataset=dataset.id)]), timeout=30)
    refused = helpers.rpc_error(stub.DeleteDataset, datasets_pb2.DeleteDatasetRequest(id=dataset.id))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "in use by job(s) 'job-7'" in refused.details()
    unknown = helpers.rpc_error(pins.SetPins, datasets_pb2.SetPinsRequest(pins=[datasets_pb2.DatasetPin(job="job-8", dataset="ds-0")]))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    pins.SetPins(datasets_pb2.SetPinsRequest(), timeout=30)  # the whole set: none
    assert stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(id=dataset.id), timeout=30).id == dataset.id
