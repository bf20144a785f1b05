"""Issue #11, point 5, through the real `jtca` command: a province whose token is its own — a
PKCS#11 token in a SoftHSM2 of the province's machine that the authority service never sees,
opened with ``--module`` and a PIN from ``--pin-source env:VAR`` — registers its transport key,
imports the ministry's packages and hands the keys on to a city whose token is the embedded
default. The service's SoftHSM2 never holds the province's token, and no PIN of it is stored
anywhere jtca keeps files.

Each officer signs in with ``jtca login`` and their own token (issue #12: a SoftHSM2 token
``officer-ID`` in the state folder, its key certified by the officer CA); each command runs in
that officer's session (``$JTCA_SESSION``), and the approval is signed with the approver's
token, its PIN from ``--pin-source env:VAR``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_desks import PIN_SOURCE, Desks

from ca.store.db import transaction
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module

JTCA = str(Path(sys.executable).with_name("jtca"))
PROVINCE_PIN = "gd-pin-4711"
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
)


@pytest.fixture
def env(database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desks]:
    """`jtca init` on a fresh state folder (its embedded service stopped afterwards), the
    officers registered, each with their own token in the state folder and its key certified,
    each signed in with `jtca login` at their own desk (``tests/cli_desks.py``)."""
    url, engine = database
    monkeypatch.setenv(CONF_ENV, "")  # the state folder's SoftHSM2 here; restored afterwards
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("JTCA_URL", "JTCA_SERVER_CERT")}
    env.update(
        JTCA_STATE=str(state),
        JTCA_DATABASE_URL=url,
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
    )
    env.pop("SOFTHSM2_CONF", None)
    made = subprocess.run([JTCA, "init"], capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    from ca.officers.roster import add_officer_in

    with transaction(engine) as session:
        for officer_id, role, province in OFFICERS:
            add_officer_in(
                session,
                officer_id=officer_id,
                name=officer_id,
                roles=[role],
                province=province,
                actor="test",
                now=int(time.time()),
            )
    desks = Desks(env, tmp_path / "desks")
    desks.certify_directly(state, url, [officer_id for officer_id, _, _ in OFFICERS])
    yield desks
    subprocess.run(
        [JTCA, "service", "stop"], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def province_machine(folder: Path) -> dict[str, str]:
    """A SoftHSM2 of the province's own, with one token GD-HSM made by softhsm2-util (not by
    jtca): the environment of a client at the province."""
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(conf), "GD_PIN": PROVINCE_PIN}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "GD-HSM", "--pin", PROVINCE_PIN,
         "--so-pin", "so-4711"],
        env=dict(os.environ, **env), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return env


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_province_with_its_own_token(env: Desks, tmp_path: Path) -> None:
    at_province = province_machine(tmp_path / "gd-machine")
    module = str(find_module())
    site = ["--module", module, "--pin-source", "env:GD_PIN"]

    def jtca(
        *args: str, ok: bool = True, where: dict[str, str] | None = None, officer: str | None = None
    ) -> Any:
        result = subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=dict(env.env(officer), **(where or {})),
            check=False,
            timeout=120,
        )
        assert "Traceback" not in result.stderr
        if ok:
            assert result.returncode == 0, (args, result.stderr)
        return result

    def data(*args: str, where: dict[str, str] | None = None, officer: str | None = None) -> Any:
        return json.loads(jtca(*args, "--json", where=where, officer=officer).stdout)

    ministry = data("city", "transport-key", "--holder", "ministry", "--token", "MOT-KEYS",
                    officer="mot-root-1")  # fmt: skip
    assert ministry["token"] == "MOT-KEYS"  # noqa: S105 - a token label
    # the ministry's token is the service's: no --module for it
    refused = jtca("city", "transport-key", "--holder", "ministry", "--token", "MOT-KEYS",
                   *site, ok=False, officer="mot-root-1")  # fmt: skip
    assert refused.returncode == 3
    # a PIN source goes with a module
    refused = jtca("city", "import", "x.jkp", "--pin-source", "env:GD_PIN", ok=False,
                   officer="gd-1")  # fmt: skip
    assert (refused.returncode, "--module" in refused.stderr) == (3, True)

    province = data("city", "transport-key", "--holder", "440000", "--token", "GD-HSM",
                    *site, where=at_province, officer="gd-1")  # fmt: skip
    # two key pairs in the site's token (issue #15): a signing and an encryption key
    assert province["enc"]["uri"].startswith("pkcs11:token=GD-HSM;object=transport-440000-enc-")
    assert province["sign"]["uri"].startswith("pkcs11:token=GD-HSM;object=transport-440000-sign-")
    assert province["sign"]["public_key"] != province["enc"]["public_key"]
    assert province["legacy"] is False
    city = data("city", "transport-key", "--holder", "440100", "--token", "GZ-KEYS",
                officer="gd-1")  # fmt: skip
    assert city["token"] == "GZ-KEYS"  # noqa: S105 - a token label

    application = data("city", "apply", "--city", "440100", officer="gd-1")["application"]
    # the approval is signed with ca-op-1's own token (its PIN from the environment)
    approved = data("city", "approve", "--application", str(application),
                    *PIN_SOURCE, officer="ca-op-1")  # fmt: skip
    assert approved["state"] == "approved"
    data("city", "generate", str(application), officer="mot-root-1")
    sent = data("city", "deliver", "--application", str(application),
                "--out", str(tmp_path / "to-gd"), officer="mot-root-1")  # fmt: skip
    assert {d["to"] for d in sent} == {"440000"}

    files = [d["file"] for d in sent]
    imported = data("city", "import", *files, *site, where=at_province, officer="gd-1")
    assert {(i["token"], i["stage"]) for i in imported} == {("GD-HSM", "held-by-province")}
    again = jtca("city", "import", files[0], *site, where=at_province, ok=False,
                 officer="gd-1")  # fmt: skip
    assert again.returncode == 4
    assert again.stderr.startswith(f"jtca: Key package refused: {files[0]}: replayed: ")

    onward = data("city", "deliver", "--application", str(application),
                  "--out", str(tmp_path / "to-gz"), *site, where=at_province,
                  officer="gd-1")  # fmt: skip
    assert {d["to"] for d in onward} == {"440100"}
    installed = data("city", "import", *[d["file"] for d in onward], officer="gd-2")
    assert {(i["token"], i["stage"]) for i in installed} == {("GZ-KEYS", "installed")}

    # the keys are in the province's own token, read there with its module and PIN
    held = data("token", "list", "--token", "GD-HSM", *site, where=at_province)
    labels = {k["label"] for k in held["keys"]}
    assert {i["label"] for i in imported} <= labels
    # the service's SoftHSM2 never held the province's token, and no PIN of it is kept there
    embedded = data("token", "list")["tokens"]
    assert "GD-HSM" not in embedded
    assert {"MOT-KEYS", "GZ-KEYS"} <= set(embedded)
    state = Path(env.base["JTCA_STATE"])
    assert not [p for p in state.rglob("*") if p.is_file() and PROVINCE_PIN.encode() in
                p.read_bytes()]  # fmt: skip
    installed_keys = data("city", "keys", "--city", "440100", officer="gd-2")
    assert installed_keys
    assert all(d["stage"] == "installed" for d in installed_keys)
