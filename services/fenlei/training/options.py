"""The stage options of `fenlei train` and `fenlei jobs create` as command-line flags, so
that a new option of a stage is a new flag without a line here:

    --segment-mode search --no-feature-tags --no-hmm --char-ngrams 1-3 --stopwords FILE
    --feature-selection chi2 --max-features 20000 --algorithm linear_svm --regularization 0.5

The flags are the fields of the contract's options messages (SegmentOptions,
PreprocessOptions, FeatureOptions, ClassifierOptions), which the stages' configuration
dataclasses mirror field for field: names, types and help text come from the contract;
defaults and validation from the configurations. They become a job's PipelineConfig
(pipeline_config). The configurations are imported only to check the flags or print the
help (the stage cores take seconds to import, and every `fenlei` command builds the parser).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import re
import typing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, EnumValueDescriptor, FieldDescriptor
from google.protobuf.message import Message

from fenlei.errors import FenleiError, InvalidInput
from fenlei.v1 import classifier_pb2, features_pb2, preprocessor_pb2, segmenter_pb2, training_pb2


@dataclass(frozen=True)
class Stage:
    field: str  # its TrainingSpec field
    options: Descriptor  # the contract's options message
    config_path: str  # module:class of the configuration dataclass with a field per option
    # Flags named otherwise than after their field, where the field's name alone says too little.
    renamed: tuple[tuple[str, str], ...] = ()
    # Options set from the run's own flag of that name rather than a flag of their own.
    from_run: tuple[str, ...] = ()

    def flag(self, field: str) -> str:
        return "--" + dict(self.renamed).get(field, field.replace("_", "-"))

    def dest(self, field: str) -> str:
        return f"{self.field}_{field}"

    def fields(self) -> list[FieldDescriptor]:
        return [field for field in self.options.fields if field.name not in self.from_run]

    @property
    def config(self) -> type:
        module, _, name = self.config_path.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def spec_takes_config(self) -> bool:
        """Whether TrainingSpec holds this stage's config, or (features, classifier) the
        protobuf values of its options, which the service reads over the config's defaults."""
        from fenlei.training.core import TrainingSpec

        return typing.get_type_hints(TrainingSpec)[self.field] is self.config

    def base(self) -> Any:
        """The configuration the stage trains with when no flag says otherwise."""
        from fenlei.training.core import TrainingSpec

        return getattr(TrainingSpec(name=""), self.field) if self.spec_takes_config else self.config()


def descriptor(message: type[Message]) -> Descriptor:
    # The stubs type DESCRIPTOR as descriptor.Descriptor or upb's Descriptor; upb's is an instance of
    # descriptor.Descriptor too (DescriptorMetaclass's instance check), which mypy cannot see.
    return cast(Descriptor, message.DESCRIPTOR)


STAGES = (
    Stage("segment", descriptor(segmenter_pb2.SegmentOptions), "fenlei.segmenter.core:SegmentConfig", renamed=(("mode", "segment-mode"),)),
    Stage(
        "preprocess", descriptor(preprocessor_pb2.PreprocessOptions), "fenlei.preprocessor.core:PreprocessConfig",
        renamed=(("extra_stopwords", "stopwords"),),
    ),
    Stage(
        "features", descriptor(features_pb2.FeatureOptions), "fenlei.features.core:FeatureConfig",
        renamed=(("selection", "feature-selection"), ("top_k", "max-features")),
    ),
    # --seed also draws the held-out split.
    Stage("classifier", descriptor(classifier_pb2.ClassifierOptions), "fenlei.classifier.core:ClassifierConfig", from_run=("seed",)),
)  # fmt: skip
NGRAM_RANGE = preprocessor_pb2.NgramRange.DESCRIPTOR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per stage option, in a group per stage; a flag not given is None. Use
    HelpFormatter as the parser's formatter_class: it adds each flag's default."""
    for stage in STAGES:
        group = parser.add_argument_group(f"{stage.options.name} ({stage.options.file.name})")
        for field in stage.fields():
            # The contract names the API's default; the help shows the training default (HelpFormatter).
            about = re.sub(r"\s*Default .*$", "", _comment(stage.options, field.index))
            kwargs: dict[str, Any] = {"dest": stage.dest(field.name), "default": None}
            if field.type == FieldDescriptor.TYPE_BOOL:
                kwargs.update(action=argparse.BooleanOptionalAction)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                proto = enum_type(field)
                members = [(value, member_name(value.name, proto)) for value in proto.values[1:]]  # not UNSPECIFIED
                explained = [(name, _comment(proto, value.index).rstrip(".")) for value, name in members]
                about = "; ".join([about, *(f"{name}: {text}" for name, text in explained if text)])
                kwargs.update(choices=[name for _, name in members])
            elif field.is_repeated and field.type == FieldDescriptor.TYPE_STRING:
                kwargs.update(type=Path, metavar="FILE")
                about += " A file of words separated by white space."
            elif field.message_type is NGRAM_RANGE:
                kwargs.update(type=_ngram_range, metavar="MIN-MAX")
                about += " MIN-MAX, N for N-N, or 0 for none."
            elif field.type == FieldDescriptor.TYPE_DOUBLE:
                kwargs.update(type=float, metavar="NUMBER")
            else:
                kwargs.update(type=int, metavar="N")
            group.add_argument(stage.flag(field.name), help=_with_flags(stage, about.strip("; ")).replace("%", "%%"), **kwargs)


class HelpFormatter(argparse.HelpFormatter):
    """Adds the training default to each stage option's help, read from the configurations
    when the help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        for stage in STAGES:
            for field in stage.fields():
                if action.dest == stage.dest(field.name):
                    default = getattr(stage.base(), field.name)
                    return f"{text} (default: {_format(default)})".strip() if default != () else text
        return text


def pipeline_config(args: argparse.Namespace, *, seed: int) -> training_pb2.PipelineConfig:
    """The PipelineConfig of a job that the flags ask for: only the options given are set
    (the jobs service fills in fenlei's defaults), each stage's configuration validated here
    first, over the training defaults, so that a bad flag is refused with its name before
    anything is uploaded."""
    config = training_pb2.PipelineConfig()
    parts = {field.message_type.full_name: field.name for field in config.DESCRIPTOR.fields if field.message_type}
    for stage, given in _checked(args, seed):  # the seed travels in the job's Evaluation
        options = getattr(config, parts[stage.options.full_name])
        options.SetInParent()
        for name, value in given.items():
            field = stage.options.fields_by_name[name]
            if isinstance(value, enum.Enum):
                setattr(options, name, _proto_enum(field, value).number)
            elif field.message_type is NGRAM_RANGE:
                getattr(options, name).CopyFrom(preprocessor_pb2.NgramRange(min=value[0], max=value[1]))
            elif field.is_repeated:
                getattr(options, name).extend(value)
            else:
                setattr(options, name, value)
    return config


def _checked(args: argparse.Namespace, seed: int) -> list[tuple[Stage, dict[str, Any]]]:
    """The options the flags give each stage, once the configuration they make is valid."""
    run = {"seed": seed}
    checked = []
    for stage in STAGES:
        hints = typing.get_type_hints(stage.config)
        given = {field.name: getattr(args, stage.dest(field.name)) for field in stage.fields()}
        given = {field: _value(stage.flag(field), hints[field], value) for field, value in given.items() if value is not None}
        with_run = {**given, **{field: run[field] for field in stage.from_run}}
        try:
            dataclasses.replace(stage.base(), **with_run)
        except FenleiError as error:
            raise InvalidInput(_naming_flags(stage, with_run, str(error))) from None
        checked.append((stage, given))
    return checked


def _naming_flags(stage: Stage, given: dict[str, Any], message: str) -> str:
    """A config's message naming the flags: in place of the fields it names ("top_k=5 needs
    ..." → "--max-features=5 needs ..."), else in front (those it names, else all given)."""
    named = [stage.flag(field) for field in given if re.search(rf"\b{field}\b", message)] or [stage.flag(field) for field in given]
    message = _with_flags(stage, message)
    missing = [flag for flag in named if flag not in message]
    return f"{', '.join(missing)}: {message}" if missing else message


def _with_flags(stage: Stage, text: str) -> str:
    """The stage's field names in a text as their flags ("the top_k terms" → "the --max-features terms")."""
    for field in stage.fields():
        if "_" in field.name:  # a plain word ("mode") may be English
            text = re.sub(rf"\b{field.name}\b", stage.flag(field.name), text)
    return text


def _value(flag: str, kind: Any, value: Any) -> Any:
    if isinstance(value, Path):  # a file of words
        try:
            return tuple(value.read_text(encoding="utf-8").split())
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"{flag}: cannot read {value}: {error}") from None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    return value


def proto_values(config: Any, options: Descriptor) -> dict[str, Any]:
    """A config as protobuf field values by name ({"selection": "FEATURE_SELECTION_CHI2", ...})."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, enum.Enum):
            value = _proto_enum(options.fields_by_name[field.name], value).name
        values[field.name] = list(value) if isinstance(value, tuple) else value
    return values


def _proto_enum(field: FieldDescriptor, member: enum.Enum) -> EnumValueDescriptor:
    """A config's enum member as the contract's value of the field: Selection.CHI2 → FEATURE_SELECTION_CHI2."""
    proto = enum_type(field)
    return next(value for value in proto.values if member_name(value.name, proto) == member.value)


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def member_name(proto_name: str, proto: EnumDescriptor) -> str:
    """A contract enum value as the config's enum value: FEATURE_SELECTION_CHI2 → chi2."""
    prefix = proto.values[0].name.removesuffix("UNSPECIFIED")
    return proto_name.removeprefix(prefix).lower()


def _ngram_range(text: str) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    try:
        return (int(low), int(high if dash else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX (e.g. 1-2), N (for N-N) or 0 (none), not {text!r}") from None


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(n, int) for n in value):  # an n-gram range
        return "0" if value == (0, 0) else f"{value[0]}-{value[1]}"
    return str(value)


def _comment(parent: Descriptor | EnumDescriptor, index: int) -> str:
    """The contract's comment on a field of a top-level message or a value of a top-level enum."""
    kind, names = (4, parent.file.message_types_by_name) if isinstance(parent, Descriptor) else (5, parent.file.enum_types_by_name)
    return _comments(parent.file.name).get((kind, list(names).index(parent.name), 2, index), "")


@cache
def _comments(file_name: str) -> dict[tuple[int, ...], str]:
    """Leading comments by source path, from the descriptor set (built with source info)."""
    data = (resources.files("fenlei.v1") / "fenlei.binpb").read_bytes()
    [file] = [f for f in descriptor_pb2.FileDescriptorSet.FromString(data).file if f.name == file_name]
    return {tuple(location.path): " ".join(location.leading_comments.split()) for location in file.source_code_info.location}
