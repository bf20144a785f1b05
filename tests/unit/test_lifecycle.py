"""The lifecycle state machine: every state × event pair, each refusal with its reason."""

from __future__ import annotations

import itertools

import pytest

from ca.citykeys.lifecycle import (
    TRANSITIONS,
    KeyEvent,
    KeyState,
    TransitionRefused,
    allowed_events,
    transition,
)

S, E = KeyState, KeyEvent
EXPECTED: dict[tuple[KeyState, KeyEvent], KeyState | str] = {
    (S.PRE_ACTIVE, E.ACTIVATE): S.ACTIVE,
    (S.PRE_ACTIVE, E.SUSPEND): "no rights to suspend",
    (S.PRE_ACTIVE, E.RESUME): "not been activated",
    (S.PRE_ACTIVE, E.EXPIRE): S.DEACTIVATED,
    (S.PRE_ACTIVE, E.SUPERSEDE): "cannot be superseded",
    (S.PRE_ACTIVE, E.REVOKE): S.REVOKED,  # dormant cleanup (第十条)
    (S.PRE_ACTIVE, E.DESTROY): "revoked (dormant cleanup) before",
    (S.ACTIVE, E.ACTIVATE): "already active",
    (S.ACTIVE, E.SUSPEND): S.SUSPENDED,
    (S.ACTIVE, E.RESUME): "not suspended",
    (S.ACTIVE, E.EXPIRE): S.DEACTIVATED,
    (S.ACTIVE, E.SUPERSEDE): S.DEACTIVATED,
    (S.ACTIVE, E.REVOKE): S.REVOKED,
    (S.ACTIVE, E.DESTROY): "never destroyed",
    (S.SUSPENDED, E.ACTIVATE): "suspended",
    (S.SUSPENDED, E.SUSPEND): "already suspended",
    (S.SUSPENDED, E.RESUME): S.ACTIVE,
    (S.SUSPENDED, E.EXPIRE): S.DEACTIVATED,
    (S.SUSPENDED, E.SUPERSEDE): "suspended",
    (S.SUSPENDED, E.REVOKE): S.REVOKED,
    (S.SUSPENDED, E.DESTROY): "revoke it first",
    (S.DEACTIVATED, E.ACTIVATE): "never used again",
    (S.DEACTIVATED, E.SUSPEND): "deactivated",
    (S.DEACTIVATED, E.RESUME): "deactivated",
    (S.DEACTIVATED, E.EXPIRE): "deactivated",
    (S.DEACTIVATED, E.SUPERSEDE): "deactivated",
    (S.DEACTIVATED, E.REVOKE): S.REVOKED,
    (S.DEACTIVATED, E.DESTROY): S.DESTROYED,
    (S.REVOKED, E.ACTIVATE): "revocation is final",
    (S.REVOKED, E.SUSPEND): "revocation is final",
    (S.REVOKED, E.RESUME): "revocation is final",
    (S.REVOKED, E.EXPIRE): "revocation is final",
    (S.REVOKED, E.SUPERSEDE): "revocation is final",
    (S.REVOKED, E.REVOKE): "already revoked",
    (S.REVOKED, E.DESTROY): S.DESTROYED,
    **{(S.DESTROYED, e): "only its record remains" for e in E if e != E.DESTROY},
    (S.DESTROYED, E.DESTROY): "already destroyed",
}


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(KeyState, KeyEvent))


@pytest.mark.parametrize(
    ("state", "event"), sorted(EXPECTED), ids=[f"{s.value}×{e.value}" for s, e in sorted(EXPECTED)]
)
def test_every_state_and_event(state: KeyState, event: KeyEvent) -> None:
    expected = EXPECTED[(state, event)]
    if isinstance(expected, KeyState):
        assert transition(state, event) == expected
    else:
        with pytest.raises(TransitionRefused) as info:
            transition(state, event)
        assert expected in info.value.why
        assert (info.value.state, info.value.event) == (state, event)
        article = "an" if state.value[0] in "aeiou" else "a"
        assert info.value.message.startswith(f"cannot {event.value} {article} {state.value} key: ")


def test_destroyed_is_terminal_and_allowed_events_match() -> None:
    assert allowed_events(S.DESTROYED) == []
    for state in KeyState:
        assert set(allowed_events(state)) == {e for (s, e) in TRANSITIONS if s == state}
