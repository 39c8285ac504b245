"""fenlei.local.top on scrapes of its own: what counts as a request and as an error, the
quantiles of a histogram's buckets (as PromQL's histogram_quantile), rows per service."""

from __future__ import annotations

import math

import pytest

from fenlei.local import top

SCRAPE = """\
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify"}} {classify}
grpc_server_msg_received_total{{grpc_type="bidi_stream",grpc_service="fenlei.v1.Pipeline",grpc_method="ClassifyStream"}} {batches}
grpc_server_msg_received_total{{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check"}} 1000
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify",grpc_code="OK"}} {classify}
grpc_server_handled_total{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify",grpc_code="NOT_FOUND"}} {failed}
grpc_server_handled_total{{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="NOT_FOUND"}} 7
# TYPE grpc_server_handling_seconds histogram
grpc_server_handling_seconds_bucket{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify",le="0.001"}} {fast}
grpc_server_handling_seconds_bucket{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify",le="0.01"}} {classify}
grpc_server_handling_seconds_bucket{{grpc_type="unary",grpc_service="fenlei.v1.Pipeline",grpc_method="Classify",le="+Inf"}} {classify}
grpc_server_handling_seconds_bucket{{grpc_type="bidi_stream",grpc_service="fenlei.v1.Pipeline",grpc_method="ClassifyStream",le="0.001"}} 0
grpc_server_handling_seconds_bucket{{grpc_type="bidi_stream",grpc_service="fenlei.v1.Pipeline",grpc_method="ClassifyStream",le="+Inf"}} 50
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total {cpu}
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {rss}
"""


def scraped(at: float, classify: int, batches: int, failed: int, fast: int, cpu: float, rss: int) -> top.Sample:
    text = SCRAPE.format(classify=classify, batches=batches, failed=failed, fast=fast, cpu=cpu, rss=rss)
    return top.parse(text, at)


def test_a_scrape_counts_requests_errors_and_unary_durations_without_health() -> None:
    sample = scraped(10.0, classify=100, batches=20, failed=3, fast=60, cpu=1.5, rss=2**27)
    assert sample.requests == 120  # unary calls and stream messages; not the 1,000 health checks
    assert sample.errors == 3  # not the health check's NOT_FOUND
    assert sample.buckets == {0.001: 60, 0.01: 100, math.inf: 100}  # the stream's histogram is not a request's
    assert (sample.cpu_seconds, sample.resident_bytes) == (1.5, 2**27)


def test_quantiles_interpolate_within_their_bucket_as_promql_does() -> None:
    buckets = {0.001: 60.0, 0.01: 100.0, math.inf: 100.0}
    assert top.quantile(0.5, buckets) == pytest.approx(0.001 * 50 / 60)
    assert top.quantile(0.99, buckets) == pytest.approx(0.001 + 0.009 * 39 / 40)
    assert top.quantile(0.99, {0.001: 1.0, math.inf: 10.0}) == 0.001  # beyond the last finite bound
    assert top.quantile(0.5, {0.001: 0.0, math.inf: 0.0}) is None  # no calls


def test_rows_sum_a_services_instances_over_the_interval() -> None:
    before = {
        "pipeline": scraped(10.0, classify=100, batches=0, failed=0, fast=100, cpu=1.0, rss=2**20),
        "pipeline-v2": scraped(10.0, classify=0, batches=0, failed=0, fast=0, cpu=0.0, rss=2**20),
        "gone": scraped(10.0, classify=0, batches=0, failed=0, fast=0, cpu=0.0, rss=2**20),
    }
    after = {
        "pipeline": scraped(12.0, classify=300, batches=0, failed=10, fast=200, cpu=2.0, rss=2**21),
        "pipeline-v2": scraped(12.0, classify=100, batches=0, failed=0, fast=100, cpu=0.5, rss=2**21),
        "new": scraped(12.0, classify=5, batches=0, failed=0, fast=5, cpu=0.0, rss=2**20),  # scraped once: not yet
    }
    (row,) = top.rows(before, after, {"pipeline": "pipeline", "pipeline-v2": "pipeline", "new": "classifier"})
    assert (row.service, row.instances) == ("pipeline", 2)
    assert row.requests_per_second == 150 and row.errors_per_second == 5 and row.error_percent == pytest.approx(100 * 5 / 150)
    assert row.p50_seconds == pytest.approx(0.001 * 150 / 200)  # 200 of the 300 calls took 1 ms at most
    assert row.cpu_percent == pytest.approx(75.0) and row.resident_bytes == 2**22
    assert "pipeline" in top.render([row]).splitlines()[1]
