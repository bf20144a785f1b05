"""Import every area's operations, so that ``ca.ops.base.OPERATIONS`` holds them all."""

from __future__ import annotations

from ca.ops import (  # noqa: F401
    approvals,
    audit,
    auth,
    ceremony,
    city,
    console,
    demo,
    issuance,
    lists,
    log,
    officers,
    operators,
    packages,
    policy,
    system,
)
