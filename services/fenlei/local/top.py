"""`fenlei top`: each service's rate, errors and duration (the RED method) with its CPU and
memory, from two scrapes of every app's /metrics a moment apart: no Prometheus needed.

Requests are the messages a service's RPC methods received (a unary call is one; on the
stages' open streams, one batch is one); errors the calls that ended with another code
than OK. Durations are of unary calls (an open stream's only ends with the stream).
Health checks and reflection are left out.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from fenlei.local.state import ProcessRecord

NOT_COUNTED = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")


@dataclass
class Sample:
    """One scrape of one process."""

    at: float
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # unary calls' durations: upper bound → calls at most that long
    cpu_seconds: float = 0.0
    resident_bytes: float = 0.0


def parse(text: str, at: float) -> Sample:
    sample = Sample(at)
    for family in text_string_to_metric_families(text):
        for name, labels, value, *_ in family.samples:
            if labels.get("grpc_service") in NOT_COUNTED:
                continue
            if name == "grpc_server_msg_received_total":
                sample.requests += value
            elif name == "grpc_server_handled_total" and labels["grpc_code"] != "OK":
                sample.errors += value
            elif name == "grpc_server_handling_seconds_bucket" and labels["grpc_type"] == "unary":
                bound = float(labels["le"])
                sample.buckets[bound] = sample.buckets.get(bound, 0.0) + value
            elif name == "process_cpu_seconds_total":
                sample.cpu_seconds = value
            elif name == "process_resident_memory_bytes":
                sample.resident_bytes = value
    return sample


def scrape(processes: Iterable[ProcessRecord]) -> dict[str, Sample]:
    """Every app that answers, by record name (one that is down or restarting is left out)."""
    samples = {}
    for record in processes:
        if record.kind != "app" or not record.metrics:
            continue
        try:
            with urllib.request.urlopen(f"http://{record.metrics}/metrics", timeout=2) as answer:
                samples[record.name] = parse(answer.read().decode(), time.monotonic())
        except (urllib.error.URLError, OSError):
            continue
    return samples


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """As PromQL's histogram_quantile: linear within the bucket the q-th call falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            break
        lower, below = bound, count
    if math.isinf(bound):
        return lower  # past the largest finite bound: that bound is all one can say
    return lower + (bound - lower) * (rank - below) / (count - below)


@dataclass
class Row:
    service: str
    instances: int
    requests_per_second: float
    errors_per_second: float
    p50_seconds: float | None
    p99_seconds: float | None
    cpu_percent: float  # of one core
    resident_bytes: float

    @property
    def error_percent(self) -> float:
        return 100 * self.errors_per_second / self.requests_per_second if self.requests_per_second else 0.0


def rows(before: Mapping[str, Sample], after: Mapping[str, Sample], service_of: Mapping[str, str]) -> list[Row]:
    """One row per service, its instances summed; an instance counts once scraped twice."""
    grouped: dict[str, list[str]] = {}
    for name in after:
        if name in before:
            grouped.setdefault(service_of[name], []).append(name)
    table = []
    for service, names in grouped.items():
        seconds = max(after[n].at - before[n].at for n in names)
        buckets: dict[float, float] = {}
        for n in names:
            for bound, count in after[n].buckets.items():
                buckets[bound] = buckets.get(bound, 0.0) + count - before[n].buckets.get(bound, 0.0)
        table.append(
            Row(
                service,
                len(names),
                sum(after[n].requests - before[n].requests for n in names) / seconds,
                sum(after[n].errors - before[n].errors for n in names) / seconds,
                quantile(0.5, buckets),
                quantile(0.99, buckets),
                100 * sum(after[n].cpu_seconds - before[n].cpu_seconds for n in names) / seconds,
                sum(after[n].resident_bytes for n in names),
            )
        )
    return sorted(table, key=lambda row: row.service)


HEADER = f"{'SERVICE':<14}{'INST':>5}{'REQ/S':>10}{'ERR/S':>9}{'ERR%':>7}{'P50 MS':>9}{'P99 MS':>9}{'CPU%':>7}{'RSS MIB':>9}"


def render(table: Iterable[Row]) -> str:
    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{1000 * seconds:.2f}"

    lines = [HEADER]
    for row in table:
        lines.append(
            f"{row.service:<14}{row.instances:>5}{row.requests_per_second:>10.1f}{row.errors_per_second:>9.2f}{row.error_percent:>7.1f}"
            f"{ms(row.p50_seconds):>9}{ms(row.p99_seconds):>9}{row.cpu_percent:>7.1f}{row.resident_bytes / 2**20:>9.1f}"
        )
    return "\n".join(lines)
