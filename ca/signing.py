"""Token signers built under the policy (``policies/authority.toml``): vendor mechanisms and,
per key class, whether host-assisted signing is allowed."""

from __future__ import annotations

from pathlib import Path

from ca.errors import JtcaError
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import MechanismInput, SignatureEncoding, TokenSigner, VendorMechanism
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import DEFAULT_POLICY_PATH, Policy, PolicyFileError, parse_policy


class PolicyError(JtcaError):
    title = "Bad policy file"
    exit_code = 3


_loaded: dict[Path, Policy] = {}


def load_policy(path: Path | None = None) -> Policy:
    """The policy file (the shipped default unless ``path``), validated; read once per path."""
    source = path or DEFAULT_POLICY_PATH
    if source not in _loaded:
        try:
            data = source.read_bytes()  # parse_policy checks the bytes (UTF-8, size, depth)
        except OSError as exc:
            raise PolicyError(f"cannot read {source}: {exc.strerror}") from None
        try:
            _loaded[source] = parse_policy(data)
        except PolicyFileError as exc:
            raise PolicyError(f"{source}: {exc.message}") from None
    return _loaded[source]


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
