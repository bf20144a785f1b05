"""From verified lists to the QR verifier's trust (issue #6): the accepted issuers and the CA
keys of ``ca.qr.verify.PayloadVerifier``.

* accepted issuers: the issuer ids whose status is ``active``; a suspended or revoked issuer is
  absent, so its QR codes fail with ``issuer-not-accepted``.
* CA keys: index → key for each entry whose verifyUntil has not passed; a key past it is absent,
  so payloads certified under it fail with ``unknown-ca-key``.

Only ``VerifiedList`` values are taken: lists reach the verifier through ``load_list``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ca.core.clock import Clock
from ca.lists.asn1 import IssuerStatus
from ca.lists.verify import VerifiedList
from ca.qr.verify import DEFAULT_CACHE_SIZE, DEFAULT_SKEW, PayloadVerifier
from hsm.sm.sm2 import SM2PublicKey


@dataclass(frozen=True, slots=True)
class AcceptorTrust:
    """The arguments ``PayloadVerifier`` and its ``update_trust`` take."""

    ca_keys: Mapping[int, SM2PublicKey]
    accepted_issuers: frozenset[str]


def accepted_issuers(issuer_list: VerifiedList) -> frozenset[str]:
    """The ids of the ``active`` issuers of a verified issuer whitelist."""
    return frozenset(e.issuer_id for e in issuer_list.issuers() if e.status is IssuerStatus.ACTIVE)


def trusted_ca_keys(ca_key_list: VerifiedList, *, now: int) -> dict[int, SM2PublicKey]:
    """Index → key for the keys of a verified CA key list still usable at ``now``."""
    return {e.ca_index: e.public_key for e in ca_key_list.ca_keys() if now <= e.verify_until}


def trust_from_lists(
    issuer_list: VerifiedList, ca_key_list: VerifiedList, *, now: int
) -> AcceptorTrust:
    return AcceptorTrust(
        ca_keys=trusted_ca_keys(ca_key_list, now=now),
        accepted_issuers=accepted_issuers(issuer_list),
    )


def verifier_from_lists(
    issuer_list: VerifiedList,
    ca_key_list: VerifiedList,
    *,
    clock: Clock,
    skew: int = DEFAULT_SKEW,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> PayloadVerifier:
    """A QR verifier that trusts what the two verified lists say, as of ``clock.now()``."""
    trust = trust_from_lists(issuer_list, ca_key_list, now=clock.now())
    return PayloadVerifier(
        ca_keys=trust.ca_keys,
        accepted_issuers=trust.accepted_issuers,
        clock=clock,
        skew=skew,
        cache_size=cache_size,
    )


def apply_lists(
    verifier: PayloadVerifier,
    *,
    issuer_list: VerifiedList | None = None,
    ca_key_list: VerifiedList | None = None,
) -> None:
    """Give a running verifier a new issuer whitelist, CA key list, or both (the one not given
    stays). CA keys are filtered by the verifier's own clock; call again when a list is renewed
    or a key's verifyUntil passes."""
    verifier.update_trust(
        ca_keys=None
        if ca_key_list is None
        else trusted_ca_keys(ca_key_list, now=verifier.clock.now()),
        accepted_issuers=None if issuer_list is None else accepted_issuers(issuer_list),
    )
