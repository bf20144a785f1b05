"""Operations of the officers area: who may act, with which policy roles (see ca/ops/base.py).

The root ceremony file names the first officers; after that a ministry root officer adds them.
"""

from __future__ import annotations

from ca.ops.base import Empty, Model, operation


class OfficerView(Model):
    """An officer as the policy sees them: roles from ``policies/authority.toml``, and a
    provincial officer's GB/T 2260 province code."""

    id: str
    name: str
    roles: list[str]  # sorted
    province: str | None
    status: str  # active | …


class Officers(Model):
    officers: list[OfficerView]


class AddOfficerRequest(Model):
    officer_id: str
    name: str = ""
    roles: list[str]
    province: str | None = None


ADD = operation(
    "officer.add",
    AddOfficerRequest,
    OfficerView,
    "add an officer with policy roles (only a ministry root officer may; audited)",
)
LIST = operation(
    "officer.list",
    Empty,
    Officers,
    "the registered officers and their roles, by id",
    mutating=False,
    officer=False,
)
