"""Signed lists shown to people as JSON: stable keys (sorted), times as ISO-8601 UTC with a Z,
Chinese names as they are (``ensure_ascii=False``). Pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final

from ca.core.clock import iso_utc
from ca.lists.der import (
    LIST_VERSION,
    FieldKind,
    IssuerEntry,
    ListContent,
    ListEntry,
    Sm2Point,
    Time,
    descriptor_of,
)
from ca.lists.verify import VerifiedList
from ca.pki.x509 import CertificateInfo


def _json_value(kind: FieldKind, value: Any) -> Any:
    if isinstance(kind, Time):
        return iso_utc(value)
    if isinstance(kind, Sm2Point):
        return value.compressed.hex()
    if isinstance(value, StrEnum):
        return value.value
    return value


# What a person also wants to see beside the fields of an entry.
_EXTRAS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    IssuerEntry: lambda entry: {"valid_through": iso_utc(entry.valid_through)},
}


def entry_to_dict(entry: ListEntry) -> dict[str, Any]:
    """An entry as JSON, one key per field of its descriptor (ca/lists/der.py): times as
    ISO-8601 UTC, enumerations by their value, public keys as compressed hex."""
    descriptor = descriptor_of(entry)
    data = {
        field.attribute: _json_value(field.kind, getattr(entry, field.attribute))
        for field in descriptor.fields
    }
    extra = _EXTRAS.get(type(entry))
    if extra is not None:
        data.update(extra(entry))
    return data


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
        "list_type": str(content.list_type),
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
