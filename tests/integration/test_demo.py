"""``jtca qr demo`` end to end through the real console script, keys in SoftHSM2 tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ca.clock import SystemClock
from ca.qr.image import decode_image
from ca.qr.verify import PayloadVerifier
from ca.tokens import embedded_token
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


# -- jtca demo: the demo world seeded by a real embedded service ---------------------------------
def jtca_demo(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")  # no user config file here
    return subprocess.run(
        [JTCA, "demo", *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )


def test_jtca_demo_no_console_seeds_through_the_embedded_service(tmp_path: Path) -> None:
    from ca.client.config import Target, socket_path
    from ca.client.console import sign_in
    from ca.client.embedded import stop
    from ca.client.http import ServiceError, connect
    from ca.demodata import load_credentials
    from ca.ops import demo as demo_ops
    from ca.ops.base import Empty

    state = tmp_path / "state"
    try:
        first = jtca_demo(state, "--no-console")
        assert first.returncode == 0, first.stderr
        assert first.stderr == ""
        assert f"jtca demo: seeding {state}" in first.stdout
        assert "sign-in secrets for the demo officers" in first.stdout
        # the service wrote the database, the tokens and the credentials; the client only marked
        # the folder (and started the service, which keeps its pid file there)
        credentials = state / demo_ops.CREDENTIALS
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert (state / "jtca.db").is_file()
        assert (state / "jtca-state.toml").read_text().count('kind = "demo"') == 1
        assert (state / "jtca-service.pid").is_file()

        second = jtca_demo(state, "--no-console")
        assert second.returncode == 0, second.stderr
        assert "seeding" not in second.stdout  # seeded once

        target = Target("embedded", f"unix://{socket_path(state)}", state=state)
        client = connect(target=target)
        try:
            status = client.call(demo_ops.STATUS, Empty())
            assert status.seeded
            assert status.credentials == str(credentials.resolve())
            secrets = load_credentials(state)
            officer = sign_in(client, "gd-1", pin=secrets.pins["gd-1"])
            board = officer.dashboard()
            assert (board.keys.dormant, board.keys.suspended) == (2, 1)
            assert [entry.sequence for entry in board.lists] == [1, 1, 1]
            with pytest.raises(ServiceError, match="not empty") as refused:
                client.call(demo_ops.SEED, Empty())
            assert refused.value.title == "Demo refused"
        finally:
            client.close()
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
