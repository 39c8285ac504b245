"""Datasets and jobs behind the session mesh's gateway: each method needs the role issue 10
names (viewer reads datasets, jobs, their progress and reports; trainer uploads, reads a
dataset's records and runs and cancels jobs; admin deletes), refused by the gateway before
the service sees the call. Through the session mesh's gateway and through the one of the
mesh with sidecars, where every call also passes the AuthorizationPolicies (the gateway's
to Datasets and Jobs, the jobs service's to the datasets)."""

from __future__ import annotations

import base64

import pytest

REFUSED = {"code": 7, "message": "RBAC: access denied"}  # the gateway's answer (403) to a role too low
DENIED = "denied"
NO_DATASET = "ds-0000000000000000"  # well formed, stored nowhere
NO_JOB = "job-999999"

pytestmark = pytest.mark.xdist_group("sidecar_mesh")  # one worker runs the users of the mesh with sidecars


@pytest.mark.parametrize(
    "role, method, path, body, expected",
    [
        ("viewer", "GET", "/v1/datasets", None, ""),
        ("viewer", "GET", f"/v1/datasets/{NO_DATASET}", None, NO_DATASET),
        ("viewer", "GET", "/v1/jobs", None, ""),
        ("viewer", "GET", f"/v1/jobs/{NO_JOB}", None, NO_JOB),
        ("viewer", "GET", f"/v1/jobs/{NO_JOB}:watch", None, NO_JOB),
        ("viewer", "GET", f"/v1/jobs/{NO_JOB}/report", None, NO_JOB),
        ("viewer", "POST", "/v1/datasets", [{"name": "h4-roles", "chunk": ""}], DENIED),
        ("viewer", "GET", f"/v1/datasets/{NO_DATASET}:read", None, DENIED),
        ("viewer", "POST", "/v1/jobs", {"model": "h4-roles", "dataset": NO_DATASET}, DENIED),
        ("viewer", "POST", f"/v1/jobs/{NO_JOB}:cancel", {}, DENIED),
        # the jobs service asks the datasets service (with sidecars: as jobs, through its sidecar) and passes NOT_FOUND on
        ("trainer", "POST", "/v1/jobs", {"model": "h4-roles", "dataset": NO_DATASET}, NO_DATASET),
        ("trainer", "POST", f"/v1/jobs/{NO_JOB}:cancel", {}, NO_JOB),
        ("trainer", "GET", f"/v1/datasets/{NO_DATASET}:read", None, NO_DATASET),
        ("trainer", "DELETE", f"/v1/datasets/{NO_DATASET}", None, DENIED),
        ("admin", "DELETE", f"/v1/datasets/{NO_DATASET}", None, NO_DATASET),
    ],
)
@pytest.mark.parametrize("front", ["gateway", "sidecar_gateway"])
def test_each_datasets_and_jobs_method_needs_its_role(request, front, role, method, path, body, expected) -> None:
    """Every call names nothing that exists, so nothing in the session's mesh changes: a
    call the gateway lets through gets the service's own answer, an error naming what does
    not exist ("": a success)."""
    answer = request.getfixturevalue(front).rest(path, body, token=role, method=method)
    if expected == DENIED:
        assert (answer.status, answer.status_body()) == (403, REFUSED)
    elif expected:
        assert answer.status in (400, 404), (answer.status, answer.body[:300])
        assert expected in answer.status_body()["message"], answer.body[:300]
    else:
        assert answer.status == 200, answer.body[:300]


@pytest.mark.parametrize("front", ["gateway", "sidecar_gateway"])
def test_a_trainer_may_upload_and_the_upload_is_validated(request, front) -> None:
    """Through the gateway, as REST: the upload reaches the datasets service, which refuses
    a corpus of one class and stores nothing."""
    gateway = request.getfixturevalue(front)
    before = gateway.rest("/v1/datasets", token="viewer", method="GET").json()["datasets"]

    lines = "".join(f"好评第{i}条\tpositive\n" for i in range(4)).encode("utf-8")
    answer = gateway.rest(
        "/v1/datasets", [{"name": "h4-one-class", "fileName": "one.tsv", "chunk": base64.b64encode(lines).decode()}], token="trainer"
    )
    assert answer.status == 400, (answer.status, answer.body[:300])
    assert answer.status_body()["code"] == 3 and "one label only" in answer.status_body()["message"], answer.body[:300]
    assert gateway.rest("/v1/datasets", token="viewer", method="GET").json()["datasets"] == before
