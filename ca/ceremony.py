"""Key ceremonies: a declarative file, reviewed before it runs, that leaves a signed transcript.

Modelled on Boulder's ``cmd/ceremony``: everything the ceremony will do is in the file
(``policies/ceremonies/root-example.toml``); ``plan`` prints it for review; ``run`` does exactly
that and nothing else. Two kinds:

- ``root``: in the root token, the ministry root key and its self-signed X.509 SM2 certificate,
  the central QR CA key(s) with their CA public key index, the list-signing key with a
  certificate from the root, and the audit key. The token is unlocked by M of N custodians'
  shares of its PIN (``init_token`` makes the token and the shares, once).
- ``ca-rollover``: a new central QR CA key at a new index; the keys it replaces stay for
  verification until the certificates they signed expire.

Keys are generated in the token first; the database records (keys, CA keys, certificates, the
transcript) and their audit events then commit in one transaction. If that transaction fails,
the keys just generated are destroyed: no key without its record. The transcript (public keys,
certificate hashes, custodians and witnesses present) is signed by the root key, stored, chained
into the audit log, and closed with a checkpoint signed by the audit key. The file, its parser
and its plan are pure and live in ``ca.ceremony_file`` (re-exported here).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from ca import audit
from ca.ceremony_file import (  # the file and its plan (pure), re-exported
    KINDS,
    SUBJECT_KEYS,
    Ceremony,
    CeremonyError,
    KeySpec,
    OfficerSpec,
    QrCaSpec,
    load_ceremony,
    plan,
    read_ceremony,
)
from ca.errors import JtcaError
from ca.qr.codec import expiry_end
from ca.signing import token_signer
from ca.store.db import transaction
from ca.store.models import (
    CaKey,
    CeremonyRun,
    CertificateRecord,
    InteropCertificateRecord,
    KeyRecord,
)
from hsm.custody import parse_share, split_secret
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.token import QuorumPin, Token
from hsm.sm.sm3 import sm3

YEAR: Final = 365 * 86400

__all__ = [
    "KINDS",
    "SUBJECT_KEYS",
    "Ceremony",
    "CeremonyError",
    "KeySpec",
    "OfficerSpec",
    "QrCaSpec",
    "Transcript",
    "init_token_shares",
    "load_ceremony",
    "plan",
    "read_ceremony",
    "run",
    "transcript_message",
]


def init_token_shares(ceremony: Ceremony, pin: str) -> list[tuple[str, str]]:
    """Split a new token PIN among the custodians: ``(custodian, share)`` pairs."""
    shares = split_secret(pin.encode("utf-8"), ceremony.threshold, len(ceremony.custodians))
    return list(zip(ceremony.custodians, shares, strict=True))


# -- running -----------------------------------------------------------------------------------
@dataclass
class Transcript:
    data: dict[str, Any]
    signature: str
    signer_public_key: str

    def json(self) -> str:
        return json.dumps(
            {
                "transcript": self.data,
                "signature": self.signature,
                "signer_public_key": self.signer_public_key,
            },
            ensure_ascii=False,
            indent=2,
        )


def transcript_message(data: dict[str, Any]) -> bytes:
    return audit.canonical(["jtca ceremony transcript", data]).encode("utf-8")


@dataclass
class _Made:
    """What the token now holds for this ceremony, before the database records it."""

    keys: list[tuple[str, TokenKey, int]] = field(default_factory=list)  # (class, key, not_after)
    certificates: list[tuple[str, bytes, TokenKey]] = field(default_factory=list)
    ca_keys: list[tuple[QrCaSpec, TokenKey]] = field(default_factory=list)
    root_signer: Any = None
    audit_signer: Any = None


def run(
    ceremony: Ceremony,
    engine: Engine,
    *,
    module: str | None,
    shares: list[str],
    witnesses_present: list[str],
    now: datetime,
) -> Transcript:
    """Run the ceremony exactly as planned; returns the signed transcript."""
    from ca.officers import check_officer

    for officer in ceremony.officers:
        check_officer(officer.officer_id, list(officer.roles), officer.province)
    missing = sorted(set(witnesses_present) - set(ceremony.witnesses))
    if missing:
        raise CeremonyError(f"witness {missing[0]!r} is not named in the ceremony file")
    if not witnesses_present:
        raise CeremonyError("at least one named witness must be present")
    present = sorted({parse_share(s, i).index for i, s in enumerate(shares, 1)})
    with Session(engine) as session:
        if session.get(CeremonyRun, ceremony.name) is not None:
            raise CeremonyError(f"ceremony {ceremony.name!r} has already run")
        existing = {
            k.key_class: k
            for k in session.exec(select(KeyRecord).where(KeyRecord.token == ceremony.token))
        }
        if ceremony.kind == "ca-rollover" and not {"ministry-root", "audit"} <= existing.keys():
            raise CeremonyError("a ca-rollover needs the root ceremony to have run first")
        if ceremony.kind == "root" and "ministry-root" in existing:
            raise CeremonyError(f"token {ceremony.token!r} already has a ministry root key")
        taken = {c.ca_index for c in session.exec(select(CaKey))}
    clash = sorted(taken & {c.index for c in ceremony.qr_cas})
    if clash:
        raise CeremonyError(f"CA public key index {clash[0]} is already in use")

    token = Token(ceremony.token, QuorumPin(shares), module=module)
    store = KeyStore(token)
    made = _Made()
    try:
        _generate(ceremony, store, made, now, existing)
        data = _transcript(ceremony, made, present, witnesses_present, now)
        signature = made.root_signer.sign(transcript_message(data))
        transcript = Transcript(data, signature.hex(), made.root_signer.public_key.compressed.hex())
        _record(ceremony, engine, made, transcript, int(now.timestamp()))
    except BaseException:
        for _, key, _ in made.keys:  # no key without its record
            with contextlib.suppress(JtcaError):
                store.destroy(key.uri)
        raise
    finally:
        token.close()
    return transcript


def _generate(
    ceremony: Ceremony, store: KeyStore, made: _Made, now: datetime, existing: dict[str, KeyRecord]
) -> None:
    from ca.x509 import LIST_SIGNING_EKU, issue_certificate, key_identifier, self_signed_root
    from hsm.pkcs11.uri import Pkcs11Uri

    def years(n: int) -> datetime:
        return now + timedelta(days=365 * n)

    def generate(key_class: str, spec_label: str, validity_years: int) -> TokenKey:
        key = store.generate_sm2(spec_label)
        made.keys.append((key_class, key, int(years(validity_years).timestamp())))
        return key

    if ceremony.root is not None:
        root_key = generate("ministry-root", ceremony.root.label, ceremony.root.validity_years)
        made.root_signer = token_signer(store, root_key.uri, "ministry-root")
        root_der = self_signed_root(
            made.root_signer,
            subject=ceremony.root.subject,
            serial=_serial(),
            not_before=now,
            not_after=years(ceremony.root.validity_years),
            path_length=1,
            # the root also signs the ceremony transcript
            key_usage=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
        )
        made.certificates.append(("root", root_der, root_key))
    else:
        made.root_signer = token_signer(
            store, Pkcs11Uri.parse(existing["ministry-root"].uri), "ministry-root"
        )
    for ca in ceremony.qr_cas:
        made.ca_keys.append((ca, generate("central-qr-ca", ca.label, ca.validity_years)))
    if ceremony.list_signing is not None and ceremony.root is not None:
        list_key = generate(
            "list-signing", ceremony.list_signing.label, ceremony.list_signing.validity_years
        )
        if list_key.public_key is None:
            raise CeremonyError(f"{list_key.uri}: the token returned no public key")
        list_der = issue_certificate(
            made.root_signer,
            subject=ceremony.list_signing.subject,
            subject_public_key=list_key.public_key,
            issuer_name=ceremony.root.subject,
            serial=_serial(),
            not_before=now,
            not_after=years(ceremony.list_signing.validity_years),
            ca=False,
            path_length=None,
            key_usage={"digital_signature"},
            extended_key_usage=[LIST_SIGNING_EKU],
            issuer_key_id=key_identifier(made.root_signer.public_key),
        )
        made.certificates.append(("list-signing", list_der, list_key))
    if ceremony.audit_key is not None:
        audit_key = generate("audit", ceremony.audit_key.label, ceremony.audit_key.validity_years)
        made.audit_signer = token_signer(store, audit_key.uri, "audit")
    else:
        made.audit_signer = token_signer(store, Pkcs11Uri.parse(existing["audit"].uri), "audit")


def _serial() -> int:
    import secrets

    return secrets.randbits(63) | 1 << 62  # positive, 8 octets, unpredictable (RFC 5280 §4.1.2.2)


def _transcript(
    ceremony: Ceremony, made: _Made, present: list[int], witnesses: list[str], now: datetime
) -> dict[str, Any]:
    from ca.x509 import certificate_info

    certificates = []
    for role, der, _ in made.certificates:
        info = certificate_info(der)
        certificates.append(
            {
                "role": role,
                "subject": info.subject,
                "serial": info.serial,
                "sha256": hashlib.sha256(der).hexdigest(),
                "sm3": sm3(der).hex(),
            }
        )
    return {
        "ceremony": ceremony.name,
        "kind": ceremony.kind,
        "file_sha256": ceremony.file_sha256,
        "at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "token": ceremony.token,
        "custodians_present": [
            ceremony.custodians[i - 1] for i in present if 1 <= i <= len(ceremony.custodians)
        ],
        "threshold": ceremony.threshold,
        "witnesses_present": sorted(witnesses),
        "keys": [
            {
                "class": key_class,
                "label": key.label,
                "uri": str(key.uri),
                "public_key": key.public_key.compressed.hex() if key.public_key else None,
            }
            for key_class, key, _ in made.keys
        ],
        "ca_keys": [
            {
                "index": spec.index,
                "public_key": key.public_key.compressed.hex() if key.public_key else None,
            }
            for spec, key in made.ca_keys
        ],
        "certificates": certificates,
        "officers": [
            {"id": o.officer_id, "roles": list(o.roles), "province": o.province}
            for o in ceremony.officers
        ],
    }


def _record(
    ceremony: Ceremony, engine: Engine, made: _Made, transcript: Transcript, at: int
) -> None:
    from ca.x509 import certificate_info

    actor = f"ceremony:{ceremony.name}"
    with transaction(engine) as session:
        for key_class, key, not_after in made.keys:
            session.add(
                KeyRecord(
                    uri=str(key.uri),
                    token=ceremony.token,
                    label=key.label,
                    kind=key.kind.value,
                    key_class=key_class,
                    public_key=key.public_key.compressed.hex() if key.public_key else None,
                    created_at=at,
                    not_after=not_after,
                    origin=actor,
                )
            )
            audit.append(
                session,
                actor=actor,
                action="key.generate",
                subject=str(key.uri),
                details={
                    "class": key_class,
                    "public_key": key.public_key.compressed.hex() if key.public_key else None,
                },
                at=at,
            )
        if ceremony.kind == "ca-rollover":
            for old in session.exec(select(CaKey).where(CaKey.status == "active")):
                valid = session.exec(
                    select(InteropCertificateRecord.expiry)
                    .where(InteropCertificateRecord.ca_key == old.public_key)
                    .where(InteropCertificateRecord.status == "valid")
                ).all()
                old.status = "verify-only"
                old.verify_until = max([at, *(expiry_end(e) for e in valid)])
                session.add(old)
                audit.append(
                    session,
                    actor=actor,
                    action="ca-key.verify-only",
                    subject=f"ca {old.ca_index}",
                    details={"public_key": old.public_key, "verify_until": old.verify_until},
                    at=at,
                )
        for spec, key in made.ca_keys:
            if key.public_key is None:
                raise CeremonyError(f"{key.uri}: the token returned no public key")
            not_after = at + spec.validity_years * YEAR
            session.add(
                CaKey(
                    public_key=key.public_key.compressed.hex(),
                    ca_index=spec.index,
                    key_uri=str(key.uri),
                    status="active",
                    created_at=at,
                    verify_until=not_after,
                )
            )
            audit.append(
                session,
                actor=actor,
                action="ca-key.activate",
                subject=f"ca {spec.index}",
                details={"public_key": key.public_key.compressed.hex()},
                at=at,
            )
        for role, der, key in made.certificates:
            info = certificate_info(der)
            session.add(
                CertificateRecord(
                    role=role,
                    subject=info.subject,
                    serial=info.serial,
                    der=der.hex(),
                    sha256=hashlib.sha256(der).hexdigest(),
                    sm3=sm3(der).hex(),
                    not_before=int(info.not_before.timestamp()),
                    not_after=int(info.not_after.timestamp()),
                    key_uri=str(key.uri),
                )
            )
            audit.append(
                session,
                actor=actor,
                action="certificate.issue",
                subject=role,
                details={"subject": info.subject, "sha256": hashlib.sha256(der).hexdigest()},
                at=at,
            )
        from ca.officers import add_officer_in

        for officer in ceremony.officers:
            add_officer_in(
                session,
                officer_id=officer.officer_id,
                name=officer.name,
                roles=list(officer.roles),
                province=officer.province,
                actor=actor,
                now=at,
            )
        session.add(
            CeremonyRun(
                name=ceremony.name,
                kind=ceremony.kind,
                file_sha256=ceremony.file_sha256,
                at=at,
                transcript=audit.canonical(transcript.data),
                signature=transcript.signature,
                signer_public_key=transcript.signer_public_key,
            )
        )
        audit.append(
            session,
            actor=actor,
            action="ceremony.run",
            subject=ceremony.name,
            details={
                "transcript_sm3": sm3(transcript_message(transcript.data)).hex(),
                "signature": transcript.signature,
                "custodians_present": transcript.data["custodians_present"],
                "witnesses_present": transcript.data["witnesses_present"],
            },
            at=at,
        )
        audit.checkpoint(session, made.audit_signer, at=at)
