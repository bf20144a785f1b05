"""One RFC 7512 URI names a key fully on the command line (issue #15, point 5): ``--key`` with
``?module-path=…&pin-source=file:…`` opens the module, the token and the key with no --token,
--module or --pin-source; a pin-value is refused unless the policy allows it; options that say
otherwise than the URI are refused by name. Real ``jtca`` processes, a real SoftHSM2 token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsm.pkcs11.token import find_module
from hsm.sm.sm2 import SM2PublicKey

JTCA = str(Path(sys.executable).with_name("jtca"))


class Desk:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.env = dict(os.environ, JTCA_STATE=str(self.state))
        self.env.pop("SOFTHSM2_CONF", None)

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    made = Desk(tmp_path)
    made.run("token", "init", "--token", "ISSUER-1")
    # the URI path does not go through the embedded default: point the module at the state's
    # SoftHSM2 configuration as an operator points a vendor module at its own
    made.env["SOFTHSM2_CONF"] = str(made.state / "softhsm2" / "softhsm2.conf")
    return made


def _keygen(desk: Desk, label: str) -> dict[str, str]:
    out = desk.run(
        "token", "keygen", "--token", "ISSUER-1", "--label", label, "--kind", "sm2", "--json"
    )
    data: dict[str, str] = json.loads(out.stdout)
    return data


def test_a_full_uri_signs_a_request_without_token_options(desk: Desk, tmp_path: Path) -> None:
    key = _keygen(desk, "issuer-key")
    pin = desk.state / "softhsm2" / "ISSUER-1.pin"
    assert pin.stat().st_mode & 0o077 == 0
    full = f"{key['uri']}?module-path={find_module()}&pin-source=file:{pin}"
    out = tmp_path / "request.der"
    result = desk.run(
        "issuer", "request", "--key", full, "--issuer-id", "00000001", "--name", "Test Pay",
        "--expiry", "1230", "--out", str(out), "--json",
    )  # fmt: skip
    data = json.loads(result.stdout)
    # the request is signed by the key the URI named: its public key is the token's
    assert SM2PublicKey.from_bytes(bytes.fromhex(data["public_key"])) == SM2PublicKey.from_bytes(
        bytes.fromhex(key["public_key"])
    )
    assert out.stat().st_size > 0

    # a URI that names the module and PIN, and options that say otherwise: refused by name
    clash = desk.run(
        "issuer", "request", "--token", "OTHER", "--key", full, "--issuer-id", "00000001",
        "--name", "Test Pay", "--expiry", "1230", "--out", str(out), ok=False,
    )  # fmt: skip
    assert clash.returncode != 0
    assert "'ISSUER-1'" in clash.stderr
    assert "'OTHER'" in clash.stderr
    assert "Traceback" not in clash.stderr

    # no query and no --token: the message says what to give
    bare = desk.run(
        "issuer", "request", "--key", key["uri"], "--issuer-id", "00000001", "--name", "Test Pay",
        "--expiry", "1230", "--out", str(out), ok=False,
    )  # fmt: skip
    assert bare.returncode != 0
    assert "--token" in bare.stderr
    assert "module-path" in bare.stderr


def test_pin_value_is_refused_unless_the_policy_allows_it(desk: Desk) -> None:
    key = _keygen(desk, "doomed")
    pin = (desk.state / "softhsm2" / "ISSUER-1.pin").read_text().strip()
    with_pin = f"{key['uri']}?module-path={find_module()}&pin-value={pin}"
    refused = desk.run("token", "destroy", "--key", with_pin, "--yes", ok=False)
    assert refused.returncode != 0
    assert "allow_pin_value" in refused.stderr
    assert pin not in refused.stderr  # the PIN is never repeated back
    listed = json.loads(desk.run("token", "show", "--token", "ISSUER-1", "--json").stdout)
    assert "doomed" in json.dumps(listed)  # nothing was destroyed

    # the same key destroyed through a pin-source URI, with no --token
    source = desk.state / "softhsm2" / "ISSUER-1.pin"
    full = f"{key['uri']}?module-path={find_module()}&pin-source=file:{source}"
    done = json.loads(desk.run("token", "destroy", "--key", full, "--yes", "--json").stdout)
    assert done["objects"] == 2
    assert "?" not in done["destroyed"]  # the name alone, never the query
    listed = json.loads(desk.run("token", "show", "--token", "ISSUER-1", "--json").stdout)
    assert "doomed" not in json.dumps(listed)


def test_token_export_as_an_skf_blob(desk: Desk, tmp_path: Path) -> None:
    """``jtca token export --format skf``: a city's SM2 key as a GM/T 0016 ENVELOPEDKEYBLOB for
    an SKF device, opened by the device's encryption key (here a software key standing in for
    the device) and checked d·G = PubKey; an SM4 key or a --sender-key is refused by name."""
    from hsm.skf import open_skf_blob, read_skf_blob
    from hsm.sm.sm2 import SM2PrivateKey

    city = _keygen(desk, "city-qr-330100-g1")
    sm4 = json.loads(
        desk.run(
            "token", "keygen", "--token", "ISSUER-1", "--label", "city-card", "--kind", "sm4",
            "--json",
        ).stdout
    )  # fmt: skip
    device = SM2PrivateKey.generate()
    to = device.public_key.compressed.hex()
    desk.env.pop("SOFTHSM2_CONF")
    out = tmp_path / "city.skf"
    done = json.loads(
        desk.run(
            "token", "export", "--token", "ISSUER-1", "--key", city["uri"], "--to", to,
            "--format", "skf", "--recipient", "杭州 SKF", "--out", str(out), "--json",
        ).stdout
    )  # fmt: skip
    assert done["format"] == "skf"
    blob = read_skf_blob(out.read_bytes())
    assert blob.public_key == SM2PublicKey.from_bytes(bytes.fromhex(city["public_key"]))
    scalar = open_skf_blob(blob, device)
    assert SM2PrivateKey.from_scalar_buffer(scalar).public_key == blob.public_key
    # another device's key cannot open it
    with pytest.raises(Exception, match=r"(?i)decrypt|open|key"):
        open_skf_blob(blob, SM2PrivateKey.generate())

    for extra, word in (
        (["--key", sm4["uri"]], "SM2"),
        (["--key", city["uri"], "--sender-key", city["uri"]], "not signed"),
    ):
        refused = desk.run(
            "token", "export", "--token", "ISSUER-1", *extra, "--to", to, "--format", "skf",
            "--recipient", "x", "--out", str(tmp_path / "no.skf"), ok=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert word in refused.stderr
        assert not (tmp_path / "no.skf").exists()
