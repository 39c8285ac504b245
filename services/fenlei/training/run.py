"""Training against a running mesh: what `fenlei train`, the demo and the benchmark share."""

from __future__ import annotations

from pathlib import Path

import grpc

from fenlei import services
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.runtime.models import ModelStore
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.runtime.stages import StageStreams
from fenlei.training.core import Corpus, Report, TrainingSpec, read_corpus, train
from fenlei.training.register import GrpcRegistry
from fenlei.training.stages import GrpcStages

MESSAGE_BYTES = 64 * 1024 * 1024
REGISTRY = "registry"


def mesh_streams(mesh: Mesh) -> StageStreams:
    addresses = {stage.name: mesh.stage_address(stage.name) for stage in services.STAGES}
    return StageStreams(addresses, [("grpc.max_receive_message_length", MESSAGE_BYTES), ("grpc.max_send_message_length", MESSAGE_BYTES)])


async def train_corpus(mesh: Mesh, spec: TrainingSpec, corpus: Corpus, test: Corpus | None = None, *, author: str = "") -> Report:
    """author: who trains (a local user's login name), sent as the caller's subject (what the
    gateway sets from a token); without one the registry records the trainer's mesh identity."""
    streams = mesh_streams(mesh)
    channel = grpc.aio.insecure_channel(mesh.stage_address(REGISTRY))
    try:
        registry = GrpcRegistry(channel, [(SUBJECT_HEADER, author)] if author else [])
        return await train(ModelStore(mesh.home), spec, GrpcStages(streams), registry, corpus, test)
    finally:
        await streams.close()
        await channel.close()


async def train_file(
    mesh: Mesh,
    path: Path,
    spec: TrainingSpec,
    *,
    text_column: str = "text",
    label_column: str = "label",
    test_file: Path | None = None,
    label_names: Path | None = None,
    author: str = "",
) -> Report:
    names = [line.strip() for line in label_names.read_text(encoding="utf-8").splitlines() if line.strip()] if label_names else []
    corpus = read_corpus(path, text_column, label_column, names)
    test = read_corpus(test_file, text_column, label_column, names) if test_file else None
    return await train_corpus(mesh, spec, corpus, test, author=author)
