"""Issue #4's whole path through the real console script, on SQLite and on PostgreSQL: the root
ceremony from the shipped example file, an issuer's request, an interop certificate, a QR made
with it accepted, a revocation, and a verified audit log. The commands are clients of the
embedded service that `jtca init` starts on the state folder (it inherits JTCA_DATABASE_URL, so
the PostgreSQL run uses PostgreSQL); the issuer's request and QR are made at the issuer, with
its own token, and the audit bundle is verified with no service at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_desks import Desks, share_args, write_shares
from officer_desk import officer_pin

from hsm.sm.sm2 import SM2PublicKey

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")


@pytest.fixture
def env(database, tmp_path: Path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """A state folder made by `jtca init` on the database of each kind; its embedded service is
    stopped afterwards."""
    url, _ = database
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"), JTCA_DATABASE_URL=url)
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT"):
        env.pop(variable, None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no user config file
    made = subprocess.run(
        [JTCA, "init"], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert made.returncode == 0, made.stderr
    try:
        yield env
    finally:
        subprocess.run(
            [JTCA, "service", "stop"], capture_output=True, env=env, check=False, timeout=60
        )


def test_ceremony_issue_verify_audit(env: dict[str, str], tmp_path: Path) -> None:
    desks = Desks(env, tmp_path / "desks")

    def jtca(*args: str, officer: str | None = None, ok: bool = True) -> Any:
        return desks.jtca(*args, officer=officer, ok=ok)

    steps = json.loads(jtca("ceremony", "plan", EXAMPLE, "--json").stdout)["steps"]
    assert any("index 1" in s for s in steps)
    shares = json.loads(jtca("ceremony", "init-token", EXAMPLE, "--json").stdout)["pin_shares"]
    assert shares[0]["custodian"].startswith("张三")
    one, three = write_shares(tmp_path / "custodians", [shares[0]["share"], shares[2]["share"]])
    quorum = share_args([one, three])

    too_few = jtca(
        "ceremony", "run", EXAMPLE, *share_args([one]), "--witness", "赵六 (公证员)", ok=False
    )
    assert too_few.returncode == 3
    assert "needs 2 of 3" in too_few.stderr

    run = json.loads(
        jtca("ceremony", "run", EXAMPLE, *quorum, "--witness", "赵六 (公证员)", "--json").stdout
    )
    assert run["custodians_present"] == ["张三 (部密码管理处)", "王五 (部审计室)"]
    transcript = Path(run["transcript"])
    assert transcript.resolve().is_relative_to(Path(env["JTCA_STATE"]).resolve())
    assert json.loads(transcript.read_text())["transcript"]["file_sha256"] == run["file_sha256"]
    audit_key = next(k["public_key"] for k in run["keys"] if k["class"] == "audit")
    ca_key = json.loads(jtca("ca", "keys", "--json").stdout)[0]
    assert (ca_key["ca_index"], ca_key["status"]) == (1, "active")
    # the ceremony's officers and a publisher, each with their own token, enrolled under the
    # custodians' quorum and signed in at their own desk
    desks.bootstrap(
        [
            ("mot-root-1", None, None),
            ("ca-op-1", None, None),
            ("auditor-1", None, None),
            ("publisher-1", "publisher", None),
        ],
        [one, three],
    )

    jtca("token", "init", "--token", "ISSUER-1")
    issuer_key = json.loads(
        jtca(
            "token", "keygen", "--token", "ISSUER-1", "--label", "k", "--kind", "sm2", "--json"
        ).stdout
    )["uri"]
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

    too_long = tmp_path / "too-long.der"
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
        "1240",
        "--out",
        str(too_long),
    )
    issue = ["ca", "issue", "--ca-index", "1", *quorum]
    denied = jtca(*issue, "--request", str(too_long), officer="ca-op-1", ok=False)
    assert denied.returncode == 6
    assert "deny/lifetime-too-long" in denied.stderr
    no_role = jtca(*issue, "--request", str(request), officer="auditor-1", ok=False)
    assert "deny/no-role" in no_role.stderr

    register = ["issuer", "register", "--issuer-id", "02113450"]
    stranger = jtca(*register, "--name", "x", ok=False)  # nobody signed in at this desk
    assert stranger.returncode == 6
    assert stranger.stderr.startswith("jtca: Not signed in: ")
    assert "jtca login --officer ID" in stranger.stderr
    jtca(*register, "--name", "示例发行机构", officer="ca-op-1")
    officers = {o["id"]: o for o in json.loads(jtca("officer", "list", "--json").stdout)}
    assert officers["ca-op-1"]["roles"] == ["ministry-ca-operator"]
    assert officers["ca-op-1"]["certificate"]["status"] == "active"

    # enrolling an officer: only a ministry root officer asks, with the new officer's token
    desks.keygen("gd-1")
    enrol_gd = ["officer", "enrol", "--officer", "gd-1", "--role", "provincial-officer"]
    pin = ("--pin-source", "env:NEW_PIN")
    gd_pin = {"NEW_PIN": officer_pin("gd-1")}
    denied_add = desks.jtca(*enrol_gd, "--province", "440000", *pin, officer="ca-op-1",
                            ok=False, **gd_pin)  # fmt: skip
    assert denied_add.returncode == 6
    assert "deny/no-role" in denied_add.stderr
    pending = desks.data(*enrol_gd, "--province", "440000", *pin, officer="mot-root-1", **gd_pin)
    assert (pending["state"], pending["requested_by"]) == ("pending", "mot-root-1")
    desks.keygen("gd-2")
    no_province = desks.jtca("officer", "enrol", "--officer", "gd-2", "--role",
                             "provincial-officer", *pin, officer="mot-root-1", ok=False,
                             NEW_PIN=officer_pin("gd-2"))  # fmt: skip
    assert "needs a province code" in no_province.stderr
    assert json.loads(jtca("issuer", "list", "--json").stdout)[0]["issuer_id"] == "02113450"
    interop = tmp_path / "interop.bin"
    issued = json.loads(
        jtca(
            *issue, "--request", str(request), "--out", str(interop), "--json", officer="ca-op-1"
        ).stdout
    )
    assert issued["serial"] == 1
    assert interop.read_bytes().hex() == issued["certificate"]

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
    report = json.loads(
        jtca(
            "qr",
            "inspect",
            str(tmp_path / "ride.png"),
            "--json",
            "--ca-key",
            f"1={ca_key['public_key']}",
            "--accept-issuer",
            "02113450",
            "--require-accepted",
        ).stdout
    )
    assert report["signatures"] == {"ca": "valid", "issuer": "valid", "user": "valid"}
    assert report["interop_cert"]["serial"] == 1

    revoke = ["ca", "revoke", "--ca-index", "1", "--serial", "1", "--reason"]
    refused = jtca(*revoke, "r", officer="auditor-1", ok=False)
    assert refused.returncode == 6
    assert "deny/no-role" in refused.stderr
    jtca(*revoke, "issuer key exposed", officer="ca-op-1")
    # a checkpoint now: the audit key in the service's own token MOT-LOG signs it, asked for by
    # the publisher; no custodian's share (the old --share-file is no option of it)
    checkpoint = json.loads(jtca("audit", "checkpoint", "--json", officer="publisher-1").stdout)
    assert checkpoint["key"].startswith("pkcs11:token=MOT-LOG;")
    old_way = jtca("audit", "checkpoint", *quorum, officer="publisher-1", ok=False)
    assert (old_way.returncode, "unrecognized arguments: --share-file" in old_way.stderr) == (
        2,
        True,
    )
    listed = json.loads(jtca("ca", "certificates", "--json").stdout)
    assert listed[0]["status"] == "revoked"

    # the log verified against the checkpoints outside the database, trusting only the audit
    # certificate the ceremony left in the state folder: on the embedded state nobody need sign
    # in; the auditor's answer is the same
    state = Path(env["JTCA_STATE"])
    [audit_cert] = sorted((state / "ceremonies").glob("audit-*.pem"))
    anyone = json.loads(jtca("audit", "verify", "--json").stdout)
    assert (anyone["ok"], anyone["findings"]) == (True, [])
    assert anyone["newest_checkpoint"] >= checkpoint["size"]
    compressed = SM2PublicKey.from_bytes(bytes.fromhex(audit_key)).compressed.hex()
    assert anyone["anchors"] == [f"{audit_cert}: audit key {compressed[:16]}…"]
    verified = json.loads(jtca("audit", "verify", "--json", officer="auditor-1").stdout)
    assert (verified["ok"], verified["newest_checkpoint"]) == (True, anyone["newest_checkpoint"])
    bundle = tmp_path / "audit.json"
    jtca("audit", "export", "--out", str(bundle), officer="auditor-1")
    entries = json.loads(bundle.read_text())["entries"]
    actions = [e["action"] for e in entries]
    for action in (
        "officer.add",
        "officer.enrol.request",
        "auth.sign-in",
        "ceremony.run",
        "key.generate",
        "certificate.issue",
        "log.seal-key",
        "ca-key.activate",
        "qr-ca.allocate-serial",
        "qr-ca.issue-interop-cert",
        "qr-ca.revoke-interop-cert",
    ):
        assert action in actions, action
    folder = ["--checkpoint", str(state / "log")]
    here = json.loads(jtca("audit", "verify", "--bundle", str(bundle), *folder, "--json").stdout)
    assert (here["ok"], here["events"]) == (True, len(entries))
    assert here["newest_checkpoint"] >= checkpoint["size"]

    # Planning a ceremony and verifying a bundle need no service and no state folder at all.
    elsewhere = dict(env, JTCA_STATE=str(tmp_path / "no-state-here"))
    for args in (
        ("ceremony", "plan", EXAMPLE, "--json"),
        ("audit", "verify", "--bundle", str(bundle), "--audit-cert", str(audit_cert), "--json"),
    ):
        offline = subprocess.run(
            [JTCA, *args], capture_output=True, text=True, env=elsewhere, check=False, timeout=60
        )
        assert offline.returncode == 0, (args, offline.stderr)
    assert not (tmp_path / "no-state-here").exists()
    nobody = subprocess.run(
        [JTCA, "ca", "keys"], capture_output=True, text=True, env=elsewhere, check=False
    )
    assert nobody.returncode == 69
    assert "jtca init" in nobody.stderr

    # A tampered bundle is named, with exit status 8.
    data = json.loads(bundle.read_text())
    data["entries"][2]["actor"] = "mallory"
    bundle.write_text(json.dumps(data))
    tampered = jtca("audit", "verify", "--bundle", str(bundle), *folder, ok=False)
    assert tampered.returncode == 8
    assert tampered.stdout.startswith(f"audit log: {len(entries)} entries: TAMPERED (")
    assert "  entry 3: edited: entry 3 was edited: its content gives leaf hash " in tampered.stdout
