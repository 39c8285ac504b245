"""How a process follows the live configuration: the view read only when its file changed
(a broken one keeps the last), a service's log level (its own over everyone's) and the batch
limit applied at once, the gateway's fields replaced, and the wait for the mesh to confirm."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fenlei.errors import LimitExceeded
from fenlei.gateway.config import GatewaySettings
from fenlei.runtime import live
from fenlei.runtime.limits import check_batch_size
from fenlei.runtime.settings import ServiceSettings


@pytest.fixture(autouse=True)
def clean_process_state():
    root = logging.getLogger()
    level = root.level
    yield
    live.apply("segmenter", ServiceSettings(), live.View())
    root.setLevel(level)


def test_the_view_is_read_when_it_changed_and_a_broken_one_keeps_the_last(tmp_path: Path) -> None:
    follower = live.Follower(tmp_path)
    assert follower.changed() is None  # none yet: nothing changes
    live.write_view(live.view_path(tmp_path), live.View(1, {"log_level": "DEBUG"}))
    assert follower.changed() == live.View(1, {"log_level": "DEBUG"})
    assert follower.changed() is None
    live.view_path(tmp_path).write_text('{"sequence": 2, "settings": {"log_')  # half a file
    assert follower.changed() is None
    live.write_view(live.view_path(tmp_path), live.View(3, {}, [{"id": 1, "subject": "m", "address": ""}]))
    assert follower.changed().deny_rules == [{"id": 1, "subject": "m", "address": ""}]


def test_a_service_takes_its_own_log_level_over_everyones_and_returns_to_its_setting() -> None:
    root = logging.getLogger()
    settings = ServiceSettings(log_level="INFO")
    levels = {"log_level": "ERROR", "log_level.segmenter": "DEBUG"}
    live.apply("segmenter", settings, live.View(1, levels))
    assert root.level == logging.DEBUG
    live.apply("segmenter", settings, live.View(2, {"log_level": "ERROR"}))
    assert root.level == logging.ERROR
    live.apply("segmenter", settings, live.View(3, {}))
    assert root.level == logging.INFO
    assert live.View(4, levels).log_level("pipeline") == "ERROR"


def test_the_batch_limit_changes_at_once() -> None:
    settings = ServiceSettings(max_batch_documents=10)
    check_batch_size(10, settings)
    live.apply("segmenter", settings, live.View(1, {"max_batch_documents": "3"}))
    with pytest.raises(LimitExceeded, match="batch of 4 documents is over the limit of 3"):
        check_batch_size(4, settings)
    live.apply("segmenter", settings, live.View(2, {}))
    check_batch_size(10, settings)


def test_the_gateway_takes_the_live_values_of_its_fields() -> None:
    settings = GatewaySettings(rate_limit_per_second=500, rate_limit_burst=1000)
    changed = live.View(1, {"gateway.rate_limit_burst": "5", "log_level": "DEBUG"}).gateway(settings)
    assert (changed.rate_limit_per_second, changed.rate_limit_burst) == (500, 5)


def test_a_change_waits_for_the_mesh_to_confirm_it(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        nobody = await live.applied(tmp_path, 1, timeout=5)  # no local mesh follows this home
        live.write_applied(tmp_path, 1)
        later = asyncio.get_running_loop().call_later(0.2, live.write_applied, tmp_path, 2)
        confirmed = await live.applied(tmp_path, 2, timeout=5)
        later.cancel()
        not_yet = await live.applied(tmp_path, 3, timeout=0.2)
        return nobody, confirmed, not_yet

    assert asyncio.run(scenario()) == (False, True, False)
