"""Recovery of a site's own unfinished token work (issue #14): a key package opened into a
city or province token whose import was never reported, a token backup half restored.

Each site operation registers a recoverer (``@site_recoverer("packages.import")``) that gets the
site's context and one orphaned intent of ``ca.site.journal``, finishes or undoes the work
(adopting or destroying the token objects the intent's plan names by label and id, reporting to
the service what it adopted), settles the intent in the journal and returns a one-line outcome.
``jtca recover`` runs them; so does the next run of the same operation (``recover_site_before``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ca.core.errors import JtcaError
from ca.site.journal import SiteIntent, SiteJournal, site_journal

ROLLED_FORWARD: Final = "rolled-forward"
ROLLED_BACK: Final = "rolled-back"


@dataclass
class SiteContext:
    """What a site recoverer may use: the journal, the state folder (embedded) and factories
    for the site's tokens and for a client of the service (made only when needed)."""

    journal: SiteJournal
    state: Path | None
    now: int
    vault: Callable[[], Any]  # -> ca.vault.site.SiteVault
    client: Callable[[], Any]  # -> ca.client.http.Client (signed in)


SiteRecoverer = Callable[[SiteContext, SiteIntent], tuple[str, str]]
"""``(context, intent) -> (result, outcome)``: result is rolled-forward or rolled-back; the
recoverer settles the intent in the journal itself (``journal.end``)."""

_SITE_RECOVERERS: dict[str, SiteRecoverer] = {}


def site_recoverer(operation: str) -> Callable[[SiteRecoverer], SiteRecoverer]:
    def register(fn: SiteRecoverer) -> SiteRecoverer:
        if operation in _SITE_RECOVERERS:
            raise ValueError(f"a site recoverer for {operation} is registered twice")
        _SITE_RECOVERERS[operation] = fn
        return fn

    return register


def _load() -> None:
    import ca.site.backup_recovery  # registers token.backup, token.restore
    import ca.site.packages  # noqa: F401  (registers the site's recoverers)


def recover_site(ctx: SiteContext, operation: str | None = None) -> list[dict[str, Any]]:
    """Every orphaned site intent (of ``operation``), recovered; one dict per intent."""
    _load()
    done: list[dict[str, Any]] = []
    for intent in ctx.journal.orphaned(now=ctx.now, operation=operation):
        fn = _SITE_RECOVERERS.get(intent.operation)
        item: dict[str, Any] = {
            "intent": intent.id,
            "operation": intent.operation,
            "subject": intent.subject,
            "site": True,
        }
        if fn is None:
            done.append({**item, "result": "failed", "outcome": "no recoverer"})
            continue
        try:
            result, outcome = fn(ctx, intent)
        except JtcaError as exc:
            done.append({**item, "result": "failed", "outcome": str(exc)})
            continue
        done.append({**item, "result": result, "outcome": outcome})
    return done


def _context(state: Path | None) -> SiteContext:
    def vault() -> Any:
        from ca.vault.site import SiteVault

        return SiteVault(state=state)

    def client() -> Any:
        from ca.cli.desk import connect

        return connect()

    return SiteContext(site_journal(state), state, int(time.time()), vault, client)


def recover_site_here(operation: str | None = None) -> list[dict[str, Any]]:
    """``jtca recover`` at this client: its journal (the embedded state folder's, else the
    user's), when it has anything open."""
    from ca.client.config import has_state, state_dir

    state = state_dir() if has_state(state_dir()) else None
    ctx = _context(state)
    if not ctx.journal.open_intents(operation=operation):
        return []
    return recover_site(ctx, operation)


def recover_site_before(ctx: SiteContext, operation: str, subject: str) -> None:
    """Before a rerun: what a dead run of the same operation on the same subject left here."""
    for item in recover_site(ctx, operation):
        if item["subject"] == subject and item["result"] == "failed":
            raise JtcaError(
                f"{operation} on {subject}: an earlier run left site intent {item['intent']} "
                f"that could not be recovered: {item['outcome']}"
            )
