"""fenlei.training.options: `fenlei train`'s stage flags, from the contract and the stages' configurations."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format

from fenlei.classifier.core import Algorithm, ClassifierConfig
from fenlei.classifier.servicer import config_of as classifier_config_of
from fenlei.errors import InvalidInput
from fenlei.features.core import FeatureConfig, Selection
from fenlei.features.servicer import config_of as feature_config_of
from fenlei.jobs.worker import spec_of
from fenlei.segmenter.core import Mode
from fenlei.training import options
from fenlei.training.core import DEFAULT_PREPROCESS, DEFAULT_SEGMENT
from fenlei.v1 import classifier_pb2, features_pb2


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(formatter_class=options.HelpFormatter)
    options.add_arguments(parser)
    return parser


def spec(*flags: str, seed: int = 0):
    """What a job the flags ask for trains with: the PipelineConfig the CLI sends, as the jobs worker reads it."""
    config = options.pipeline_config(parser().parse_args(list(flags)), seed=seed)
    return spec_of({"model": "m", "config": json_format.MessageToDict(config), "evaluation": {"seed": seed}})


def test_every_option_of_the_contract_is_a_flag_and_a_config_field() -> None:
    flags = set(vars(parser().parse_args([])))
    for stage in options.STAGES:
        contract = {field.name for field in stage.options.fields}
        assert contract == {field.name for field in dataclasses.fields(stage.config)}, stage.options.name
        assert {stage.dest(name) for name in contract if name not in stage.from_run} <= flags


def test_no_flags_train_with_the_defaults() -> None:
    default = spec()
    assert default.segment == DEFAULT_SEGMENT and default.preprocess == DEFAULT_PREPROCESS
    assert feature_config_of(json_format.ParseDict(default.features, features_pb2.FeatureOptions())) == FeatureConfig()
    assert classifier_config_of(json_format.ParseDict(default.classifier, classifier_pb2.ClassifierOptions())) == ClassifierConfig()


def test_flags_reach_each_stage(tmp_path: Path) -> None:
    (tmp_path / "stop.txt").write_text("的 了\n吗\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("云计算 区块链", encoding="utf-8")
    asked = spec(
        "--segment-mode", "search", "--no-feature-tags", "--no-hmm", "--user-words", str(tmp_path / "words.txt"),
        "--char-ngrams", "0", "--word-ngrams", "1-2", "--stopwords", str(tmp_path / "stop.txt"), "--remove-digits",
        "--min-df", "3", "--feature-selection", "mutual_info", "--max-features", "100", "--no-sublinear-tf",
        "--algorithm", "sgd", "--regularization", "0.001", "--epochs", "2",
        seed=7,
    )  # fmt: skip
    assert (asked.segment.mode, asked.segment.hmm, asked.segment.feature_tags) == (Mode.SEARCH, False, False)
    assert asked.segment.user_words == ("云计算", "区块链")
    assert (asked.preprocess.char_ngrams, asked.preprocess.word_ngrams, asked.preprocess.remove_digits) == ((0, 0), (1, 2), True)
    assert set(asked.preprocess.extra_stopwords) == {"的", "了", "吗"}
    # the features' and classifier's options go to their services as protobuf values, which they read back
    assert feature_config_of(json_format.ParseDict(asked.features, features_pb2.FeatureOptions())) == FeatureConfig(
        sublinear_tf=False, min_df=3, selection=Selection.MUTUAL_INFO, top_k=100
    )
    assert classifier_config_of(json_format.ParseDict(asked.classifier, classifier_pb2.ClassifierOptions())) == ClassifierConfig(
        algorithm=Algorithm.SGD, regularization=0.001, epochs=2, seed=7
    )
    assert asked.seed == 7


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-features", "100"], "--max-features=100 needs a selection method"),
        (["--segment-mode", "full"], "--segment-mode: part-of-speech tags need accurate mode, not full: drop --feature-tags"),
        (["--word-ngrams", "0", "--char-ngrams", "0"], "--word-ngrams and --char-ngrams are both off"),
        (["--regularization", "-1"], "--regularization: regularization must be >= 0"),
        (["--min-df", "0"], "--min-df must be an integer >= 1"),
        (["--stopwords", "/no/such/file"], "--stopwords: cannot read /no/such/file"),
    ],
)
def test_bad_options_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        spec(*flags)
    assert str(refused.value).startswith(message), refused.value


def test_a_bad_run_seed_is_refused_by_its_flag() -> None:
    with pytest.raises(InvalidInput, match=r"^--seed: seed must be an integer in 0\.\.2\*\*32-1"):
        spec(seed=-1)


def test_a_value_of_the_wrong_kind_is_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--char-ngrams", "two"], ["--feature-selection", "pca"], ["--epochs", "many"]):
        with pytest.raises(SystemExit):
            parser().parse_args(flags)
        assert f"argument {flags[0]}" in capsys.readouterr().err


def test_help_comes_from_the_contract_with_the_training_defaults() -> None:
    text = " ".join(parser().format_help().split())
    assert "--char-ngrams MIN-MAX Character n-grams to emit over the kept text. MIN-MAX, N for N-N, or 0 for none. (default: 1-2)" in text
    # the training default, not the API's: models are trained with word classes as features
    assert "Models trained with the defaults use it. (default: on)" in text
    assert "chi2: The --max-features terms by chi-squared statistic" in text  # field names read as flags
    assert "--algorithm {complement_nb,multinomial_nb,logistic_regression,linear_svm,sgd,ensemble}" in text


def test_building_the_command_line_imports_no_stage_core() -> None:
    # Every `fenlei` command builds the parser: the stage cores (scikit-learn, jieba) take seconds to import.
    heavy = ("sklearn", "jieba", "fenlei.training.core")
    check = f"import sys, fenlei.cli; fenlei.cli.parser(); print([m for m in {heavy} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "[]"
