"""A publisher killed mid-run (issue #14, points 1 and 2), on SQLite and PostgreSQL, the
list-signing key in a real SoftHSM2 token.

A real child process runs ``ca.publish.publisher.publish`` into a publication folder and is
killed by SIGKILL (``JTCA_CRASH_AT``) at each of its boundaries: after its intents, after the
token signed, before the records' commit, after it, after the archive file, between the JSON and
the DER current file, after them, after the intents' completion. Before recovery the folder is
also given what a run killed inside a write leaves (a stray temporary file in the folder and in
an archive folder) and what a run of the old order left (an archive file above every recorded
version). Then ``ca.service.recovery.recover`` (what service start and ``jtca recover`` run):

- no ``lists.publish`` intent is left open, and each is settled as the records say: rolled
  forward when its version was recorded, rolled back when not (``intent.recover`` audited);
- no temporary file and no unrecorded archive file is left; every file in the folder is whole
  and byte for byte a recorded version, and a recorded version has its archive file and, when
  newest, is the current list, which verifies as a terminal would;
- a rerun completes without an error and publishes nothing twice (sequences without a gap).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from test_publisher import PUBLISHER, T0, make_pki

from ca.lists.asn1 import ListType
from ca.lists.verify import load_list
from ca.publish import publisher
from ca.service.recovery import recover
from ca.service.runtime import Runtime
from ca.store import intents
from ca.store.models import AuditEvent, Intent, ListVersion
from hsm.crashpoints import CRASH_ENV

POINTS = (
    "after-intent",
    "after-sign",
    "before-commit",
    "after-record",
    "after-archive",
    "after-json",
    "after-current",
    "after-complete",
)


def settings_of(out: Path) -> publisher.Settings:
    """The child's settings: 2 h lists, republished within 1 h of their nextUpdate."""
    return publisher.Settings(out, validity=7200, refresh=3600)


RECORDED = {"after-record", "after-archive", "after-json", "after-current", "after-complete"}

# One publisher run, as the service runs it, killed where JTCA_CRASH_AT says.
CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from hsm import crashpoints

    # names hold a colon themselves ('lists.publish:after-sign'): read N at the last colon
    spec = os.environ.get(crashpoints.CRASH_ENV, "")
    if spec:
        name, _, nth = spec.rpartition(":")
        crashpoints._targets = {name: int(nth)} if nth.isdigit() else {spec: 1}
    from ca.publish import publisher
    from ca.store.db import make_engine
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.signer import TokenSigner
    from hsm.pkcs11.token import EnvPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri
    from policies.rules import Actor

    url, out, label, pin_variable, uri, cert, root, now = sys.argv[1:]
    token = Token(label, EnvPin(pin_variable))
    signer = TokenSigner(KeyStore(token), Pkcs11Uri.parse(uri), allow_host_assisted=True)
    signing = publisher.Signing(signer, Path(cert).read_bytes(), Path(root).read_bytes())
    outcomes = publisher.publish(
        make_engine(url),
        signing,
        publisher.Settings(Path(out), validity=7200, refresh=3600),
        actor=Actor("publisher-1", frozenset({"publisher"})),
        now=int(now),
    )
    token.close()
    print("finished", [(o.list_type.value, o.action, o.sequence) for o in outcomes])
    """
)


def _pin_variable(pin: str) -> str:
    for name, value in os.environ.items():
        if name.startswith("JTCA_TEST_PIN_") and value == pin:
            return name
    raise AssertionError("the new_token fixture put the PIN in the environment")


def _child(
    url: str, out: Path, pki: Any, files: dict[str, Path], now: int, crash: str | None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash is not None:
        env[CRASH_ENV] = crash
    signer = pki.signing.signer
    argv = [  # the label and the PIN's variable are carried as the files' names
        sys.executable, "-c", CHILD, url, str(out), files["label"].name, files["pin"].name,
        str(signer.key_uri), str(files["cert"]), str(files["root"]), str(now),
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)


def pki_in_token(new_token: Any, tmp_path: Path) -> tuple[Any, dict[str, Path]]:
    """``make_pki``'s list-signing key in a fresh token, and the files a child needs to sign
    with it: the token's label, the variable holding its PIN, the certificates."""
    made: list[tuple[str, str]] = []

    def remember(prefix: str = "T", **kwargs: Any) -> Any:
        token, store, pin = new_token(prefix, **kwargs)
        made.append((token.label, pin))
        return token, store, pin

    pki = make_pki(remember)
    label, pin = made[0]
    return pki, _files(tmp_path, pki, label, pin)


def _files(tmp_path: Path, pki: Any, label: str, pin: str) -> dict[str, Path]:
    cert, root = tmp_path / "list-signing.der", tmp_path / "root.der"
    cert.write_bytes(pki.signing.certificate_der)
    root.write_bytes(pki.root_der)
    return {
        "cert": cert,
        "root": root,
        "label": Path(label),  # carried by name
        "pin": Path(_pin_variable(pin)),
    }


def _stray_and_unrecorded(out: Path) -> list[Path]:
    """What a run killed inside a write leaves, and an archive file no record names."""
    made = [
        out / ".issuer-whitelist.der.k1ll3d.tmp",
        out / "archive" / "city-list" / ".city-list-0000000009.der.x9y8z7.tmp",
        out / "archive" / "ca-key-list" / "ca-key-list-0000000099.der",
    ]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a list")
    return made


def check_folder(engine: Any, out: Path, root_der: bytes, now: int) -> dict[ListType, int]:
    """Every file in ``out`` whole and recorded; every recorded version archived; the newest
    current and verifiable. Returns the newest sequence of each list."""
    with Session(engine) as session:
        rows = session.exec(select(ListVersion)).all()
    recorded = {r.sha256 for r in rows}
    temporary = [p for p in out.rglob("*.tmp")]
    assert temporary == [], temporary
    for path in out.rglob("*.der"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in recorded, path
    newest: dict[ListType, int] = {}
    for row in rows:
        list_type = ListType(row.list_type)
        archived = publisher.archive_path(out, list_type, row.sequence)
        assert hashlib.sha256(archived.read_bytes()).hexdigest() == row.sha256, archived
        newest[list_type] = max(newest.get(list_type, 0), row.sequence)
    for list_type, sequence in newest.items():
        data = publisher.current_path(out, list_type).read_bytes()
        verified = load_list(
            data, trusted_root_der=root_der, expected_type=list_type, now=now, grace_seconds=0
        )
        assert verified.sequence == sequence
        shown = json.loads((out / f"{list_type.value}.json").read_text(encoding="utf-8"))
        assert shown["sequence"] == sequence
    return newest


@pytest.mark.parametrize("point", POINTS)
def test_a_publisher_killed_at_each_boundary_is_recovered(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path, point: str
) -> None:
    url, engine = database
    pki, files = pki_in_token(new_token, tmp_path)
    out = tmp_path / "published"
    # a first version of each list, then a run that republishes all three and dies at `point`
    first = _child(url, out, pki, files, T0, None)
    assert first.returncode == 0, first.stderr
    died = _child(url, out, pki, files, T0 + 3600, f"{publisher.OPERATION}:{point}")
    assert died.returncode == -signal.SIGKILL, (died.returncode, died.stderr)
    with Session(engine) as session:
        left = intents.open_intents(session, operation=publisher.OPERATION)
        sequences = {v.list_type: v.sequence for v in session.exec(select(ListVersion))}
    if point == "after-complete":
        assert left == []
    else:
        assert sorted(i.subject for i in left) == sorted(t.value for t in ListType)
        assert all(i.plan["folder"] == str(out.resolve()) for i in left)
    expected = 2 if point in RECORDED else 1
    assert set(sequences.values()) == {expected}
    made = _stray_and_unrecorded(out)

    runtime = Runtime(state=tmp_path, url=url, engine=engine)
    done = recover(runtime, now=T0 + 3700, actor="mot-root-1")
    assert {r.result for r in done} <= {"rolled-forward", "rolled-back"}
    if point != "after-complete":
        wanted = "rolled-forward" if point in RECORDED else "rolled-back"
        assert [r.result for r in done] == [wanted] * 3
    with Session(engine) as session:
        assert intents.open_intents(session, operation=publisher.OPERATION) == []
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "intent.recover")
        ).all()
        assert len(audited) == len(done)
    if point == "after-complete":
        # nothing to recover: the strays are the next run's to sweep (under its folder lock)
        publisher.publish(engine, pki.signing, settings_of(out), actor=PUBLISHER, now=T0 + 3700)
    assert not any(p.exists() for p in made)
    newest = check_folder(engine, out, pki.root_der, T0 + 3700)
    assert set(newest.values()) == {expected}
    # recovery run again finds nothing; a rerun completes and publishes each version once
    assert recover(runtime, now=T0 + 3800) == []
    again = publisher.publish(engine, pki.signing, settings_of(out), actor=PUBLISHER, now=T0 + 3600)
    assert {o.sequence for o in again} == {2}
    newest = check_folder(engine, out, pki.root_der, T0 + 3700)
    assert set(newest.values()) == {2}
    with Session(engine) as session:
        for list_type in ListType:
            numbers = [v.sequence for v in publisher.history(session, list_type)]
            assert numbers == [1, 2]
        states = session.exec(select(Intent.state).order_by(col(Intent.id))).all()
    assert "open" not in states


def test_a_dead_run_on_another_host_leaves_the_folder_to_its_own_next_run(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path
) -> None:
    """An intent whose folder is on another host: the database needs nothing, so recovery here
    settles it without touching a folder of that name; that folder's next run repairs it."""
    url, engine = database
    pki, files = pki_in_token(new_token, tmp_path)
    out = tmp_path / "published"
    died = _child(url, out, pki, files, T0, f"{publisher.OPERATION}:after-record")
    assert died.returncode == -signal.SIGKILL, died.stderr
    with Session(engine) as session:
        rows = session.exec(select(Intent).where(Intent.state == "open")).all()
        for row in rows:  # as if begun elsewhere, longer ago than the lease
            plan = json.loads(row.plan)
            plan["host"] = "another-host"
            row.plan = json.dumps(plan)
            row.owner = "another-host:1:1"
            session.add(row)
        session.commit()
    runtime = Runtime(state=tmp_path, url=url, engine=engine)
    done = recover(runtime, now=T0 + 2 * 3600, actor="mot-root-1")
    assert [r.result for r in done] == ["rolled-forward"] * 3
    assert all("not on this host" in r.outcome for r in done)
    assert not publisher.current_path(out, ListType.ISSUERS).exists()  # untouched here
    publisher.publish(engine, pki.signing, settings_of(out), actor=PUBLISHER, now=T0 + 60)
    assert set(check_folder(engine, out, pki.root_der, T0 + 60).values()) == {1}
