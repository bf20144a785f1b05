"""Token signers built under the policy (``ca.policy.in_force``): vendor mechanisms matched on
the token's maker and model, and, per key class, whether host-assisted signing is allowed."""

from __future__ import annotations

from ca.policy.in_force import load_policy
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import MechanismInput, SignatureEncoding, TokenSigner, VendorMechanism
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Policy


def vendor_mechanisms(policy: Policy) -> tuple[VendorMechanism, ...]:
    return tuple(
        VendorMechanism(
            e.vendor,
            e.mechanism,
            MechanismInput(e.input),
            SignatureEncoding(e.output),
            manufacturer=e.manufacturer,
            model=e.model,
        )
        for e in policy.vendor_mechanisms
    )


def token_signer(
    store: KeyStore, uri: Pkcs11Uri, key_class: str, policy: Policy | None = None
) -> TokenSigner:
    """The signer for a key of ``key_class``: native where the token can, host-assisted only
    where the policy allows it for that class."""
    chosen = policy or load_policy()
    return TokenSigner(
        store,
        uri,
        allow_host_assisted=chosen.host_assisted_allowed(key_class),
        vendor_mechanisms=vendor_mechanisms(chosen),
    )
