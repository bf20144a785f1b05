"""What each list says, read from the authority's records at one moment.

- **Issuer whitelist**: every registered issuer with an interop certificate. Its entry carries
  the newest valid certificate (else the newest revoked one): ``active`` when the issuer is
  active and the certificate valid, ``suspended`` when the issuer is suspended, ``revoked``
  when no certificate of it is valid. A revoked issuer stays on the list, marked, so that a
  terminal holding an older list learns it from the next one.
- **City list** (第十二条): every city whose card or QR key has reached the city (stage
  ``installed``). Per interop (card, QR): ``suspended`` while any of its keys is suspended
  (第十一条), else ``connected`` while a key of that class is pre-active or active, else
  ``not-connected``. ``effectiveFrom`` is when the later of the two statuses began (connected:
  the first installation, so renewing a key does not change the list).
- **CA key list**: central CA keys still to be used by acceptors (verify_until not passed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlmodel import Session, col, select

from ca.citykeys.lifecycle import KeyState
from ca.lists.asn1 import (
    CaKeyEntry,
    CityEntry,
    InteropStatus,
    IssuerEntry,
    IssuerStatus,
    ListEntry,
    ListType,
)
from ca.lists.render import entry_to_dict
from ca.registry.divisions import default_divisions
from ca.store.models import CaKey, CityKey, InteropCertificateRecord, Issuer
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

_INTEROP_OF_CLASS = {"city-card": "card", "city-qr": "qr"}


def issuer_entries(session: Session) -> list[IssuerEntry]:
    issuers = {i.issuer_id: i for i in session.exec(select(Issuer))}
    newest: dict[str, InteropCertificateRecord] = {}
    for cert in session.exec(
        select(InteropCertificateRecord).order_by(
            col(InteropCertificateRecord.issued_at), col(InteropCertificateRecord.id)
        )
    ):
        held = newest.get(cert.issuer_id)
        if held is None or cert.status == "valid" or held.status != "valid":
            newest[cert.issuer_id] = cert  # a later valid one wins; a revoked never hides one
    entries = []
    for issuer_id, cert in sorted(newest.items()):
        issuer = issuers.get(issuer_id)
        if cert.status != "valid":
            status = IssuerStatus.REVOKED
        elif issuer is None or issuer.status != "active":
            status = IssuerStatus.SUSPENDED
        else:
            status = IssuerStatus.ACTIVE
        entries.append(IssuerEntry(issuer_id, cert.serial, cert.ca_index, status, cert.expiry))
    return entries


def city_entries(session: Session) -> list[CityEntry]:
    registry = default_divisions()
    live = {KeyState.PRE_ACTIVE.value, KeyState.ACTIVE.value, KeyState.SUSPENDED.value}
    rows = session.exec(
        select(CityKey)
        .where(col(CityKey.installed_at).is_not(None))
        .order_by(col(CityKey.city), col(CityKey.generation))
    ).all()
    by_city: dict[str, dict[str, list[CityKey]]] = {}
    for key in rows:
        interop = _INTEROP_OF_CLASS.get(key.key_class)
        if interop is not None:
            by_city.setdefault(key.city, {}).setdefault(interop, []).append(key)
    found: dict[str, dict[str, tuple[InteropStatus, int]]] = {}
    for city, classes in by_city.items():
        for interop, keys in classes.items():
            first_installed = min(k.installed_at or k.created_at for k in keys)
            suspended = [k for k in keys if k.state == KeyState.SUSPENDED.value]
            if suspended:  # misuse suspends the city's interop, whatever its other keys
                status = (InteropStatus.SUSPENDED, max(k.state_changed_at for k in suspended))
            elif any(k.state in live for k in keys):
                status = (InteropStatus.CONNECTED, first_installed)  # stable across renewals
            else:
                status = (InteropStatus.NOT_CONNECTED, max(k.state_changed_at for k in keys))
            found.setdefault(city, {})[interop] = status
    entries = []
    for city, statuses in sorted(found.items()):
        division = registry.city(city)
        if division is None:
            continue
        card = statuses.get("card", (InteropStatus.NOT_CONNECTED, 0))
        qr = statuses.get("qr", (InteropStatus.NOT_CONNECTED, 0))
        entries.append(
            CityEntry(
                city_code=city,
                name=division.name,
                province_code=division.province,
                card_interop=card[0],
                qr_interop=qr[0],
                effective_from=max(card[1], qr[1]),
            )
        )
    return entries


def ca_key_entries(session: Session, now: int) -> list[CaKeyEntry]:
    keys = session.exec(
        select(CaKey)
        .where(col(CaKey.status).in_(["active", "verify-only"]))
        .where(col(CaKey.verify_until) > now)
        .order_by(col(CaKey.ca_index), col(CaKey.created_at))
    ).all()
    by_index: dict[int, CaKey] = {}
    for key in keys:
        by_index[key.ca_index] = key  # the newest key at an index
    return [
        CaKeyEntry(k.ca_index, SM2PublicKey.from_bytes(bytes.fromhex(k.public_key)), k.verify_until)
        for k in by_index.values()
    ]


def entries_for(session: Session, list_type: ListType, now: int) -> list[ListEntry]:
    if list_type == ListType.ISSUERS:
        return list(issuer_entries(session))
    if list_type == ListType.CITIES:
        return list(city_entries(session))
    return list(ca_key_entries(session, now))


def content_digest(entries: Sequence[ListEntry]) -> str:
    """SM3 over the canonical JSON of the entries in key order: equal digests, equal content."""
    rows = [entry_to_dict(e) for e in sorted(entries, key=lambda e: str(e.key).zfill(8))]
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return sm3(text.encode("utf-8")).hex()
