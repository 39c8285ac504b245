"""The model registry behind the session mesh's gateway: each method needs the role issue 9
names (viewer reads and sends feedback; trainer registers and tags; admin moves aliases,
deletes, runs experiments and restores), refused by the gateway before the registry sees
the call; and the registry records who called from the token, never from what a client
claims in x-fenlei-subject."""

from __future__ import annotations

import pytest

from fenlei.runtime.rpc import SUBJECT_HEADER

REFUSED = {"code": 7, "message": "RBAC: access denied"}  # the gateway's answer (403) to a role too low
DENIED = "denied"


@pytest.mark.parametrize(
    "role, method, path, body, expected",
    [
        ("viewer", "GET", "/v1/models", None, ""),
        ("viewer", "POST", "/v1/feedback", {"requestId": "h4-none", "label": "x"}, "h4-none"),
        ("viewer", "PUT", "/v1/models/{model}/aliases/h4-roles", {"version": "v1"}, DENIED),
        ("viewer", "POST", "/v1/models/{model}/versions", {"draft": "draft-none"}, DENIED),
        ("trainer", "POST", "/v1/models/{model}/versions", {"draft": "draft-none"}, "draft-none"),
        ("trainer", "POST", "/v1/models/{model}/versions/v999:tag", {"set": {"k": "v"}}, "v999"),
        ("trainer", "DELETE", "/v1/models/{model}/versions/v999", None, DENIED),
        ("trainer", "PUT", "/v1/models/{model}/aliases/h4-roles", {"version": "v1"}, DENIED),
        ("trainer", "POST", "/v1/experiments", {"name": "h4-roles", "model": "{model}"}, DENIED),
        ("trainer", "POST", "/v1/registry:import", [{"chunk": ""}], DENIED),
        ("admin", "DELETE", "/v1/models/{model}/versions/v999", None, "v999"),
        ("admin", "DELETE", "/v1/models/{model}/aliases/h4-none", None, "h4-none"),
        ("admin", "POST", "/v1/experiments/h4-none:end", {}, "h4-none"),
    ],
)
def test_each_registry_method_needs_its_role(gateway, tools, role, method, path, body, expected) -> None:
    """Every call names nothing that exists (v999, draft-none, h4-none), so nothing in the
    session's registry changes: a call the gateway lets through gets the registry's own
    answer, an error naming what does not exist ("" : a success)."""
    if isinstance(body, dict):
        body = {k: v.format(model=tools.MODEL) if isinstance(v, str) else v for k, v in body.items()}
    answer = gateway.rest(path.format(model=tools.MODEL), body, token=role, method=method)
    if expected == DENIED:
        assert (answer.status, answer.status_body()) == (403, REFUSED)
    elif expected:
        assert answer.status in (400, 404, 412), (answer.status, answer.body[:300])
        assert expected in answer.status_body()["message"], answer.body[:300]
    else:
        assert answer.status == 200, answer.body[:300]


def test_the_registry_records_the_tokens_subject_not_a_claimed_one(gateway, tools) -> None:
    model = tools.MODEL
    token = gateway.authority.mint("admin", ttl_seconds=600, subject="alice")
    path = f"/v1/models/{model}/aliases/h4-identity"
    moved = gateway.rest(path, {"version": "v1", "reason": "who moved it"}, token=token, method="PUT", headers={SUBJECT_HEADER: "root"})
    assert moved.status == 200, moved.body
    try:
        assert moved.json()["move"]["movedBy"] == "alice"
        history = gateway.rest(f"/v1/models/{model}/history?alias=h4-identity", token="viewer", method="GET")
        assert [m["movedBy"] for m in history.json()["moves"]][-1] == "alice"
    finally:
        removed = gateway.rest(path, token=token, method="DELETE")
        assert removed.status == 200, removed.body
