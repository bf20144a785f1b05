"""A site's own intents (issue #14): token work a client does at its site — opening a key
package into a city token, restoring a token backup — with no database of its own.

Like ``ca.store.intents`` but in files: ``<folder>/open/<id>.json`` is written (atomically,
fsync'd) before the token is touched, rewritten as steps are done, and moved to
``<folder>/done/<id>.json`` with its outcome when the operation completes or is recovered. An
open file whose owner process is gone is what ``jtca recover`` and the next run of the same
operation finish or undo (``ca.site.recovery``). The folder is the state folder's
``site-intents/`` for the embedded default, else ``$XDG_STATE_HOME/jtca/site-intents``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ca.core.errors import BadInput, JtcaError
from ca.core.files import write_atomically
from ca.core.owners import owner_alive, this_owner

OPEN_DIR: Final = "open"
DONE_DIR: Final = "done"
LEASE_SECONDS: Final = 3600
_MAX_FILE: Final = 1 << 20


class SiteIntentBusy(JtcaError):
    title = "Operation under way"
    exit_code = 75


@dataclass(frozen=True, slots=True)
class SiteIntent:
    id: str
    operation: str
    subject: str
    owner: str
    began_at: int
    plan: Mapping[str, Any]
    progress: Mapping[str, Any] = field(default_factory=dict)
    state: str = "open"
    outcome: str | None = None

    def as_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "id": self.id,
                    "operation": self.operation,
                    "subject": self.subject,
                    "owner": self.owner,
                    "began_at": self.began_at,
                    "plan": dict(self.plan),
                    "progress": dict(self.progress),
                    "state": self.state,
                    "outcome": self.outcome,
                },
                sort_keys=True,
                indent=1,
            ).encode()
            + b"\n"
        )


def _read(path: Path) -> SiteIntent:
    try:
        raw = path.read_bytes()
        if len(raw) > _MAX_FILE:
            raise ValueError("over 1 MiB")
        data = json.loads(raw.decode("utf-8"))
        return SiteIntent(
            id=str(data["id"]),
            operation=str(data["operation"]),
            subject=str(data["subject"]),
            owner=str(data["owner"]),
            began_at=int(data["began_at"]),
            plan=dict(data["plan"]),
            progress=dict(data.get("progress") or {}),
            state=str(data.get("state", "open")),
            outcome=data.get("outcome"),
        )
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadInput(f"site intent {path}: unreadable ({exc})") from None


class SiteJournal:
    """The open and settled intents of one site's client."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _dir(self, which: str) -> Path:
        path = self.folder / which
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def begin(
        self, operation: str, subject: str, plan: Mapping[str, Any], *, now: int
    ) -> SiteIntent:
        """Write the intent before the token is touched; refused while another open intent of
        the same operation and subject exists (a live run, or a dead one to recover first)."""
        for other in self.open_intents(operation=operation):
            if other.subject == subject:
                raise SiteIntentBusy(
                    f"{operation} on {subject} is under way here (site intent {other.id})"
                    + ("" if self.alive(other, now=now) else ": run `jtca recover`")
                )
        intent = SiteIntent(
            id=secrets.token_hex(8),
            operation=operation,
            subject=subject,
            owner=this_owner(),
            began_at=now,
            plan=dict(plan),
        )
        write_atomically(self._dir(OPEN_DIR) / f"{intent.id}.json", intent.as_json())
        return intent

    def note(self, intent: SiteIntent, **progress: Any) -> SiteIntent:
        merged = dict(intent.progress)
        merged.update(progress)
        updated = SiteIntent(
            id=intent.id,
            operation=intent.operation,
            subject=intent.subject,
            owner=intent.owner,
            began_at=intent.began_at,
            plan=intent.plan,
            progress=merged,
        )
        write_atomically(self._dir(OPEN_DIR) / f"{intent.id}.json", updated.as_json())
        return updated

    def end(self, intent: SiteIntent, *, state: str, outcome: str) -> None:
        """Settle: written to ``done/`` first, then the open file removed (a crash between the
        two leaves both; the open one is then settled again, harmlessly)."""
        settled = SiteIntent(
            id=intent.id,
            operation=intent.operation,
            subject=intent.subject,
            owner=intent.owner,
            began_at=intent.began_at,
            plan=intent.plan,
            progress=intent.progress,
            state=state,
            outcome=outcome,
        )
        write_atomically(self._dir(DONE_DIR) / f"{intent.id}.json", settled.as_json())
        (self._dir(OPEN_DIR) / f"{intent.id}.json").unlink(missing_ok=True)

    def open_intents(self, *, operation: str | None = None) -> list[SiteIntent]:
        found: list[SiteIntent] = []
        folder = self.folder / OPEN_DIR
        if not folder.is_dir():
            return found
        done = self.folder / DONE_DIR
        for path in sorted(folder.glob("*.json")):
            if (done / path.name).exists():  # settled, cut before the open file went
                path.unlink(missing_ok=True)
                continue
            intent = _read(path)
            if operation is None or intent.operation == operation:
                found.append(intent)
        return sorted(found, key=lambda i: (i.began_at, i.id))

    def alive(self, intent: SiteIntent, *, now: int) -> bool:
        return owner_alive(intent.owner, began_at=intent.began_at, now=now, lease=LEASE_SECONDS)

    def orphaned(self, *, now: int, operation: str | None = None) -> list[SiteIntent]:
        return [i for i in self.open_intents(operation=operation) if not self.alive(i, now=now)]


def site_journal(state: Path | None) -> SiteJournal:
    """The journal of this client: under the embedded state folder, else the user's state."""
    if state is not None:
        return SiteJournal(state / "site-intents")
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return SiteJournal(base / "jtca" / "site-intents")
