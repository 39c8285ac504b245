"""schemathesis against the live gateway's /openapi.json: generated requests (bounded) with
a valid token never get a 5xx, and every answer conforms to the document (streaming
answers: each newline-delimited object conforms to the 200 response schema).

Needs schemathesis (pip install 'schemathesis>=4.32,<5'). Its pytest plugin does not run
on pytest 9, so the cases come from each operation's hypothesis strategy here."""

from __future__ import annotations

import json

import jsonschema
import pytest
import schemathesis
from google.api import annotations_pb2
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from fenlei import services
from fenlei.gateway.config import OPENAPI

MAX_EXAMPLES = 12
# No 5xx, and every answer as documented. Not positive_data_acceptance: a schema-valid
# request may still be refused by a service (empty text, an unknown model), with 4xx.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
OPERATIONS = sorted((path, verb) for path, item in json.loads(OPENAPI.read_text())["paths"].items() for verb in item)


def _server_streaming() -> set[tuple[str, str]]:
    """The operations of server-streaming RPCs, from their google.api.http rules."""
    found = set()
    for _, service in services.public_services():
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if method.server_streaming:
                found.add((getattr(rule, verb), verb))
    return found


STREAMING = _server_streaming()


@pytest.fixture(scope="module")
def live_schema(gateway):
    return schemathesis.openapi.from_url(f"http://{gateway.address}/openapi.json")


def test_the_served_document_is_the_generated_one(gateway) -> None:
    served = gateway.rest("/openapi.json", token=None, method="GET").json()
    assert served == json.loads(OPENAPI.read_text())
    assert len(OPERATIONS) == 52 and served["swagger"] == "2.0"
    assert {("/v1/classify:stream", "post"), ("/v1/registry:export", "post")} <= STREAMING


@pytest.mark.parametrize(("path", "verb"), OPERATIONS)
def test_generated_requests_conform(gateway, live_schema, path, verb) -> None:
    [operation] = [
        result.ok() for result in live_schema.get_all_operations() if (result.ok().path, result.ok().method.lower()) == (path, verb)
    ]
    raw = live_schema.raw_schema
    streaming = (path, verb) in STREAMING
    stream_schema = {**raw["paths"][path][verb]["responses"]["200"]["schema"], "definitions": raw["definitions"]}
    token = gateway.token("admin")  # every operation is open to an admin
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def check(case) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (path, response.status_code, response.text[:500], case.body)
        if streaming and response.status_code == 200:
            for line in response.text.splitlines():
                if line.strip():
                    jsonschema.validate(json.loads(line), stream_schema)
        else:
            case.validate_response(response, checks=CHECKS)

    check()
    assert seen and all(status not in (401, 403) for status in seen), seen  # the token was used
