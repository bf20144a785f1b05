"""SoftHSM2 for tests and the embedded default: a private config and token directory.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is initialised, so ``use_softhsm`` writes a
config pointing at a folder of ours, sets the variable and re-initialises the module. Tokens are
made with Debian's ``softhsm2-util``. Nothing here touches the user's own tokens.
"""

from __future__ import annotations

import os
import re
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


def wrap_file(label: str) -> Path:
    """Where the host keeps the value of token ``label``'s trusted wrapping key: ``<label>.wrap``
    in the SoftHSM2 folder, beside the config (and the embedded default's ``<label>.pin``)."""
    if CONF_ENV not in os.environ:
        raise TokenError("call use_softhsm(folder) before creating SoftHSM2 tokens")
    return Path(os.environ[CONF_ENV]).parent / f"{token_label(label)}.wrap"


def init_token(label: str, pin: str, so_pin: str, *, trusted_wrap: bool = True) -> None:
    """Initialise a fresh token in the configured SoftHSM2 folder and make it visible.

    The label is checked first (``hsm.names.token_label``, BadName exit 3): the embedded
    default keeps each token's PIN file beside it as ``<label>.pin``, so a label is a file name.

    With ``trusted_wrap`` (the default) the security officer, while its PIN is at hand, also
    creates the token's trusted wrapping key (``hsm.pkcs11.keys.create_trusted_wrap_key``,
    CKA_TRUSTED=TRUE): its value is first written to ``<label>.wrap`` (mode 0600, atomically)
    beside the config, then the object is created. Keys generated afterwards are
    CKA_WRAP_WITH_TRUSTED and leave the token only under that key (docs/tokens.md,
    "Extractability"). A second token under a label the folder already has gets none (the
    first one's file is never overwritten); a cut between the token and its key leaves a
    token without one, which works as tokens made before this did.
    """
    from hsm.pkcs11.keys import create_trusted_wrap_key, fresh_trusted_wrap_value, wipe
    from hsm.pkcs11.token import write_secret_file

    token_label(label)
    if CONF_ENV not in os.environ:
        raise TokenError("call use_softhsm(folder) before creating SoftHSM2 tokens")
    taken = trusted_wrap and label in token_labels()
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
    if not trusted_wrap or taken:
        return
    # softhsm2-util names the slot the new token went to: the SO session opens that one
    slot = re.search(r"reassigned to slot (\d+)", result.stdout)
    value = fresh_trusted_wrap_value()
    try:
        write_secret_file(wrap_file(label), value)  # the file first: never a key no one holds
        create_trusted_wrap_key(
            label, so_pin, value, slot_id=int(slot.group(1)) if slot is not None else None
        )
    finally:
        wipe(value)


def token_labels() -> list[str]:
    lib = load_module(find_module())
    with MODULE_LOCK:
        return sorted({s.get_token().label for s in lib.get_slots(token_present=True)} - {""})
