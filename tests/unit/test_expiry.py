"""Expiry, renewal window and dormancy from the shipped policy's key classes."""

from __future__ import annotations

import pytest

from ca.citykeys.expiry import DAY, Flag, KeyTimes, expiring_within, flags, successor_window
from ca.citykeys.lifecycle import KeyState
from ca.policy.in_force import load_policy

CARD = load_policy().key_classes["city-card"]  # 1825 days, renewal 180, overlap 90, dormancy 180
T0 = 1_790_000_000
END = T0 + CARD.validity_days * DAY


def times(state: KeyState, delivered: int | None = T0) -> KeyTimes:
    return KeyTimes(state=state, created_at=T0, delivered_at=delivered, not_after=END)


@pytest.mark.parametrize(
    ("state", "delivered", "now", "expected"),
    [
        (KeyState.ACTIVE, T0, T0 + DAY, set()),
        (KeyState.ACTIVE, T0, END - 181 * DAY, set()),
        (KeyState.ACTIVE, T0, END - 180 * DAY, {Flag.RENEWAL_DUE}),
        (KeyState.ACTIVE, T0, END, {Flag.RENEWAL_DUE}),
        (KeyState.ACTIVE, T0, END + 1, {Flag.EXPIRED}),
        (KeyState.SUSPENDED, T0, END + 1, {Flag.EXPIRED}),
        (KeyState.DEACTIVATED, T0, END + 1, set()),
        (KeyState.PRE_ACTIVE, T0, T0 + 179 * DAY, set()),
        (KeyState.PRE_ACTIVE, T0, T0 + 180 * DAY, {Flag.DORMANT}),
        (KeyState.PRE_ACTIVE, None, T0 + 400 * DAY, set()),  # never delivered: not dormant
        (KeyState.ACTIVE, T0, T0 + 400 * DAY, set()),  # in use: never dormant
        (KeyState.REVOKED, T0, END + 1, set()),
    ],
    ids=[
        "fresh",
        "before-window",
        "window-opens",
        "last-second",
        "expired",
        "suspended-expired",
        "deactivated",
        "not-yet-dormant",
        "dormant",
        "undelivered",
        "active-not-dormant",
        "revoked",
    ],
)
def test_flags(state: KeyState, delivered: int | None, now: int, expected: set[Flag]) -> None:
    assert flags(times(state, delivered), CARD, now) == expected


def test_expiring_within_and_successor_window() -> None:
    key = times(KeyState.ACTIVE)
    assert expiring_within(key, 30, END - 30 * DAY)
    assert not expiring_within(key, 30, END - 31 * DAY)
    assert not expiring_within(key, 30, END + 1)
    assert successor_window(key, CARD) == (END - 90 * DAY, END)
