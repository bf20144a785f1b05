"""Signed lists shown to people as JSON: stable keys (sorted), times as ISO-8601 UTC with a Z,
Chinese names as they are (``ensure_ascii=False``). Pure."""

from __future__ import annotations

import json
from typing import Any

from ca.clock import iso_utc
from ca.lists.asn1 import LIST_VERSION, CityEntry, IssuerEntry, ListContent, ListEntry
from ca.lists.verify import VerifiedList
from ca.x509 import CertificateInfo


def entry_to_dict(entry: ListEntry) -> dict[str, Any]:
    if isinstance(entry, IssuerEntry):
        return {
            "issuer_id": entry.issuer_id,
            "certificate_serial": entry.certificate_serial,
            "ca_index": entry.ca_index,
            "status": entry.status.value,
            "expiry": entry.expiry,
            "valid_through": iso_utc(entry.valid_through),
        }
    if isinstance(entry, CityEntry):
        return {
            "city_code": entry.city_code,
            "name": entry.name,
            "province_code": entry.province_code,
            "card_interop": entry.card_interop.value,
            "qr_interop": entry.qr_interop.value,
            "effective_from": iso_utc(entry.effective_from),
        }
    return {
        "ca_index": entry.ca_index,
        "public_key": entry.public_key.compressed.hex(),
        "verify_until": iso_utc(entry.verify_until),
    }


def signer_to_dict(signer: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": signer.subject,
        "issuer": signer.issuer,
        "serial": f"{signer.serial:x}",
        "not_before": signer.not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": signer.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sm3_fingerprint": signer.sm3_fingerprint,
    }


def list_to_dict(content: ListContent, signer: CertificateInfo | None = None) -> dict[str, Any]:
    """The list as a JSON-ready dict; ``signer`` is None for content not yet signed."""
    return {
        "version": LIST_VERSION,
        "list_type": content.list_type.value,
        "sequence": content.sequence,
        "this_update": iso_utc(content.this_update),
        "next_update": iso_utc(content.next_update),
        "signer": None if signer is None else signer_to_dict(signer),
        "entry_count": len(content.entries),
        "entries": [entry_to_dict(entry) for entry in content.entries],
    }


def render_json(listing: VerifiedList | ListContent, *, indent: int | None = 2) -> str:
    """JSON for people: sorted keys, non-ASCII text as is. A VerifiedList adds its signer and
    the SM3 of the signed bytes."""
    if isinstance(listing, VerifiedList):
        data = list_to_dict(listing.content, listing.signer)
        data["sm3"] = listing.sm3
    else:
        data = list_to_dict(listing)
    return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=indent)
