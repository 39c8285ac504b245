"""The gateway's route tables, with and without the mesh policy: every route has filter
settings of its own (a dict shared between routes and changed for one changed them all:
"buffer off" for the streams reached every unary route of the mesh's gateway); the
registry's methods need the roles issue 9 names, the datasets' and jobs' those of issue
10; the caller's subject is the token's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fenlei import services
from fenlei.gateway.auth import ROLES
from fenlei.gateway.config import GatewaySettings, build, public_methods, route_table
from fenlei.runtime.rpc import SUBJECT_HEADER
from fenlei.sidecar.control import ControlPlane
from fenlei.sidecar.xds import policy_routes

BUFFER, BODY_LIMIT, RATE_LIMIT = "envoy.filters.http.buffer", "envoy.filters.http.body_size_limit", "envoy.filters.http.local_ratelimit"


@pytest.fixture(params=["without-policy", "with-policy"])
def table(request, tmp_path: Path) -> dict[str, Any]:
    policy = ControlPlane(tmp_path).policy() if request.param == "with-policy" else None  # the mesh's defaults, from mesh/istio
    return route_table(GatewaySettings(), policy)


def routes(table: dict[str, Any]) -> list[dict[str, Any]]:
    return table["virtual_hosts"][0]["routes"]


def shared_objects(value: Any, where: str = "", seen: dict[int, str] | None = None) -> Iterator[tuple[str, str]]:
    """Places in `value` that hold a dict or list already held elsewhere in it."""
    seen = {} if seen is None else seen
    if not isinstance(value, (dict, list)):
        return
    if id(value) in seen:
        yield seen[id(value)], where
        return
    seen[id(value)] = where
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        yield from shared_objects(item, f"{where}/{key}", seen)


def test_no_two_places_in_a_route_table_share_an_object(table) -> None:
    assert list(shared_objects(table)) == []


def test_policy_routes_share_no_object(tmp_path) -> None:
    policy = ControlPlane(tmp_path).policy()
    methods = [m for m in public_methods() if m.service == "pipeline"]
    assert list(shared_objects(policy_routes(policy, "pipeline", paths=[(m.path, m.streaming) for m in methods]))) == []


def test_only_streams_pass_unbuffered_and_every_route_limits_per_caller(table) -> None:
    streaming = {m.path: m.streaming for m in public_methods()}
    checked = 0
    for route in routes(table):
        path = route["match"].get("path")
        if path not in streaming:
            continue
        filters = route["typed_per_filter_config"]
        off = {name for name in (BUFFER, BODY_LIMIT) if filters.get(name, {}).get("disabled")}
        assert off == ({BUFFER, BODY_LIMIT} if streaming[path] else set()), (route["name"], off)
        limit = filters[RATE_LIMIT]
        assert [d["entries"][0]["key"] for d in limit["descriptors"]] == ["subject", "subject"], route["name"]
        checked += 1
    assert checked >= len(streaming)


# Issue 9, point 7, written out: the least role each registry method needs. viewer reads and
# sends feedback; trainer registers and tags; admin moves aliases, deletes, runs experiments
# and restores.
REGISTRY_ROLES = {
    "/fenlei.v1.ModelRegistry/GetVersion": "viewer",
    "/fenlei.v1.ModelRegistry/ListModels": "viewer",
    "/fenlei.v1.ModelRegistry/SearchVersions": "viewer",
    "/fenlei.v1.ModelRegistry/GetHistory": "viewer",
    "/fenlei.v1.Experiments/GetExperiment": "viewer",
    "/fenlei.v1.Experiments/ListExperiments": "viewer",
    "/fenlei.v1.Experiments/SendFeedback": "viewer",
    "/fenlei.v1.ModelRegistry/RegisterVersion": "trainer",
    "/fenlei.v1.ModelRegistry/TagVersion": "trainer",
    "/fenlei.v1.ModelRegistry/SetAlias": "admin",
    "/fenlei.v1.ModelRegistry/RollbackAlias": "admin",
    "/fenlei.v1.ModelRegistry/DeleteAlias": "admin",
    "/fenlei.v1.ModelRegistry/DeleteVersion": "admin",
    "/fenlei.v1.ModelRegistry/ExportRegistry": "admin",
    "/fenlei.v1.ModelRegistry/ImportRegistry": "admin",
    "/fenlei.v1.Experiments/CreateExperiment": "admin",
    "/fenlei.v1.Experiments/SetWeights": "admin",
    "/fenlei.v1.Experiments/EndExperiment": "admin",
}


# Issue 10, point 6: viewer reads (datasets and jobs, their progress and reports); trainer
# uploads, reads a dataset's records (what a worker streams) and runs and cancels jobs;
# admin deletes.
TRAINING_ROLES = {
    "/fenlei.v1.Datasets/GetDataset": "viewer",
    "/fenlei.v1.Datasets/ListDatasets": "viewer",
    "/fenlei.v1.Jobs/GetJob": "viewer",
    "/fenlei.v1.Jobs/ListJobs": "viewer",
    "/fenlei.v1.Jobs/WatchJob": "viewer",
    "/fenlei.v1.Jobs/GetJobReport": "viewer",
    "/fenlei.v1.Datasets/UploadDataset": "trainer",
    "/fenlei.v1.Datasets/ReadDataset": "trainer",
    "/fenlei.v1.Jobs/CreateJob": "trainer",
    "/fenlei.v1.Jobs/CancelJob": "trainer",
    "/fenlei.v1.Datasets/DeleteDataset": "admin",
}


def _path_matches(rule: dict[str, Any], path: str) -> bool:
    """The permissions the gateway's RBAC uses: any, or_rules, not_rule, url_path exact/prefix."""
    if rule.get("any"):
        return True
    if "or_rules" in rule:
        return any(_path_matches(r, path) for r in rule["or_rules"]["rules"])
    if "not_rule" in rule:
        return not _path_matches(rule["not_rule"], path)
    matcher = rule["url_path"]["path"]
    return path == matcher["exact"] if "exact" in matcher else path.startswith(matcher["prefix"])


def _role_matches(principal: dict[str, Any], role: str | None) -> bool:
    """The principals it uses: any, or the token's role claim (jwt_authn's metadata)."""
    if principal.get("any"):
        return True
    return role is not None and principal["sourced_metadata"]["metadata_matcher"]["value"]["string_match"]["exact"] == role


def allowed(rbac: dict[str, Any], role: str | None, path: str) -> bool:
    """Whether the gateway's RBAC filter lets a caller with a token of `role` (None: no token) call `path`."""
    policies = rbac["rules"]["policies"].values()
    return any(
        any(_path_matches(p, path) for p in policy["permissions"]) and any(_role_matches(p, role) for p in policy["principals"])
        for policy in policies
    )


@pytest.mark.parametrize("anonymous", [False, True])
@pytest.mark.parametrize(
    ("workloads", "least_roles"), [(("registry",), REGISTRY_ROLES), (("datasets", "jobs"), TRAINING_ROLES)], ids=["issue-9", "issue-10"]
)
def test_the_gateway_gives_each_method_the_role_its_issue_names(anonymous, workloads, least_roles) -> None:
    [rbac] = [f["typed_config"] for f in http_filters(GatewaySettings(anonymous=anonymous)) if f["name"] == "envoy.filters.http.rbac"]
    assert {m.path for m in public_methods() if m.service in workloads} == set(least_roles)
    for path, least in least_roles.items():
        for role in ROLES:
            assert allowed(rbac, role, path) == (ROLES.index(role) >= ROLES.index(least)), (role, path)
        # Without a token: what a viewer may when the gateway lets anonymous callers in, else nothing.
        assert allowed(rbac, None, path) == (anonymous and least == "viewer"), path


def test_the_mesh_internal_services_are_not_behind_the_gateway(table) -> None:
    """ExperimentRouting (served predictions) and DatasetPins (what keeps a dataset from
    being deleted) are for their callers in the mesh only."""
    routed = {route["match"].get("path") for route in routes(table)}
    internal = {f"/{s.full_name}/{m.name}" for w in services.WORKLOADS for s in w.internal for m in s.methods}
    assert {"/fenlei.v1.ExperimentRouting/AssignArm", "/fenlei.v1.DatasetPins/SetPins"} <= internal
    assert not internal & routed


def test_a_claimed_subject_is_removed_before_the_token_sets_the_real_one() -> None:
    filters = http_filters(GatewaySettings())
    names = [f["name"] for f in filters]
    mutation, jwt_authn = (
        filters[names.index(n)]["typed_config"] for n in ("envoy.filters.http.header_mutation", "envoy.filters.http.jwt_authn")
    )
    assert {"remove": SUBJECT_HEADER} in mutation["mutations"]["request_mutations"]
    assert names.index("envoy.filters.http.header_mutation") < names.index("envoy.filters.http.jwt_authn")
    assert jwt_authn["providers"]["fenlei"]["claim_to_headers"] == [{"header_name": SUBJECT_HEADER, "claim_name": "sub"}]


def http_filters(settings: GatewaySettings) -> list[dict[str, Any]]:
    bootstrap = build(settings, {name: "127.0.0.1:1" for name in services.GATEWAY_CALLS})
    [manager] = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
    return manager["typed_config"]["http_filters"]
