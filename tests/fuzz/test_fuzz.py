"""The fuzz suite's CI budget (issue #14, point 3): every parser of what a stranger or a user
hands us — QR payloads, signed lists, key packages, usage reports and acknowledgments (CSV and
JSON), policy files, ceremony plans, officer enrolment requests, every operation's request body
and the log's GET query parameters — gets a few thousand mutated inputs from ``engine`` (the
same engine ``make fuzz`` runs with 1,000,000 per parser). Each parser must answer every input
with its typed refusal or a result: no untyped exception, no input over 1 s of CPU. A finding is
saved under the test's temporary folder (input and traceback) and named in the failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import engine
from tests.fuzz.targets import Target, all_targets

BUDGET = int(os.environ.get("JTCA_FUZZ_INPUTS", "2000"))
SLOW_TARGETS = {
    "acks.csv": 300,
    "acks.json": 300,
    "acks.signed": 300,
    "lists.verify": 600,
    "policy": 1000,
    "policy.parse": 1000,
}

TARGETS = all_targets()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, engine.Stats]:
    out = tmp_path_factory.mktemp("fuzz-findings")
    budgets = {n: min(BUDGET, SLOW_TARGETS.get(n, BUDGET)) for n in TARGETS}
    totals = engine.run(TARGETS, per_target=budgets, seed=14, jobs=2, chunk_size=500, out=out)
    engine.table(totals)
    return totals


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_raises_only_typed_errors(name: str, results: dict[str, engine.Stats]) -> None:
    stats = results[name]
    assert stats.inputs == min(BUDGET, SLOW_TARGETS.get(name, BUDGET))
    untyped = [f"{f.key}: {f.summary} ({f.path})" for f in stats.findings if f.kind == "untyped"]
    assert stats.untyped == 0, f"{name}: {stats.untyped} untyped exception(s): {untyped}"
    slow = [f"{f.key}: {f.summary} ({f.path})" for f in stats.findings if f.kind != "untyped"]
    assert stats.slow == 0, f"{name}: {stats.slow} input(s) over 1 s of CPU: {slow}"
    # the mutations reach past the first check: some inputs are refused, by type
    assert stats.typed > 0


def test_every_operation_body_has_a_target() -> None:
    from ca.ops.base import OPERATIONS

    covered = {n.removeprefix("http.") for n in TARGETS if n.startswith("http.")}
    covered |= {a for t in TARGETS.values() for a in t.aliases}
    assert set(OPERATIONS) <= covered, sorted(set(OPERATIONS) - covered)


def test_the_seeds_are_real_objects_the_parsers_take() -> None:
    """A seed the parser refuses would fuzz only its first check: the real QR payloads verify,
    the real lists load, the real package verifies, the reports parse row by row, the shipped
    policy and ceremony plan load, the enrolment's proof verifies."""
    names = [
        *("qr.decode", "qr.verify", "lists.decode", "lists.verify", "packages.read"),
        *("packages.verify", "packages.envelope", "usage.csv", "usage.json", "policy"),
        *("policy.parse", "ceremony", "officer.enrolment", "http.signature-header"),
        *("http.log-inclusion-query", "http.log-consistency-query", "witness.checkpoint"),
        *("witness.consistency-proof",),
    ]
    for name in names:
        for seed in TARGETS[name].seeds:
            TARGETS[name].run(seed)  # raises if refused


def test_the_engine_reports_an_untyped_exception_with_its_input(tmp_path: Path) -> None:
    """A parser with a planted bug (an IndexError on any input holding ``]]]``) is caught,
    counted, and its first such input saved with the traceback."""

    def buggy(data: bytes) -> None:
        if b"]]]" in data:
            raise IndexError("planted")

    target = Target("planted", buggy, [b'{"a": [1, [2]]}'], kind="json")
    totals = engine.run({"planted": target}, per_target=3000, jobs=1, out=tmp_path)
    stats = totals["planted"]
    assert stats.inputs == 3000
    assert 0 < stats.untyped < 3000
    assert stats.typed == 0
    assert stats.accepted == 3000 - stats.untyped
    [finding] = [f for f in stats.findings if f.kind == "untyped"]
    assert b"]]]" in Path(finding.path).read_bytes()
    assert "IndexError: planted" in Path(finding.path).with_suffix(".txt").read_text()


def test_the_engine_is_deterministic(tmp_path: Path) -> None:
    seen: list[bytes] = []
    target = Target("record", seen.append, [b'{"a": [1, 2, "x"]}'], kind="json")
    engine.run({"record": target}, per_target=500, jobs=1, out=tmp_path, seed=7)
    first = list(seen)
    seen.clear()
    engine.run({"record": target}, per_target=500, jobs=1, out=tmp_path, seed=7)
    assert seen == first
    assert len(set(first)) > 400


# -- the same bodies through the real service (ca.api.app): never a 500 --------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.service_fixtures import in_process

    state = tmp_path_factory.mktemp("fuzz-service") / "state"
    with in_process(state, seal=False) as (client, _runtime):
        yield client.http  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"x": "\xff"}',
        b"\xff\xfe\x00",
        b"9" * 5000,
        b'{"a": 1' + b"1" * 5000 + b"}",
    ],
    ids=["deep", "not-utf8", "utf16-broken", "huge-integer", "huge-integer-in-object"],
)
def test_a_body_the_decoder_cannot_read_is_a_422_naming_the_body(
    service: object, body: bytes
) -> None:
    """FastAPI answers these with a bare 400 'There was an error parsing the body'; the
    service turns it into a bad-input problem naming the body (``ca.api.app.body_refusal``)."""
    response = service.post(  # type: ignore[attr-defined]
        "/v1/city/apply", content=body, headers={"Content-Type": "application/json"}
    )
    problem = response.json()
    assert response.status_code == 422, problem
    assert problem["exit_code"] == 3, problem
    assert problem["field"] == "(body)", problem
    assert response.headers["content-type"].startswith("application/problem+json")


def test_mutated_bodies_through_the_service_are_never_a_500(service: object) -> None:
    """A few mutated bodies per operation, posted to the in-process service with no session:
    the body is judged before the caller (FastAPI reads it first), so each is a 422 naming the
    problem, or a 401 for a well-formed body of an operation that needs an officer."""
    import random

    from ca.ops.base import OPERATIONS

    rng = random.Random(14)  # noqa: S311
    posted = 0
    for name, op in sorted(OPERATIONS.items()):
        if not op.officer:
            continue  # a public operation would run; its body parser is fuzzed above
        target = next(t for t in TARGETS.values() if name == t.name[5:] or name in t.aliases)
        for _ in range(4):
            body = engine.mutate(rng, rng.choice(target.seeds), target.seeds, target)
            response = service.post(  # type: ignore[attr-defined]
                op.path, content=body, headers={"Content-Type": "application/json"}
            )
            posted += 1
            assert response.status_code in (401, 413, 422), (name, body[:200], response.text)
            assert response.status_code == 401 or json.loads(response.text)["exit_code"] == 3
    assert posted > 200
