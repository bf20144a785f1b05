"""The signing part of the policy: vendor mechanisms and host-assisted signing per key class."""

from __future__ import annotations

from ca.policy.in_force import load_policy
from ca.vault.signers import vendor_mechanisms
from hsm.pkcs11.signer import DEFAULT_VENDOR_MECHANISMS, MechanismInput
from policies.rules import DEFAULT_POLICY_PATH, parse_policy


def test_shipped_policy_matches_the_token_layer_defaults() -> None:
    policy = load_policy()
    assert vendor_mechanisms(policy) == DEFAULT_VENDOR_MECHANISMS
    assert policy.host_assisted_allowed("central-qr-ca") is True
    assert policy.host_assisted_allowed("no-such-class") is False  # must be named to be allowed
    assert DEFAULT_POLICY_PATH.name == "authority.toml"


def test_forbidding_host_assisted_for_a_class() -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    marker = '[key_classes.ministry-root]\nalgorithm = "sm2"'
    assert marker in text
    start = text.index(marker)
    end = text.index("host_assisted = true", start)
    edited = text[:end] + "host_assisted = false" + text[end + len("host_assisted = true") :]
    policy = parse_policy(edited)
    assert policy.host_assisted_allowed("ministry-root") is False
    assert policy.host_assisted_allowed("central-qr-ca") is True


def test_digest_mechanism_entry() -> None:
    policy = load_policy()
    kinds = {m.vendor: m.input for m in vendor_mechanisms(policy)}
    assert kinds["TASS/Koal"] == MechanismInput.DIGEST
    assert kinds["Sansec"] == MechanismInput.MESSAGE
