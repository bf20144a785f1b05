"""The key lifecycle as a pure state machine (KMIP 2.1 §3.22, NIST SP 800-57 Part 1 §7).

::

    pre-active ──activate──▶ active ◀──resume── suspended
        │                     │  ╰──suspend──▶──╯ │
        │                     ├──expire/supersede──▶ deactivated
        │                     ╰──revoke──▶ revoked
        ╰──revoke (dormant: 第十条) ──▶ revoked
    deactivated | revoked ──destroy──▶ destroyed

Destroying key material never deletes the record: the regulation keeps records 10 years
(第二十九条). Every refused transition raises ``TransitionRefused`` saying why. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from ca.core.errors import JtcaError


class KeyState(StrEnum):
    PRE_ACTIVE = "pre-active"  # generated (applied for, approved, delivered), not yet in use
    ACTIVE = "active"
    SUSPENDED = "suspended"  # 第十一条: rights suspended for misuse; reversible
    DEACTIVATED = "deactivated"  # expired or superseded: verification only
    REVOKED = "revoked"  # misuse or dormant cleanup: final
    DESTROYED = "destroyed"  # material destroyed in the token; the record stays


class KeyEvent(StrEnum):
    ACTIVATE = "activate"  # first use reported (usage report) or explicit activation
    SUSPEND = "suspend"
    RESUME = "resume"
    EXPIRE = "expire"  # past the end of its validity
    SUPERSEDE = "supersede"  # its successor took over after the overlap
    REVOKE = "revoke"  # misuse (第十一条) or dormant cleanup (第十条)
    DESTROY = "destroy"  # the material, after a grace period


TRANSITIONS: Final[dict[tuple[KeyState, KeyEvent], KeyState]] = {
    (KeyState.PRE_ACTIVE, KeyEvent.ACTIVATE): KeyState.ACTIVE,
    (KeyState.PRE_ACTIVE, KeyEvent.REVOKE): KeyState.REVOKED,
    (KeyState.PRE_ACTIVE, KeyEvent.EXPIRE): KeyState.DEACTIVATED,
    (KeyState.ACTIVE, KeyEvent.SUSPEND): KeyState.SUSPENDED,
    (KeyState.ACTIVE, KeyEvent.EXPIRE): KeyState.DEACTIVATED,
    (KeyState.ACTIVE, KeyEvent.SUPERSEDE): KeyState.DEACTIVATED,
    (KeyState.ACTIVE, KeyEvent.REVOKE): KeyState.REVOKED,
    (KeyState.SUSPENDED, KeyEvent.RESUME): KeyState.ACTIVE,
    (KeyState.SUSPENDED, KeyEvent.REVOKE): KeyState.REVOKED,
    (KeyState.SUSPENDED, KeyEvent.EXPIRE): KeyState.DEACTIVATED,
    (KeyState.DEACTIVATED, KeyEvent.REVOKE): KeyState.REVOKED,
    (KeyState.DEACTIVATED, KeyEvent.DESTROY): KeyState.DESTROYED,
    (KeyState.REVOKED, KeyEvent.DESTROY): KeyState.DESTROYED,
}

# Why each refused pair is refused, by the state the key is in (and a few specific pairs).
_WHY_STATE: Final[dict[KeyState, str]] = {
    KeyState.PRE_ACTIVE: "the key has not been activated yet",
    KeyState.ACTIVE: "the key is in use",
    KeyState.SUSPENDED: "the key is suspended: resume it or revoke it first",
    KeyState.DEACTIVATED: "the key is deactivated: it only verifies what it made before",
    KeyState.REVOKED: "the key is revoked; revocation is final",
    KeyState.DESTROYED: "the key material is destroyed; only its record remains",
}
_WHY_PAIR: Final[dict[tuple[KeyState, KeyEvent], str]] = {
    (KeyState.ACTIVE, KeyEvent.ACTIVATE): "the key is already active",
    (KeyState.ACTIVE, KeyEvent.RESUME): "the key is not suspended",
    (KeyState.ACTIVE, KeyEvent.DESTROY): "an active key's material is never destroyed: "
    "deactivate or revoke it first",
    (KeyState.SUSPENDED, KeyEvent.SUSPEND): "the key is already suspended",
    (KeyState.SUSPENDED, KeyEvent.DESTROY): "a suspended key's material is not destroyed: "
    "revoke it first",
    (KeyState.PRE_ACTIVE, KeyEvent.DESTROY): "an unused key is revoked (dormant cleanup) before "
    "its material is destroyed",
    (KeyState.PRE_ACTIVE, KeyEvent.SUSPEND): "a key not yet in use has no rights to suspend",
    (KeyState.PRE_ACTIVE, KeyEvent.SUPERSEDE): "a key not yet in use cannot be superseded",
    (KeyState.DEACTIVATED, KeyEvent.ACTIVATE): "a deactivated key is never used again",
    (KeyState.REVOKED, KeyEvent.REVOKE): "the key is already revoked",
    (KeyState.DESTROYED, KeyEvent.DESTROY): "the key material is already destroyed",
}


class TransitionRefused(JtcaError):
    title = "Key state change refused"
    exit_code = 6

    def __init__(self, state: KeyState, event: KeyEvent, why: str) -> None:
        self.state, self.event, self.why = state, event, why
        article = "an" if state.value[0] in "aeiou" else "a"
        super().__init__(f"cannot {event.value} {article} {state.value} key: {why}")


def transition(state: KeyState, event: KeyEvent) -> KeyState:
    """The state after ``event``, or TransitionRefused saying why not."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        why = _WHY_PAIR.get((state, event), _WHY_STATE[state])
        raise TransitionRefused(state, event, why)
    return after


def allowed_events(state: KeyState) -> list[KeyEvent]:
    return [event for (s, event) in TRANSITIONS if s == state]
