"""Where a model version came from, as the registry records it (fenlei.v1.Lineage, by
its field names): the corpus it was trained and evaluated on, every stage's
configuration, the segmenter's dictionary and the stopword list it used, and the code
that trained it. Enough to train it again, and to tell whether two versions saw the
same data."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jieba

from fenlei.datasets.core import record_line
from fenlei.preprocessor.core import PreprocessConfig, read_stopwords

if TYPE_CHECKING:
    from fenlei.training.core import Corpus, CorpusStream, TrainingSpec

PACKAGE = Path(__file__).resolve().parent.parent


def corpus_sha256(texts: Sequence[str], labels: Sequence[str]) -> str:
    """SHA-256 over the labelled texts as read, in order: one JSON array [text, label] a
    line, UTF-8. The file's format (TSV, CSV, JSON lines, label indices) does not matter;
    what the model learned from does."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(record_line(text, label))  # a dataset's file, so its sha256 is this
    return digest.hexdigest()


@cache
def dictionary_sha256() -> str:
    """SHA-256 of jieba's dictionary file, which the segmenter loads (its user words are in
    the segmenter's configuration)."""
    with jieba.Tokenizer().get_dict_file() as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stopwords_sha256(config: PreprocessConfig) -> str:
    """SHA-256 of the stopword list in effect: the built-in list unless the configuration
    turns it off, and its extra stopwords; sorted, one word a line, UTF-8."""
    words = (read_stopwords() if config.remove_stopwords else frozenset()) | set(config.extra_stopwords)
    return hashlib.sha256("".join(f"{word}\n" for word in sorted(words)).encode("utf-8")).hexdigest()


@cache
def code_version() -> str:
    """fenlei's version, with the git commit when it runs from a checkout ("0.1.0+git.<sha>",
    ".dirty" when tracked files differ from it); just the version elsewhere."""
    version = importlib.metadata.version("fenlei")

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None  # no git here
        return done.stdout.strip() if done.returncode == 0 else None

    # The package itself must be tracked: an installed fenlei inside some other repository is no checkout of fenlei.
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return version
    commit = git("rev-parse", "HEAD")
    if not commit:
        return version
    dirty = git("status", "--porcelain", "--untracked-files=no", ".")
    return f"{version}+git.{commit}{'.dirty' if dirty else ''}"


def lineage(spec: TrainingSpec, corpus: Corpus | CorpusStream, test: Corpus | CorpusStream | None) -> dict[str, Any]:
    """The lineage of a training of `corpus` (as read, before any split), evaluated on
    `test` or, without one, on a held-out part of the corpus."""
    return {
        "dataset_sha256": corpus.sha256,
        "dataset_documents": corpus.documents,
        "dataset_source": corpus.source,
        "test_dataset_sha256": test.sha256 if test is not None else "",
        "config": {
            "segmenter": spec.segment.to_json(),
            "preprocessor": spec.preprocess.to_json(),
            # As sent to the services, which read them over their defaults.
            "features": dict(spec.features),
            "classifier": dict(spec.classifier),
            "training": {
                "test_fraction": spec.test_fraction,
                "seed": spec.seed,
                "evaluated_on": "test corpus" if test is not None else "held-out split",
                "test_source": test.source if test is not None else "",
            },
        },
        "dictionary_sha256": dictionary_sha256(),
        "stopwords_sha256": stopwords_sha256(spec.preprocess),
        "code_version": code_version(),
        "job": spec.job,
    }
