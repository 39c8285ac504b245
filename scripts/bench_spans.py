"""What the telemetry service's ListSlowTraces and GetTrace cost on a big spans file, cold
(the first question: the file indexed) and warm (asked again, as the console does every 2 s).

    .venv/bin/python scripts/bench_spans.py [--megabytes 50] [--json FILE]

Writes a spans file of Classify traces through a mesh with sidecars (the gateway's, the
pipeline sidecar's, the pipeline's and a batch span in each stage, exported as the collector
receives them: the services' spans before Envoy's) under a temporary home, then times, with
the service's own code (fenlei.telemetry.status.MeshWatch): a fresh read of the file (what
every question cost before the index), the cold question, the warm one with nothing written,
and the warm one after one more export (medians). Also the memory the index holds (tracemalloc).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fenlei import services
from fenlei.gateway.config import public_methods
from fenlei.telemetry import spans
from fenlei.telemetry.status import MeshWatch

CLASSIFY = "/fenlei.v1.Pipeline/Classify"
TRACES_PER_EXPORT = 8
WARM_REPEATS = 20
T = TypeVar("T")


def envoy_attributes(node: str, upstream: str, ids: random.Random) -> dict[str, str]:
    """What an Envoy span of a gRPC call carries."""
    return {
        "node_id": node,
        "zone": "",
        "guid:x-request-id": str(uuid.UUID(int=ids.getrandbits(128))),
        "http.url": f"http://127.0.0.1:8080{CLASSIFY}",
        "http.method": "POST",
        "downstream_cluster": "-",
        "user_agent": "grpc-python/1.85.1 grpc-c/52.0.0 (linux; chttp2)",
        "http.protocol": "HTTP/2",
        "peer.address": "127.0.0.1",
        "request_size": "48",
        "response_size": "96",
        "component": "proxy",
        "upstream_cluster": upstream,
        "upstream_cluster.name": upstream,
        "http.status_code": "200",
        "grpc.status_code": "0",
        "response_flags": "-",
        "grpc.path": CLASSIFY,
    }


def line(trace: str, span_id: str, parent: str, service: str, name: str, begin: int, end: int, **attributes: Any) -> str:
    return spans.Span(trace, span_id, parent, service, name, "server", begin, end, "ok", "", attributes).to_json()


def export(ids: random.Random, at_ns: int) -> list[str]:
    """The lines of one export's traces: the services' spans, then Envoy's."""
    apps, proxies = [], []
    for _ in range(TRACES_PER_EXPORT):
        trace, gateway, sidecar, pipeline = f"{ids.getrandbits(128):032x}", *(f"{ids.getrandbits(64):016x}" for _ in range(3))
        total = int(ids.lognormvariate(15.5, 0.6))  # about 5 ms, a tail to 30
        start = at_ns + ids.randrange(10**9)

        span = functools.partial(line, trace)
        proxies += [
            span(gateway, "", "gateway", "ingress", start, start + total, **envoy_attributes("gateway", "pipeline", ids)),
            span(sidecar, gateway, "pipeline-sidecar", "ingress", start + 200_000, start + total - 200_000,
                 **envoy_attributes("pipeline-v1-0", "inbound|pipeline", ids)),
        ]  # fmt: skip
        inner = start + 400_000
        apps.append(
            span(pipeline, sidecar, "pipeline", CLASSIFY, inner, start + total - 400_000,
                 **{"rpc.system": "grpc", "fenlei.model": "reviews", "fenlei.version": "v3", "fenlei.documents": 1, "fenlei.characters": 14})
        )  # fmt: skip
        step = (total - 800_000) // len(services.STAGES)
        for number, stage in enumerate(services.STAGES):
            begin = inner + number * step
            apps.append(
                span(f"{ids.getrandbits(64):016x}", pipeline, stage.name, f"{stage.stream} batch", begin, begin + step - 50_000,
                     **{"fenlei.documents": 1, "fenlei.characters": 14, "fenlei.tokens": 9})
            )  # fmt: skip
    return apps + proxies


def seconds(call: Callable[[], object], repeats: int = 1) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def traced_bytes(call: Callable[[], T]) -> tuple[int, int, T]:
    """The bytes what call() returns holds, the most it held at once meanwhile, and what it returned."""
    gc.collect()
    tracemalloc.start()
    kept = call()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held, peak, kept


def write(path: Path, ids: random.Random, at_ns: int) -> tuple[int, int]:
    """Appends one export; the time of the next and the spans written."""
    written = export(ids, at_ns)
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(line + "\n" for line in written))
    return at_ns + 10**9, len(written)


def measure(home: Path, megabytes: float) -> dict[str, float]:
    streaming = {m.path for m in public_methods() if m.streaming}
    path = spans.directory(home) / spans.FILE_NAME
    path.parent.mkdir()
    ids, at_ns, lines = random.Random(1), 1_764_590_000 * 10**9, 0
    while not path.exists() or path.stat().st_size < megabytes * 1e6:
        at_ns, written = write(path, ids, at_ns)
        lines += written
    asked = spans.read(home)[-1].trace_id

    def fresh_read() -> object:
        kept = spans.read(home)
        return spans.slowest(kept, 20, streaming), {span.trace_id for span in kept if span.status == "error"}

    def new_watch() -> MeshWatch:
        watch = MeshWatch(home)
        watch.slowest(20, False, streaming)
        return watch

    figures = {"file_megabytes": path.stat().st_size / 1e6, "spans": lines}
    figures["list_slow_traces_fresh_read_ms"] = 1000 * seconds(fresh_read)
    figures["get_trace_fresh_read_ms"] = 1000 * seconds(lambda: spans.one_trace(spans.read(home), asked))
    watch = MeshWatch(home)
    figures["list_slow_traces_cold_ms"] = 1000 * seconds(lambda: watch.slowest(20, False, streaming))
    figures["list_slow_traces_warm_ms"] = 1000 * seconds(lambda: watch.slowest(20, False, streaming), WARM_REPEATS)
    figures["get_trace_warm_ms"] = 1000 * seconds(lambda: watch.trace(asked), WARM_REPEATS)
    after_an_export = []
    for _ in range(WARM_REPEATS):
        at_ns, _ = write(path, ids, at_ns)
        after_an_export.append(seconds(lambda: watch.slowest(20, False, streaming)))
    figures["list_slow_traces_after_an_export_ms"] = 1000 * statistics.median(after_an_export)
    expected = [root.trace_id for root in spans.slowest(spans.read(home), 20, streaming)]
    assert [row["trace_id"] for row in watch.slowest(20, False, streaming)] == expected, "the index answers otherwise than a read"
    watch.kept.close()
    figures["fresh_read_peak_megabytes"] = traced_bytes(fresh_read)[1] / 1e6
    held, peak, watch = traced_bytes(new_watch)
    watch.kept.close()
    figures["index_build_peak_megabytes"], figures["index_held_megabytes"] = peak / 1e6, held / 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=50.0, help="the spans file's size")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fenlei-bench-spans-") as folder:
        f = measure(Path(folder), args.megabytes)
    cold, warm, tail = f["list_slow_traces_cold_ms"], f["list_slow_traces_warm_ms"], f["list_slow_traces_after_an_export_ms"]
    print(f"spans file: {f['file_megabytes']:.1f} MB, {f['spans']:,.0f} spans ({TRACES_PER_EXPORT} traces an export)")
    print(f"ListSlowTraces  fresh read (before)      {f['list_slow_traces_fresh_read_ms']:10.1f} ms")
    print(f"ListSlowTraces  cold (the index built)   {cold:10.1f} ms")
    print(f"ListSlowTraces  warm, nothing written    {warm:10.3f} ms   cold/warm {cold / warm:,.0f}x")
    print(f"ListSlowTraces  warm, an export appended {tail:10.3f} ms   cold/warm {cold / tail:,.0f}x")
    print(f"GetTrace        fresh read (before)      {f['get_trace_fresh_read_ms']:10.1f} ms")
    print(f"GetTrace        warm                     {f['get_trace_warm_ms']:10.3f} ms")
    print(
        f"memory: a fresh read peaks at {f['fresh_read_peak_megabytes']:.0f} MB; building the index at "
        f"{f['index_build_peak_megabytes']:.1f} MB, which then holds {f['index_held_megabytes']:.1f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(f, indent=1))


if __name__ == "__main__":
    main()
