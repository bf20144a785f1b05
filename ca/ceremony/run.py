"""Key ceremonies: a declarative file, reviewed before it runs, that leaves a signed transcript.

Modelled on Boulder's ``cmd/ceremony``: everything the ceremony will do is in the file
(``policies/ceremonies/root-example.toml``); ``plan`` prints it for review; ``run`` does exactly
that and nothing else. Two kinds:

- ``root``: in the root token, the ministry root key and its self-signed X.509 SM2 certificate,
  the central QR CA key(s) with their CA public key index, the list-signing key with a
  certificate from the root; in the service's own log token ``MOT-LOG`` the audit key, with a
  certificate from the root (extended key usage log signing, ``ca.pki.x509.LOG_SIGNING_EKU``). The
  root token is unlocked by M of N custodians' shares of its PIN (``init_token`` makes the
  token and the shares, once); the log token's PIN is the service's, so the audit key signs the
  log's checkpoints unattended (ca/service/logkeys.py).
- ``ca-rollover``: a new central QR CA key at a new index; the keys it replaces stay for
  verification until the certificates they signed expire. The audit key stays as it is.

Keys are generated in the tokens first; the database records (keys, CA keys, certificates, the
transcript) and their log entries then commit in one transaction — each certificate is an entry
of kind ``certificate`` whose object hash is the SM3 of its DER (issue #13, point 5). If that
transaction fails, the keys just generated are destroyed: no key without its record (a key a
crash left in MOT-LOG under the audit key's label, recorded nowhere, is destroyed before a new
one is made). The transcript (public keys, certificate hashes, custodians and witnesses present)
is signed by the root key, stored and logged; the root ceremony starts sealing the log with the
new audit key (``on_audit_key``) and the ceremony ends with a checkpoint signed by the audit key.
The caller writes that checkpoint and the root and audit certificates outside the database
(``Transcript.checkpoint``, ``Transcript.anchors``). The file, its parser and its plan are pure
and live in ``ca.ceremony.file`` (re-exported here).

A power cut (issue #14): before the first key is generated, ``run`` writes an intent
(``ceremony.run``, subject the ceremony's name) whose plan names every key it will make (token
and label; each key's CKA_ID is noted as soon as it exists), the serials of the certificates it
will issue and the files written after the commit (``ceremonies/root-<serial>.pem``,
``audit-<serial>.pem``, ``<file sha12>.json``). The intent is completed once those files are
written (``write_files``), or in the record transaction when there are none to write. A cut
ceremony whose records never committed is rolled back (its unrecorded keys destroyed), one whose
records committed is rolled forward (the files written from the records): here with the
custodians' quorum when the same ceremony runs again, in ``ca.service.ceremony`` at service start
and with ``jtca recover``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from ca.ceremony.file import (  # the file and its plan (pure), re-exported
    KINDS,
    SUBJECT_KEYS,
    Ceremony,
    CeremonyError,
    KeySpec,
    OfficerSpec,
    QrCaSpec,
    audit_subject,
    load_ceremony,
    plan,
    read_ceremony,
)
from ca.core.errors import JtcaError
from ca.log import audit
from ca.log.anchors import CEREMONIES, anchor_name
from ca.qr.codec import expiry_end
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import (
    CaKey,
    CeremonyRun,
    CertificateRecord,
    InteropCertificateRecord,
    KeyRecord,
)
from ca.vault.signers import token_signer
from hsm.crashpoints import crash_point
from hsm.custody import parse_share, split_secret
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.token import QuorumPin, Token
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

YEAR: Final = 365 * 86400
OPERATION: Final = "ceremony.run"  # the intent's operation (ca.store.intents)
ANCHOR_ROLES: Final = ("root", "audit")

__all__ = [
    "KINDS",
    "OPERATION",
    "SUBJECT_KEYS",
    "Ceremony",
    "CeremonyError",
    "KeySpec",
    "OfficerSpec",
    "QrCaSpec",
    "SealHook",
    "Transcript",
    "ceremony_plan",
    "init_token_shares",
    "load_ceremony",
    "plan",
    "read_ceremony",
    "roll_back_keys",
    "run",
    "transcript_message",
    "transcript_name",
]


def init_token_shares(ceremony: Ceremony, pin: str) -> list[tuple[str, str]]:
    """Split a new token PIN among the custodians: ``(custodian, share)`` pairs."""
    shares = split_secret(pin.encode("utf-8"), ceremony.threshold, len(ceremony.custodians))
    return list(zip(ceremony.custodians, shares, strict=True))


# -- running -----------------------------------------------------------------------------------
# Called in the ceremony's transaction when the root ceremony made the audit key: start sealing
# the log with it (ca.service.logkeys.seal_in); its return value is kept in ``Transcript.sealer``.
SealHook = Callable[[Session, Signer, int], object]


@dataclass
class Transcript:
    data: dict[str, Any]
    signature: str
    signer_public_key: str
    # What the caller writes outside the database after the commit (not part of the JSON file):
    # the certificates made, as (role, serial, DER) — the trust anchors among them — and the
    # checkpoint the ceremony ended with, as (tree size, signed note).
    certificates: list[tuple[str, int, bytes]] = field(default_factory=list)
    checkpoint: tuple[int, str] | None = None
    sealer: object = None

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

    @property
    def anchors(self) -> list[tuple[str, int, bytes]]:
        """The root and audit certificates, (role, serial, DER): the log's trust anchors."""
        return [c for c in self.certificates if c[0] in ("root", "audit")]


def transcript_message(data: dict[str, Any]) -> bytes:
    return audit.canonical(["jtca ceremony transcript", data]).encode("utf-8")


def transcript_name(ceremony: Ceremony) -> str:
    """The transcript's file name in the ceremonies folder (the command line's name too)."""
    return f"{ceremony.file_sha256[:12]}.json"


QR_CA_CN: Final = "交通一卡通二维码中心CA"


def qr_ca_role(ca: QrCaSpec) -> str:
    """The certificate role of a central QR CA key: ``qr-ca-<annex index>``."""
    return f"qr-ca-{ca.index}"


def qr_ca_subject(ceremony: Ceremony, ca: QrCaSpec) -> dict[str, str]:
    """A central QR CA certificate's subject: CN "交通一卡通二维码中心CA <index>" with the O and
    C of the root's."""
    like = ceremony.root.subject if ceremony.root is not None else {}
    subject: dict[str, str] = {k: like[k] for k in ("C", "O") if k in like}
    subject["CN"] = f"{QR_CA_CN} {ca.index}"
    return subject


def _certified_roles(ceremony: Ceremony) -> list[str]:
    """The roles of the certificates the ceremony issues, in the order it issues them."""
    if ceremony.root is None:
        return []
    roles = ["root"]
    roles += [qr_ca_role(ca) for ca in ceremony.qr_cas]
    if ceremony.list_signing is not None:
        roles.append("list-signing")
    if ceremony.audit_key is not None:
        roles.append("audit")
    return roles


def _planned_keys(ceremony: Ceremony, log_token: str | None) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = []
    if ceremony.root is not None:
        keys.append(
            {"token": ceremony.token, "label": ceremony.root.label, "class": "ministry-root"}
        )
    for ca in ceremony.qr_cas:
        keys.append({"token": ceremony.token, "label": ca.label, "class": "central-qr-ca"})
    if ceremony.list_signing is not None and ceremony.root is not None:
        keys.append(
            {"token": ceremony.token, "label": ceremony.list_signing.label, "class": "list-signing"}
        )
    if ceremony.audit_key is not None and ceremony.root is not None and log_token is not None:
        keys.append({"token": log_token, "label": ceremony.audit_key.label, "class": "audit"})
    return keys


def ceremony_plan(
    ceremony: Ceremony, *, log_token: str | None, serials: dict[str, int], token_was_empty: bool
) -> dict[str, Any]:
    """What the ceremony may leave behind, for its intent: every key (token, label; the CKA_ID
    of each is noted in the intent's progress as soon as the token made it), the certificates'
    serials, and the files written after the commit, relative to the state folder."""
    roles = [r for r in ANCHOR_ROLES if r in serials]
    stem = ceremony.file_sha256[:12]
    files = [f"{CEREMONIES}/{anchor_name(r, serials[r])}" for r in roles]
    files.append(f"{CEREMONIES}/{transcript_name(ceremony)}")
    files += [f"{CEREMONIES}/{stem}-{r}.pem" for r in roles]  # the command line's copies
    return {
        "ceremony": ceremony.name,
        "kind": ceremony.kind,
        "file_sha256": ceremony.file_sha256,
        "token": ceremony.token,
        "log_token": log_token,
        "token_was_empty": token_was_empty,
        "keys": _planned_keys(ceremony, log_token),
        "serials": {role: str(serial) for role, serial in serials.items()},
        "files": files,
    }


def roll_back_keys(
    intent: IntentRef, stores: dict[str, KeyStore], recorded: set[str]
) -> tuple[list[str], list[str]]:
    """Destroy what the cut ceremony of ``intent`` made in the tokens of ``stores``: every key
    under a planned label that no record names. Returns ``(destroyed URIs, tokens not
    reached)``; a planned key recorded elsewhere is never touched. Idempotent."""
    destroyed: list[str] = []
    missed: list[str] = []
    by_token: dict[str, set[str]] = {}
    for key in intent.plan.get("keys", []):
        by_token.setdefault(str(key["token"]), set()).add(str(key["label"]))
    for token_label, labels in sorted(by_token.items()):
        store = stores.get(token_label)
        if store is None:
            missed.append(token_label)
            continue
        for key in store.list_keys():
            if key.label in labels and str(key.uri) not in recorded:
                crash_point(f"{OPERATION}:recover-before-destroy")
                store.destroy(key.uri)
                destroyed.append(str(key.uri))
    return destroyed, missed


def _take_over(
    engine: Engine,
    ceremony: Ceremony,
    stores: dict[str, KeyStore],
    recorded: set[str],
    now: int,
) -> list[str]:
    """A cut run of this ceremony whose records never committed (its process is gone): its keys
    destroyed with the quorum this run holds, its intent settled as rolled back (audited)."""
    destroyed: list[str] = []
    with Session(engine) as session:
        orphans = intents.orphaned(session, now=now, operation=OPERATION, subject=ceremony.name)
    for intent in orphans:
        gone, missed = roll_back_keys(intent, stores, recorded)
        if missed:
            raise CeremonyError(
                f"an earlier run of {ceremony.name!r} (intent {intent.id}) made keys in token "
                f"{missed[0]!r}, which this run does not open: run `jtca recover` first"
            )
        destroyed += gone
        with transaction(engine) as session:
            intents.settle(
                session,
                intent,
                state=intents.ROLLED_BACK,
                outcome=f"cut before its records committed; {len(gone)} unrecorded key(s) "
                "destroyed with the custodians' quorum of the rerun",
                now=now,
                actor=f"ceremony:{ceremony.name}",
                details={"destroyed": gone},
            )
    return destroyed


@dataclass
class _Key:
    key_class: str
    key: TokenKey
    not_after: int
    store: KeyStore


@dataclass
class _Made:
    """What the tokens now hold for this ceremony, before the database records it."""

    keys: list[_Key] = field(default_factory=list)
    certificates: list[tuple[str, bytes, TokenKey]] = field(default_factory=list)
    ca_keys: list[tuple[QrCaSpec, TokenKey]] = field(default_factory=list)
    root_signer: Any = None
    audit_signer: Signer | None = None
    audit_public_key: SM2PublicKey | None = None
    new_audit_key: bool = False
    destroyed: list[str] = field(default_factory=list)  # unrecorded keys a crash left behind
    serials: dict[str, int] = field(default_factory=dict)  # drawn before the intent
    progress: Callable[..., None] | None = None  # notes each step in the intent


def run(
    ceremony: Ceremony,
    engine: Engine,
    *,
    module: str | None,
    shares: list[str],
    witnesses_present: list[str],
    now: datetime,
    log_store: KeyStore | None = None,
    on_audit_key: SealHook | None = None,
    origin: str | None = None,
    write_files: Callable[[Transcript], None] | None = None,
) -> Transcript:
    """Run the ceremony exactly as planned; returns the signed transcript.

    ``log_store`` is the service's log token (``MOT-LOG``): a root ceremony makes the audit key
    there (and needs it); a ca-rollover signs its closing checkpoint with the audit key there
    (without it the service's checkpointer signs the next one). ``on_audit_key`` starts
    sealing the log with a new audit key in the ceremony's own transaction; ``origin`` is the
    log's origin (the policy's ``[log] origin`` by default). ``write_files`` writes the files
    the plan names after the commit (``ca.service.ceremony.write_outside``); the intent is
    completed once it returns (without it, in the record transaction)."""
    from ca.officers.roster import check_officer
    from ca.policy.in_force import load_policy

    for officer in ceremony.officers:
        check_officer(officer.officer_id, list(officer.roles), officer.province)
    missing = sorted(set(witnesses_present) - set(ceremony.witnesses))
    if missing:
        raise CeremonyError(f"witness {missing[0]!r} is not named in the ceremony file")
    if not witnesses_present:
        raise CeremonyError("at least one named witness must be present")
    if ceremony.kind == "root" and log_store is None:
        raise CeremonyError(
            "a root ceremony makes the audit key in the service's log token: none was given"
        )
    present = sorted({parse_share(s, i).index for i, s in enumerate(shares, 1)})
    with Session(engine) as session:
        if session.get(CeremonyRun, ceremony.name) is not None:
            raise CeremonyError(f"ceremony {ceremony.name!r} has already run")
        existing = {
            k.key_class: k
            for k in session.exec(select(KeyRecord).where(KeyRecord.token == ceremony.token))
        }
        audit_record = session.exec(
            select(KeyRecord)
            .where(KeyRecord.key_class == "audit")
            .where(KeyRecord.state == "active")
        ).first()
        if ceremony.kind == "ca-rollover" and (
            "ministry-root" not in existing or audit_record is None
        ):
            raise CeremonyError("a ca-rollover needs the root ceremony to have run first")
        if ceremony.kind == "root" and "ministry-root" in existing:
            raise CeremonyError(f"token {ceremony.token!r} already has a ministry root key")
        if ceremony.kind == "root" and audit_record is not None:
            raise CeremonyError(
                f"the authority already has an audit key ({audit_record.uri}, made by "
                f"{audit_record.origin}): one root ceremony per authority"
            )
        taken = {c.ca_index for c in session.exec(select(CaKey))}
        recorded = set(session.exec(select(KeyRecord.uri)))
    clash = sorted(taken & {c.index for c in ceremony.qr_cas})
    if clash:
        raise CeremonyError(f"CA public key index {clash[0]} is already in use")

    at = int(now.timestamp())
    token = Token(ceremony.token, QuorumPin(shares), module=module)
    store = KeyStore(token)
    made = _Made()
    database = audit.database_of(engine)
    previous_sealer = audit.current_sealer(database)
    intent: IntentRef | None = None
    try:
        stores = {ceremony.token: store}
        if log_store is not None:
            stores[log_store.token.label] = log_store
        # a cut run of this ceremony: undone with the quorum this run holds (no key without
        # its record, never 'Duplicate key label' on the rerun)
        made.destroyed += _take_over(engine, ceremony, stores, recorded, at)
        token_was_empty = not store.list_keys()
        made.serials = {role: _serial() for role in _certified_roles(ceremony)}
        intent = intents.begin(
            engine,
            OPERATION,
            ceremony.name,
            ceremony_plan(
                ceremony,
                log_token=log_store.token.label if log_store is not None else None,
                serials=made.serials,
                token_was_empty=token_was_empty,
            ),
            actor=f"ceremony:{ceremony.name}",
            now=at,
        )
        intent_id = intent.id
        made.progress = lambda **step: intents.note(engine, intent_id, **step)
        crash_point(f"{OPERATION}:after-intent")
        _generate(ceremony, store, log_store, made, now, existing, audit_record, recorded)
        data = _transcript(ceremony, made, present, witnesses_present, now)
        signature = made.root_signer.sign(transcript_message(data))
        transcript = Transcript(data, signature.hex(), made.root_signer.public_key.compressed.hex())
        crash_point(f"{OPERATION}:before-record")
        _record(
            ceremony,
            engine,
            made,
            transcript,
            at,
            on_audit_key=on_audit_key,
            origin=origin or load_policy().log.origin,
            intent_id=intent.id,
            complete=write_files is None,
        )
    except BaseException as exc:
        if audit.current_sealer(database) is not previous_sealer:
            # no sealer whose key was never recorded
            audit.install_sealer(previous_sealer, database=database)
        for made_key in made.keys:  # no key without its record
            with contextlib.suppress(JtcaError):
                made_key.store.destroy(made_key.key.uri)
        if intent is not None:
            with contextlib.suppress(Exception):
                intents.abandon(
                    engine, intent.id, now=at, outcome=f"failed, keys destroyed: {exc}"[:500]
                )
        raise
    finally:
        token.close()
    crash_point(f"{OPERATION}:after-record")
    if write_files is not None and intent is not None:
        write_files(transcript)
        crash_point(f"{OPERATION}:after-files")
        with transaction(engine) as session:
            intents.complete(session, intent.id, now=at)
    return transcript


def _generate(
    ceremony: Ceremony,
    store: KeyStore,
    log_store: KeyStore | None,
    made: _Made,
    now: datetime,
    existing: dict[str, KeyRecord],
    audit_record: KeyRecord | None,
    recorded: set[str],
) -> None:
    from ca.pki.x509 import (
        LIST_SIGNING_EKU,
        LOG_SIGNING_EKU,
        issue_certificate,
        key_identifier,
        self_signed_root,
    )
    from ca.policy.in_force import load_policy

    policy = load_policy()

    def years(n: int) -> datetime:
        return now + timedelta(days=365 * n)

    def generate(
        key_class: str, spec_label: str, validity_years: int, where: KeyStore = store
    ) -> TokenKey:
        if made.progress is not None:
            made.progress(generating=spec_label, tokens_touched=sorted(
                {k.store.token.label for k in made.keys} | {where.token.label}
            ))  # fmt: skip
        crash_point(f"{OPERATION}:before-key")
        # a class whose policy forbids host-assisted use: CKA_EXTRACTABLE=FALSE (issue #15)
        key = where.generate_sm2(spec_label, host_assisted=policy.host_assisted_allowed(key_class))
        made.keys.append(_Key(key_class, key, int(years(validity_years).timestamp()), where))
        crash_point(f"{OPERATION}:after-key")
        if made.progress is not None:
            made.progress(made={k.key.label: k.key.key_id.hex() for k in made.keys})
        return key

    def serial(role: str) -> int:
        return made.serials.get(role) or _serial()

    root_end = years(ceremony.root.validity_years) if ceremony.root is not None else None
    if ceremony.root is not None:
        root_key = generate("ministry-root", ceremony.root.label, ceremony.root.validity_years)
        made.root_signer = token_signer(store, root_key.uri, "ministry-root")
        root_der = self_signed_root(
            made.root_signer,
            subject=ceremony.root.subject,
            serial=serial("root"),
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

    def certify(
        role: str,
        key: TokenKey,
        subject: dict[str, str],
        validity_years: int,
        eku: str | None,
        *,
        ca: bool = False,
    ) -> None:
        if ceremony.root is None or root_end is None:
            raise CeremonyError("only the root ceremony's root key certifies keys here")
        if key.public_key is None:
            raise CeremonyError(f"{key.uri}: the token returned no public key")
        der = issue_certificate(
            made.root_signer,
            subject=subject,
            subject_public_key=key.public_key,
            issuer_name=ceremony.root.subject,
            serial=serial(role),
            not_before=now,
            not_after=min(years(validity_years), root_end),  # never outlive the root
            ca=ca,
            # a central QR CA signs the annex's interop certificates, no X.509 below it
            path_length=0 if ca else None,
            key_usage={"key_cert_sign"} if ca else {"digital_signature"},
            extended_key_usage=[eku] if eku is not None else None,
            issuer_key_id=key_identifier(made.root_signer.public_key),
        )
        made.certificates.append((role, der, key))

    if ceremony.root is not None:
        # issue #15, point 6: each central QR CA key is certified by the root (a CA certificate,
        # keyCertSign, path length 0), so its profile can be judged like the others; acceptors
        # still learn QR CA keys from the signed CA key list and the annex's index
        for ca_spec, ca_key in made.ca_keys:
            certify(
                qr_ca_role(ca_spec),
                ca_key,
                qr_ca_subject(ceremony, ca_spec),
                ca_spec.validity_years,
                None,
                ca=True,
            )

    if ceremony.list_signing is not None and ceremony.root is not None:
        list_key = generate(
            "list-signing", ceremony.list_signing.label, ceremony.list_signing.validity_years
        )
        certify(
            "list-signing",
            list_key,
            ceremony.list_signing.subject,
            ceremony.list_signing.validity_years,
            LIST_SIGNING_EKU,
        )
    if ceremony.audit_key is not None and ceremony.root is not None:
        if log_store is None:  # run() refuses a root ceremony without it
            raise CeremonyError("the audit key needs the service's log token")
        spec = ceremony.audit_key
        for leftover in [k for k in log_store.list_keys() if k.label == spec.label]:
            if str(leftover.uri) in recorded:
                raise CeremonyError(
                    f"{leftover.uri}: the log token already holds a recorded key labelled "
                    f"{spec.label!r}; choose another [audit_key] label"
                )
            # A crash after generating and before recording left it: no key without its record.
            log_store.destroy(leftover.uri)
            made.destroyed.append(str(leftover.uri))
        audit_key = generate("audit", spec.label, spec.validity_years, log_store)
        made.audit_signer = token_signer(log_store, audit_key.uri, "audit")
        made.audit_public_key = audit_key.public_key
        made.new_audit_key = True
        certify(
            "audit",
            audit_key,
            audit_subject(ceremony, now.astimezone(UTC).year),
            spec.validity_years,
            LOG_SIGNING_EKU,
        )
    elif audit_record is not None:
        # ca-rollover: the existing audit key closes the ceremony with a checkpoint, where the
        # service can reach it (its log token) or the ceremony's own token holds it (a log
        # made before issue #13)
        uri = Pkcs11Uri.parse(audit_record.uri)
        holder = {ceremony.token: store}
        if log_store is not None:
            holder[log_store.token.label] = log_store
        if uri.token in holder and audit_record.public_key:
            made.audit_signer = token_signer(holder[uri.token], uri, "audit")
            made.audit_public_key = SM2PublicKey.from_bytes(bytes.fromhex(audit_record.public_key))


def _serial() -> int:
    import secrets

    return secrets.randbits(63) | 1 << 62  # positive, 8 octets, unpredictable (RFC 5280 §4.1.2.2)


def _transcript(
    ceremony: Ceremony, made: _Made, present: list[int], witnesses: list[str], now: datetime
) -> dict[str, Any]:
    from ca.pki.x509 import certificate_info

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
                "class": k.key_class,
                "label": k.key.label,
                "uri": str(k.key.uri),
                "public_key": k.key.public_key.compressed.hex() if k.key.public_key else None,
                # as the token reports them, read back after generation (issue #15)
                "attributes": k.store.key_attributes(k.key.uri).as_pkcs11(),
            }
            for k in made.keys
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
        **({"unrecorded_keys_destroyed": made.destroyed} if made.destroyed else {}),
    }


def _record(
    ceremony: Ceremony,
    engine: Engine,
    made: _Made,
    transcript: Transcript,
    at: int,
    *,
    on_audit_key: SealHook | None,
    origin: str,
    intent_id: int,
    complete: bool,
) -> None:
    database = audit.database_of(engine)
    previous_sealer = audit.current_sealer(database)
    with transaction(engine) as session:
        try:
            _record_in(ceremony, session, made, transcript, at, on_audit_key, origin)
            # the records and the intent's state commit together: a cut after this point is
            # rolled forward (the files written from the records), never back
            if complete:
                intents.complete(session, intent_id, now=at)
            else:
                intents.note_in(session, intent_id, recorded=True)
        except BaseException:
            # before the transaction rolls back: no entry sealed under a key never recorded
            audit.install_sealer(previous_sealer, database=database)
            raise


def _record_in(
    ceremony: Ceremony,
    session: Session,
    made: _Made,
    transcript: Transcript,
    at: int,
    on_audit_key: SealHook | None,
    origin: str,
) -> None:
    from ca.pki.x509 import certificate_info

    actor = f"ceremony:{ceremony.name}"
    for made_key in made.keys:
        key = made_key.key
        session.add(
            KeyRecord(
                uri=str(key.uri),
                token=key.uri.token,
                label=key.label,
                kind=key.kind.value,
                key_class=made_key.key_class,
                public_key=key.public_key.compressed.hex() if key.public_key else None,
                created_at=at,
                not_after=made_key.not_after,
                origin=actor,
            )
        )
        audit.append(
            session,
            actor=actor,
            action="key.generate",
            subject=str(key.uri),
            details={
                "class": made_key.key_class,
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
        # issue #13, point 5: a certificate is an entry of the log; its object hash is the
        # SM3 of its DER, so it can be handed out with an inclusion proof
        audit.append(
            session,
            actor=actor,
            action="certificate.issue",
            subject=role,
            details={
                "subject": info.subject,
                "serial": str(info.serial),
                "sha256": hashlib.sha256(der).hexdigest(),
                "key_uri": str(key.uri),
            },
            at=at,
            kind="certificate",
            object_sm3=sm3(der).hex(),
        )
        transcript.certificates.append((role, info.serial, der))
    from ca.officers.roster import add_officer_in

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
    if made.new_audit_key and on_audit_key is not None and made.audit_signer is not None:
        # from now on every entry is sealed (ca/service/logkeys.py)
        transcript.sealer = on_audit_key(session, made.audit_signer, at)
    if made.audit_signer is not None:
        _close_with_checkpoint(session, made, transcript, at, origin)


def _close_with_checkpoint(
    session: Session, made: _Made, transcript: Transcript, at: int, origin: str
) -> None:
    """The ceremony's last act: a checkpoint signed by the audit key. Entries logged since the
    latest checkpoint must carry valid seals (a rollover never certifies a forged row); the
    root ceremony's is the log's first checkpoint and covers the history before it."""
    if made.audit_signer is None:
        return
    latest = audit.latest_checkpoint(session)
    if latest is not None and made.audit_public_key is not None:
        findings = audit.unsealed_since(session, latest.size, made.audit_public_key)
        if findings:
            raise CeremonyError(
                f"entry {findings[0].seq} of the audit log has no valid seal "
                f"({findings[0].message}): the ceremony signs no checkpoint over it; check the "
                "log (jtca audit verify)"
            )
    checkpoint = audit.checkpoint(session, made.audit_signer, at=at, origin=origin)
    transcript.checkpoint = (checkpoint.size, checkpoint.note)
