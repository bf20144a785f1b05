"""The GET /lists fast path (ca.api.lists_fast, issue #16 point 7) answers exactly as the routed
app does: status, headers and body byte for byte, for 200, 304 (If-None-Match and
If-Modified-Since), HEAD (answered by the routed app, headers without the body), archived
versions, index.json, unknown type or sequence and POST; and a version published through
another runtime on the same database is served after the refresh (polled, no timing
asserted)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from service_fixtures import in_process
from starlette.testclient import TestClient
from test_lists_http import newest, publish_again, seed_demo

from ca.api.lists_fast import ListsFast
from ca.core.clock import FixedClock
from ca.lists.asn1 import ListType
from ca.service.runtime import open_runtime

RID = {"X-Request-Id": "fast-path-test"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    state = tmp_path_factory.mktemp("lists-fast") / "state"
    return state, seed_demo(state)


@pytest.fixture
def both(seeded: tuple[Path, list[str]]) -> Iterator[tuple[TestClient, TestClient, object]]:
    state, shares = seeded
    clock = FixedClock(0)
    with in_process(state, clock=clock, seal=False) as (client, runtime):
        clock.set(max(newest(runtime, t).this_update for t in ListType) + 3600)
        fast = client.http
        app = fast.app
        assert isinstance(app, ListsFast)
        with TestClient(app.inner, raise_server_exceptions=False) as routed:
            yield fast, routed, (state, shares, runtime, clock, app)


def same(fast: TestClient, routed: TestClient, method: str, path: str, **headers: str) -> int:
    a = fast.request(method, path, headers={**RID, **headers})
    b = routed.request(method, path, headers={**RID, **headers})
    assert (a.status_code, a.headers.raw, a.content) == (b.status_code, b.headers.raw, b.content)
    return a.status_code


def test_the_fast_path_answers_as_the_routed_app(both) -> None:  # type: ignore[no-untyped-def]
    fast, routed, (_, _, runtime, _, _) = both
    for kind in ListType:
        row = newest(runtime, kind)
        tag = f'"{row.sm3}"'
        base = f"/lists/{kind.value}"
        assert same(fast, routed, "GET", base) == 200
        assert same(fast, routed, "HEAD", base) == 200  # HEAD: the routed app answers it
        head, get = routed.head(base), routed.get(base)
        assert head.content == b""
        assert head.headers["etag"] == get.headers["etag"] == tag
        assert head.headers["content-length"] == str(len(get.content))
        assert same(fast, routed, "GET", base, **{"If-None-Match": tag}) == 304
        assert same(fast, routed, "GET", base, **{"If-None-Match": f'W/"x", {tag}'}) == 304
        assert same(fast, routed, "GET", base, **{"If-None-Match": '"other"'}) == 200
        since = formatdate(row.this_update, usegmt=True)
        assert same(fast, routed, "GET", base, **{"If-Modified-Since": since}) == 304
        earlier = formatdate(row.this_update - 1, usegmt=True)
        assert same(fast, routed, "GET", base, **{"If-Modified-Since": earlier}) == 200
        assert same(fast, routed, "GET", f"{base}/{row.sequence}") == 200
        assert same(fast, routed, "HEAD", f"{base}/{row.sequence}") == 200
        assert same(fast, routed, "GET", f"{base}/{row.sequence}", **{"If-None-Match": tag}) == 304
        assert same(fast, routed, "GET", f"{base}/index.json") == 200
        index_tag = fast.get(f"{base}/index.json").headers["etag"]
        assert (
            same(fast, routed, "GET", f"{base}/index.json", **{"If-None-Match": index_tag}) == 304
        )
        assert same(fast, routed, "GET", f"{base}/999999") == 404
        assert same(fast, routed, "GET", f"{base}/-1") == 400
        assert same(fast, routed, "POST", base) == 405
    assert same(fast, routed, "GET", "/lists/no-such-list") == 404
    assert same(fast, routed, "GET", "/lists/no-such-list/index.json") == 404


def test_a_version_published_by_another_runtime_is_served(both) -> None:  # type: ignore[no-untyped-def]
    fast, routed, (state, shares, runtime, clock, _) = both
    kind = ListType("city-list")
    before = fast.get(f"/lists/{kind.value}").headers["etag"]
    other = open_runtime(state, migrate="upgrade", embedded=True)
    try:
        publish_again(other, shares, clock.now() + 60)
    finally:
        other.close()
    after = f'"{newest(runtime, kind).sm3}"'
    assert after != before
    deadline = time.monotonic() + 30
    while fast.get(f"/lists/{kind.value}").headers["etag"] != after:
        assert time.monotonic() < deadline, "the new version was never served"
        time.sleep(0.2)
    assert same(fast, routed, "GET", f"/lists/{kind.value}") == 200
    assert same(fast, routed, "GET", f"/lists/{kind.value}/index.json") == 200
