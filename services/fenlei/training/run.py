"""Training against a running mesh: what `fenlei train`, the demo and the benchmark share."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fenlei.mesh import Mesh
from fenlei.runtime.models import ModelStore
from fenlei.runtime.stages import StageAddresses, StageStreams
from fenlei.training.core import DEFAULT_SEGMENT, Corpus, Report, TrainingSpec, read_corpus, train
from fenlei.training.stages import GrpcStages

MESSAGE_BYTES = 64 * 1024 * 1024


def mesh_streams(mesh: Mesh) -> StageStreams:
    addresses = StageAddresses(*(mesh.stage_address(stage) for stage in ("segmenter", "preprocessor", "features", "classifier")))
    return StageStreams(addresses, [("grpc.max_receive_message_length", MESSAGE_BYTES), ("grpc.max_send_message_length", MESSAGE_BYTES)])


async def train_corpus(mesh: Mesh, spec: TrainingSpec, corpus: Corpus, test: Corpus | None = None) -> Report:
    streams = mesh_streams(mesh)
    try:
        return await train(ModelStore(mesh.home), spec, GrpcStages(streams), corpus, test)
    finally:
        await streams.close()


async def train_file(
    mesh: Mesh,
    path: Path,
    *,
    name: str,
    text_column: str = "text",
    label_column: str = "label",
    test_file: Path | None = None,
    label_names: Path | None = None,
    algorithm: str | None = None,
    user_words: Path | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Report:
    names = [line.strip() for line in label_names.read_text(encoding="utf-8").splitlines() if line.strip()] if label_names else []
    corpus = read_corpus(path, text_column, label_column, names)
    test = read_corpus(test_file, text_column, label_column, names) if test_file else None
    classifier = {"algorithm": f"ALGORITHM_{algorithm.upper()}"} if algorithm else {}
    words = tuple(user_words.read_text(encoding="utf-8").split()) if user_words else ()
    spec = TrainingSpec(
        name=name, segment=dataclasses.replace(DEFAULT_SEGMENT, user_words=words), classifier=classifier, test_fraction=test_fraction, seed=seed
    )
    return await train_corpus(mesh, spec, corpus, test)
