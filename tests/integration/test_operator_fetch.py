"""``jtca operator fetch`` (issue #16): an operator's conditional GET of a list from a real
service (in-process over a demo-seeded state, and the embedded service for the command line),
the terminal's checks of a new list and its atomic install; each refusal names its reason and
leaves the operator's folder exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from service_fixtures import in_process
from test_lists_http import demo_env, newest, publish_again, seed_demo

from ca.client.lists_fetch import FetchError, fetch_list, list_path, note_path
from ca.core.clock import FixedClock
from ca.lists.asn1 import ListType, decode_signed_list
from ca.lists.verify import ListReason, ListRefused
from ca.service.runtime import Runtime
from hsm.sm.sm3 import sm3

JTCA = str(Path(sys.executable).with_name("jtca"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bytes]:
    state = tmp_path_factory.mktemp("operator-fetch") / "state"
    shares = seed_demo(state)
    root = subprocess.run(
        [JTCA, "lists", "root", "--out", str(state.parent / "root.der")],
        env=demo_env(state),
        capture_output=True,
        text=True,
        timeout=120,
    )
    subprocess.run([JTCA, "service", "stop"], env=demo_env(state), timeout=60, check=False)
    assert root.returncode == 0, root.stderr
    return state, shares, (state.parent / "root.der").read_bytes()


@pytest.fixture
def service(
    seeded: tuple[Path, list[str], bytes],
) -> Iterator[tuple[httpx.Client, Runtime, FixedClock, list[str], bytes]]:
    state, shares, root = seeded
    clock = FixedClock(0)
    with in_process(state, clock=clock, seal=False) as (client, runtime):
        clock.set(max(newest(runtime, t).this_update for t in ListType) + 60)
        yield client.http, runtime, clock, shares, root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def serving(data: bytes, etag: str | None = None) -> httpx.Client:
    """A mirror answering every GET with ``data`` (a real list from the service), its ETag the
    SM3 of the bytes unless ``etag`` says otherwise: what a stale or hostile mirror could do."""

    def answer(request: httpx.Request) -> httpx.Response:
        tag = etag if etag is not None else f'"{sm3(data).hex()}"'
        return httpx.Response(200, content=data, headers={"ETag": tag})

    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://mirror")


def test_install_then_304_then_the_next_version(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, runtime, clock, shares, root = service
    out = tmp_path / "terminals"
    out.mkdir()
    row = newest(runtime, ListType.CITIES)
    first = fetch_list(http, ListType.CITIES, out, trusted_root_der=root, now=clock.now())
    assert first.action == "installed"
    assert first.sequence == row.sequence
    assert first.previous_sequence is None
    assert sm3(list_path(out, ListType.CITIES).read_bytes()).hex() == row.sm3
    note = json.loads(note_path(out, ListType.CITIES).read_text(encoding="utf-8"))
    assert note["etag"] == f'"{row.sm3}"'
    assert note["sequence"] == row.sequence
    held = snapshot(out)

    seen: list[httpx.Request] = []
    http.event_hooks["request"].append(seen.append)
    try:
        second = fetch_list(http, ListType.CITIES, out, trusted_root_der=root, now=clock.now())
    finally:
        http.event_hooks["request"].remove(seen.append)
    assert second.action == "unchanged"
    assert seen[-1].headers["if-none-match"] == f'"{row.sm3}"'
    assert seen[-1].headers["if-modified-since"] == note["last_modified"]
    assert snapshot(out) == held

    clock.advance(60)
    publish_again(runtime, shares, clock.now())
    after = newest(runtime, ListType.CITIES)
    third = fetch_list(http, ListType.CITIES, out, trusted_root_der=root, now=clock.now())
    assert third.action == "installed"
    assert (third.previous_sequence, third.sequence) == (row.sequence, after.sequence)
    assert sm3(list_path(out, ListType.CITIES).read_bytes()).hex() == after.sm3
    assert sorted(p.name for p in out.iterdir()) == ["city-list.der", "city-list.http.json"]


def _refused(
    out: Path, reason: ListReason, run: Callable[[], object], field: str | None = None
) -> None:
    before = snapshot(out)
    with pytest.raises(ListRefused) as caught:
        run()
    assert caught.value.reason is reason
    if field is not None:
        assert caught.value.field == field
    assert snapshot(out) == before  # nothing changed, no temporary file left


def test_refusals_change_nothing(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, runtime, clock, shares, root = service
    out = tmp_path / "terminals"
    out.mkdir()
    clock.advance(60)
    publish_again(runtime, shares, clock.now())  # an older version to replay
    held = fetch_list(http, ListType.CITIES, out, trusted_root_der=root, now=clock.now())
    current = list_path(out, ListType.CITIES).read_bytes()
    signer_certificate = decode_signed_list(current).certificates[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    now = clock.now()

    # a root the operator does not trust (the list-signing certificate is no CA)
    _refused(
        empty,
        ListReason.UNTRUSTED_SIGNER,
        lambda: fetch_list(
            http, ListType.CITIES, empty, trusted_root_der=signer_certificate, now=now
        ),
    )
    # past nextUpdate
    row = newest(runtime, ListType.CITIES)
    _refused(
        empty,
        ListReason.STALE,
        lambda: fetch_list(
            http, ListType.CITIES, empty, trusted_root_der=root, now=row.next_update + 1
        ),
    )
    # a city list where the issuer whitelist was asked for
    _refused(
        empty,
        ListReason.WRONG_LIST_TYPE,
        lambda: fetch_list(
            serving(current), ListType.ISSUERS, empty, trusted_root_der=root, now=now
        ),
    )
    # bytes that are not what the ETag says
    _refused(
        empty,
        ListReason.MALFORMED,
        lambda: fetch_list(
            serving(current, etag='"' + "0" * 64 + '"'),
            ListType.CITIES,
            empty,
            trusted_root_der=root,
            now=now,
        ),
        field="ETag",
    )
    # a mirror serving an older version than the one installed: sequence never goes back
    assert held.sequence is not None
    assert held.sequence > 1
    older = http.get(f"/lists/city-list/{held.sequence - 1}").content
    _refused(
        out,
        ListReason.ROLLBACK,
        lambda: fetch_list(serving(older), ListType.CITIES, out, trusted_root_der=root, now=now),
    )
    # not a list at all
    _refused(
        empty,
        ListReason.MALFORMED,
        lambda: fetch_list(
            serving(b"<html>hello</html>"), ListType.CITIES, empty, trusted_root_der=root, now=now
        ),
    )
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_list(
            httpx.Client(
                transport=httpx.MockTransport(lambda r: httpx.Response(404)), base_url="http://m"
            ),
            ListType.CITIES,
            empty,
            trusted_root_der=root,
            now=now,
        )
    assert list(empty.iterdir()) == []


def fetch_cli(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JTCA, "operator", "fetch", *args],
        env=env or demo_env(state),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_line(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state, _, root = seeded
    root_file = tmp_path / "root.der"
    root_file.write_bytes(root)
    out = tmp_path / "terminals"
    out.mkdir()
    env = demo_env(state)
    try:
        first = fetch_cli(
            state, "--type", "issuer-whitelist", "--out", str(out), "--root", str(root_file),
            "--json",
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        done = json.loads(first.stdout)
        assert done["action"] == "installed"
        assert done["list"] == "issuer-whitelist"
        again = fetch_cli(
            state, "--type", "issuer-whitelist", "--out", str(out), "--root", str(root_file)
        )
        assert again.returncode == 0, again.stderr
        assert "unchanged" in again.stdout
        socket = f"unix://{state / 'jtca.sock'}"
        other = tmp_path / "other"
        other.mkdir()
        wrong_root = tmp_path / "not-the-root.der"
        wrong_root.write_bytes(
            decode_signed_list(list_path(out, ListType.ISSUERS).read_bytes()).certificates[0]
        )
        refused = fetch_cli(
            state, "--type", "city-list", "--out", str(other), "--root", str(wrong_root),
            "--service", socket,
        )  # fmt: skip
        assert refused.returncode == 4
        assert "untrusted-signer" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert list(other.iterdir()) == []
        good = {"--type": "city-list", "--out": str(other), "--root": str(root_file)}
        for flag, value in (
            ("--service", "ftp://example.org"),
            ("--out", str(tmp_path / "missing")),
            ("--root", str(tmp_path / "no-root.der")),
        ):
            argv = [part for item in {**good, flag: value}.items() for part in item]
            answer = fetch_cli(state, *argv)
            assert answer.returncode == 3, (flag, answer.stderr)
            assert flag in answer.stderr
            assert "Traceback" not in answer.stderr
        assert list(other.iterdir()) == []
    finally:
        subprocess.run([JTCA, "service", "stop"], env=env, timeout=60, check=False)
