"""The live configuration's core: settings checked and kept in canonical form, unset with an
empty value, every change in the history with who, before, after and why; deny rules by
subject or by network (canonical, no duplicates); the view the mesh follows, rewritten after
each commit and made again from the database when the service starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fenlei.config.core import KEYS, LiveConfig
from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.runtime import live

SCENARIOS = {"fault-abort-classifier", "virtual-service-pipeline-90-10"}


class KnownScenarios:
    def names(self) -> list[str]:
        return sorted(SCENARIOS)

    def check(self, names: list[str]) -> None:
        for name in names:
            if name not in SCENARIOS:
                raise NotFound(f"no mesh scenario {name!r}")


@pytest.fixture
def config(tmp_path: Path) -> LiveConfig:
    opened = LiveConfig(tmp_path, KnownScenarios())
    yield opened
    opened.close()


def view(home: Path) -> dict:
    return json.loads(live.view_path(home).read_text())


def test_a_setting_is_kept_in_canonical_form_and_every_change_is_in_the_history(config, tmp_path) -> None:
    first = config.set("log_level.segmenter", "debug", "alice", "chasing a slow request")
    second = config.set("max_batch_documents", "1_024", "bob")
    third = config.set("log_level.segmenter", "", "alice", "done")

    assert (first["before"], first["after"], first["who"], first["reason"]) == ("", "DEBUG", "alice", "chasing a slow request")
    assert (second["before"], second["after"]) == ("", "1024")
    assert (third["before"], third["after"]) == ("DEBUG", "")
    values = {entry["key"]: entry["value"] for entry in config.settings()}
    assert values["log_level.segmenter"] == "" and values["max_batch_documents"] == "1024"
    assert [c["sequence"] for c in config.changes()] == [3, 2, 1]
    assert [c["key"] for c in config.changes(key="log_level")] == ["log_level.segmenter", "log_level.segmenter"]
    assert [c["sequence"] for c in config.changes(limit=1)] == [3]
    assert view(tmp_path) == {"sequence": 3, "settings": {"max_batch_documents": "1024"}, "deny_rules": []}


@pytest.mark.parametrize(
    ("key", "value", "error", "says"),
    [
        ("log_level", "LOUD", InvalidInput, "DEBUG, INFO, WARNING, ERROR"),
        ("max_batch_documents", "0", InvalidInput, "use 1 to 1,000,000"),
        ("gateway.rate_limit_per_second", "fast", InvalidInput, "not a whole number"),
        ("gateway.port", "80", NotFound, "gateway.rate_limit_burst"),
        ("mesh.scenarios", "fault-abort-classifier, chaos-monkey", NotFound, "chaos-monkey"),
    ],
)
def test_a_bad_setting_is_refused_with_what_to_send_and_changes_nothing(config, key, value, error, says) -> None:
    with pytest.raises(error, match=says):
        config.set(key, value, "alice")
    assert config.changes() == [] and all(entry["value"] == "" for entry in config.settings())


def test_scenarios_are_names_in_order(config) -> None:
    change = config.set("mesh.scenarios", " virtual-service-pipeline-90-10.yaml ,fault-abort-classifier", "alice")
    assert change["after"] == "virtual-service-pipeline-90-10,fault-abort-classifier"


def test_every_key_says_what_it_does_and_lists_its_choices_where_they_are_a_list(config) -> None:
    assert all(key.description for key in KEYS.values())
    choices = {entry["key"]: entry["choices"] for entry in config.settings()}
    assert choices["mesh.scenarios"] == sorted(SCENARIOS) and choices["log_level.segmenter"] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert choices["max_batch_documents"] == []
    assert {"log_level", "log_level.pipeline", "max_batch_documents", "gateway.rate_limit_burst", live.SCENARIOS} <= set(KEYS)


def test_deny_rules_by_subject_or_network_each_recorded(config, tmp_path) -> None:
    by_subject, added = config.add_deny_rule("admin", subject="mallory", reason="scraping")
    by_address, _ = config.add_deny_rule("admin", address="10.1.2.3/8")
    assert by_address["address"] == "10.0.0.0/8"
    assert added["key"] == f"deny.{by_subject['id']}" and added["after"] == "subject mallory" and added["reason"] == "scraping"
    assert view(tmp_path)["deny_rules"] == [
        {"id": by_subject["id"], "subject": "mallory", "address": ""},
        {"id": by_address["id"], "subject": "", "address": "10.0.0.0/8"},
    ]
    with pytest.raises(FailedPrecondition, match=f"deny rule {by_subject['id']} already blocks subject mallory"):
        config.add_deny_rule("admin", subject="mallory")

    removed = config.remove_deny_rule(by_subject["id"], "admin", "settled")
    assert (removed["before"], removed["after"], removed["reason"]) == ("subject mallory", "", "settled")
    assert [rule["id"] for rule in config.deny_rules()] == [by_address["id"]]
    with pytest.raises(NotFound, match=f"no deny rule {by_subject['id']}"):
        config.remove_deny_rule(by_subject["id"], "admin")


@pytest.mark.parametrize(
    ("caller", "says"),
    [
        ({}, "either a token subject or a client address"),
        ({"subject": "a", "address": "10.0.0.1"}, "either a token subject or a client address"),
        ({"address": "10.0.0.300"}, "no IP address or network"),
        ({"subject": "line\nbreak"}, "printable characters"),
        ({"subject": "x" * 300}, "256 printable characters at most"),
    ],
)
def test_a_bad_deny_rule_is_refused(config, caller, says) -> None:
    with pytest.raises(InvalidInput, match=says):
        config.add_deny_rule("admin", **caller)
    assert config.deny_rules() == [] and config.changes() == []


def test_the_view_is_made_again_from_the_database_when_the_service_starts(tmp_path) -> None:
    first = LiveConfig(tmp_path, KnownScenarios())
    first.set("gateway.rate_limit_burst", "20", "alice")
    first.add_deny_rule("alice", address="192.0.2.1")
    first.close()
    live.view_path(tmp_path).unlink()  # lost, or never written after the last commit

    again = LiveConfig(tmp_path, KnownScenarios())
    try:
        assert view(tmp_path)["settings"] == {"gateway.rate_limit_burst": "20"}
        assert view(tmp_path)["deny_rules"][0]["address"] == "192.0.2.1/32"
        assert again.sequence() == 2
    finally:
        again.close()
