"""The policy in force (``policies/authority.toml``, or the version approved in the service):
read, validated and answered by ``load_policy`` to every module that decides under it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ca.core.errors import JtcaError
from hsm.sm.sm3 import sm3
from policies.rules import DEFAULT_POLICY_PATH, Policy, PolicyFileError, parse_policy


class PolicyError(JtcaError):
    title = "Bad policy file"
    exit_code = 3


_loaded: dict[Path, Policy] = {}


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """The policy a service runs under (issue #16): the file's bytes, their SM3 and the file."""

    policy: Policy
    sm3: str  # hex SM3 of ``text``
    text: bytes
    path: Path | None  # None: switched to by an approved proposal (no file of its own)


_in_force: PolicyInForce | None = None
_refresher: Callable[[], None] | None = None  # a service: switch when another approved a change


def policy_path(path: Path | None = None) -> Path:
    """The policy file: ``path`` (``--policy``), else $JTCA_POLICY, else the shipped default."""
    if path is not None:
        return path
    named = os.environ.get("JTCA_POLICY", "").strip()
    return Path(named) if named else DEFAULT_POLICY_PATH


def read_policy(path: Path | None = None) -> PolicyInForce:
    """The policy file validated, with its SM3 (a bad file: PolicyError naming file, field,
    value)."""
    source = policy_path(path)
    try:
        data = source.read_bytes()  # parse_policy checks the bytes (UTF-8, size, depth)
    except OSError as exc:
        raise PolicyError(f"cannot read {source}: {exc.strerror}") from None
    return policy_from_bytes(data, source)


def policy_from_bytes(data: bytes, source: Path | None = None) -> PolicyInForce:
    try:
        policy = parse_policy(data)
    except PolicyFileError as exc:
        raise PolicyError(f"{source or 'the policy'}: {exc.message}") from None
    return PolicyInForce(policy, sm3(data).hex(), data, source)


def set_policy_in_force(chosen: PolicyInForce | None) -> None:
    """The policy ``load_policy()`` answers from now on in this process (None: the file)."""
    global _in_force
    _in_force = chosen


def set_policy_refresher(refresher: Callable[[], None] | None) -> None:
    global _refresher
    _refresher = refresher


def policy_in_force() -> PolicyInForce | None:
    if _refresher is not None:
        _refresher()
    return _in_force


def load_policy(path: Path | None = None) -> Policy:
    """The policy in force (set by the service at its start and on an approved change), else
    the file (``policy_path``); a file is validated and read once per path."""
    if path is None and (running := policy_in_force()) is not None:
        return running.policy
    source = policy_path(path)
    if source not in _loaded:
        _loaded[source] = read_policy(source).policy
    return _loaded[source]
