"""Token signers built under the signing policy (``policies/signing.toml``)."""

from __future__ import annotations

from pathlib import Path

import policies
from ca.errors import JtcaError
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import MechanismInput, SignatureEncoding, TokenSigner, VendorMechanism
from hsm.pkcs11.uri import Pkcs11Uri
from policies.signing import PolicyFileError, SigningPolicy, parse_signing_policy

DEFAULT_SIGNING_POLICY = Path(policies.__file__).parent / "signing.toml"


class PolicyError(JtcaError):
    title = "Bad policy file"
    exit_code = 3


def load_signing_policy(path: Path | None = None) -> SigningPolicy:
    source = path or DEFAULT_SIGNING_POLICY
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return parse_signing_policy(text)
    except PolicyFileError as exc:
        raise PolicyError(f"{source}: {exc.message}") from None


def vendor_mechanisms(policy: SigningPolicy) -> tuple[VendorMechanism, ...]:
    return tuple(
        VendorMechanism(e.vendor, e.mechanism, MechanismInput(e.input), SignatureEncoding(e.output))
        for e in policy.vendor_mechanisms
    )


def token_signer(
    store: KeyStore, uri: Pkcs11Uri, key_class: str, policy: SigningPolicy | None = None
) -> TokenSigner:
    """The signer for a key of ``key_class``: native where the token can, host-assisted only
    where the policy allows it for that class."""
    chosen = policy or load_signing_policy()
    return TokenSigner(
        store,
        uri,
        allow_host_assisted=chosen.host_assisted_allowed(key_class),
        vendor_mechanisms=vendor_mechanisms(chosen),
    )
