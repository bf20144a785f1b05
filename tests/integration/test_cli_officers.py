"""Issue #12 on the command line: officers who prove who they are, through the real `jtca`.

Every officer has a SoftHSM2 token of their own (``jtca officer keygen --create-token``), a
certificate from an enrolment — the first ones under the root token's custodians' quorum, the
provincial officers requested by one ministry root officer and approved by a second with a
signature of their own token — and a desk of their own: a session file (``JTCA_SESSION``) that
``jtca login`` wrote after their token answered the service's challenge. There is no
``--actor``: who acts is whoever signed in.

- The officer story with two provincial officers holding two real personal tokens: apply
  (gd-1) → approve as a second officer (ca-op-1, signed by their token) → generate → deliver →
  import → suspend a misused key (gd-1) → approve (gd-2). One person typing two names cannot
  pass dual control: there is no name to type, and their own session is refused.
- Sign-in and out: whoami, logout, a wrong PIN said plainly, another officer's name with one's
  own token refused, the session file readable by its owner only, a suspended officer stopped
  at the next request.
- No option of any command takes an officer's name, a PIN or a share as its value.

Each runs against the embedded service and against a real `jtca serve` over TLS 1.3.
"""

from __future__ import annotations

import argparse
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_desks import PIN_SOURCE, Desks, run, share_args, write_shares
from officer_desk import officer_pin
from test_cli_city import EXAMPLE, cli_service

ROOTS = (("mot-root-1", None, None), ("mot-root-2", "ministry-root-officer", None))
PROVINCE = (("gd-1", "provincial-officer", "440000"), ("gd-2", "provincial-officer", "440000"))


@pytest.fixture(params=["embedded", "tls"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    with cli_service(request.param, f"sqlite:///{tmp_path / 'jtca.db'}", tmp_path) as made:
        yield made


def root_ceremony(desks: Desks, folder: Path) -> list[Path]:
    """The root ceremony; the custodians' shares (two of three) as files of their own."""
    shares = desks.data("ceremony", "init-token", EXAMPLE)["pin_shares"]
    custodians = write_shares(folder, [shares[0]["share"], shares[2]["share"]])
    desks.jtca("ceremony", "run", EXAMPLE, *share_args(custodians), "--witness", "赵六 (公证员)")
    return custodians


def enrol_by_two_root_officers(desks: Desks, officer: tuple[str, str, str]) -> dict[str, Any]:
    """``officer``'s token makes their key; mot-root-1 asks, mot-root-2 approves (signed)."""
    officer_id, role, province = officer
    made = desks.keygen(officer_id)
    new_pin = {"NEW_PIN": officer_pin(officer_id)}  # the new officer types it at the desk
    asked = desks.data(
        "officer", "enrol", "--officer", officer_id, "--role", role, "--province", province,
        "--pin-source", "env:NEW_PIN", officer="mot-root-1", **new_pin,
    )  # fmt: skip
    assert (asked["state"], asked["requested_by"]) == ("pending", "mot-root-1")
    number = str(asked["enrolment"])
    listed = desks.data("officer", "enrolments", officer="mot-root-2")
    assert [e["officer"] for e in listed] == [officer_id]
    own = desks.jtca("officer", "approve", "--enrolment", number, *PIN_SOURCE,
                     officer="mot-root-1", ok=False)  # fmt: skip
    assert own.returncode == 6
    assert "dual control" in own.stderr
    approve = ["officer", "approve", "--enrolment", number, *PIN_SOURCE, "--json"]
    approved = desks.jtca(*approve, officer="mot-root-2")
    # the approver saw what they signed: the request, its SM3, the new key's SM3 from keygen
    assert f"You sign: APPROVE enrolment {number}" in approved.stderr
    assert "officer.enrol by mot-root-1" in approved.stderr
    assert f"public_key SM3: {made['sm3']}" in approved.stderr
    decided: dict[str, Any] = json.loads(approved.stdout)
    assert decided["state"] == "approved"
    assert decided["certificate"]["status"] == "active"
    return decided


def test_the_officer_story_with_two_personal_tokens(env: dict[str, str], tmp_path: Path) -> None:
    desks = Desks(env, tmp_path / "desks", cwd=tmp_path)
    jtca, data = desks.jtca, desks.data
    custodians = root_ceremony(desks, tmp_path / "custodians")
    # the first officers: enrolled under the custodians' quorum, each signed in at their desk
    desks.bootstrap([*ROOTS, ("ca-op-1", None, None), ("auditor-1", None, None)], custodians)
    # the two provincial officers: dual-control enrolment with their own new tokens
    for officer in PROVINCE:
        enrol_by_two_root_officers(desks, officer)
        desks.login(officer[0])
    officers = {o["id"]: o for o in data("officer", "list")}
    assert {o: officers[o]["certificate"]["token_label"] for o in ("gd-1", "gd-2")} == {
        "gd-1": "officer-gd-1",
        "gd-2": "officer-gd-2",
    }
    assert officers["gd-1"]["certificate"]["issued_by"] == "mot-root-1+mot-root-2"

    jtca("city", "transport-key", "--holder", "ministry", "--token", "MOT-KEYS",
         officer="mot-root-1")  # fmt: skip
    jtca("city", "transport-key", "--holder", "440000", "--token", "GD-KEYS", officer="gd-1")
    jtca("city", "transport-key", "--holder", "440100", "--token", "GZ-KEYS", officer="gd-1")

    # apply (gd-1) → approve as a second officer (ca-op-1, signed by their own token)
    application = str(data("city", "apply", "--city", "440100", officer="gd-1")["application"])
    self_approval = jtca("city", "approve", "--application", application, *PIN_SOURCE,
                         officer="gd-1", ok=False)  # fmt: skip
    assert self_approval.returncode == 6
    assert "dual control" in self_approval.stderr
    approving = jtca("city", "approve", "--application", application, *PIN_SOURCE, "--json",
                     officer="ca-op-1")  # fmt: skip
    assert json.loads(approving.stdout)["state"] == "approved"
    shown = approving.stderr
    assert f"You sign: APPROVE application {application}" in shown
    assert "city.apply by gd-1" in shown
    request_sm3 = shown.split("its SM3:", 1)[1].split()[0]
    assert len(request_sm3) == 64

    # generate → deliver → import (province) → deliver onward → import (city)
    keys = data("city", "generate", application, officer="mot-root-1")
    assert sorted(k["class"] for k in keys) == ["city-card", "city-qr"]
    sent = data("city", "deliver", "--application", application, "--out",
                str(tmp_path / "to-gd"), officer="mot-root-1")  # fmt: skip
    held = data("city", "import", *[d["file"] for d in sent], officer="gd-1")
    assert {i["stage"] for i in held} == {"held-by-province"}
    onward = data("city", "deliver", "--application", application, "--out",
                  str(tmp_path / "to-gz"), officer="gd-1")  # fmt: skip
    installed = data("city", "import", *[d["file"] for d in onward], officer="gd-2")
    assert {(i["token"], i["stage"]) for i in installed} == {("GZ-KEYS", "installed")}

    # the QR key in use (an activation report), then misused: suspend it (gd-1) → the same
    # person cannot approve it, whatever they type
    qr = next(k for k in keys if k["class"] == "city-qr")
    moment = datetime.now(UTC).replace(microsecond=0)
    used = [(moment + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in (1, 2)]
    report = tmp_path / "usage.csv"
    report.write_text(
        f"key,city,first_use,last_use,used_in\n{qr['label']},440100,{used[0]},{used[1]},440106\n",
        encoding="utf-8",
    )
    assert data("city", "usage", str(report), officer="gd-1")["activated"] == [qr["label"]]
    asked = data("city", "suspend", "--key", str(qr["id"]), "--reason", "used outside 440100",
                 officer="gd-1")  # fmt: skip
    assert asked["state"] == "pending"
    action = str(asked["action_id"])
    again = jtca("city", "approve", "--action", action, *PIN_SOURCE, officer="gd-1", ok=False)
    assert again.returncode == 6
    assert "dual control" in again.stderr
    typed = jtca("city", "approve", "--action", action, "--actor", "gd-2", *PIN_SOURCE,
                 officer="gd-1", ok=False)  # fmt: skip
    assert typed.returncode == 2
    assert "unrecognized arguments: --actor" in typed.stderr
    # gd-1 cannot become gd-2 either: their own token does not answer for gd-2's certificate
    borrowed = jtca("login", "--officer", "gd-2", "--token", "officer-gd-1", *PIN_SOURCE,
                    officer="gd-1", ok=False)  # fmt: skip
    assert borrowed.returncode == 6
    assert borrowed.stderr.startswith("jtca: Not authenticated: ")
    assert data("whoami", officer="gd-1")["officer"]["id"] == "gd-1"  # still only gd-1
    # → approve (gd-2, with gd-2's own token)
    done = data("city", "approve", "--action", action, *PIN_SOURCE, officer="gd-2")
    assert done["state"] == "done"
    assert [k["label"] for k in data("city", "keys", "--suspended", officer="gd-2")] == [
        qr["label"]
    ]

    # the audit log (the auditor's to export) keeps each approval's token signature over
    # exactly what was approved
    bundle = tmp_path / "audit.json"
    jtca("audit", "export", "--out", str(bundle), officer="auditor-1")
    entries = json.loads(bundle.read_text(encoding="utf-8"))["entries"]
    details = [(e["actor"], e["subject"], json.loads(e["details"] or "{}")) for e in entries]
    signed = {(who, what): d for who, what, d in details if "signature" in d}
    whoami = {o: data("whoami", officer=o) for o in ("ca-op-1", "gd-2")}
    approval = signed[("ca-op-1", f"application {application}")]
    assert approval["request_sm3"] == request_sm3
    assert approval["certificate_serial"] == whoami["ca-op-1"]["certificate_serial"]
    suspension = signed[("gd-2", f"action {action}")]
    assert suspension["certificate_serial"] == whoami["gd-2"]["certificate_serial"]
    assert json.loads(jtca("audit", "verify", "--json", officer="auditor-1").stdout)["ok"] is True


def test_sign_in_whoami_and_out(env: dict[str, str], tmp_path: Path) -> None:
    desks = Desks(env, tmp_path / "desks", cwd=tmp_path)
    jtca = desks.jtca
    custodians = root_ceremony(desks, tmp_path / "custodians")
    for officer in (*ROOTS, ("gd-1", "provincial-officer", "440000")):
        desks.enrol_by_quorum(officer, custodians)

    # nobody signed in: a command that needs an officer stops before any request
    nobody = jtca("city", "apply", "--city", "440100", officer="gd-1", ok=False)
    assert nobody.returncode == 6
    assert nobody.stderr.startswith("jtca: Not signed in: city.apply needs a signed-in officer")
    assert "jtca login --officer ID" in nobody.stderr
    assert jtca("whoami", officer="gd-1", ok=False).stderr.startswith("jtca: Not signed in: ")

    # a wrong PIN is said plainly, and signs nobody in
    wrong = jtca("login", "--officer", "gd-1", *PIN_SOURCE, officer="gd-1", ok=False,
                 OFFICER_PIN="not-the-pin")  # fmt: skip
    assert wrong.returncode == 5
    assert wrong.stderr.startswith("jtca: Wrong PIN: wrong PIN for token 'officer-gd-1'")
    assert "not-the-pin" not in wrong.stderr
    assert not desks.session_file("gd-1").exists()
    # a PIN is never a command-line value
    typed = jtca("login", "--officer", "gd-1", "--pin-source", officer_pin("gd-1"),
                 officer="gd-1", ok=False)  # fmt: skip
    assert typed.returncode == 3
    assert "never typed on the command line" in typed.stderr
    assert officer_pin("gd-1") not in typed.stderr  # the mistaken value is not echoed back

    signed = desks.login("gd-1")
    assert (signed["roles"], signed["province"]) == (["provincial-officer"], "440000")
    session = desks.session_file("gd-1")
    assert signed["session_file"] == str(session)
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert stat.S_IMODE(session.parent.stat().st_mode) == 0o700
    kept = json.loads(session.read_text(encoding="utf-8"))
    assert officer_pin("gd-1") not in session.read_text(encoding="utf-8")  # no PIN is kept
    assert (kept["officer"], kept["token_label"]) == ("gd-1", "officer-gd-1")
    shown = jtca("whoami", officer="gd-1").stdout
    assert shown.startswith("gd-1 (gd-1): provincial-officer, province 440000")
    assert "city-key.apply" in shown
    who = desks.data("whoami", officer="gd-1")
    assert who["officer"]["id"] == "gd-1"
    assert who["idle_seconds"] == 900
    assert who["expires_at"] - who["signed_in_at"] == 28800

    # signing in again ends the session the file held, at the service too
    earlier = tmp_path / "earlier-session.json"
    earlier.write_text(session.read_text(encoding="utf-8"), encoding="utf-8")
    earlier.chmod(0o600)
    desks.login("gd-1")
    replaced = jtca("whoami", officer="gd-1", ok=False, JTCA_SESSION=str(earlier))
    assert replaced.returncode == 6
    assert "the session has ended" in replaced.stderr
    assert "(jtca login --officer ID)" in replaced.stderr

    # a session file others can read is refused, not used
    session.chmod(0o644)
    exposed = jtca("whoami", officer="gd-1", ok=False)
    assert (exposed.returncode, "readable by others" in exposed.stderr) == (3, True)
    session.chmod(0o600)

    # a suspended officer can do nothing from the next request on
    desks.login("mot-root-1")
    suspended = desks.data("officer", "suspend", "--officer", "gd-1", "--reason",
                           "token reported lost", officer="mot-root-1")  # fmt: skip
    assert suspended["certificate"]["status"] == "suspended"
    stopped = jtca("city", "apply", "--city", "440100", officer="gd-1", ok=False)
    assert stopped.returncode == 6
    assert stopped.stderr.startswith("jtca: Not authenticated: ")
    assert "(jtca login --officer ID)" in stopped.stderr
    refused = jtca("login", "--officer", "gd-1", *PIN_SOURCE, officer="gd-1", ok=False)
    assert (refused.returncode, "suspended" in refused.stderr) == (6, True)
    desks.jtca("officer", "reinstate", "--officer", "gd-1", officer="mot-root-1")
    desks.login("gd-1")
    assert desks.data("whoami", officer="gd-1")["officer"]["id"] == "gd-1"

    out = desks.data("logout", officer="gd-1")
    assert out == {"officer": "gd-1", "ended": True}
    assert not session.exists()
    assert jtca("logout", officer="gd-1").stdout.startswith("not signed in")
    assert jtca("whoami", officer="gd-1", ok=False).returncode == 6

    # renewal certifies the same token key again; revocation is final
    before = desks.data("officer", "certificate", "--officer", "gd-1")["certificate"]
    renewed = desks.data("officer", "renew", "--officer", "gd-1", officer="mot-root-1")
    assert renewed["certificate"]["serial"] != before["serial"]
    assert renewed["certificate"]["status"] == "active"
    desks.login("gd-1")  # with the same token
    revoked = desks.data("officer", "revoke", "--officer", "gd-1", "--reason", "left the post",
                         officer="mot-root-1")  # fmt: skip
    assert revoked["certificate"]["status"] == "revoked"
    gone = jtca("login", "--officer", "gd-1", *PIN_SOURCE, officer="gd-1", ok=False)
    assert gone.returncode == 6

    # an enrolment the second root officer rejects, with a reason, signed by their token
    desks.keygen("gd-9")
    asked = desks.data("officer", "enrol", "--officer", "gd-9", "--role", "provincial-officer",
                       "--province", "440000", "--pin-source", "env:NEW_PIN",
                       officer="mot-root-1", NEW_PIN=officer_pin("gd-9"))  # fmt: skip
    desks.login("mot-root-2")
    reject = ["officer", "reject", "--enrolment", str(asked["enrolment"]), *PIN_SOURCE]
    assert jtca(*reject, officer="mot-root-2", ok=False).returncode == 2  # a reason is needed
    rejected = desks.data(*reject, "--reason", "not this key", officer="mot-root-2")
    assert (rejected["state"], rejected["certificate"]) == ("rejected", None)
    assert desks.data("officer", "enrolments", officer="mot-root-2") == []

    # the certificate and the officer CA, to check signatures offline
    ca_pem, cert_pem = tmp_path / "officer-ca.pem", tmp_path / "mot-root-1.pem"
    jtca("officer", "ca", "--out", str(ca_pem))
    jtca("officer", "certificate", "--officer", "mot-root-1", "--out", str(cert_pem))
    assert ca_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert cert_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")


def _options(parser: argparse.ArgumentParser, path: str = "jtca") -> Iterator[tuple[str, str]]:
    """``(command path, option string)`` of every option of every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        for option in action.option_strings:
            yield path, option


def test_no_actor_and_no_secret_on_the_command_line(tmp_path: Path) -> None:
    from ca.cli.main import build_parser

    options = list(_options(build_parser()))
    assert len({path for path, _ in options}) > 60  # every command was walked
    named = [(p, o) for p, o in options if o in ("--actor", "--pin", "--share", "--so-pin")]
    assert named == []
    secret_words = ("pin", "share", "secret", "password")
    for path, option in options:
        if any(word in option for word in secret_words):
            # only where a secret comes from (a source, a file, a prompt), or a count of shares
            assert option in {
                "--pin-source",
                "--officer-pin-source",
                "--share-file",
                "--share-prompt",
                "--secret-env",
                "--secret-file",
                "--shares",
            }, (path, option)
    shares = [p for p, o in options if o == "--share-file"]
    assert {
        "jtca ceremony run",
        "jtca ca issue",
        "jtca officer enrol",
        "jtca publish",
        "jtca lists emergency",
        "jtca lists approve",
        "jtca token restore",
        "jtca token check-shares",
    } <= set(shares)
    # the audit key is in the service's own token MOT-LOG: no audit command takes a share
    assert [p for p in shares if p.startswith("jtca audit ")] == []
    deciding = {p for p, o in options if o in ("--pin-source", "--officer-pin-source")}
    assert {
        "jtca city approve",
        "jtca city reject",
        "jtca officer approve",
        "jtca officer reject",
        "jtca lists approve",
        "jtca lists reject",
        "jtca login",
    } <= deciding

    env = {"JTCA_STATE": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    for command in (("city", "approve"), ("officer", "enrol"), ("publish",), ("login",)):
        shown = run(env, *command, "--help").stdout
        assert "--actor" not in shown
    refused = run(env, "city", "apply", "--city", "440100", "--actor", "gd-1", ok=False)
    assert refused.returncode == 2
    assert "unrecognized arguments: --actor gd-1" in refused.stderr
    abbreviated = run(env, "ceremony", "run", EXAMPLE, "--share", "JTCA1-x", ok=False)
    assert abbreviated.returncode == 2  # not taken for --share-file
