"""Lists over HTTP from the service (issue #16, point 1): ``GET /lists/{type}``,
``/lists/{type}/{sequence}`` and ``/lists/{type}/index.json`` of a real service in-process over
a state folder the demo seeded (real SoftHSM2 tokens, the real publisher): the bytes the
publisher recorded, the SM3 ETag, Last-Modified thisUpdate, Expires and max-age to nextUpdate,
304s on If-None-Match and If-Modified-Since, archived versions immutable, problems naming the
field; and the published folder's ``lists/`` layout kept by the publisher and rebuilt by its
next run after damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from service_fixtures import in_process

from ca.core.clock import FixedClock
from ca.lists.asn1 import ListType
from ca.publish import http_layout, publisher
from ca.service.runtime import Runtime
from ca.store.models import ListVersion
from hsm.sm.sm3 import sm3
from policies.rules import Actor

JTCA = str(Path(sys.executable).with_name("jtca"))
PUBLISHER = Actor("publisher-1", frozenset({"publisher"}))


def demo_env(state: Path) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")
    return env


def seed_demo(state: Path) -> list[str]:
    """``jtca demo --no-console`` into ``state`` (its embedded service stopped after): the
    root token's PIN shares."""
    env = demo_env(state)
    made = subprocess.run(
        [JTCA, "demo", "--no-console"], env=env, capture_output=True, text=True, timeout=600
    )
    stop = subprocess.run(
        [JTCA, "service", "stop"], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert stop.returncode == 0, stop.stderr
    credentials = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
    return list(credentials["root_token_shares"])


def publish_again(
    runtime: Runtime,
    shares: list[str],
    now: int,
    refresh: int = publisher.DEFAULT_VALIDITY - 1,
) -> list[publisher.Outcome]:
    """A publisher run into the service's folder at ``now``; by default it republishes every
    list (the refresh margin is the whole validity but a second)."""
    from ca.vault.embedded import open_token
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.softhsm2 import use_softhsm
    from hsm.pkcs11.token import QuorumPin, Token

    settings = publisher.Settings(runtime.published, refresh=refresh)
    with runtime.tokens():
        use_softhsm(runtime.state / "softhsm2")
        opened: list[Token] = []

        def store_of(label: str) -> KeyStore:
            opened.append(open_token(label, QuorumPin(list(shares))))
            return KeyStore(opened[-1])

        try:
            signing = publisher.list_signing(runtime.engine, now, store_of)
            return publisher.publish(runtime.engine, signing, settings, actor=PUBLISHER, now=now)
        finally:
            for token in opened:
                token.close()


@pytest.fixture
def own_softhsm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process service points SoftHSM2 at its state folder; put the variable back."""
    previous = os.environ.get("SOFTHSM2_CONF")
    if previous is None:
        monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    else:
        monkeypatch.setenv("SOFTHSM2_CONF", previous)


def newest(runtime: Runtime, list_type: ListType) -> ListVersion:
    from sqlmodel import Session

    with Session(runtime.engine) as session:
        row = publisher.latest(session, list_type)
    assert row is not None
    return row


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    state = tmp_path_factory.mktemp("lists-http") / "state"
    return state, seed_demo(state)


@pytest.fixture
def served(
    seeded: tuple[Path, list[str]],
) -> Iterator[tuple[object, Runtime, FixedClock, list[str]]]:
    state, shares = seeded
    clock = FixedClock(0)
    with in_process(state, clock=clock, seal=False) as (client, runtime):
        clock.set(max(newest(runtime, t).this_update for t in ListType) + 3600)
        yield client.http, runtime, clock, shares


def date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def test_the_current_list_with_its_headers_and_304s(served) -> None:  # type: ignore[no-untyped-def]
    http, runtime, clock, _ = served
    for list_type in ListType:
        row = newest(runtime, list_type)
        answer = http.get(f"/lists/{list_type.value}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert sm3(answer.content).hex() == row.sm3
        assert answer.content == (runtime.published / f"{list_type.value}.der").read_bytes()
        tag = f'"{row.sm3}"'
        assert answer.headers["etag"] == tag
        assert answer.headers["last-modified"] == date(row.this_update)
        assert answer.headers["expires"] == date(row.next_update)
        assert answer.headers["cache-control"] == f"max-age={row.next_update - clock.now()}"
        for inm in (tag, f"W/{tag}", f'"{"0" * 64}", {tag}', "*"):
            again = http.get(f"/lists/{list_type.value}", headers={"If-None-Match": inm})
            assert again.status_code == 304, inm
            assert again.content == b""
            assert again.headers["etag"] == tag
        other = http.get(f"/lists/{list_type.value}", headers={"If-None-Match": f'"{"0" * 64}"'})
        assert other.status_code == 200
        assert other.content == answer.content
        since = http.get(
            f"/lists/{list_type.value}", headers={"If-Modified-Since": date(row.this_update)}
        )
        assert since.status_code == 304
        before = http.get(
            f"/lists/{list_type.value}", headers={"If-Modified-Since": date(row.this_update - 1)}
        )
        assert before.status_code == 200
        # If-None-Match decides when both are sent (RFC 9110 §13.2.2)
        both = http.get(
            f"/lists/{list_type.value}",
            headers={"If-None-Match": '"' + "1" * 64 + '"', "If-Modified-Since": date(clock.now())},
        )
        assert both.status_code == 200
        garbage = http.get(f"/lists/{list_type.value}", headers={"If-Modified-Since": "yesterday"})
        assert garbage.status_code == 200


def test_archived_versions_index_and_problems(served) -> None:  # type: ignore[no-untyped-def]
    http, runtime, _, _ = served
    row = newest(runtime, ListType.ISSUERS)
    archived = http.get(f"/lists/issuer-whitelist/{row.sequence}")
    assert archived.status_code == 200
    assert archived.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert archived.headers["etag"] == f'"{row.sm3}"'
    assert "expires" not in archived.headers
    assert sm3(archived.content).hex() == row.sm3
    assert (
        http.get(
            f"/lists/issuer-whitelist/{row.sequence}", headers={"If-None-Match": f'"{row.sm3}"'}
        ).status_code
        == 304
    )
    index = http.get("/lists/issuer-whitelist/index.json")
    assert index.status_code == 200
    assert index.content == http_layout.index_file(runtime.published, ListType.ISSUERS).read_bytes()
    document = index.json()
    assert document["current"] == row.sequence
    assert document["versions"][-1]["sm3"] == row.sm3
    assert (
        http.get(
            "/lists/issuer-whitelist/index.json", headers={"If-None-Match": index.headers["etag"]}
        ).status_code
        == 304
    )
    for path, status, field in (
        ("/lists/white-list", 404, "type"),
        ("/lists/white-list/1", 404, "type"),
        ("/lists/issuer-whitelist/-1", 400, "sequence"),
        ("/lists/issuer-whitelist/1e3", 400, "sequence"),
        ("/lists/issuer-whitelist/9999999999999999999", 400, "sequence"),
        ("/lists/issuer-whitelist/99999", 404, None),
    ):
        answer = http.get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem.get("field") == field, path
        assert problem["detail"]


def test_a_new_version_is_served_and_laid_out_and_the_layout_rebuilt(served) -> None:  # type: ignore[no-untyped-def]
    http, runtime, clock, shares = served
    before = {t: newest(runtime, t) for t in ListType}
    old = http.get("/lists/city-list")
    clock.advance(60)
    outcomes = publish_again(runtime, shares, clock.now())
    assert {o.action for o in outcomes} == {"published"}
    out = runtime.published
    for list_type in ListType:
        row = newest(runtime, list_type)
        assert row.sequence == before[list_type].sequence + 1
        path = http_layout.version_file(out, list_type, row.sequence)
        assert sm3(path.read_bytes()).hex() == row.sm3
        assert int(path.stat().st_mtime) == row.this_update  # a web server's Last-Modified
        assert http_layout.current_file(out, list_type).read_bytes() == path.read_bytes()
        index = json.loads(http_layout.index_file(out, list_type).read_text(encoding="utf-8"))
        assert [v["sequence"] for v in index["versions"]][-2:] == [row.sequence - 1, row.sequence]
        # the client holding the old version gets the new one
        answer = http.get(
            f"/lists/{list_type.value}", headers={"If-None-Match": f'"{before[list_type].sm3}"'}
        )
        assert answer.status_code == 200
        assert answer.headers["etag"] == f'"{row.sm3}"'
        # the old version stays at its own URL
        kept = http.get(f"/lists/{list_type.value}/{before[list_type].sequence}")
        assert sm3(kept.content).hex() == before[list_type].sm3
    assert old.headers["etag"] != http.get("/lists/city-list").headers["etag"]
    nginx_map = http_layout.nginx_map_file(out).read_text(encoding="ascii")
    city = newest(runtime, ListType.CITIES)
    assert f"/lists/city-list {city.sequence}.der;" in nginx_map
    assert (
        f'/lists/city-list/{city.sequence - 1} "\\"{before[ListType.CITIES].sm3}\\"";' in nginx_map
    )

    # damage: files lost, a version file never recorded, a dead writer's temporary file
    lost = [
        http_layout.version_file(out, ListType.CITIES, city.sequence),
        http_layout.current_file(out, ListType.CITIES),
        http_layout.index_file(out, ListType.CITIES),
        http_layout.nginx_map_file(out),
    ]
    kept = {p: p.read_bytes() for p in lost}
    for path in lost:
        path.unlink()
    (out / "lists" / "city-list" / f"{city.sequence + 5}.der").write_bytes(b"never recorded")
    stray = out / "lists" / "city-list" / ".index.json.999-1.abc.tmp"
    stray.write_bytes(b"half")
    # the next run (nothing new to publish) sweeps and rebuilds
    clock.advance(1)
    again = publish_again(runtime, shares, clock.now(), refresh=publisher.DEFAULT_REFRESH)
    assert {o.action for o in again} == {"unchanged"}
    from sqlmodel import Session

    with publisher.folder_lock(out, 10), Session(runtime.engine) as session:
        removed = publisher.sweep(session, out, tuple(ListType))
        written = publisher.sync_http_layout(session, out)
    assert removed == []
    assert written == []
    assert not (out / "lists" / "city-list" / f"{city.sequence + 5}.der").exists()
    assert not stray.exists()
    for path, data in kept.items():
        assert path.read_bytes() == data
    assert int(lost[0].stat().st_mtime) == city.this_update


def test_served_on_sqlite_and_postgresql(database, tmp_path: Path, own_softhsm: None) -> None:  # type: ignore[no-untyped-def]
    """The routes and the folder's layout on each database, after the publisher's run through
    the service's own operation (``lists.publish``, signed by the publisher officer)."""
    from test_service_lists import service_world

    from ca.ops import lists as ops

    url, _ = database
    state = tmp_path / "state"
    with in_process(state, url=url) as (client, runtime):
        http = client.http
        assert http.get("/lists/city-list").status_code == 404  # nothing published yet
        shares = service_world(client, runtime)
        client.as_officer("publisher-1").call(ops.PUBLISH, ops.PublishRequest(shares=shares))
        for list_type in ListType:
            row = newest(runtime, list_type)
            answer = http.get(f"/lists/{list_type.value}")
            assert answer.status_code == 200
            assert answer.headers["etag"] == f'"{row.sm3}"'
            assert sm3(answer.content).hex() == row.sm3
            tag = answer.headers["etag"]
            assert (
                http.get(f"/lists/{list_type.value}", headers={"If-None-Match": tag}).status_code
                == 304
            )
            assert http.get(f"/lists/{list_type.value}/1").content == answer.content
            index = http.get(f"/lists/{list_type.value}/index.json")
            out = runtime.published
            assert index.content == http_layout.index_file(out, list_type).read_bytes()
            assert http_layout.version_file(out, list_type, 1).read_bytes() == answer.content
        assert "/lists/city-list 1.der;" in http_layout.nginx_map_file(runtime.published).read_text(
            encoding="ascii"
        )
