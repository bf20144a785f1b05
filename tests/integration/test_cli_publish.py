"""Issue #6 through the real console script on SQLite and PostgreSQL: the root ceremony, an
issuer and its interop certificate, the publisher run as the timer runs it, OpenSSL verifying
the published list with the commands of docs/lists.md, the QR verifier taking its trust from the
lists, a revoked issuer's QR code refused after the next publish, idempotent and concurrent
runs, an emergency publication under dual control, operators' acknowledgments."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli_desks import Desks, share_args, write_shares
from officer_desk import officer_pin
from test_lists_openssl import VERIFIED, run_documented

from hsm.custody import combine_secret

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")


def test_publisher_end_to_end(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = database
    state = tmp_path / "state"
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_DATABASE_URL=url)
    env.pop("SOFTHSM2_CONF", None)
    desks = Desks(env, tmp_path / "desks")

    def jtca(*args: str, officer: str | None = None, ok: bool = True) -> Any:
        return desks.jtca(*args, officer=officer, ok=ok)

    def data(*args: str, officer: str | None = None) -> Any:
        return desks.data(*args, officer=officer)

    jtca("init")  # the state folder and its embedded service (on this test's database)
    shares = [s["share"] for s in data("ceremony", "init-token", EXAMPLE)["pin_shares"]]
    custodians = write_shares(tmp_path / "custodians", [shares[0], shares[2]])
    key = share_args(custodians)
    jtca("ceremony", "run", EXAMPLE, *key, "--witness", "赵六 (公证员)")
    desks.bootstrap(
        [
            ("ca-op-1", None, None),
            ("publisher-1", "publisher", None),
            ("em-1", "emergency-publisher", None),
            ("em-2", "emergency-publisher", None),
        ],
        custodians,
    )

    # an issuer, its interop certificate, a ride QR code
    jtca("token", "init", "--token", "ISSUER-1")
    issuer_key = data("token", "keygen", "--token", "ISSUER-1", "--label", "k", "--kind", "sm2")[
        "uri"
    ]
    request = tmp_path / "req.der"
    jtca(
        "issuer",
        "request",
        "--token",
        "ISSUER-1",
        "--key",
        issuer_key,
        "--issuer-id",
        "02113450",
        "--name",
        "示例发行机构",
        "--expiry",
        "1230",
        "--out",
        str(request),
    )
    jtca("issuer", "register", "--issuer-id", "02113450", "--name", "示例发行机构",
         officer="ca-op-1")  # fmt: skip
    interop = tmp_path / "interop.bin"
    jtca("ca", "issue", "--request", str(request), "--ca-index", "1", *key,
         "--out", str(interop), officer="ca-op-1")  # fmt: skip
    ride = tmp_path / "ride.bin"
    jtca(
        "issuer",
        "make-qr",
        "--token",
        "ISSUER-1",
        "--key",
        issuer_key,
        "--interop-cert",
        str(interop),
        "--out",
        str(ride),
    )

    # nothing signs without the key; a dry run signs and writes nothing
    no_key = jtca("publish", officer="publisher-1", ok=False)
    assert no_key.returncode == 3
    assert "--share" in no_key.stderr
    denied = jtca("publish", *key, officer="ca-op-1", ok=False)
    assert denied.returncode == 6
    assert "deny/no-role" in denied.stderr
    nobody = jtca("publish", *key, ok=False)  # no session at this desk, no --officer
    assert (nobody.returncode, nobody.stderr.startswith("jtca: Not signed in:")) == (6, True)
    dry = data("publish", "--dry-run", officer="publisher-1")
    assert {d["action"] for d in dry} == {"would-publish"}
    lists = state / "lists"
    assert not (lists / "issuer-whitelist.der").exists()

    first = {d["list"]: d for d in data("publish", *key, officer="publisher-1")}
    assert {d["action"] for d in first.values()} == {"published"}
    assert first["issuer-whitelist"]["diff"]["added"] == ["02113450"]
    assert first["ca-key-list"]["entries"] == 1
    assert first["city-list"]["entries"] == 0
    # the timer's run (docs/deploy): no session file — it signs in for the run with the
    # publisher's own token, whose PIN is a credential file like the list key's; nothing to do
    # the second time
    pin_file = tmp_path / "publisher.pin"
    pin_file.write_bytes(combine_secret([shares[0], shares[2]]))
    officer_pin_file = tmp_path / "publisher-officer.pin"
    officer_pin_file.write_text(officer_pin("publisher-1"))
    timer = ["--officer", "publisher-1", "--officer-pin-source", f"file:{officer_pin_file}"]
    again = data("publish", *timer, "--pin-source", f"file:{pin_file}")
    assert {d["action"] for d in again} == {"unchanged"}  # idempotent
    assert not desks.session_file("nobody").exists()  # the run's session was its own

    # anyone can check a published list: OpenSSL with the documented commands, and jtca
    root = tmp_path / "root.der"
    jtca("lists", "root", "--out", str(root))
    (tmp_path / "openssl").mkdir()
    judged = run_documented(
        tmp_path / "openssl", (lists / "issuer-whitelist.der").read_bytes(), root.read_bytes()
    )
    assert judged.returncode == 0, judged.stderr
    assert VERIFIED in judged.stdout
    shown = json.loads(
        jtca("lists", "verify", str(lists / "issuer-whitelist.der"), "--root", str(root)).stdout
    )
    assert shown["entries"][0]["status"] == "active"
    assert (lists / "archive" / "issuer-whitelist" / "issuer-whitelist-0000000001.der").is_file()

    # the acceptor takes its CA keys and issuers from the verified lists
    inspect = [
        "qr",
        "inspect",
        str(ride),
        "--lists",
        str(lists),
        "--root",
        str(root),
        "--require-accepted",
        "--json",
    ]
    accepted = json.loads(jtca(*inspect).stdout)
    assert accepted["checks"]["acceptor"]["accepted"] is True

    # revoke the issuer's certificate: the next publish shows it, the acceptor refuses the QR
    jtca("ca", "revoke", "--ca-index", "1", "--serial", "1", "--reason", "key compromise",
         officer="ca-op-1")  # fmt: skip
    second = {d["list"]: d for d in data("publish", *key, officer="publisher-1")}
    assert second["issuer-whitelist"]["action"] == "published"
    assert second["issuer-whitelist"]["sequence"] == 2
    assert second["issuer-whitelist"]["diff"]["changed"] == {
        "02113450": {"status": ["active", "revoked"]}
    }
    assert second["ca-key-list"]["action"] == "unchanged"
    refused = jtca(*inspect, ok=False)
    assert refused.returncode == 4
    assert json.loads(refused.stdout)["checks"]["acceptor"]["accepted"] is False
    old = jtca(
        "lists",
        "verify",
        str(lists / "archive" / "issuer-whitelist" / "issuer-whitelist-0000000001.der"),
        "--root",
        str(root),
        "--previous-sequence",
        "2",
        ok=False,
    )
    assert old.returncode == 4
    assert "rollback" in old.stderr

    # two publishers at once after a change: one new version, both succeed
    jtca("issuer", "register", "--issuer-id", "02113451", "--name", "另一发行机构",
         officer="ca-op-1")  # fmt: skip  # not on the list until certified: content unchanged
    procs = [
        subprocess.Popen(
            [JTCA, "publish", *key, "--json"],
            env=desks.env("publisher-1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    history = data("lists", "history", "--list", "issuer-whitelist")
    assert [h["sequence"] for h in history] == [1, 2]

    # emergency publication (第三十四条): dual control, then every list at once
    asked = data("lists", "emergency", "--reason", "issuer key leaked", officer="em-1")
    assert asked["state"] == "pending"
    approve = ["lists", "approve", str(asked["request"]), *key, "--officer-pin-source",
               "env:OFFICER_PIN"]  # fmt: skip
    own = jtca(*approve, officer="em-1", ok=False)
    assert own.returncode == 6
    assert "You sign: APPROVE action" in own.stderr  # shown before it was signed
    urgent = {d["list"]: d for d in data(*approve, officer="em-2")}
    assert {d["why"] for d in urgent.values()} == {"emergency"}
    assert urgent["issuer-whitelist"]["sequence"] == 3
    assert data("lists", "history", "--list", "city-list")[-1]["emergency"] is True
    # run by its number, in the positional shape (--emergency N is the old spelling): it ran
    number = str(asked["request"])
    rerun = jtca("publish", "emergency", number, *key, officer="em-2", ok=False)
    assert f"request #{number} is done, not approved" in rerun.stderr, rerun.stderr
    old = jtca("publish", "--emergency", number, *key, officer="em-2", ok=False)
    assert (old.returncode, old.stderr) == (rerun.returncode, rerun.stderr)
    wrong = jtca("publish", "urgent", number, *key, officer="em-2", ok=False)
    assert wrong.returncode == 3, wrong.stderr
    assert f"jtca publish urgent {number}: say jtca publish emergency N" in wrong.stderr

    # another folder mirrors every version the service published, and the current lists, each
    # with its log proof beside it (docs/lists.md) once a checkpoint covers it: the publisher
    # asks for one now rather than wait for the service's own
    jtca("audit", "checkpoint", officer="publisher-1")
    mirror = tmp_path / "mirror"
    quiet = data("publish", *key, "--out", str(mirror), officer="publisher-1")
    assert {d["action"] for d in quiet} == {"unchanged"}
    archive = mirror / "archive" / "issuer-whitelist"
    versions = [f"issuer-whitelist-{n:010d}.der" for n in (1, 2, 3)]
    assert sorted(p.name for p in archive.glob("*.der")) == versions
    assert sorted(p.name for p in archive.glob("*.proof")) == [f"{v}.proof" for v in versions]
    for version in versions:
        proof = json.loads((archive / f"{version}.proof").read_text(encoding="utf-8"))
        assert proof["format"] == "jtca-log-proof/1"
    for name in ("issuer-whitelist", "city-list", "ca-key-list"):
        assert (mirror / f"{name}.der").read_bytes() == (lists / f"{name}.der").read_bytes()
        assert json.loads((mirror / f"{name}.json").read_text(encoding="utf-8"))["sequence"] > 1
    # the proof beside the current list is its own, and checks offline with the audit
    # certificate the root ceremony left; another version's proof is refused at its object
    beside = mirror / "issuer-whitelist.der.proof"
    assert beside.read_bytes() == (archive / f"{versions[2]}.proof").read_bytes()
    audit_certs = sorted((state / "ceremonies").glob("audit-*.pem"))
    assert len(audit_certs) == 1
    anchors = ["--audit-cert", str(audit_certs[0])]
    held = data("lists", "check-proof", "--list", str(mirror / "issuer-whitelist.der"), *anchors)
    assert (held["ok"], held["entry"]["action"], held["entry"]["subject"]) == (
        True,
        "list.emergency-publish",
        "issuer-whitelist 3",
    )
    assert held["entry"]["seq"] == held["index"] + 1 <= held["size"]
    other = jtca("lists", "check-proof", "--list", str(archive / versions[1]),
                 "--proof", str(beside), *anchors, ok=False)  # fmt: skip
    assert other.returncode == 8
    assert other.stderr.startswith("jtca: Log proof: object: "), other.stderr

    # while another publisher holds the lock, a run gives up after --wait with 75 (EX_TEMPFAIL)
    fd = os.open(state / "published" / ".publish.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = jtca("publish", *key, "--wait", "0.5", officer="publisher-1", ok=False)
    finally:
        os.close(fd)
    assert busy.returncode == 75, busy.stderr
    assert "Publisher busy" in busy.stderr

    # operators report loading; a bad row is refused with its line, the good one kept
    jtca("lists", "operator-add", "--id", "gz-metro", "--name", "广州地铁", "--province",
         "440000", officer="ca-op-1")  # fmt: skip
    report = tmp_path / "acks.csv"
    report.write_text(
        "operator,list,sequence,loaded_at,terminals\n"
        "gz-metro,issuer-whitelist,3,2099-01-01T00:00:00Z,10\n"
        "gz-metro,city-list,9,2026-11-25T00:00:00Z,10\n",
        encoding="utf-8",
    )
    loaded = jtca("lists", "ack", str(report), "--json", officer="publisher-1", ok=False)
    assert loaded.returncode == 3
    refused_rows = json.loads(loaded.stdout)["refused"]
    assert [(r["line"], r["field"]) for r in refused_rows] == [(2, "loaded_at"), (3, "sequence")]
    assert data("lists", "overdue") == []  # nothing is 15 days old yet
    assert json.loads(jtca("audit", "verify", "--json", officer="ca-op-1").stdout)["ok"] is True
