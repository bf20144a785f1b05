"""``jtca qr demo`` end to end through the real console script, keys in SoftHSM2 tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
