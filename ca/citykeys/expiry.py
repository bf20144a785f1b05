"""Where a key stands in time, from its key class in the policy (第十条: validity periods,
renewal before the end, cleanup of keys applied for and never used). Pure: no I/O.

- ``renewal-due``: inside the class's renewal window before its end;
- ``expired``: past its end (the lifecycle deactivates it);
- ``dormant``: delivered but not activated within the class's dormancy threshold;
- ``expiring(n)``: ends within n days (the officers' expiry queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ca.citykeys.lifecycle import KeyState
from policies.rules import KeyClass

DAY: Final = 86400


class Flag(StrEnum):
    RENEWAL_DUE = "renewal-due"
    EXPIRED = "expired"
    DORMANT = "dormant"


@dataclass(frozen=True, slots=True)
class KeyTimes:
    state: KeyState
    created_at: int  # generated
    delivered_at: int | None  # handed to the province/city (None: not yet)
    not_after: int  # end of validity


def flags(key: KeyTimes, key_class: KeyClass, now: int) -> frozenset[Flag]:
    found: set[Flag] = set()
    if key.state in (KeyState.ACTIVE, KeyState.SUSPENDED, KeyState.PRE_ACTIVE):
        if now > key.not_after:
            found.add(Flag.EXPIRED)
        elif now >= key.not_after - key_class.renewal_window_days * DAY:
            found.add(Flag.RENEWAL_DUE)
    if (
        key.state == KeyState.PRE_ACTIVE
        and key.delivered_at is not None
        and key_class.dormancy_days is not None
        and now >= key.delivered_at + key_class.dormancy_days * DAY
    ):
        found.add(Flag.DORMANT)
    return frozenset(found)


def expiring_within(key: KeyTimes, days: int, now: int) -> bool:
    """Still valid, and ending within ``days`` days (keys already past their end are not)."""
    return key.state in (KeyState.ACTIVE, KeyState.SUSPENDED, KeyState.PRE_ACTIVE) and (
        now <= key.not_after <= now + days * DAY
    )


def successor_window(key: KeyTimes, key_class: KeyClass) -> tuple[int, int]:
    """When a renewal's successor starts and when this key is superseded: the successor takes
    over ``overlap_days`` before this key's end (both valid during the overlap)."""
    start = key.not_after - key_class.overlap_days * DAY
    return start, key.not_after
