"""The deny list in the gateway's configuration: on every route (routes reach open
connections at once), by client address before the token is read and by token subject once
it is checked; lifting a rule is never blocked by an address rule."""

from __future__ import annotations

import re
from typing import Any

from fenlei.gateway.config import DENY_ADDRESS, DENY_SUBJECT, LIFT_DENY, GatewaySettings, build, route_table

RULES = [{"id": 3, "subject": "mallory", "address": ""}, {"id": 4, "subject": "", "address": "10.0.0.0/8"}]


def denied(route: dict[str, Any], name: str) -> dict[str, Any]:
    config = route.get("typed_per_filter_config", {}).get(name)
    return config["rbac"]["rules"]["policies"] if config else {}


def test_every_route_carries_the_rules_each_where_it_can_see_what_it_names() -> None:
    routes = route_table(GatewaySettings(), deny=RULES)["virtual_hosts"][0]["routes"]
    lifting = [r for r in routes if r["match"].get("path") == LIFT_DENY or r["name"] == "lift-deny-rest"]
    assert len(lifting) == 2
    for route in routes:
        by_subject = denied(route, DENY_SUBJECT)
        assert list(by_subject) == ["deny-3"], route["name"]
        principal = by_subject["deny-3"]["principals"][0]["sourced_metadata"]["metadata_matcher"]
        assert principal["path"] == [{"key": "jwt_payload"}, {"key": "sub"}] and principal["value"]["string_match"] == {"exact": "mallory"}
        by_address = denied(route, DENY_ADDRESS)
        if route in lifting:
            assert by_address == {}, route["name"]  # an admin on a blocked address can still lift the rule
        else:
            assert by_address["deny-4"]["principals"] == [{"remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}], route["name"]
        assert route["typed_per_filter_config"][DENY_SUBJECT]["rbac"]["rules"]["action"] == "DENY"


def test_without_rules_no_route_denies() -> None:
    routes = route_table(GatewaySettings())["virtual_hosts"][0]["routes"]
    assert not any(denied(route, DENY_SUBJECT) or denied(route, DENY_ADDRESS) for route in routes)


def test_the_lifting_rest_route_matches_only_the_rest_call_that_lifts() -> None:
    routes = route_table(GatewaySettings(), deny=RULES)["virtual_hosts"][0]["routes"]
    match = next(r for r in routes if r["name"] == "lift-deny-rest")["match"]
    assert match["headers"] == [{"name": ":method", "string_match": {"exact": "DELETE"}}]
    pattern = re.compile(match["safe_regex"]["regex"])
    assert pattern.match("/v1/config/deny/7") and not pattern.match("/v1/config/deny/7/x") and not pattern.match("/v1/config")


def test_addresses_are_denied_before_the_token_is_read_and_subjects_once_it_is_checked() -> None:
    bootstrap = build(GatewaySettings(), {"pipeline": "127.0.0.1:1"}, "{}")
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]
    jwt = names.index("envoy.filters.http.jwt_authn")
    assert names.index(DENY_ADDRESS) < jwt < names.index(DENY_SUBJECT) < names.index("envoy.filters.http.grpc_json_transcoder")
    reply = next(m for m in manager["local_reply_config"]["mappers"] if "deny list" in str(m.get("body_format_override", "")))
    assert "rbac_access_denied_matched_policy[deny-" in str(reply["filter"])
