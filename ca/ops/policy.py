"""The policy in force (issue #16, point 4): proposals, dual-controlled changes."""

from __future__ import annotations

from pydantic import Field

from ca.ops.base import Empty, Model, operation

MAX_POLICY_TEXT = 64 * 1024  # policies.bounded: a policy file is at most 64 KiB


class ProposeRequest(Model):
    """A new policy file, exactly as it would be installed (UTF-8 TOML)."""

    text: str = Field(min_length=1, max_length=MAX_POLICY_TEXT)
    reason: str = Field(default="", max_length=400)


class DecideRequest(Model):
    """An approval or rejection of proposal ``proposal``, signed by the deciding officer's
    token: ``signature`` is the raw SM2 r‖s over ``ca.officers.statements.approval_statement`` for
    the
    subject ``"policy {proposal}"``."""

    proposal: int = Field(ge=1)
    reason: str = Field(default="", max_length=2000)  # ca.officers.dual_control allows 400
    at: int  # the time the approver's client signed the decision (Unix seconds)
    signature: bytes = Field(min_length=64, max_length=64)  # raw r‖s


class ShowRequest(Model):
    proposal: int | None = Field(default=None, ge=1)  # None: the policy in force


class PolicyView(Model):
    """A policy version: the one in force, or a proposal."""

    version: int
    sm3: str  # hex SM3 of ``text``
    state: str  # in-force | proposed | superseded | rejected
    text: str
    proposed_by: str
    proposed_at: int
    required: int  # approvals the policy in force asked for
    decided_at: int | None = None
    running_sm3: str = ""  # the policy this service process runs under


class PolicyVersions(Model):
    versions: list[PolicyView]


PROPOSE = operation(
    "policy.propose",
    ProposeRequest,
    PolicyView,
    "propose a new policy (dual control: another officer approves it)",
)
APPROVE = operation(
    "policy.approve",
    DecideRequest,
    PolicyView,
    "approve a proposed policy; the last approval puts it in force",
)
REJECT = operation("policy.reject", DecideRequest, PolicyView, "reject a proposed policy")
SHOW = operation(
    "policy.show",
    ShowRequest,
    PolicyView,
    "the policy in force (or a proposal) and its SM3",
    mutating=False,
)
HISTORY = operation(
    "policy.history", Empty, PolicyVersions, "every policy version known", mutating=False
)
