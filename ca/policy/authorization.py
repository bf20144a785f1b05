"""Policy decisions for the authority's services (policies/authority.toml, pure ``decide``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ca.core.errors import JtcaError
from ca.policy.in_force import load_policy
from ca.qr.cert_request import InteropCertRequest
from ca.qr.codec import expiry_end
from policies.rules import Actor, Policy, Subject, decide


class PolicyDenied(JtcaError):
    title = "Not allowed by policy"
    exit_code = 6


def months_between(now: int, mmyy: str) -> int:
    start = datetime.fromtimestamp(now, UTC)
    end = datetime.fromtimestamp(expiry_end(mmyy), UTC)
    return (end.year - start.year) * 12 + (end.month - start.month)


def interop_authorizer(
    actor: Actor, ca_index: int, now: int, policy: Policy | None = None
) -> Callable[[str, InteropCertRequest], None]:
    chosen = policy or load_policy()

    def authorize(action: str, request: InteropCertRequest) -> None:
        if expiry_end(request.requested_expiry) <= now:
            raise PolicyDenied(f"deny/expired: expiry {request.requested_expiry} is already past")
        subject = Subject(
            ca_index=ca_index,
            issuer_id=request.issuer_id,
            interop_lifetime_months=months_between(now, request.requested_expiry),
        )
        decision = decide(chosen, actor, action, subject, datetime.fromtimestamp(now, UTC))
        if not decision.allowed:
            raise PolicyDenied(
                f"{decision.reason}: {actor.id} may not {action} ({request.issuer_id})"
            )

    return authorize


def require(actor: Actor, action: str, subject: Subject, now: int) -> None:
    """Raise PolicyDenied unless the policy allows ``actor`` to do ``action`` now."""
    decision = decide(load_policy(), actor, action, subject, datetime.fromtimestamp(now, UTC))
    if not decision.allowed:
        raise PolicyDenied(f"{decision.reason}: {actor.id} may not {action}")


def granted(actor: Actor) -> set[str]:
    """Every policy action one of ``actor``'s roles grants (the scope is decided per subject
    when the action is taken)."""
    roles = load_policy().roles
    return {a for r in actor.roles if r in roles for a in roles[r].actions}
