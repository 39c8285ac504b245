"""Experiments: a model's traffic (requests naming no version) routed between arms, each a
version or an alias of the model, and scored by the feedback on what each arm answered.

The registry's database is the truth; the pipeline routes from the routing.json view
(`routing_of` is its "experiment" entry) and asks the registry only for the arm of a
routing key it has not seen (`assign`). A key's arm is chosen once, by a stable hash of the
key over the weights of that moment, and kept: weights that change later, and every
pipeline replica, leave it where it is. A pipeline that cannot reach the registry picks by
the same hash, so a key it falls back for lands where the registry would have put it
under the current weights.

Predictions an experiment served come back from the pipeline (`record`), so that feedback
can find them by request id; the scores (counts, accuracy, confusion matrix per arm) are
computed from them. With Thompson allocation, feedback moves the weights toward each arm's
chance of being the most accurate (`rebalance`), never below a floor per arm.
Every change (created, weights, ended) is an event of the experiment.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote, quote_list
from fenlei.runtime.models import NAME_PATTERN, check_name

if TYPE_CHECKING:
    from fenlei.registry.store import Registry

FIXED = "fixed"
THOMPSON = "thompson"
ALLOCATIONS = (FIXED, THOMPSON)
# Every arm keeps this share of the traffic under Thompson allocation, so that an arm that
# started badly can still show it is better.
FLOOR = 0.05
MAX_ARMS = 10  # MAX_ARMS * FLOOR leaves half of the traffic to the sampling
THOMPSON_DRAWS = 2_000
# Thompson weights are recomputed at most this often (the servicer throttles).
REBALANCE_SECONDS = 1.0
MAX_KEY_CHARS = 256
MAX_LABEL_CHARS = 200
MAX_TEXT_CHARS = 1000  # a description, a reason
THOMPSON_BY = "thompson"

# resolve(target) -> the version a target (a version or an alias of the model) points at now.
Resolve = Callable[[str], str]


# ---------------------------------------------------------------- routing math (the pipeline's too)


def key_point(experiment: str, key: str) -> float:
    """A routing key's stable place in [0, 1): the same in every process, forever."""
    digest = hashlib.sha256(f"{experiment}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_at(weights: Sequence[tuple[str, float]], point: float) -> str:
    """The arm whose share of the weights covers `point` in [0, 1); weight 0 is never chosen."""
    total = sum(weight for _, weight in weights)
    target = point * total
    covered = 0.0
    for name, weight in weights:
        covered += weight
        if weight > 0 and target < covered:
            return name
    return next(name for name, weight in reversed(weights) if weight > 0)  # rounding at the very end


def thompson_weights(outcomes: Sequence[tuple[int, int]], seed: int, draws: int = THOMPSON_DRAWS, floor: float = FLOOR) -> list[float]:
    """Each arm's chance of being the most accurate, under Beta(1 + correct, 1 + wrong),
    estimated from `draws` samples, mixed with `floor` per arm."""
    rng = np.random.default_rng(seed)
    samples = np.stack([rng.beta(1 + correct, 1 + wrong, draws) for correct, wrong in outcomes])
    best = np.bincount(samples.argmax(axis=0), minlength=len(outcomes)) / draws
    spread = 1.0 - floor * len(outcomes)
    return [round(floor + spread * float(share), 6) for share in best]


# ---------------------------------------------------------------- what the store asks (routing.json, deletions)


def routing_of(conn: sqlite3.Connection, name: str, resolve: Resolve) -> dict[str, Any] | None:
    """The "experiment" entry of the model's routing.json: its running experiment with each
    arm's target resolved now, or None."""
    row = conn.execute("SELECT name, revision FROM experiments WHERE model = ? AND ended IS NULL", (name,)).fetchone()
    if row is None:
        return None
    experiment, revision = row
    arms = [
        {"name": arm, "target": target, "version": resolve(target), "weight": weight}
        for arm, target, weight in conn.execute(
            "SELECT name, target, weight FROM arms WHERE experiment = ? ORDER BY position", (experiment,)
        )
    ]
    return {"name": experiment, "revision": revision, "arms": arms}


def users_of(conn: sqlite3.Connection, name: str) -> dict[str, list[str]]:
    """{version or alias: [running experiments of the model with an arm targeting it]}."""
    users: dict[str, list[str]] = {}
    for target, experiment in conn.execute(
        "SELECT DISTINCT arms.target, experiments.name FROM arms JOIN experiments ON arms.experiment = experiments.name "
        "WHERE experiments.model = ? AND experiments.ended IS NULL ORDER BY experiments.name",
        (name,),
    ):
        users.setdefault(target, []).append(experiment)
    return users


# ---------------------------------------------------------------- what the API shows


@dataclass(frozen=True)
class ArmSpec:
    name: str
    target: str
    weight: float


@dataclass(frozen=True)
class ArmView:
    name: str
    target: str
    weight: float
    version: str  # the target resolved now; empty once it no longer resolves (an ended experiment's)


@dataclass(frozen=True)
class Score:
    arm: str
    predictions: int = 0
    feedback: int = 0
    correct: int = 0
    # true label -> predicted label -> count
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.feedback if self.feedback else 0.0


@dataclass(frozen=True)
class Event:
    sequence: int
    at: float
    by: str
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ExperimentView:
    name: str
    model: str
    allocation: str
    description: str
    created: float
    created_by: str
    ended: float | None
    revision: int
    arms: tuple[ArmView, ...]
    scores: tuple[Score, ...]
    events: tuple[Event, ...] = ()

    @property
    def running(self) -> bool:
        return self.ended is None

    @property
    def leader(self) -> str:
        """The arm with the best online accuracy (more feedback breaks a tie); empty without feedback."""
        scored = [score for score in self.scores if score.feedback]
        if not scored:
            return ""
        return max(scored, key=lambda score: (score.accuracy, score.feedback)).arm


@dataclass(frozen=True)
class Feedback:
    experiment: str
    arm: str
    correct: bool
    allocation: str


# ---------------------------------------------------------------- the registry side


def _check_name(kind: str, name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput(
            f"{kind} name {quote(name)} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _check_weight(arm: str, weight: float) -> float:
    if not (math.isfinite(weight) and weight >= 0):
        raise InvalidInput(f"arm {arm!r}: a weight is a share of the traffic, a finite number >= 0, not {weight}")
    return float(weight)


def _check_total(weights: Mapping[str, float]) -> None:
    if not sum(weights.values()) > 0:
        given = ", ".join(f"{arm}={weight:g}" for arm, weight in weights.items())
        raise InvalidInput(f"the arms' weights ({given}) add up to 0: give at least one arm a positive weight")


def _check_text(what: str, text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"a {what} has at most {MAX_TEXT_CHARS} characters, not {len(text)}")
    return text


_COLUMNS = "name, model, allocation, description, created, created_by, ended, revision"


def _unknown(conn: sqlite3.Connection, name: str) -> NotFound:
    running = [row[0] for row in conn.execute("SELECT name FROM experiments WHERE ended IS NULL ORDER BY name")]
    return NotFound(f"no experiment named {quote(name)}; running experiments: {quote_list(running) if running else 'none'}")


class Experiments:
    """Experiments in the registry's database. Every write is one transaction of
    `registry.db`; the model's routing.json is rewritten once it commits."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.db = registry.db
        self.clock = registry.clock

    # -------------------------------------------------------- lifecycle

    def create(self, name: str, model: str, arms: Sequence[ArmSpec], allocation: str, description: str, created_by: str) -> ExperimentView:
        _check_name("experiment", name)
        check_name(model)
        _check_text("description", description)
        if allocation not in ALLOCATIONS:
            raise InvalidInput(f"allocation {quote(allocation)} is not one of {', '.join(ALLOCATIONS)}")
        if not 2 <= len(arms) <= MAX_ARMS:
            raise InvalidInput(f"an experiment has 2 to {MAX_ARMS} arms, not {len(arms)}")
        names = [_check_name("arm", arm.name) for arm in arms]
        repeated = sorted({arm for arm in names if names.count(arm) > 1})
        if repeated:
            raise InvalidInput(f"arm names must differ: {quote_list(repeated)} given more than once")
        weights = {arm.name: _check_weight(arm.name, arm.weight) for arm in arms}
        _check_total(weights)
        now = self.clock()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone():
                raise FailedPrecondition(f"an experiment named {name!r} exists already (ended ones keep their name): choose another name")
            running = conn.execute("SELECT name FROM experiments WHERE model = ? AND ended IS NULL", (model,)).fetchone()
            if running:
                raise FailedPrecondition(
                    f"model {model!r} is in experiment {running[0]!r} already: end it first (one experiment routes a model at a time)"
                )
            for arm in arms:
                if not arm.target:
                    raise InvalidInput(f"arm {arm.name!r} has no target: name a version (v3) or an alias (production) of {model!r}")
                self.registry.resolve_in(conn, model, arm.target)  # NotFound names the model's versions and aliases
            conn.execute(
                "INSERT INTO experiments (name, model, allocation, description, created, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                (name, model, allocation, description, now, created_by),
            )
            conn.executemany(
                "INSERT INTO arms (experiment, name, position, target, weight) VALUES (?, ?, ?, ?, ?)",
                [(name, arm.name, position, arm.target, weights[arm.name]) for position, arm in enumerate(arms)],
            )
            detail = {"allocation": allocation, "arms": [{"name": a.name, "target": a.target, "weight": weights[a.name]} for a in arms]}
            self._event(conn, name, now, created_by, "created", detail)
            self.registry.write_routing(conn, model)
            return self._find(conn, name)

    def set_weights(self, name: str, weights: Mapping[str, float], by: str) -> ExperimentView:
        if not weights:
            raise InvalidInput("name at least one arm and its new weight")
        with self.db.transaction() as conn:
            model, allocation = self._running(conn, name)
            if allocation == THOMPSON:
                raise FailedPrecondition(
                    f"experiment {name!r} allocates by Thompson sampling: its weights follow the feedback and cannot be set"
                )
            current = self._weights(conn, name)
            unknown = sorted(set(weights) - set(current))
            if unknown:
                raise InvalidInput(f"experiment {name!r} has no arm {quote_list(unknown)}: its arms are {quote_list(list(current))}")
            changed = {arm: _check_weight(arm, weight) for arm, weight in weights.items()}
            _check_total({**current, **changed})
            self._move_weights(conn, model, name, changed, by, {"weights": changed})
            return self._find(conn, name)

    def end(self, name: str, promote_alias: str, winner: str, reason: str, by: str) -> tuple[ExperimentView, Any]:
        """Ends it; with promote_alias, points that alias at the winner's (default: the
        leader's) version in the same transaction. Returns the experiment and the alias move
        (None without a promotion)."""
        _check_text("reason", reason)
        with self.db.transaction() as conn:
            view = self._find(conn, name)
            if not view.running:
                raise FailedPrecondition(f"experiment {name!r} has ended already")
            arms = {arm.name: arm for arm in view.arms}
            if winner and winner not in arms:
                raise InvalidInput(f"experiment {name!r} has no arm {quote(winner)}: its arms are {quote_list(list(arms))}")
            winner = winner or view.leader
            if promote_alias and not winner:
                raise FailedPrecondition(
                    f"experiment {name!r} has no leader (no feedback yet): name the winning arm to promote, one of {quote_list(list(arms))}"
                )
            now = self.clock()
            conn.execute("UPDATE experiments SET ended = ? WHERE name = ?", (now, name))
            detail: dict[str, Any] = {"winner": winner, "reason": reason, "versions": {arm.name: arm.version for arm in view.arms}}
            move = None
            if promote_alias:
                version = arms[winner].version
                why = reason or f"experiment {name!r} ended: arm {winner!r} won"
                move = self.registry.set_alias_in(conn, view.model, promote_alias, version, by, why)
                detail["promoted"] = {"alias": promote_alias, "version": version}
            self._event(conn, name, now, by, "ended", detail)
            self.registry.write_routing(conn, view.model)
            return self._find(conn, name), move

    # -------------------------------------------------------- reading

    def get(self, name: str) -> ExperimentView:
        with self.db.read() as conn:
            return self._find(conn, name)

    def list(self, include_ended: bool = False) -> list[ExperimentView]:
        """Running experiments (and ended ones too), newest first."""
        where = "" if include_ended else "WHERE ended IS NULL"
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM experiments {where} ORDER BY created DESC, name").fetchall()
            return [self._view(conn, row) for row in rows]

    def _find(self, conn: sqlite3.Connection, name: str) -> ExperimentView:
        row = conn.execute(f"SELECT {_COLUMNS} FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise _unknown(conn, name)
        return self._view(conn, row)

    def _view(self, conn: sqlite3.Connection, row: tuple) -> ExperimentView:
        name, model, allocation, description, created, created_by, ended, revision = row
        arms = []
        events = tuple(
            Event(sequence, at, by, kind, json.loads(detail))
            for sequence, at, by, kind, detail in conn.execute(
                "SELECT sequence, at, by, kind, detail FROM experiment_events WHERE experiment = ? ORDER BY sequence", (name,)
            )
        )
        # An ended experiment shows the versions its arms served then, not where their aliases point now.
        served: dict[str, str] = next((event.detail.get("versions", {}) for event in events if event.kind == "ended"), {})
        for arm, target, weight in conn.execute("SELECT name, target, weight FROM arms WHERE experiment = ? ORDER BY position", (name,)):
            version = served.get(arm, "")
            if not version:
                try:
                    version = self.registry.resolve_in(conn, model, target)
                except NotFound:
                    version = ""  # an ended experiment's target that was deleted since
            arms.append(ArmView(arm, target, weight, version))
        return ExperimentView(
            name, model, allocation, description, created, created_by, ended, revision, tuple(arms), self._scores(conn, name), events
        )

    def _scores(self, conn: sqlite3.Connection, name: str) -> tuple[Score, ...]:
        counts = {
            arm: (predictions, feedback, correct or 0)
            for arm, predictions, feedback, correct in conn.execute(
                "SELECT arm, COUNT(*), COUNT(true_label), SUM(true_label = label) FROM predictions WHERE experiment = ? GROUP BY arm",
                (name,),
            )
        }
        confusion: dict[str, dict[str, dict[str, int]]] = {}
        for arm, truth, predicted, count in conn.execute(
            "SELECT arm, true_label, label, COUNT(*) FROM predictions WHERE experiment = ? AND true_label IS NOT NULL "
            "GROUP BY arm, true_label, label ORDER BY true_label, label",
            (name,),
        ):
            confusion.setdefault(arm, {}).setdefault(truth, {})[predicted] = count
        arms = [arm for (arm,) in conn.execute("SELECT name FROM arms WHERE experiment = ? ORDER BY position", (name,))]
        return tuple(Score(arm, *counts.get(arm, (0, 0, 0)), confusion=confusion.get(arm, {})) for arm in arms)

    # -------------------------------------------------------- what the pipeline asks

    def assign(self, name: str, key: str) -> tuple[str, int]:
        """The arm of a routing key and the experiment's revision: the arm the key got first,
        else (now, for good) the one the hash of the key picks by the current weights."""
        if not key or len(key) > MAX_KEY_CHARS:
            raise InvalidInput(f"a routing key has 1 to {MAX_KEY_CHARS} characters, not {len(key)}")
        with self.db.read() as conn:
            found = conn.execute(
                "SELECT assignments.arm, experiments.revision FROM assignments JOIN experiments ON experiments.name = assignments.experiment "
                "WHERE assignments.experiment = ? AND assignments.key = ?",
                (name, key),
            ).fetchone()
        if found:
            return found[0], found[1]
        with self.db.transaction() as conn:
            self._running(conn, name)
            weights = self._weights(conn, name)
            conn.execute(
                "INSERT OR IGNORE INTO assignments (experiment, key, arm, assigned) VALUES (?, ?, ?, ?)",
                (name, key, arm_at(list(weights.items()), key_point(name, key)), self.clock()),
            )
            arm, revision = conn.execute(
                "SELECT assignments.arm, experiments.revision FROM assignments JOIN experiments ON experiments.name = assignments.experiment "
                "WHERE assignments.experiment = ? AND assignments.key = ?",
                (name, key),
            ).fetchone()
        return arm, revision

    def record(self, predictions: Sequence[tuple[str, str, str, str, str, str]]) -> int:
        """Stores (request_id, document_id, experiment, arm, version, label) of predictions
        an experiment's arm served; returns how many were new. One served twice (a retried
        request) is kept once; one naming no arm of its experiment is not stored."""
        now = self.clock()
        with self.db.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO predictions (request_id, document_id, experiment, arm, version, label, served) "
                "SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM arms WHERE experiment = ? AND name = ?)",
                [(*prediction, now, prediction[2], prediction[3]) for prediction in predictions],
            )
            return conn.total_changes - before

    # -------------------------------------------------------- feedback

    def feedback(self, request_id: str, document_id: str, label: str, by: str) -> Feedback:
        """Takes the true label of a prediction; a second one for the same prediction replaces the first."""
        if not request_id:
            raise InvalidInput("name the prediction: the request_id its answer carried")
        if not label or len(label) > MAX_LABEL_CHARS:
            raise InvalidInput(f"give the true label (1 to {MAX_LABEL_CHARS} characters)")
        with self.db.transaction() as conn:
            found = conn.execute(
                "SELECT predictions.experiment, predictions.arm, predictions.label, experiments.allocation FROM predictions "
                "JOIN experiments ON experiments.name = predictions.experiment WHERE request_id = ? AND document_id = ?",
                (request_id, document_id),
            ).fetchone()
            if found is None:
                raise NotFound(self._no_prediction(conn, request_id, document_id))
            experiment, arm, predicted, allocation = found
            conn.execute(
                "UPDATE predictions SET true_label = ?, feedback_at = ? WHERE request_id = ? AND document_id = ?",
                (label, self.clock(), request_id, document_id),
            )
        return Feedback(experiment, arm, predicted == label, allocation)

    @staticmethod
    def _no_prediction(conn: sqlite3.Connection, request_id: str, document_id: str) -> str:
        documents = [
            d for (d,) in conn.execute("SELECT document_id FROM predictions WHERE request_id = ? ORDER BY document_id", (request_id,))
        ]
        if documents:
            return (
                f"request {quote(request_id)} has no document {quote(document_id)}: "
                f"its documents are {quote_list(documents)} (the ids the request gave them)"
            )
        return (
            f"no prediction an experiment served has request id {quote(request_id)}: feedback is taken for answers that name an "
            "experiment and an arm, about a second after they were given (a stream's answers have ids of their own: <stream id>/<index>)"
        )

    def rebalance(self, name: str) -> bool:
        """Moves a running Thompson experiment's weights to what its feedback says now;
        False when they stay as they are. The feedback is counted in a snapshot, outside the
        writer lock, so records and assignments do not wait for the count."""
        with self.db.read() as conn:
            row = conn.execute("SELECT allocation FROM experiments WHERE name = ? AND ended IS NULL", (name,)).fetchone()
            if row is None or row[0] != THOMPSON:
                return False
            outcomes = {arm: (0, 0) for arm in self._weights(conn, name)}
            for arm, correct, wrong in conn.execute(
                "SELECT arm, SUM(true_label = label), SUM(true_label != label) FROM predictions "
                "WHERE experiment = ? AND true_label IS NOT NULL GROUP BY arm",
                (name,),
            ):
                outcomes[arm] = (correct, wrong)
        total = sum(correct + wrong for correct, wrong in outcomes.values())
        if not total:
            return False  # until the first feedback, the weights it was created with
        seed = int.from_bytes(hashlib.sha256(f"{name}\0{total}".encode()).digest()[:8], "big")
        weights = dict(zip(outcomes, thompson_weights(list(outcomes.values()), seed)))
        with self.db.transaction() as conn:
            try:
                model, _ = self._running(conn, name)
            except FailedPrecondition:
                return False  # ended meanwhile
            if weights == self._weights(conn, name):
                return False
            feedback = {arm: {"correct": correct, "wrong": wrong} for arm, (correct, wrong) in outcomes.items()}
            self._move_weights(conn, model, name, weights, THOMPSON_BY, {"weights": weights, "feedback": feedback})
        return True

    # -------------------------------------------------------- shared steps

    @staticmethod
    def _running(conn: sqlite3.Connection, name: str) -> tuple[str, str]:
        row = conn.execute("SELECT model, allocation, ended FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise _unknown(conn, name)
        if row[2] is not None:
            raise FailedPrecondition(f"experiment {name!r} has ended: it routes no traffic and its weights are final")
        return row[0], row[1]

    @staticmethod
    def _weights(conn: sqlite3.Connection, name: str) -> dict[str, float]:
        return dict(conn.execute("SELECT name, weight FROM arms WHERE experiment = ? ORDER BY position", (name,)).fetchall())

    def _move_weights(
        self, conn: sqlite3.Connection, model: str, name: str, weights: Mapping[str, float], by: str, detail: dict[str, Any]
    ) -> None:
        conn.executemany("UPDATE arms SET weight = ? WHERE experiment = ? AND name = ?", [(w, name, arm) for arm, w in weights.items()])
        conn.execute("UPDATE experiments SET revision = revision + 1 WHERE name = ?", (name,))
        self._event(conn, name, self.clock(), by, "weights", detail)
        self.registry.write_routing(conn, model)

    @staticmethod
    def _event(conn: sqlite3.Connection, name: str, at: float, by: str, kind: str, detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO experiment_events (experiment, sequence, at, by, kind, detail) "
            "SELECT ?, COALESCE(MAX(sequence), 0) + 1, ?, ?, ?, ? FROM experiment_events WHERE experiment = ?",
            (name, at, by, kind, json.dumps(detail, ensure_ascii=False, sort_keys=True), name),
        )
