"""Datasets: labelled corpora uploaded as files (text<TAB>label lines, CSV with named
columns, JSON lines), validated while they stream in, stored once by their content and read
back in batches.

    <home>/datasets/datasets.db                  the truth: one row a dataset, and the jobs' pins
    <home>/datasets/sha256/<aa>/<hex>.jsonl      a dataset's records, canonical (record_line)
    <home>/datasets/.uploads/<random>            an upload being written

Whatever format a file came in, its records are stored the one way fenlei.training.lineage
hashes them, so a dataset's sha256 is the dataset_sha256 of every version trained on it, and
the same records uploaded twice are one dataset. Nothing of a refused or interrupted upload
stays: the file is renamed into place and its row inserted in one transaction of the writer;
what a crash leaves (an upload's temporary file, a file renamed before its commit) open()
removes.
"""

from __future__ import annotations

import csv
import enum
import functools
import hashlib
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fenlei.errors import FailedPrecondition, InvalidInput, LimitExceeded, NotFound, quote, quote_list
from fenlei.runtime.db import Database, Migrations

MIGRATIONS: Migrations = (
    (
        """CREATE TABLE datasets (
            id TEXT PRIMARY KEY,  -- "ds-" and the first 16 hex digits of sha256
            sha256 TEXT NOT NULL UNIQUE,  -- of the canonical file
            name TEXT NOT NULL,
            file_name TEXT NOT NULL,
            format TEXT NOT NULL,  -- what it was uploaded as: tsv, csv, jsonl
            documents INTEGER NOT NULL,
            characters INTEGER NOT NULL,
            bytes INTEGER NOT NULL,  -- of the canonical file
            label_counts TEXT NOT NULL,  -- JSON object, label -> documents
            examples TEXT NOT NULL,  -- JSON list of [text, label]
            created REAL NOT NULL,
            created_by TEXT NOT NULL)""",
        # The datasets of queued and running jobs, as the jobs service last said: not deletable.
        """CREATE TABLE pins (
            job TEXT NOT NULL,
            dataset TEXT NOT NULL REFERENCES datasets(id),  -- a job may use two: its training and test datasets
            PRIMARY KEY (job, dataset))""",
        "CREATE INDEX pins_by_dataset ON pins(dataset)",
    ),
)

# The first records of each label that show a dataset.
EXAMPLES_PER_LABEL = 3
# A refusal lists this many problems; the upload stops reading at the last one.
MAX_PROBLEMS = 10
DEFAULT_BATCH_DOCUMENTS = 1000
UPLOADS = ".uploads"


# One encoder and decoder for every record: json.dumps and json.loads would build them per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_DECODE = json.JSONDecoder().decode


def record_line(text: str, label: str) -> bytes:
    """One record as stored and hashed: the JSON array [text, label], compact, UTF-8, a line."""
    return _ENCODE([text, label]).encode("utf-8") + b"\n"


def dataset_id(sha256: str) -> str:
    return f"ds-{sha256[:16]}"


class Format(enum.Enum):
    TSV = "tsv"
    CSV = "csv"
    JSONL = "jsonl"

    @classmethod
    def of(cls, file_name: str) -> Format:
        """From the file name's suffix: .csv, .jsonl, else text<TAB>label lines."""
        suffix = Path(file_name).suffix.lower()
        return {".csv": cls.CSV, ".jsonl": cls.JSONL}.get(suffix, cls.TSV)


@dataclass(frozen=True)
class Limits:
    """The settings an upload is held to (FENLEI_DATASETS_<NAME>)."""

    max_dataset_bytes: int
    max_document_chars: int
    min_label_documents: int

    @property
    def max_line_bytes(self) -> int:
        # A line of a text within the limit: UTF-8 takes at most 4 bytes a character, JSON's
        # escapes 6; the rest is room for the label and the columns.
        return 6 * self.max_document_chars + 64 * 1024


@dataclass(frozen=True)
class UploadSpec:
    name: str
    file_name: str
    format: Format | None = None  # None: from file_name
    text_column: str = "text"
    label_column: str = "label"
    # Integer labels are indices into these names (THUCNews' class.txt).
    label_names: tuple[str, ...] = ()
    # The file's size, when the client said it: a stream that ends short of it was cut (its
    # client went away, which gRPC shows a server as the stream's end) and stores nothing.
    size_bytes: int = 0

    @property
    def file_format(self) -> Format:
        return self.format or Format.of(self.file_name)


@dataclass(frozen=True, slots=True)
class Record:
    index: int  # its position in the dataset, from 0
    text: str
    label: str


class Refused(InvalidInput):
    """An upload with problems: the first of them, each with its line number."""

    def __init__(self, file_name: str, problems: list[str]) -> None:
        more = " (the upload stopped there)" if len(problems) >= MAX_PROBLEMS else ""
        listed = "; ".join(problems)
        super().__init__(f"{quote(Path(file_name).name)} is refused and nothing was stored: {len(problems)} problem(s){more}: {listed}")
        self.problems = problems


class Upload:
    """One upload, fed its bytes chunk by chunk (`write`), then `finish`ed into a dataset or
    refused; `close` removes what is left of it either way. Lines may span chunks; the file is
    parsed as it comes and its canonical records written to a temporary file while they are
    hashed, so memory holds one line, the label counts and the examples."""

    def __init__(self, datasets: Datasets, spec: UploadSpec, created_by: str) -> None:
        self.datasets, self.spec, self.created_by = datasets, spec, created_by
        self.limits = datasets.limits
        self.format = spec.file_format
        self.temporary = datasets.root / UPLOADS / secrets.token_hex(8)
        self.temporary.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.temporary, "wb")  # noqa: SIM115 - closed by close(), after finish()
        self._digest = hashlib.sha256()
        self._problems: list[str] = []
        self._received = 0
        self._pending = bytearray()  # the bytes of the line not ended yet
        self._scanned = 0  # how much of _pending holds no newline
        self._skipping = False  # discarding an over-long line up to its end
        self._line = 0  # number of the last line taken
        self._header: dict[str, int] | None = None  # CSV: the column positions
        self._record: list[str] = []  # CSV: the lines of a record with a quoted newline
        self._record_line = 0
        self.documents = self.characters = self.bytes = 0
        self.label_counts: Counter[str] = Counter()
        self._first_line: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    # ------------------------------------------------------------ bytes to lines

    def write(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self.limits.max_dataset_bytes:
            raise LimitExceeded(
                f"{quote(Path(self.spec.file_name).name)} is over the limit of {self.limits.max_dataset_bytes:,} bytes an upload "
                "(FENLEI_DATASETS_MAX_DATASET_BYTES); nothing was stored"
            )
        self._pending += chunk
        start = 0
        while (end := self._pending.find(b"\n", max(start, self._scanned))) >= 0:
            self._take(bytes(self._pending[start:end]))
            start = end + 1
        del self._pending[:start]
        self._scanned = len(self._pending)
        if len(self._pending) > self.limits.max_line_bytes:
            if not self._skipping:
                self._problem(
                    self._line + 1,
                    f"longer than {self.limits.max_line_bytes:,} bytes: a text over {self.limits.max_document_chars:,} characters?",
                )
                self._skipping = True
            self._pending.clear()
            self._scanned = 0

    def _take(self, raw: bytes) -> None:
        self._line += 1
        if self._skipping:
            self._skipping = False  # the end of the over-long line
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self._problem(self._line, f"not UTF-8 (byte {error.start + 1} of the line)")
            return
        if self._line == 1:
            line = line.removeprefix("\ufeff")
        if self.format is Format.CSV:
            self._csv_line(line)
        elif line.strip():
            (self._jsonl_line if self.format is Format.JSONL else self._tsv_line)(line)

    # ------------------------------------------------------------ lines to records

    def _tsv_line(self, line: str) -> None:
        text, tab, label = line.rstrip("\r").rpartition("\t")
        if not tab:
            self._problem(self._line, "expected text<TAB>label, found no tab")
            return
        self._record_of(self._line, text, label)

    def _jsonl_line(self, line: str) -> None:
        text_column, label_column = self.spec.text_column, self.spec.label_column
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            self._problem(self._line, f"not JSON ({error.msg} at column {error.colno})")
            return
        if not isinstance(record, dict):
            self._problem(self._line, f"expected a JSON object with {quote(text_column)} and {quote(label_column)}")
            return
        missing = [column for column in (text_column, label_column) if column not in record]
        if missing:
            self._problem(self._line, f"no field {quote_list(missing)}; its fields are {quote_list(list(record))}")
            return
        text = record[text_column]
        if not isinstance(text, str):
            self._problem(self._line, f"{quote(text_column)} is a {type(text).__name__}, not a string")
            return
        self._record_of(self._line, text, str(record[label_column]))

    def _csv_line(self, line: str) -> None:
        if not self._record:
            if not line.strip():
                return
            self._record_line = self._line
        self._record.append(line)
        text = "\n".join(self._record)
        # A record ends at a line end outside quotes: quotes inside quoted fields are doubled,
        # so the quote characters so far are even there.
        if text.count('"') % 2:
            if len(text) > self.limits.max_line_bytes:
                self._problem(self._record_line, 'a record longer than the limit of a line: a quote (") that is never closed?')
                self._record = []
                self._header = {}  # what follows cannot be told apart: no more rows are read
            return
        self._record = []
        try:
            fields = next(csv.reader([text]))
        except csv.Error as error:
            self._problem(self._record_line, f"not CSV ({error})")
            return
        if self._header is None:
            self._csv_header(fields)
        elif self._header:
            self._csv_row(fields)

    def _csv_header(self, fields: list[str]) -> None:
        wanted = (self.spec.text_column, self.spec.label_column)
        missing = [column for column in wanted if column not in fields]
        if missing:
            # Without its columns no row can be read: that is the one problem.
            self._problem(self._record_line, f"the header has no column {quote_list(missing)}; its columns are {quote_list(fields)}")
            self._header = {}
            return
        self._header = {column: fields.index(column) for column in wanted}

    def _csv_row(self, fields: list[str]) -> None:
        assert self._header
        short = [column for column, position in self._header.items() if position >= len(fields)]
        if short:
            self._problem(self._record_line, f"no value in column {quote_list(short)} (the row has {len(fields)} field(s))")
            return
        self._record_of(self._record_line, fields[self._header[self.spec.text_column]], fields[self._header[self.spec.label_column]])

    def _record_of(self, line: int, text: str, label: str) -> None:
        label = label.strip()
        names = self.spec.label_names
        if names:
            if not label.isdigit() or int(label) >= len(names):
                self._problem(line, f"label {quote(label)} is not an index into the {len(names)} label names")
                return
            label = names[int(label)]
        if not text.strip():
            self._problem(line, "empty text")
            return
        if not label:
            self._problem(line, "empty label")
            return
        if len(text) > self.limits.max_document_chars:
            self._problem(
                line, f"a text of {len(text):,} characters; the limit is {self.limits.max_document_chars:,} (FENLEI_MAX_DOCUMENT_CHARS)"
            )
            return
        if self._problems:
            return  # refused anyway: only the problems are wanted now
        encoded = record_line(text, label)
        self._file.write(encoded)
        self._digest.update(encoded)
        self.documents += 1
        self.characters += len(text)
        self.bytes += len(encoded)
        self.label_counts[label] += 1
        self._first_line.setdefault(label, line)
        examples = self.examples.setdefault(label, [])
        if len(examples) < EXAMPLES_PER_LABEL:
            examples.append(text)

    def _problem(self, line: int | None, message: str) -> None:
        self._problems.append(f"line {line}: {message}" if line is not None else message)
        if len(self._problems) >= MAX_PROBLEMS:
            raise Refused(self.spec.file_name, self._problems)

    # ------------------------------------------------------------ the end

    def finish(self) -> tuple[dict[str, Any], bool]:
        """The dataset (stored now, or before: existed=True), or Refused naming the problems."""
        if self.spec.size_bytes and self._received != self.spec.size_bytes:
            raise InvalidInput(
                f"{quote(Path(self.spec.file_name).name)} has {self.spec.size_bytes:,} bytes but the upload ended after {self._received:,}: "
                "nothing was stored; send it again"
            )
        if self._skipping:
            self._skipping = False
        elif self._pending:
            self._take(bytes(self._pending))
        self._pending.clear()
        if self._record:
            self._problem(self._record_line, 'a quoted field is never closed (a " is missing)')
        if self.format is Format.CSV and self._header is None and not self._problems:
            self._problem(None, "no header line naming the columns")
        self._check_labels()
        if self._problems:
            raise Refused(self.spec.file_name, self._problems)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self.datasets._store(self, self._digest.hexdigest())

    def _check_labels(self) -> None:
        if self._problems:
            return  # what the records say is known only when each of them was read
        if not self.documents:
            self._problem(None, "no labelled texts")
            return
        if len(self.label_counts) < 2:
            (label,) = self.label_counts
            self._problem(None, f"one label only ({quote(label)}): a classifier needs at least 2")
            return
        needed = self.limits.min_label_documents
        for label, count in sorted(self.label_counts.items(), key=lambda item: self._first_line[item[0]]):
            if count < needed:
                self._problem(
                    self._first_line[label],
                    f"label {quote(label)} has {count} document(s); each label needs at least {needed} "
                    "(FENLEI_DATASETS_MIN_LABEL_DOCUMENTS), one to train on and one to evaluate",
                )

    def close(self) -> None:
        self._file.close()
        self.temporary.unlink(missing_ok=True)


class Datasets:
    """The datasets of a home. One process writes them (the datasets service)."""

    def __init__(self, home: Path, limits: Limits) -> None:
        self.root = Path(home) / "datasets"
        self.limits = limits
        self.db = Database(self.root / "datasets.db", MIGRATIONS, what="datasets")

    def open(self) -> None:
        """Removes what a crash left: uploads being written, and files renamed into place
        whose transaction never committed (no row names them)."""
        uploads = self.root / UPLOADS
        for leftover in uploads.iterdir() if uploads.is_dir() else ():
            leftover.unlink()
        with self.db.read() as conn:
            stored = {row[0] for row in conn.execute("SELECT sha256 FROM datasets")}
        for path in (self.root / "sha256").glob("*/*.jsonl"):
            if path.stem not in stored:
                path.unlink()

    def close(self) -> None:
        self.db.close()

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / f"{sha256}.jsonl"

    def upload(self, spec: UploadSpec, created_by: str) -> Upload:
        if not (spec.name.strip() or spec.file_name.strip()):
            raise InvalidInput("name the dataset: the first message's name or file_name")
        return Upload(self, spec, created_by)

    def _store(self, upload: Upload, sha256: str) -> tuple[dict[str, Any], bool]:
        identifier = dataset_id(sha256)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE sha256 = ?", (sha256,)).fetchone():
                return self._get(conn, identifier), True
            path = self.path(sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(upload.temporary, path)
            _sync_directory(path.parent)
            conn.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    identifier,
                    sha256,
                    upload.spec.name or upload.spec.file_name,
                    upload.spec.file_name,
                    upload.format.value,
                    upload.documents,
                    upload.characters,
                    upload.bytes,
                    json.dumps(dict(upload.label_counts), ensure_ascii=False),
                    json.dumps([[text, label] for label, texts in upload.examples.items() for text in texts], ensure_ascii=False),
                    time.time(),
                    upload.created_by,
                ),
            )
            return self._get(conn, identifier), False

    def get(self, identifier: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return self._get(conn, identifier)

    def _get(self, conn: Any, identifier: str) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM datasets WHERE id = ?", (identifier,)).fetchone()
        if row is None:
            raise NotFound(f"no dataset {quote(identifier)}; `fenlei datasets list` shows them")
        return _dataset(row)

    def all(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [_dataset(row) for row in conn.execute("SELECT * FROM datasets ORDER BY created, id")]

    def delete(self, identifier: str) -> None:
        """Refused while a job uses it (a pin)."""
        with self.db.transaction() as conn:
            dataset = self._get(conn, identifier)
            jobs = [row[0] for row in conn.execute("SELECT job FROM pins WHERE dataset = ? ORDER BY job", (identifier,))]
            if jobs:
                raise FailedPrecondition(
                    f"dataset {identifier} is in use by job(s) {quote_list(jobs)}: delete it once they ended (or cancel them)"
                )
            conn.execute("DELETE FROM datasets WHERE id = ?", (identifier,))
            self.db.after_commit(("delete", identifier), functools.partial(self.path(dataset["sha256"]).unlink, missing_ok=True))

    def set_pins(self, pins: Iterable[tuple[str, str]]) -> None:
        """Replaces the pins with these (job, dataset) pairs: the datasets of the jobs that are
        queued or running. The whole set each time, so saying it again is harmless."""
        pins = sorted(set(pins))
        with self.db.transaction() as conn:
            known = {row[0] for row in conn.execute("SELECT id FROM datasets")}
            unknown = [(job, dataset) for job, dataset in pins if dataset not in known]
            if unknown:
                datasets, jobs = [dataset for _, dataset in unknown], [job for job, _ in unknown]
                raise NotFound(f"no dataset {quote_list(datasets)} (job(s) {quote_list(jobs)}): nothing was pinned")
            conn.execute("DELETE FROM pins")
            conn.executemany("INSERT INTO pins VALUES (?, ?)", pins)

    def read(
        self, identifier: str, offset: int = 0, batch_documents: int = 0, batch_bytes: int = 4 << 20
    ) -> Generator[list[Record], None, None]:
        """The records from `offset` on, in batches of at most batch_documents records (default
        DEFAULT_BATCH_DOCUMENTS) and about batch_bytes, read from the file as they are sent."""
        dataset = self.get(identifier)
        if offset > dataset["documents"]:
            raise InvalidInput(f"offset {offset:,} is past the end of dataset {identifier} ({dataset['documents']:,} records)")
        # Opened now: a dataset deleted later is still read to its end.
        handle = open(self.path(dataset["sha256"]), "rb")  # noqa: SIM115 - the generator closes it
        return _batches(handle, offset, batch_documents or DEFAULT_BATCH_DOCUMENTS, batch_bytes)


def _batches(handle: Any, offset: int, batch_documents: int, batch_bytes: int) -> Generator[list[Record], None, None]:
    with handle:
        for _ in range(offset):
            handle.readline()
        index, batch, size = offset, [], 0
        for line in handle:
            text, label = _DECODE(line.decode("utf-8"))
            batch.append(Record(index, text, label))
            index += 1
            size += len(line)
            if len(batch) >= batch_documents or size >= batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch


def _dataset(row: Any) -> dict[str, Any]:
    dataset = dict(row)
    dataset["format"] = Format(dataset["format"])
    dataset["label_counts"] = json.loads(dataset["label_counts"])
    dataset["examples"] = [tuple(example) for example in json.loads(dataset["examples"])]
    return dataset


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
