"""``jtca qr demo`` end to end through the real console script, keys in SoftHSM2 tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ca.core.clock import SystemClock
from ca.qr.image import decode_image
from ca.qr.verify import PayloadVerifier
from ca.vault.embedded import embedded_token
from hsm.pkcs11.keys import KeyKind

JTCA = str(Path(sys.executable).with_name("jtca"))


def run_demo(state: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JTCA_STATE=str(state))
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run(
        [JTCA, "qr", "demo"], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def test_demo_signs_with_token_keys(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_demo(state)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    out = first.stdout
    for step in range(1, 9):
        assert f"[{step}]" in out
    assert "pkcs11:token=JTCA-DEMO-MOT;object=qr-ca-1" in out
    assert "pkcs11:token=JTCA-DEMO-ISSUER;object=qr-issuer-02113450" in out
    assert out.count("signing path         host-assisted") == 2
    assert "accepted, 3 SM2 verifications" in out
    assert "accepted, 1 SM2 verification" in out
    assert "rejected: bad-user-signature" in out

    demo = state / "demo"
    payload = (demo / "ride.bin").read_bytes()
    assert decode_image((demo / "ride.png").read_bytes()) == payload
    assert (demo / "ride.svg").read_text(encoding="utf-8").startswith("<?xml")
    # the PIN files of the embedded default are private to the owner
    for pin_file in (state / "softhsm2").glob("*.pin"):
        assert pin_file.stat().st_mode & 0o077 == 0

    # The CA key that signed the payload is the one in the token: read it from there.
    ministry = embedded_token("JTCA-DEMO-MOT", state)
    keys = ministry.store.list_keys()
    assert [(k.label, k.kind) for k in keys] == [("qr-ca-1", KeyKind.SM2)]
    ca_public = keys[0].public_key
    assert ca_public is not None
    verifier = PayloadVerifier(
        ca_keys={1: ca_public}, accepted_issuers={"02113450"}, clock=SystemClock(), skew=600
    )
    assert verifier.verify(payload).signatures_verified == 3
    ministry.token.close()

    # jtca qr inspect reads the image back and judges every signature with the token's key.
    inspected = subprocess.run(
        [
            JTCA,
            "qr",
            "inspect",
            str(demo / "ride.png"),
            "--json",
            "--ca-key",
            f"1={ca_public.compressed.hex()}",
            "--accept-issuer",
            "02113450",
            "--skew",
            "600",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert report["signatures"] == {"ca": "valid", "issuer": "valid", "user": "valid"}
    assert report["checks"]["acceptor"]["accepted"] is True

    # A second run reuses the tokens and their keys.
    second = run_demo(state)
    assert second.returncode == 0, second.stderr
    assert ca_public.compressed.hex() in second.stdout


# -- jtca demo: the demo world seeded by a real embedded service -------------------------------
def demo_env(state: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60", **extra)
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")  # no user config file here
    return env


def jtca(state: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JTCA, *args],
        capture_output=True,
        text=True,
        env=demo_env(state, **extra),
        check=False,
        timeout=300,
    )


def jtca_demo(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return jtca(state, "demo", *args)


def test_jtca_demo_no_console_seeds_through_the_embedded_service(tmp_path: Path) -> None:
    """From a clean state folder, unattended: the service seeds the history, the demo's client
    makes every officer's personal token and enrols it; each officer then signs in with
    ``jtca login`` and the PIN listed for them, and no PIN or share is in a log."""
    from asn1crypto import pem as asn1_pem
    from asn1crypto import x509 as asn1_x509

    from ca.client.config import Target, socket_path
    from ca.client.embedded import stop
    from ca.client.http import ServiceError, connect
    from ca.demo.credentials import load_credentials
    from ca.ops import audit as audit_ops
    from ca.ops import city as city_ops
    from ca.ops import demo as demo_ops
    from ca.ops import lists as lists_ops
    from ca.ops import officers as officer_ops
    from ca.ops.base import Empty

    state = tmp_path / "state"
    try:
        first = jtca_demo(state, "--no-console")
        assert first.returncode == 0, first.stderr
        assert first.stderr == ""
        assert f"jtca demo: seeding {state}" in first.stdout
        assert "11 officers' personal tokens" in first.stdout
        # every holder's transport keys, both halves (issue #15)
        assert "transport keys (a signing and an encryption key pair per holder)" in first.stdout
        for holder, token in (("ministry", "MOT-KEYS"), ("440100", "GZ-KEYS")):
            assert f"pkcs11:token={token};object=transport-{holder}-sign-" in first.stdout
            assert f"pkcs11:token={token};object=transport-{holder}-enc-" in first.stdout
        assert "sign-in secrets for the demo officers" in first.stdout
        # the service wrote the database and its tokens; the client marked the folder, made the
        # officers' tokens and completed the credentials file
        credentials = state / demo_ops.CREDENTIALS
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert (state / "jtca.db").is_file()
        assert (state / "jtca-state.toml").read_text().count('kind = "demo"') == 1
        assert (state / "jtca-service.pid").is_file()
        secrets = load_credentials(state)
        assert secrets.stage == "complete"
        listed = json.loads(credentials.read_text(encoding="utf-8"))
        assert listed["format"] == "jtca-demo-credentials/2"
        assert set(listed["officers"][0]) == {
            "id",
            "name",
            "roles",
            "province",
            "token_label",
            "pin",
            "certificate_serial",
            "enrolled_by",
        }
        assert len(secrets.shares) == 2
        for secret in [*secrets.pins.values(), *secrets.shares]:
            assert secret not in first.stdout
        # the demo's log verifies on the embedded state, no one signed in, against the
        # checkpoints in state/log and the audit certificate the ceremony left outside the
        # database (issue #13)
        assert sorted(p.name.split("-")[0] for p in (state / "ceremonies").glob("*.pem")) == [
            "audit",
            "root",
        ]
        checked = jtca(state, "audit", "verify", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        verdict = json.loads(checked.stdout)
        assert verdict["ok"] is True
        assert verdict["findings"] == []
        assert verdict["newest_checkpoint"] >= 1
        assert (
            str(state / "log") in verdict["newest_source"] or "database" in verdict["newest_source"]
        )

        target = Target("embedded", f"unix://{socket_path(state)}", state=state)
        client = connect(target=target, anonymous=True)
        try:
            # each listed officer is the service's: same roles and province, and the listed
            # certificate is the one in force, for the key in their own token
            registry = {o.id: o for o in client.call(officer_ops.LIST, Empty()).officers}
            assert sorted(registry) == sorted(o.id for o in secrets.officers)
            assert len(registry) == 11
            for officer in secrets.officers:
                view = registry[officer.id]
                assert (list(officer.roles), officer.province) == (view.roles, view.province)
                assert officer.token_label == f"officer-{officer.id}"
                assert officer.pin
                assert len(officer.pin) >= 16
                assert view.certificate is not None
                assert view.certificate.status == "active"
                assert view.certificate.serial == officer.certificate_serial
                assert view.certificate.token_label == officer.token_label
                _, _, der = asn1_pem.unarmor(view.certificate.pem.encode())
                subject = asn1_x509.Certificate.load(der).subject.human_friendly
                assert officer.id in subject
            enrolled_by = {o.id: o.enrolled_by for o in secrets.officers}
            assert enrolled_by["mot-root-1"] == enrolled_by["mot-root-2"] == "root share quorum"
            assert all(
                (how or "").startswith("enrolment ")
                for officer_id, how in enrolled_by.items()
                if officer_id not in {"mot-root-1", "mot-root-2"}
            )
            freshness = client.call(lists_ops.FRESHNESS, Empty())
            # published in the history (six weeks back) and again by the day's work
            assert [entry.sequence for entry in freshness.lists] == [2, 2, 2]
            status = client.call(demo_ops.STATUS, Empty())
            assert status.seeded
            assert status.credentials == str(credentials.resolve())
            with pytest.raises(ServiceError, match="not empty") as refused:
                client.call(demo_ops.SEED, Empty())
            assert refused.value.title == "Demo refused"
        finally:
            client.close()

        # every officer signs in with jtca login and the PIN listed for them (never typed on
        # the command line: env:VAR)
        for officer in secrets.officers:
            assert officer.pin is not None
            login = jtca(
                state,
                "login",
                "--officer",
                officer.id,
                "--pin-source",
                "env:DEMO_OFFICER_PIN",
                "--json",
                DEMO_OFFICER_PIN=officer.pin,
            )
            assert login.returncode == 0, (officer.id, login.stderr)
            signed = json.loads(login.stdout)
            assert signed["officer"] == officer.id
            assert signed["certificate_serial"] == officer.certificate_serial
            session_file = Path(signed["session_file"])
            assert session_file.stat().st_mode & 0o777 == 0o600
            who = jtca(state, "whoami", "--json")
            assert who.returncode == 0, who.stderr
            assert json.loads(who.stdout)["officer"]["id"] == officer.id
            if officer.id not in {"gd-1", "auditor-1"}:
                assert jtca(state, "logout").returncode == 0
                assert not session_file.exists()
            else:
                keep = session_file.with_name(f"{officer.id}.json")
                session_file.rename(keep)
        # a wrong PIN is refused, and says so without a traceback
        wrong = jtca(
            state,
            "login",
            "--officer",
            "gd-2",
            "--pin-source",
            "env:DEMO_OFFICER_PIN",
            DEMO_OFFICER_PIN="not-the-pin-0000",
        )
        assert wrong.returncode != 0
        assert "Traceback" not in wrong.stderr

        # the demo world as gd-1 sees it through gd-1's session (signed requests)
        sessions = Path(os.environ["XDG_STATE_HOME"]) / "jtca" / "sessions"
        session_of = {name: sessions / f"{name}.json" for name in ("gd-1", "auditor-1")}
        for officer_id, saved in session_of.items():
            saved.rename(sessions / "current.json")
            os.environ["JTCA_SESSION"] = str(sessions / "current.json")
            try:
                client = connect(target=target)
                assert client.officer == officer_id
                try:
                    if officer_id == "gd-1":
                        summary = client.call(city_ops.SUMMARY, city_ops.SummaryRequest())
                        assert (summary.dormant, summary.suspended) == (2, 1)
                        zhuhai = client.call(
                            city_ops.APPLICATIONS, city_ops.ApplicationsRequest(state="pending")
                        )
                        assert [(a.cities, a.applicant) for a in zhuhai.applications] == [
                            (["440400"], "gd-2")
                        ]
                    else:
                        bundle = client.call(audit_ops.EXPORT, Empty()).bundle
                finally:
                    client.close()
            finally:
                del os.environ["JTCA_SESSION"]
                (sessions / "current.json").rename(saved)

        # the day's approvals are signed: the suspension's approval names ca-op-2's certificate
        events = json.loads(bundle)["entries"]
        approvals = [e for e in events if e["action"] == "city-key.suspend.approve"]
        assert len(approvals) == 1
        details = approvals[0]["details"]
        details = json.loads(details) if isinstance(details, str) else details
        assert details["certificate_serial"] == secrets.officer("ca-op-2").certificate_serial
        (asked,) = [e for e in events if e["action"] == "city-key.suspend.request"]
        assert asked["subject"] == "action 2"  # action 1: the history's revocation
        assert details["statement"].startswith(f"jtca-approval/1\nsubject: {asked['subject']}\n")
        assert details["signature"]
        enrolments = [e for e in events if e["action"] == "officer.enrol.approve"]
        assert len(enrolments) == 9

        # no PIN and no share in the service's log, the audit log or the database
        logs = b"".join(p.read_bytes() for p in (state / "logs").rglob("*") if p.is_file())
        database = b"".join(p.read_bytes() for p in state.glob("jtca.db*") if p.is_file())
        assert logs
        for secret in [*secrets.pins.values(), *secrets.shares]:
            assert secret.encode() not in logs
            assert secret.encode() not in bundle
            assert secret.encode() not in database

        second = jtca_demo(state, "--no-console")
        assert second.returncode == 0, second.stderr
        assert "seeding" not in second.stdout  # seeded once
        assert "personal tokens" not in second.stdout  # and completed once
        assert load_credentials(state) == secrets
    finally:
        stop(state)


def test_an_interrupted_demo_goes_on_or_says_to_start_over(tmp_path: Path) -> None:
    """A demo whose client stopped during its signed requests is not half-redone."""
    from ca.client.embedded import stop
    from ca.demo.credentials import load_credentials, write_credentials

    state = tmp_path / "state"
    try:
        assert jtca_demo(state, "--no-console").returncode == 0
        done = load_credentials(state)
        from dataclasses import replace

        write_credentials(state, replace(done, stage="signing"))
        again = jtca_demo(state, "--no-console")
        assert again.returncode != 0
        assert "interrupted part-way" in again.stderr
        assert "Traceback" not in again.stderr
        assert (state / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
    finally:
        stop(state)


def test_jtca_demo_refuses_a_configured_service(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_URL="https://ca.example.internal:8443")
    done = subprocess.run(
        [JTCA, "demo", "--no-console"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode != 0
    assert "jtca: Demo refused: jtca demo runs on the embedded default only" in done.stderr
    assert not state.exists()  # nothing made, nothing seeded
