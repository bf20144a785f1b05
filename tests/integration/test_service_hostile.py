"""Hostile request bodies against every operation of the service (issue #11's new way in).

Every operation is sent bodies no client of ours would send — not JSON, not UTF-8, nested ten
thousand deep, numbers of a thousand digits, wrong types in every field, huge strings, nulls —
by a signed-in officer, in-process, each request signed with the officer's session key (issue
#12: the signature covers the hostile bytes, so the body itself is what gets judged). The
service must answer each with problem details naming what was wrong (4xx), never a 500 and
never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fixtures import in_process

from ca.client.session import RequestSigner
from ca.ops.base import OPERATIONS

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"


class SignedPoster:
    """Raw POSTs signed by a signed-in officer's session, whatever the body."""

    def __init__(self, http: httpx.Client, signer: RequestSigner) -> None:
        self.http, self.signer = http, signer

    def post(self, path: str, content: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        headers.update(self.signer.headers("POST", path, content))
        return self.http.post(path, content=content, headers=headers)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedPoster]:
    from ca.officers.roster import add_officer_in
    from ca.ops import ceremony
    from ca.store.db import transaction

    state = tmp_path_factory.mktemp("hostile") / "state"
    with in_process(state) as (client, runtime):
        plan = EXAMPLE.read_text(encoding="utf-8")
        made = client.call(ceremony.INIT_TOKEN, ceremony.CeremonyFile(plan=plan))
        shares = [made.pin_shares[0].share, made.pin_shares[1].share]
        client.call(
            ceremony.RUN,
            ceremony.RunRequest(plan=plan, shares=shares, witnesses=["赵六 (公证员)"]),
        )
        with transaction(runtime.engine) as session:
            add_officer_in(
                session,
                officer_id="gd-1",
                name="gd-1",
                roles=["provincial-officer"],
                province="440000",
                actor="mot-root-1",
                now=client.clock.now(),
            )
        signer = client.as_officer("mot-root-1").signer
        assert signer is not None
        yield SignedPoster(client.http, signer)


def _fields(op_name: str) -> dict[str, Any]:
    schema = OPERATIONS[op_name].request.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    return props


RAW_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
    b"[]",
    b"null",
    b'"a string"',
    b"1" * 5_000,
    b'{"x": 1e999999}',
]


def _typed_bodies(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """For every field: a wrong type, a huge number, a huge string, a null, a deep value."""
    bodies: list[dict[str, Any]] = []
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    for name in fields:
        for value in (
            {"nested": True},
            10**400,
            -(10**400),
            2**63 - 1,  # fits a column, but not once multiplied into seconds
            10**15,
            -1,
            "字" * 200_000,
            None,
            deep,
            [None] * 1_000,
            1.5e308,
            True,
        ):
            bodies.append({name: value})
    bodies.append({"surplus": 1})
    return bodies


@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_hostile_bodies_get_problem_details_never_a_500(http: SignedPoster, op_name: str) -> None:
    op = OPERATIONS[op_name]
    sent = 0
    for raw in RAW_BODIES:
        response = http.post(op.path, raw)
        _check(op_name, raw[:40], response)
        sent += 1
    reached_fields = 0
    for body in _typed_bodies(_fields(op_name)):
        response = http.post(op.path, json.dumps(body).encode())
        _check(op_name, str(body)[:60], response)
        # the body was read as JSON and judged field by field (or by the use case itself)
        if response.status_code < 400 or response.json().get("field") != "(body)":
            reached_fields += 1
        sent += 1
    assert sent >= len(RAW_BODIES) + 1
    assert reached_fields or not _fields(op_name), f"{op_name}: no body reached its fields"


def _check(op_name: str, what: object, response: httpx.Response) -> None:
    assert response.status_code != 500, (op_name, what, response.text[:500])
    # the officer's signed session carried every request: what was judged is the body
    assert response.status_code != 401, (op_name, what, response.text[:500])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", (op_name, what)
        problem = response.json()
        assert problem["title"]
        assert problem["detail"]
