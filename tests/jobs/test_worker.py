"""fenlei.jobs.worker: the training a job asks for, and the progress lines it writes."""

from __future__ import annotations

import io
import json

import pytest
from google.protobuf import json_format

from fenlei.errors import InvalidInput
from fenlei.jobs.worker import ProgressLines, spec_of
from fenlei.training.core import DEFAULT_PREPROCESS, DEFAULT_SEGMENT, Progress
from fenlei.v1 import jobs_pb2


def fields(**request: object) -> dict:
    message = jobs_pb2.CreateJobRequest(model="news", dataset="ds-0123456789abcdef", **request)  # type: ignore[arg-type]
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_a_job_without_options_trains_with_the_defaults_on_a_held_out_fifth() -> None:
    spec = spec_of(fields())
    assert (spec.name, spec.segment, spec.preprocess, spec.features) == ("news", DEFAULT_SEGMENT, DEFAULT_PREPROCESS, {})
    assert (spec.test_fraction, spec.folds, spec.seed, spec.tuning) == (0.2, 0, 0, None)
    assert spec.classifier == {"seed": 0}


def test_the_options_a_job_sets_override_the_defaults() -> None:
    config = {
        "segmenter": {"hmm": False},
        "preprocessor": {"char_ngrams": {"min": 1, "max": 3}},
        "features": {"selection": "FEATURE_SELECTION_CHI2", "top_k": 500},
        "classifier": {"algorithm": "ALGORITHM_SGD", "epochs": 4},
    }
    job = fields(evaluation=jobs_pb2.Evaluation(folds=4, seed=9), tags={"owner": "ml"})
    spec = spec_of({**job, "config": config})
    assert not spec.segment.hmm and spec.segment.feature_tags == DEFAULT_SEGMENT.feature_tags is True
    assert spec.preprocess.char_ngrams == (1, 3) and spec.preprocess.word_ngrams == DEFAULT_PREPROCESS.word_ngrams
    assert spec.features == {"selection": "FEATURE_SELECTION_CHI2", "top_k": 500}
    assert spec.classifier == {"algorithm": "ALGORITHM_SGD", "epochs": 4, "seed": 9}
    assert (spec.folds, spec.seed, dict(spec.tags)) == (4, 9, {"owner": "ml"})
    tuned = spec_of(fields(tune=True, space=jobs_pb2.TuningSpace(folds=2, max_trials=3)))
    assert tuned.tuning is not None and (tuned.tuning.folds, tuned.tuning.max_trials) == (2, 3)


def test_what_training_refuses_is_refused_before_the_job_runs() -> None:
    with pytest.raises(InvalidInput, match="test_fraction"):
        spec_of(fields(evaluation=jobs_pb2.Evaluation(test_fraction=1.0)))
    with pytest.raises(InvalidInput, match="folds"):
        spec_of(fields(tune=True, space=jobs_pb2.TuningSpace(folds=1)))


def test_progress_lines_carry_the_phase_the_documents_and_the_time() -> None:
    out = io.StringIO()
    lines = ProgressLines(out)
    advance = lines.phase("reading", 10)
    advance(4)  # within REPORT_EVERY_SECONDS of the last line: not written
    advance(10)  # the phase's end always is
    lines(Progress("segmenting", 0, 8, 0.1, 0.0))
    written = [json.loads(line)["progress"] for line in out.getvalue().splitlines()]
    assert [(p["phase"], p["documents_done"], p["documents_total"]) for p in written] == [
        ("reading", 0, 10),
        ("reading", 10, 10),
        ("segmenting", 0, 8),
    ]
    assert all(p["elapsed_seconds"] >= 0 for p in written) and written[1]["remaining_seconds"] == 0.0
