"""Import every area's use cases, so that each operation has its handler."""

from __future__ import annotations

from ca.service import (  # noqa: F401
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
