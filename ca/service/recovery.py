"""Recovery of unfinished operations (issue #14, point 1).

Every operation that touches a token and the database or files writes an intent first
(``ca.store.intents``). An intent still open when its process is gone is recovered here, by the
recoverer its operation registered (``@recoverer("city.generate")``): it rolls the operation
forward (adopts what the token or the folder already holds and writes the missing records) or
back (destroys orphan token objects found by label and id, removes stray files, voids a reserved
serial), then settles the intent and audits what it did, in one transaction.

Recovery runs at service start (``recover_quietly``), at the next run of the same operation
(``recover_before``), and when an officer runs ``jtca recover`` (``system.recover``). A
recoverer is idempotent: recovery itself may be cut by a crash and run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlmodel import Session

from ca.core.errors import JtcaError
from ca.store import intents
from ca.store.intents import IntentRef

if TYPE_CHECKING:
    from ca.service.runtime import Runtime

log = logging.getLogger("jtca.recovery")

RECOVERY_ACTOR: Final = "jtca-recovery"  # the service itself, at start or before a rerun

Recoverer = Callable[["Runtime", IntentRef, str, int], None]
"""``(runtime, intent, actor, now)``: finish or undo the operation, then ``intents.settle`` in
the transaction that writes or removes its records. Raise a JtcaError when it cannot (the intent
stays open and is reported)."""

_RECOVERERS: dict[str, Recoverer] = {}


class RecoveryFailed(JtcaError):
    title = "Recovery failed"
    exit_code = 5


def recoverer(operation: str) -> Callable[[Recoverer], Recoverer]:
    """Register the recoverer of ``operation`` (once)."""

    def register(fn: Recoverer) -> Recoverer:
        if operation in _RECOVERERS:
            raise ValueError(f"a recoverer for {operation} is registered twice")
        _RECOVERERS[operation] = fn
        return fn

    return register


def registered() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_RECOVERERS))


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery did with one intent: ``result`` rolled-forward | rolled-back | failed |
    settled-elsewhere (another process recovered it first)."""

    intent: int
    operation: str
    subject: str
    result: str
    outcome: str


def _load() -> None:
    import ca.service.all  # noqa: F401  (every area registers its recoverers on import)


def recover(
    runtime: Runtime,
    *,
    now: int,
    actor: str = RECOVERY_ACTOR,
    operation: str | None = None,
    subject: str | None = None,
) -> list[Recovered]:
    """Recover every open intent whose owner is gone (of ``operation``, on ``subject``)."""
    _load()
    with Session(runtime.engine) as session:
        found = intents.orphaned(session, now=now, operation=operation, subject=subject)
    done: list[Recovered] = []
    for intent in found:
        fn = _RECOVERERS.get(intent.operation)
        if fn is None:
            done.append(
                Recovered(
                    intent.id,
                    intent.operation,
                    intent.subject,
                    "failed",
                    f"no recoverer for operation {intent.operation}",
                )
            )
            continue
        try:
            fn(runtime, intent, actor, now)
        except intents.IntentError:
            pass  # settled by another process meanwhile: read below
        except JtcaError as exc:
            log.warning("recovery of intent %s (%s) failed: %s", intent.id, intent.operation, exc)
            done.append(Recovered(intent.id, intent.operation, intent.subject, "failed", str(exc)))
            continue
        with Session(runtime.engine) as session:
            after = intents.get(session, intent.id)
        if after is None or after.state == intents.OPEN:
            done.append(
                Recovered(
                    intent.id,
                    intent.operation,
                    intent.subject,
                    "failed",
                    "the recoverer left the intent open",
                )
            )
            continue
        result = after.state if after.ended_at == now else "settled-elsewhere"
        done.append(
            Recovered(intent.id, intent.operation, intent.subject, result, after.outcome or "")
        )
        log.info("intent %s (%s %s): %s", intent.id, intent.operation, intent.subject, result)
    return done


def recover_before(runtime: Runtime, operation: str, subject: str, *, now: int) -> None:
    """At the next run of an operation: recover what a dead run of it on the same subject left,
    so the rerun is never stuck. Raises RecoveryFailed when that cannot be done."""
    for item in recover(runtime, now=now, operation=operation, subject=subject):
        if item.result == "failed":
            raise RecoveryFailed(
                f"{operation} on {subject}: an earlier run left intent {item.intent} that could "
                f"not be recovered: {item.outcome}"
            )


def sweep_state(runtime: Runtime) -> list[str]:
    """The temporary files dead writers left anywhere in the service's folders (the state
    folder but its tokens, the publication folder, the checkpoint folder): a crash between a
    write and its rename leaves one (``ca.core.files.sweep_temporary``; a live writer's are
    kept)."""
    from ca.core.files import sweep_temporary

    removed: list[str] = []
    folders = {runtime.state, runtime.published, runtime.log_folder}
    for folder in sorted(folders):
        if not folder.is_dir():
            continue
        for child in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
            if child.name == "softhsm2":
                continue
            for path in sweep_temporary(child, recursive=child != folder):
                removed.append(str(path))
                log.info("removed %s, a temporary file a dead writer left", path)
    return removed


def recover_quietly(runtime: Runtime, *, now: int) -> list[Recovered]:
    """At service start: recover what dead processes left (intents, temporary files); never
    fails the start (logged)."""
    try:
        sweep_state(runtime)
    except OSError as exc:
        log.error("sweeping temporary files at start failed: %s", exc)
    try:
        found = recover(runtime, now=now)
    except Exception as exc:  # a start must not die of its recovery; say so loudly
        log.error("recovery at start failed: %s", exc)
        return []
    for item in found:
        if item.result == "failed":
            log.error(
                "intent %s (%s on %s) could not be recovered: %s",
                item.intent,
                item.operation,
                item.subject,
                item.outcome,
            )
    return found
