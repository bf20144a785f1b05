"""The demo officers' sign-in secrets (``jtca demo``: ``STATE/demo-credentials.json``, written
by the service's demo seed), read tolerantly: the console only offers to fill in a demo
officer's PIN (ctrl+t on the sign-in form) and the label of their token. Whatever the file does
not say, or says in a shape this reader does not know, is simply not offered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class DemoOfficer:
    id: str
    pin: str
    token_label: str | None  # None: the default, officer-<id>


def _text(entry: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = entry.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _officer(entry: Any, officer_id: str | None = None) -> DemoOfficer | None:
    if not isinstance(entry, dict):
        return None
    officer = officer_id or _text(entry, "id", "officer", "officer_id")
    pin = _text(entry, "pin", "token_pin")
    if officer is None or pin is None:
        return None
    return DemoOfficer(officer, pin, _text(entry, "token_label", "token", "label"))


def read_demo_officers(path: Path) -> dict[str, DemoOfficer]:
    """The demo officers of ``path`` by id; empty if the file is missing or unreadable.

    Known shapes: ``{"officers": [{"id", "pin", "token_label", ...}, ...]}``, ``{"officers":
    {id: {"pin", "token_label", ...}}}`` and the first demo's ``{"officer_pins": {id: pin}}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    found: dict[str, DemoOfficer] = {}
    officers = data.get("officers")
    if isinstance(officers, list):
        for entry in officers:
            officer = _officer(entry)
            if officer is not None:
                found[officer.id] = officer
    elif isinstance(officers, dict):
        for officer_id, entry in officers.items():
            officer = _officer(entry, str(officer_id))
            if officer is not None:
                found[officer.id] = officer
    pins = data.get("officer_pins")
    if isinstance(pins, dict):
        for officer_id, pin in pins.items():
            if isinstance(pin, str) and pin and str(officer_id) not in found:
                found[str(officer_id)] = DemoOfficer(str(officer_id), pin, None)
    return found
