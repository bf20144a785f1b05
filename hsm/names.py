"""Names that become paths or token labels (issue #14, point 4): checked against a strict
pattern before anything is written, so no name can leave its folder (``../``, ``/``, NUL, a
leading dot, control characters) or exceed what PKCS#11 stores.

Pure; imports nothing of jtca but the error root. Every entry point that turns a name a person
or a file gave into a path or a label calls one of these: token labels (``jtca token init``,
the embedded vault's PIN files), ceremony labels, list types, file names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from hsm.errors import JtcaError

# PKCS#11 CK_TOKEN_INFO.label is 32 bytes, blank padded
TOKEN_LABEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
# CKA_LABEL of an object: jtca's own labels (card-440100-g1, transport-44-1790000000, …)
OBJECT_LABEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# a file name inside a folder jtca owns: no separator, no leading dot, no '..'
FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# a list type or a ceremony label: lower-case words joined by '-'
SLUG: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class BadName(JtcaError):
    """A name that would become a path or a label and does not fit its pattern."""

    title = "Bad name"
    exit_code = 3


def _check(pattern: re.Pattern[str], what: str, value: object, rule: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None or ".." in value:
        shown = repr(value)[:80]
        raise BadName(f"{what} {shown}: {rule}")
    return value


def token_label(value: object, what: str = "token label") -> str:
    return _check(
        TOKEN_LABEL,
        what,
        value,
        "1-32 characters: letters, digits, '.', '-' and '_' (not first; no '..')",
    )


def object_label(value: object, what: str = "key label") -> str:
    return _check(
        OBJECT_LABEL,
        what,
        value,
        "1-128 characters: letters, digits, '.', '-' and '_' ('..' and a leading '.' refused)",
    )


def file_name(value: object, what: str = "file name") -> str:
    return _check(
        FILE_NAME,
        what,
        value,
        "1-200 characters: letters, digits, '.', '-' and '_', no folder, no leading '.', no '..'",
    )


def slug(value: object, what: str = "name") -> str:
    return _check(SLUG, what, value, "1-64 characters: lower-case letters, digits and '-'")


def path_in(folder: Path, name: object, what: str = "file name") -> Path:
    """``folder / name`` for a plain ``name`` (``file_name``'s pattern), refused if the result
    would resolve outside ``folder`` (a symbolic link already planted under that name)."""
    checked = file_name(name, what)
    path = folder / checked
    if os.path.islink(path):
        target = os.path.realpath(path)
        if os.path.commonpath([target, os.path.realpath(folder)]) != os.path.realpath(folder):
            raise BadName(f"{what} {checked!r}: {path} is a symbolic link out of {folder}")
    return path
