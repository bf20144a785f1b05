"""policies/signing.toml: the shipped file validates; every error names its key."""

from __future__ import annotations

import pytest

from ca.signing import DEFAULT_SIGNING_POLICY, load_signing_policy, vendor_mechanisms
from hsm.pkcs11.signer import DEFAULT_VENDOR_MECHANISMS, MechanismInput
from policies.signing import PolicyFileError, parse_signing_policy


def test_shipped_policy_matches_the_token_layer_defaults() -> None:
    policy = load_signing_policy()
    assert vendor_mechanisms(policy) == DEFAULT_VENDOR_MECHANISMS
    assert policy.host_assisted_allowed("central-qr-ca") is True
    assert policy.host_assisted_allowed("no-such-class") is False  # must be named to be allowed
    assert DEFAULT_SIGNING_POLICY.name == "signing.toml"


def test_forbidding_a_class() -> None:
    policy = parse_signing_policy("[host_assisted]\nministry-root = false\n")
    assert policy.host_assisted_allowed("ministry-root") is False
    assert policy.vendor_mechanisms == ()


ENTRY = 'vendor = "V"\nmechanism = 0x80008102\ninput = "message"\n'


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "[[vendor_mechanism]]\n" + ENTRY.replace('"message"', '"hash"'),
            "vendor_mechanism[0].input",
            "must be one of",
        ),
        (
            "[[vendor_mechanism]]\n" + ENTRY.replace("0x80008102", "0x1041"),
            "vendor_mechanism[0].mechanism",
            "vendor range",
        ),
        (
            "[[vendor_mechanism]]\n" + ENTRY.replace('"V"', '""'),
            "vendor_mechanism[0].vendor",
            "non-empty",
        ),
        (
            "[[vendor_mechanism]]\n" + ENTRY + 'output = "pem"\n',
            "vendor_mechanism[0].output",
            "must be one of",
        ),
        (
            "[[vendor_mechanism]]\n" + ENTRY + "colour = 1\n",
            "vendor_mechanism[0].colour",
            "unknown key",
        ),
        (
            "[[vendor_mechanism]]\n" + ENTRY + "[[vendor_mechanism]]\n" + ENTRY,
            "vendor_mechanism[1].mechanism",
            "listed twice",
        ),
        ("[host_assisted]\nroot = 1\n", "host_assisted.root", "true or false"),
        ("[extras]\n", "extras", "unknown section"),
        ("not toml [", "(file)", "not valid TOML"),
    ],
    ids=[
        "fail/input",
        "fail/standard-range",
        "fail/vendor",
        "fail/output",
        "fail/unknown-key",
        "fail/duplicate",
        "fail/host-assisted-type",
        "fail/section",
        "fail/toml",
    ],
)
def test_errors_name_the_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_signing_policy(text)
    assert info.value.key == key
    assert problem in info.value.message


def test_digest_entry() -> None:
    policy = parse_signing_policy("[[vendor_mechanism]]\n" + ENTRY.replace("message", "digest"))
    assert vendor_mechanisms(policy)[0].input == MechanismInput.DIGEST
