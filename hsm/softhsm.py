"""SoftHSM2 for tests and the embedded default: a private config and token directory.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is initialised, so ``use_softhsm`` writes a
config pointing at a folder of ours, sets the variable and re-initialises the module. Tokens are
made with Debian's ``softhsm2-util``. Nothing here touches the user's own tokens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from hsm.names import token_label
from hsm.pkcs11.token import MODULE_LOCK, TokenError, find_module, load_module, rescan

CONF_ENV: Final = "SOFTHSM2_CONF"


def softhsm_util() -> str:
    found = shutil.which("softhsm2-util")
    if found is None:
        raise TokenError(
            "softhsm2-util not found: install SoftHSM2 (Debian: apt-get install softhsm2)",
            title="SoftHSM2 missing",
        )
    return found


def use_softhsm(folder: Path) -> Path:
    """Point SoftHSM2 at ``folder`` (config + tokens), creating it if needed, and make the
    loaded module see it. Returns the config path."""
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    conf = folder / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens.resolve()}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    if os.environ.get(CONF_ENV) != str(conf.resolve()):
        os.environ[CONF_ENV] = str(conf.resolve())
        rescan(find_module())
    return conf


def init_token(label: str, pin: str, so_pin: str) -> None:
    """Initialise a fresh token in the configured SoftHSM2 folder and make it visible.

    The label is checked first (``hsm.names.token_label``, BadName exit 3): the embedded
    default keeps each token's PIN file beside it as ``<label>.pin``, so a label is a file name.
    """
    token_label(label)
    if CONF_ENV not in os.environ:
        raise TokenError("call use_softhsm(folder) before creating SoftHSM2 tokens")
    result = subprocess.run(
        [
            softhsm_util(),
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TokenError(f"softhsm2-util could not create token {label!r}: {result.stderr.strip()}")
    rescan(find_module())


def token_labels() -> list[str]:
    lib = load_module(find_module())
    with MODULE_LOCK:
        return sorted({s.get_token().label for s in lib.get_slots(token_present=True)} - {""})
