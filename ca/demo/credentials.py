"""``STATE/demo-credentials.json``: the demo officers' sign-in secrets (demo data only).

Written by the service when it seeds the demo world (``demo.seed``: the root share quorum of the
demo's root ceremony and the officers it registered, ``stage`` ``seeded``), then completed by the
demo's client at the same site (``ca.demo.officer_work``), which makes each officer's personal
token and
writes its PIN here before it enrols the token's key. Mode 0600, replaced atomically; it exists
only in a demo state folder. The format, field by field, is in docs/officers.md ("The demo's
officers")::

    {
      "format": "jtca-demo-credentials/2",
      "about": "...",
      "stage": "complete",
      "root_token": "MOT-ROOT",
      "root_token_shares": ["<share 1>", "<share 2>"],
      "officers": [
        {"id": "gd-1", "name": "...", "roles": ["provincial-officer"], "province": "440000",
         "token_label": "officer-gd-1", "pin": "<PIN>", "certificate_serial": 1234,
         "enrolled_by": "enrolment 3"}
      ]
    }
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

from ca.core.errors import JtcaError
from ca.ops.demo import CREDENTIALS

FORMAT: Final = "jtca-demo-credentials/2"
ABOUT: Final = (
    "Demo data only: the sign-in secrets of the demo officers of this demo state folder "
    "(jtca demo). Never use these officers, PINs or shares anywhere else. docs/officers.md"
)
Stage = Literal["seeded", "enrolled", "signing", "complete"]
STAGES: Final[tuple[Stage, ...]] = ("seeded", "enrolled", "signing", "complete")


class DemoCredentialsError(JtcaError):
    title = "Demo credentials"
    exit_code = 2


@dataclass(frozen=True, slots=True)
class DemoOfficer:
    """One demo officer: who, with what roles, and the personal token they sign in with."""

    id: str
    name: str
    roles: tuple[str, ...]
    province: str | None
    token_label: str  # officer-<id>, in the state folder's SoftHSM2
    pin: str | None = None  # the token's user PIN; None until the demo's client made the token
    certificate_serial: int | None = None  # their officer certificate, once enrolled
    enrolled_by: str | None = None  # "root share quorum" or the subject "enrolment N"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "roles": list(self.roles),
            "province": self.province,
            "token_label": self.token_label,
            "pin": self.pin,
            "certificate_serial": self.certificate_serial,
            "enrolled_by": self.enrolled_by,
        }


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    shares: tuple[str, ...]  # a quorum of the demo root token's PIN shares
    officers: tuple[DemoOfficer, ...]
    stage: Stage = "seeded"
    root_token: str = "MOT-ROOT"  # noqa: S105 - the root token's label

    @property
    def pins(self) -> dict[str, str]:
        """Officer id -> the PIN of their personal token (the officers that have one)."""
        return {o.id: o.pin for o in self.officers if o.pin is not None}

    def officer(self, officer_id: str) -> DemoOfficer:
        for officer in self.officers:
            if officer.id == officer_id:
                return officer
        raise DemoCredentialsError(f"no demo officer {officer_id!r} in {CREDENTIALS}")

    def with_officer(self, changed: DemoOfficer) -> DemoCredentials:
        return replace(
            self, officers=tuple(changed if o.id == changed.id else o for o in self.officers)
        )

    def as_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "about": ABOUT,
                "stage": self.stage,
                "root_token": self.root_token,
                "root_token_shares": list(self.shares),
                "officers": [o.as_dict() for o in self.officers],
            },
            ensure_ascii=False,
            indent=2,
        )


def token_label(officer_id: str) -> str:
    """The demo officer's personal token (``ca.site.officer_token.default_label``)."""
    return f"officer-{officer_id}"


def credentials_path(state: Path) -> Path:
    return state / CREDENTIALS


def write_credentials(state: Path, credentials: DemoCredentials, *, create: bool = False) -> Path:
    """Write the file atomically, mode 0600 from its first byte; ``create`` refuses an
    existing one (the seed writes it once)."""
    path = credentials_path(state)
    if create and path.exists():
        raise FileExistsError(f"{path} exists already")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(credentials.as_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
        if create:
            os.link(temp, path)  # fails if another seed wrote it meanwhile
            temp.unlink()
        else:
            os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def load_credentials(state: Path) -> DemoCredentials:
    path = credentials_path(state)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DemoCredentialsError(
            f"{path} does not exist: this is not a seeded demo state folder (run jtca demo)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DemoCredentialsError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DemoCredentialsError(
            f"{path}: format {found!r}, this jtca reads {FORMAT!r}; seed a fresh demo state "
            "folder (JTCA_STATE=<new folder> jtca demo)"
        )
    try:
        stage = data["stage"]
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}")
        officers = tuple(
            DemoOfficer(
                id=str(o["id"]),
                name=str(o["name"]),
                roles=tuple(str(r) for r in o["roles"]),
                province=o["province"],
                token_label=str(o["token_label"]),
                pin=o.get("pin"),
                certificate_serial=o.get("certificate_serial"),
                enrolled_by=o.get("enrolled_by"),
            )
            for o in data["officers"]
        )
        return DemoCredentials(
            shares=tuple(str(s) for s in data["root_token_shares"]),
            officers=officers,
            stage=stage,
            root_token=str(data["root_token"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DemoCredentialsError(f"{path}: not a demo credentials file ({exc})") from None
