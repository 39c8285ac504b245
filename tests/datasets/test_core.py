"""The datasets core: uploads parsed as they stream in (lines, UTF-8 characters and CSV
records across chunks), stored once by their canonical records, whose SHA-256 is the
lineage's; every kind of bad file refused with its line numbers and nothing stored; the size
limits; pins that keep a dataset from deletion; reading back in batches from an offset; and
what a crash leaves, removed when the store opens."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from fenlei.datasets.core import MAX_PROBLEMS, UPLOADS, Datasets, Format, Limits, Refused, UploadSpec, dataset_id, record_line
from fenlei.errors import FailedPrecondition, InvalidInput, LimitExceeded, NotFound
from fenlei.training.core import read_corpus
from fenlei.training.lineage import corpus_sha256

LIMITS = Limits(max_dataset_bytes=1 << 20, max_document_chars=200, min_label_documents=2)
RECORDS = [
    ("姚明率领火箭队击败湖人", "sports"),
    ("沪指放量大涨，券商股领涨", "stocks"),
    ("国足 2:0 取胜\t晋级", "sports"),  # a tab inside the text: the label is after the last one
    ('他说"好"', "stocks"),
    ("梅西\u3000进球", "sports"),
]


def tsv(records: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{text}\t{label}\n" for text, label in records).encode("utf-8")


def csv_file(records: Iterable[tuple[str, str]]) -> bytes:
    rows = ["id,text,label"] + [f'{i},"{text.replace(chr(34), chr(34) * 2)}",{label}' for i, (text, label) in enumerate(records)]
    return "\r\n".join(rows).encode("utf-8") + b"\r\n"


def jsonl(records: Iterable[tuple[str, str]]) -> bytes:
    return "".join(json.dumps({"label": label, "text": text}, ensure_ascii=False) + "\n" for text, label in records).encode("utf-8")


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def upload(datasets: Datasets, data: bytes | list[bytes], file_name: str = "news.tsv", **spec) -> tuple[dict, bool]:
    pieces = data if isinstance(data, list) else [data]
    task = datasets.upload(UploadSpec(name=spec.pop("name", "news"), file_name=file_name, **spec), "alice")
    try:
        for piece in pieces:
            task.write(piece)
        return task.finish()
    finally:
        task.close()


def refusal(datasets: Datasets, data: bytes, file_name: str = "bad.tsv", **spec) -> list[str]:
    with pytest.raises(Refused) as refused:
        upload(datasets, data, file_name, **spec)
    assert_nothing_stored(datasets)
    return refused.value.problems


def assert_nothing_stored(datasets: Datasets) -> None:
    assert datasets.all() == []
    assert not list((datasets.root / "sha256").glob("**/*.jsonl"))
    assert not list((datasets.root / UPLOADS).iterdir())


@pytest.fixture
def datasets(tmp_path: Path):
    store = Datasets(tmp_path, LIMITS)
    store.open()
    yield store
    store.close()


def test_an_upload_in_chunks_of_any_size_stores_the_canonical_records_hashed_as_the_lineage_hashes(datasets: Datasets) -> None:
    data = tsv(RECORDS)
    # 3-byte chunks cut lines and UTF-8 characters apart
    dataset, existed = upload(datasets, chunks(data, 3))
    texts, labels = [text for text, _ in RECORDS], [label for _, label in RECORDS]
    stored = datasets.path(dataset["sha256"]).read_bytes()
    assert stored == b"".join(record_line(text, label) for text, label in RECORDS)
    assert dataset["sha256"] == hashlib.sha256(stored).hexdigest() == corpus_sha256(texts, labels)
    assert not existed and dataset["id"] == dataset_id(dataset["sha256"]) == "ds-" + dataset["sha256"][:16]
    assert dataset["documents"] == 5 and dataset["characters"] == sum(len(text) for text in texts)
    assert dataset["bytes"] == len(stored) and dataset["format"] is Format.TSV
    assert dataset["label_counts"] == {"sports": 3, "stocks": 2}
    assert dataset["examples"] == [(RECORDS[0][0], "sports"), (RECORDS[2][0], "sports"), (RECORDS[4][0], "sports")] + [
        (RECORDS[1][0], "stocks"),
        (RECORDS[3][0], "stocks"),
    ]
    assert dataset["created_by"] == "alice" and dataset["name"] == "news" and dataset["file_name"] == "news.tsv"
    assert datasets.get(dataset["id"]) == dataset and datasets.all() == [dataset]
    assert not list((datasets.root / UPLOADS).iterdir())


def test_the_same_records_in_any_format_are_one_dataset(datasets: Datasets) -> None:
    first, existed = upload(datasets, chunks(csv_file(RECORDS), 7), "news.csv")
    assert not existed and first["format"] is Format.CSV
    for data, file_name in ((tsv(RECORDS), "again.txt"), (jsonl(RECORDS), "again.jsonl"), (csv_file(RECORDS), "again.csv")):
        again, existed = upload(datasets, chunks(data, 5), file_name, name="other")
        assert existed and again == first
    assert len(datasets.all()) == 1
    # different records are another dataset
    other, existed = upload(datasets, tsv(RECORDS[:4]))
    assert not existed and other["id"] != first["id"] and len(datasets.all()) == 2


def test_csv_fields_may_hold_quotes_commas_and_newlines_and_labels_may_be_indices(datasets: Datasets) -> None:
    data = 'label,text\n0,"第一行\n第二行, 逗号"\n1,"引号""内"""\n\n0,平常\n1,"再来\n\n一行"\n'.encode()
    dataset, _ = upload(datasets, chunks(data, 2), "titles.csv", label_names=("sports", "stocks"))
    records = [(record.text, record.label) for batch in datasets.read(dataset["id"]) for record in batch]
    assert records == [("第一行\n第二行, 逗号", "sports"), ('引号"内"', "stocks"), ("平常", "sports"), ("再来\n\n一行", "stocks")]
    jsonl_data = b'{"t": "a b", "y": 1}\n{"t": "c", "y": 0}\n{"t": "d", "y": 1}\n{"t": "e", "y": 0}\n'
    dataset, _ = upload(datasets, jsonl_data, "x.jsonl", text_column="t", label_column="y", label_names=("no", "yes"))
    assert dataset["label_counts"] == {"yes": 2, "no": 2}


def test_a_bad_file_is_refused_with_the_line_of_each_problem_and_nothing_is_stored(datasets: Datasets) -> None:
    good = tsv(RECORDS)
    bad = (
        good
        + "第六行没有制表符\n\tstocks\n不是\xff\n".encode()
        + b"\xff\xfe\tsports\n"
        + b"x" * 201
        + b"\tsports\n"
        + "标签为空\t \n".encode()
    )
    bad = bad.replace("不是\xff".encode(), b"\xe4\xb8\tstocks")  # a cut character: not UTF-8
    assert refusal(datasets, bad) == [
        "line 6: expected text<TAB>label, found no tab",
        "line 7: empty text",
        "line 8: not UTF-8 (byte 1 of the line)",
        "line 9: not UTF-8 (byte 1 of the line)",
        "line 10: a text of 201 characters; the limit is 200 (FENLEI_MAX_DOCUMENT_CHARS)",
        "line 11: empty label",
    ]
    assert refusal(datasets, b'{"text": "a", "label": "x"}\n[1]\n{"text": "b"}\n{"text": 3, "label": "y"}\nnope\n', "b.jsonl") == [
        "line 2: expected a JSON object with 'text' and 'label'",
        "line 3: no field 'label'; its fields are 'text'",
        "line 4: 'text' is a int, not a string",
        "line 5: not JSON (Expecting value at column 1)",
    ]
    assert refusal(datasets, b"title,category\na,b\n", "c.csv") == [
        "line 1: the header has no column 'text', 'label'; its columns are 'title', 'category'"
    ]
    assert refusal(datasets, b'text,label\na,x\nb\nc,y\n"d,x\n', "d.csv") == [
        "line 3: no value in column 'label' (the row has 1 field(s))",
        'line 5: a quoted field is never closed (a " is missing)',
    ]
    assert refusal(datasets, b"", "e.csv") == ["no header line naming the columns"]
    assert refusal(datasets, b"\n\n") == ["no labelled texts"]
    assert refusal(datasets, b"a\tx\nb\t0\n", label_names=("sports",)) == ["line 1: label 'x' is not an index into the 1 label names"]


def test_what_the_labels_need_is_checked_once_the_records_are_good(datasets: Datasets) -> None:
    assert refusal(datasets, tsv([("a", "x"), ("b", "x")])) == ["one label only ('x'): a classifier needs at least 2"]
    problems = refusal(datasets, tsv([("a", "x"), ("b", "y"), ("c", "x"), ("d", "z")]))
    needs = "each label needs at least 2 (FENLEI_DATASETS_MIN_LABEL_DOCUMENTS), one to train on and one to evaluate"
    assert problems == [f"line 2: label 'y' has 1 document(s); {needs}", f"line 4: label 'z' has 1 document(s); {needs}"]
    lenient = Datasets(datasets.root.parent / "other", Limits(1 << 20, 200, min_label_documents=1))
    assert upload(lenient, tsv([("a", "x"), ("b", "y")]))[0]["label_counts"] == {"x": 1, "y": 1}
    lenient.close()


def test_a_refusal_lists_the_first_problems_and_stops_reading_there(datasets: Datasets) -> None:
    task = datasets.upload(UploadSpec(name="bad", file_name="bad.tsv"), "alice")
    written = 0
    with pytest.raises(Refused) as refused:
        while written < 1000:
            task.write(b"no tab here\n")
            written += 1
    task.close()
    assert written == MAX_PROBLEMS - 1 and len(refused.value.problems) == MAX_PROBLEMS  # the 10th write raised
    assert "10 problem(s) (the upload stopped there): line 1: expected text<TAB>label" in str(refused.value)
    assert "'bad.tsv' is refused and nothing was stored" in str(refused.value)
    assert isinstance(refused.value, InvalidInput)
    assert_nothing_stored(datasets)


def test_an_upload_over_the_size_limit_is_refused_when_it_gets_there(tmp_path: Path) -> None:
    datasets = Datasets(tmp_path, Limits(max_dataset_bytes=100, max_document_chars=200, min_label_documents=2))
    task = datasets.upload(UploadSpec(name="big", file_name="big.tsv"), "alice")
    task.write(b"a\tx\n" * 25)  # 100 bytes: at the limit
    with pytest.raises(LimitExceeded, match=r"over the limit of 100 bytes an upload \(FENLEI_DATASETS_MAX_DATASET_BYTES\); nothing"):
        task.write(b"b")
    task.close()
    assert_nothing_stored(datasets)


def test_a_line_without_end_is_not_held_in_memory(datasets: Datasets) -> None:
    task = datasets.upload(UploadSpec(name="long", file_name="long.tsv"), "alice")
    task.write(tsv(RECORDS))
    for _ in range(3):  # 3 x 64 KiB without a newline: over the longest line a text within the limit makes
        task.write(b"x" * 65536)
        assert len(task._pending) <= LIMITS.max_line_bytes
    task.write(b"\tsports\n" + tsv(RECORDS))
    with pytest.raises(Refused) as refused:
        task.finish()
    task.close()
    assert refused.value.problems == [f"line 6: longer than {LIMITS.max_line_bytes:,} bytes: a text over 200 characters?"]
    assert_nothing_stored(datasets)


def test_a_dataset_is_read_back_in_batches_from_an_offset(datasets: Datasets) -> None:
    records = [(f"文本{i:02}", "ab"[i % 2]) for i in range(25)]
    dataset, _ = upload(datasets, tsv(records))
    batches = list(datasets.read(dataset["id"], offset=3, batch_documents=10))
    assert [len(batch) for batch in batches] == [10, 10, 2]
    assert [(r.index, r.text, r.label) for batch in batches for r in batch] == [(i, *records[i]) for i in range(3, 25)]
    by_bytes = list(datasets.read(dataset["id"], batch_documents=100, batch_bytes=len(record_line("文本10", "a")) * 5))  # each line as long
    assert [len(batch) for batch in by_bytes] == [5, 5, 5, 5, 5]
    assert list(datasets.read(dataset["id"], offset=25)) == []
    with pytest.raises(InvalidInput, match="offset 26 is past the end of dataset ds-.* \\(25 records\\)"):
        datasets.read(dataset["id"], offset=26)
    with pytest.raises(NotFound, match="no dataset 'ds-0000'"):
        datasets.read("ds-0000")


def test_a_pinned_dataset_is_not_deleted_and_pins_are_replaced_as_a_whole(datasets: Datasets) -> None:
    news, _ = upload(datasets, tsv(RECORDS))
    other, _ = upload(datasets, tsv(RECORDS[:4]))
    # job-3 trains on one and is evaluated on the other
    datasets.set_pins([("job-1", news["id"]), ("job-2", news["id"]), ("job-3", other["id"]), ("job-3", news["id"])])
    with pytest.raises(FailedPrecondition, match=f"dataset {news['id']} is in use by job\\(s\\) 'job-1', 'job-2', 'job-3'"):
        datasets.delete(news["id"])
    with pytest.raises(NotFound, match="no dataset 'ds-gone' \\(job\\(s\\) 'job-4'\\): nothing was pinned"):
        datasets.set_pins([("job-4", "ds-gone"), ("job-5", other["id"])])
    with pytest.raises(FailedPrecondition):  # the refused set changed nothing
        datasets.delete(other["id"])
    datasets.set_pins([("job-3", other["id"])])
    datasets.set_pins([("job-3", other["id"])])  # said again: the same
    datasets.delete(news["id"])
    assert not datasets.path(news["sha256"]).exists() and [d["id"] for d in datasets.all()] == [other["id"]]
    with pytest.raises(NotFound):
        datasets.get(news["id"])
    datasets.set_pins([])
    datasets.delete(other["id"])
    assert_nothing_stored(datasets)
    again, existed = upload(datasets, tsv(RECORDS))  # deleted records can come back
    assert not existed and again["id"] == news["id"]


def test_what_a_crash_left_is_removed_when_the_store_opens(tmp_path: Path) -> None:
    datasets = Datasets(tmp_path, LIMITS)
    kept, _ = upload(datasets, tsv(RECORDS))
    interrupted = datasets.upload(UploadSpec(name="half", file_name="half.tsv"), "alice")
    interrupted.write(tsv(RECORDS[:2]))  # a process killed now leaves its temporary file
    renamed = datasets.path("ab" * 32)  # renamed into place, killed before its commit
    renamed.parent.mkdir(parents=True)
    renamed.write_bytes(tsv(RECORDS))
    datasets.close()
    reopened = Datasets(tmp_path, LIMITS)
    reopened.open()
    assert not list((tmp_path / "datasets" / UPLOADS).iterdir()) and not renamed.exists()
    assert reopened.all() == [kept] and datasets.path(kept["sha256"]).exists()
    reopened.close()


def test_a_stream_that_ends_short_of_the_size_the_client_announced_stores_nothing(datasets: Datasets) -> None:
    data = tsv(RECORDS)
    cut = data.index(b"\n", len(data) // 2) + 1  # at a line's end: what came is a valid dataset by itself
    task = datasets.upload(UploadSpec(name="cut", file_name="cut.tsv", size_bytes=len(data)), "alice")
    task.write(data[:cut])
    with pytest.raises(InvalidInput, match=f"'cut.tsv' has {len(data)} bytes but the upload ended after {cut}: nothing was stored"):
        task.finish()
    task.close()
    assert_nothing_stored(datasets)
    whole, _ = upload(datasets, data, "cut.tsv", size_bytes=len(data))
    assert whole["documents"] == len(RECORDS)


def test_a_dataset_has_the_sha256_of_the_lineage_of_a_training_on_its_file(datasets: Datasets, tmp_path: Path) -> None:
    for data, file_name in ((tsv(RECORDS), "news.tsv"), (csv_file(RECORDS), "news.csv"), (jsonl(RECORDS), "news.jsonl")):
        path = tmp_path / file_name
        path.write_bytes(data)
        corpus = read_corpus(path)
        assert upload(datasets, data, file_name)[0]["sha256"] == corpus_sha256(corpus.texts, corpus.labels)
