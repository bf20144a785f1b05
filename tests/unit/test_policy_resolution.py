"""Which policy file a process reads (issue #16, point 4): ``--policy``, else $JTCA_POLICY, else
the shipped file; the policy in force a service set overrides the file until it is cleared."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.policy.in_force import (
    PolicyError,
    load_policy,
    policy_from_bytes,
    policy_path,
    read_policy,
    set_policy_in_force,
)
from hsm.sm.sm3 import sm3
from policies.rules import DEFAULT_POLICY_PATH


def test_the_option_then_the_variable_then_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JTCA_POLICY", raising=False)
    assert policy_path() == DEFAULT_POLICY_PATH
    named = tmp_path / "named.toml"
    monkeypatch.setenv("JTCA_POLICY", str(named))
    assert policy_path() == named
    assert policy_path(tmp_path / "option.toml") == tmp_path / "option.toml"


def test_the_variable_s_file_is_the_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    named = tmp_path / "named.toml"
    named.write_text(text.replace('"city-key.revoke" = 2', '"city-key.revoke" = 3', 1))
    monkeypatch.setenv("JTCA_POLICY", str(named))
    assert load_policy().approvals_required("city-key.revoke") == 3
    monkeypatch.setenv("JTCA_POLICY", str(tmp_path / "missing.toml"))
    with pytest.raises(PolicyError) as caught:
        load_policy()
    assert str(tmp_path / "missing.toml") in caught.value.message


def test_a_bad_file_names_file_field_and_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    bad.write_text(text.replace("session_idle_seconds = 900", "session_idle_seconds = 0", 1))
    with pytest.raises(PolicyError) as caught:
        read_policy(bad)
    assert str(bad) in caught.value.message
    assert "officers.session_idle_seconds" in caught.value.message
    assert "0" in caught.value.message


def test_the_policy_in_force_overrides_the_file_until_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JTCA_POLICY", raising=False)
    data = DEFAULT_POLICY_PATH.read_bytes().replace(
        b'"city-key.revoke" = 2', b'"city-key.revoke" = 4', 1
    )
    chosen = policy_from_bytes(data)
    assert chosen.sm3 == sm3(data).hex()
    set_policy_in_force(chosen)
    try:
        assert load_policy().approvals_required("city-key.revoke") == 4
        assert load_policy(DEFAULT_POLICY_PATH).approvals_required("city-key.revoke") == 2
    finally:
        set_policy_in_force(None)
    assert load_policy().approvals_required("city-key.revoke") == 2
