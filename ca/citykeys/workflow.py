"""Apply → approve → generate → deliver → import → hand on → install (第九条).

The application and its approval are ``ca.applications``. Here:

- every holder (the ministry, a province, a city) has a **transport key** in its token: key
  packages are sealed to it, and the packages it sends are signed by it;
- ``generate`` makes an approved application's key sets in the ministry token: for each city,
  one fresh key of each class of scope ``city`` in the policy (by default a card SM4 master key
  and a QR SM2 key pair). Every key is generated in the token on its own — never derived from
  another and never shared between cities;
- ``deliver`` seals keys to the next holder as signed key packages (``hsm.envelope``): the
  ministry's to the province, the province's on to the city;
- ``import_package`` opens a package into the recipient's token, after the envelope's checks
  (sender trusted, signature, addressee, replay, check value) and the database's (a package
  made here, for this holder, not yet imported).

Stages: generated → delivered-to-province → held-by-province → delivered-to-city → installed.
A key and its record are made together: if the database refuses the record, the token object
is destroyed again; every step is audited in the transaction that records it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pkcs11
from pkcs11 import Attribute, ObjectClass
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from ca import audit
from ca.applications import ApplicationError
from ca.citykeys.common import (
    MINISTRY,
    CityKeyError,
    Vault,
    allowed,
    detached,
    get_key,
    is_ministry,
    transport_key,
)
from ca.expiry import DAY
from ca.files import write_atomically
from ca.lifecycle import KeyState
from ca.registry.divisions import default_divisions
from ca.signing import load_policy, token_signer
from ca.store.db import transaction
from ca.store.models import CityKey, KeyApplication, KeyCopy, KeyPackageRecord, TransportKey
from hsm.envelope import PackageRefused, export_key, import_key, key_id_of, read_package
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import SM2PublicKey
from policies.rules import Actor, KeyClass, is_province_code

GENERATE: Final = "city-key.generate"
DELIVER: Final = "city-key.deliver"
IMPORT: Final = "city-key.import"
REGISTER_TRANSPORT: Final = "transport-key.register"

GENERATED: Final = "generated"
TO_PROVINCE: Final = "delivered-to-province"
AT_PROVINCE: Final = "held-by-province"
TO_CITY: Final = "delivered-to-city"
INSTALLED: Final = "installed"
STAGES: Final = (GENERATED, TO_PROVINCE, AT_PROVINCE, TO_CITY, INSTALLED)


# -- transport keys -----------------------------------------------------------------------
def _check_holder(holder: str) -> None:
    if holder == MINISTRY or is_province_code(holder):
        if holder != MINISTRY and default_divisions().province(holder) is None:
            raise CityKeyError(f"holder {holder!r} is not a province of the registry")
        return
    if default_divisions().city(holder) is None:
        raise CityKeyError(
            f"holder {holder!r}: 'ministry', a province code or a city code of the registry"
        )


def register_transport_key(
    engine: Engine, vault: Vault, actor: Actor, *, holder: str, token: str, now: int
) -> TransportKey:
    """Generate the holder's transport key in its token and record it; a holder's earlier
    transport key is retired (packages already sealed to it still open)."""
    _check_holder(holder)
    if not token.strip() or len(token) > 32:
        raise CityKeyError(
            f"--token {token!r}: a token label of 1-32 characters", title="Bad input"
        )
    if holder == MINISTRY:
        if not is_ministry(actor):
            raise CityKeyError("only a ministry officer registers the ministry's transport key")
        allowed(actor, REGISTER_TRANSPORT, "110000", None, now)  # role check (national)
    else:
        allowed(actor, REGISTER_TRANSPORT, holder, None, now)
    store = vault.store(token)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")
    key = store.generate_sm2(f"transport-{holder}-{stamp}", decrypt=True)
    if key.public_key is None:
        raise CityKeyError(f"token {token!r} returned no public key for the transport key")
    try:
        with transaction(engine) as session:
            for old in session.exec(
                select(TransportKey)
                .where(TransportKey.holder == holder)
                .where(TransportKey.status == "active")
            ):
                old.status = "retired"
                session.add(old)
            row = TransportKey(
                holder=holder,
                token=token,
                uri=str(key.uri),
                public_key=key.public_key.compressed.hex(),
                created_at=now,
                created_by=actor.id,
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor.id,
                action=REGISTER_TRANSPORT,
                subject=f"transport key of {holder}",
                details={"token": token, "uri": row.uri, "public_key": row.public_key},
                at=now,
            )
            return detached(session, row)
    except BaseException:
        with contextlib.suppress(KeyNotFound):
            store.destroy(key.uri)  # no key without its record
        raise


# -- generation -----------------------------------------------------------------------------
def generate(
    engine: Engine, vault: Vault, actor: Actor, application_id: int, *, now: int
) -> list[CityKey]:
    """The key sets of an approved application, in the ministry token, one distinct key per
    city and class. A city that already has a live key of a class is refused (renew it)."""
    policy = load_policy()
    classes = policy.city_key_classes
    if not classes:
        raise CityKeyError("the policy names no key class of scope 'city'")
    with transaction(engine) as session:
        application = session.exec(
            select(KeyApplication).where(KeyApplication.id == application_id)
        ).one_or_none()
        if application is None:
            raise ApplicationError(f"no application {application_id}")
        if application.state != "approved":
            raise ApplicationError(
                f"application {application_id} is {application.state}: only an approved "
                "application's keys are generated"
            )
        cities = application.cities.split(",")
        for city in cities:
            for cls in classes:
                allowed(actor, GENERATE, city, cls.name, now)
                live = session.exec(
                    select(CityKey.label)
                    .where(CityKey.city == city)
                    .where(CityKey.key_class == cls.name)
                    .where(col(CityKey.state).in_([s.value for s in _LIVE]))
                ).first()
                if live is not None:
                    raise CityKeyError(
                        f"city {city} already has a live {cls.name} key ({live}): one key per "
                        "city (一城一密); renew it instead"
                    )
        ministry = transport_key(session, MINISTRY)
        generations = {
            (city, cls.name): 1
            + (
                session.exec(
                    select(func.max(CityKey.generation))
                    .where(CityKey.city == city)
                    .where(CityKey.key_class == cls.name)
                ).one()
                or 0
            )
            for city in cities
            for cls in classes
        }
    store = vault.store(ministry.token)
    made: list[TokenKey] = []
    try:
        for city in cities:
            for cls in classes:
                label = f"{cls.name}-{city}-g{generations[(city, cls.name)]}"
                made.append(
                    store.generate_sm2(label)
                    if cls.algorithm == "sm2"
                    else store.generate_sm4(label)
                )
        rows: list[CityKey] = []
        with transaction(engine) as session:
            application = session.exec(
                select(KeyApplication).where(KeyApplication.id == application_id).with_for_update()
            ).one()
            if application.state != "approved":  # a concurrent generate got there first
                raise ApplicationError(f"application {application_id} is {application.state}")
            application.state = "generated"
            session.add(application)
            index = 0
            for city in cities:
                for cls in classes:
                    key = made[index]
                    index += 1
                    row = record_generated(
                        session,
                        key,
                        city=city,
                        province=application.province,
                        key_class=cls,
                        generation=generations[(city, cls.name)],
                        application_id=application_id,
                        ministry_token=ministry.token,
                        actor=actor.id,
                        now=now,
                    )
                    audit.append(
                        session,
                        actor=actor.id,
                        action=GENERATE,
                        subject=row.label,
                        details={
                            "application": application_id,
                            "city": city,
                            "class": cls.name,
                            "generation": row.generation,
                            "token": ministry.token,
                            "public_key": row.public_key,
                            "check_value": row.check_value,
                            "not_after": row.not_after,
                        },
                        at=now,
                    )
                    rows.append(row)
            return [detached(session, r) for r in rows]
    except BaseException:
        for key in made:  # no key without its record
            with contextlib.suppress(KeyNotFound):
                store.destroy(key.uri)
        raise


_LIVE: Final = (KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.SUSPENDED)


def record_generated(
    session: Session,
    key: TokenKey,
    *,
    city: str,
    province: str,
    key_class: KeyClass,
    generation: int,
    application_id: int | None,
    ministry_token: str,
    actor: str,
    now: int,
    predecessor_id: int | None = None,
) -> CityKey:
    """The record of a city key just generated in the ministry token, and of the ministry's
    copy of it (the caller audits, in the same transaction)."""
    row = CityKey(
        label=key.label,
        city=city,
        province=province,
        key_class=key_class.name,
        kind=key.kind.value,
        generation=generation,
        application_id=application_id,
        ministry_uri=str(key.uri),
        public_key=key.public_key.compressed.hex() if key.public_key else None,
        check_value=key.check_value.hex() if key.check_value else None,
        created_at=now,
        created_by=actor,
        not_before=now,
        not_after=now + key_class.validity_days * DAY,
        predecessor_id=predecessor_id,
        state_changed_at=now,
    )
    session.add(row)
    session.flush()
    session.add(
        KeyCopy(
            city_key_id=row.id or 0,
            holder=MINISTRY,
            token=ministry_token,
            uri=row.ministry_uri,
            installed_at=now,
        )
    )
    return row


# -- delivery -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivered:
    key_id: int
    label: str
    recipient: str
    package_id: str
    path: Path


def _hop(key: CityKey) -> tuple[str, str, str]:
    """(sender, recipient, the stage after) for the key's next delivery."""
    if key.stage == GENERATED:
        return MINISTRY, key.province, TO_PROVINCE
    if key.stage == AT_PROVINCE:
        if key.city == key.province:  # a 直辖市: the province is the city
            raise CityKeyError(f"{key.label}: a municipality's keys are installed at the province")
        return key.province, key.city, TO_CITY
    raise CityKeyError(
        f"{key.label} is {key.stage}: only a generated key (ministry → province) or one held "
        "by the province (province → city) is delivered",
        title="Delivery refused",
    )


def deliver(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    key_ids: Sequence[int],
    *,
    out_dir: Path,
    now: int,
) -> list[Delivered]:
    """Seal each key to its next holder's transport key and write the packages to ``out_dir``
    (atomically); the ministry delivers generated keys, the province hands on the ones it
    holds. All of them or none: a refused key stops the whole delivery."""
    if not key_ids:
        raise CityKeyError("name at least one key to deliver")
    twice = sorted({k for k in key_ids if list(key_ids).count(k) > 1})
    if twice:
        raise CityKeyError(f"key {twice[0]} is named twice")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CityKeyError(
            f"--out {out_dir}: cannot make the folder ({exc.strerror})", title="Bad input"
        ) from None
    if not out_dir.is_dir():
        raise CityKeyError(f"--out {out_dir}: not a folder", title="Bad input")
    plans: list[tuple[CityKey, str, str, str, TransportKey, TransportKey, KeyCopy]] = []
    with transaction(engine) as session:
        for key_id in key_ids:
            key = get_key(session, key_id, lock=False)
            sender, recipient, after = _hop(key)
            if KeyState(key.state) not in _LIVE:
                raise CityKeyError(f"{key.label} is {key.state}: it is not delivered any more")
            if sender == MINISTRY and not is_ministry(actor):
                raise CityKeyError(f"{key.label}: the ministry delivers to the province")
            if sender != MINISTRY and actor.province != sender:
                raise CityKeyError(
                    f"{key.label}: province {sender} hands its keys on to the city; "
                    f"{actor.id} is not an officer of it"
                )
            allowed(actor, DELIVER, key.city, key.key_class, now)
            source = session.exec(
                select(KeyCopy).where(KeyCopy.city_key_id == key_id).where(KeyCopy.holder == sender)
            ).one()
            plans.append(
                (
                    key,
                    sender,
                    recipient,
                    after,
                    transport_key(session, sender),
                    transport_key(session, recipient),
                    source,
                )
            )
        session.expunge_all()  # read-only: the plans outlive the transaction
    packages: list[tuple[CityKey, str, str, str, bytes]] = []
    for key, sender, recipient, after, sender_tk, recipient_tk, source in plans:
        store = vault.store(source.token)
        token_key = TokenKey(
            uri=Pkcs11Uri.parse(source.uri),
            kind=KeyKind(key.kind),
            label=key.label,
            key_id=Pkcs11Uri.parse(source.uri).id or b"",
            public_key=SM2PublicKey.from_bytes(bytes.fromhex(key.public_key))
            if key.public_key
            else None,
            check_value=bytes.fromhex(key.check_value) if key.check_value else None,
        )
        sender_store = vault.store(sender_tk.token)
        signer = token_signer(sender_store, Pkcs11Uri.parse(sender_tk.uri), "transport")
        data = export_key(
            store,
            token_key,
            sender=signer,
            recipient_transport_key=SM2PublicKey.from_bytes(bytes.fromhex(recipient_tk.public_key)),
            recipient_name=recipient,
            now=datetime.fromtimestamp(now, UTC),
        )
        packages.append((key, sender, recipient, after, data))
    written: list[Path] = []
    results: list[Delivered] = []
    try:
        with transaction(engine) as session:
            for key, sender, recipient, after, data in packages:
                info, _ = read_package(data)
                package_id = info.package_id.hex()
                path = out_dir / f"{key.label}.to-{recipient}.jkp"
                row = get_key(session, key.id or 0)
                if row.stage != key.stage:
                    raise CityKeyError(f"{key.label} moved on meanwhile (now {row.stage})")
                session.add(
                    KeyPackageRecord(
                        package_id=package_id,
                        city_key_id=row.id or 0,
                        sender=sender,
                        recipient=recipient,
                        sha256=hashlib.sha256(data).hexdigest(),
                        created_at=now,
                        created_by=actor.id,
                    )
                )
                row.stage = after
                if after == TO_PROVINCE:
                    row.delivered_at = now
                else:
                    row.handed_on_at = now
                session.add(row)
                audit.append(
                    session,
                    actor=actor.id,
                    action=DELIVER,
                    subject=row.label,
                    details={
                        "from": sender,
                        "to": recipient,
                        "package": package_id,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "file": path.name,
                    },
                    at=now,
                )
                session.flush()
                write_atomically(path, data)
                written.append(path)
                results.append(Delivered(row.id or 0, row.label, recipient, package_id, path))
        return results
    except BaseException:
        for path in written:  # no package file without its record
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise


def _point(hex_point: str) -> SM2PublicKey:
    return SM2PublicKey.from_bytes(bytes.fromhex(hex_point))


# -- import ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Imported:
    key_id: int
    label: str
    holder: str
    token: str
    uri: str
    stage: str


def import_package(
    engine: Engine, vault: Vault, actor: Actor, data: bytes, *, now: int
) -> Imported:
    """Open a package into its recipient's token and record the copy. Refused, with its reason:
    anything ``hsm.envelope`` refuses, a package this authority did not make, one already
    imported, and one for a key no longer live."""
    info, _ = read_package(data)
    package_id = info.package_id.hex()
    with transaction(engine) as session:
        package = session.exec(
            select(KeyPackageRecord).where(KeyPackageRecord.package_id == package_id)
        ).one_or_none()
        if package is None:
            raise PackageRefused("unknown-package", f"package {package_id} was not made here")
        if package.imported_at is not None:
            raise PackageRefused(
                "replayed", f"package {package_id} was imported before by {package.imported_by}"
            )
        if package.sha256 != hashlib.sha256(data).hexdigest():
            raise PackageRefused("bad-signature", f"package {package_id} differs from the one sent")
        key = get_key(session, package.city_key_id, lock=False)
        if KeyState(key.state) not in _LIVE:
            raise CityKeyError(f"{key.label} is {key.state}: its packages are not imported")
        allowed(actor, IMPORT, key.city, key.key_class, now)
        senders = session.exec(
            select(TransportKey).where(TransportKey.holder == package.sender)
        ).all()
        recipients = session.exec(
            select(TransportKey).where(TransportKey.holder == package.recipient)
        ).all()
        session.expunge_all()
    recipient = next(
        (
            r
            for r in recipients
            if key_id_of(SM2PublicKey.from_bytes(bytes.fromhex(r.public_key)))
            == info.recipient_key_id
        ),
        None,
    )
    if recipient is None:
        raise PackageRefused(
            "misaddressed", f"the package is sealed to no transport key of {package.recipient}"
        )
    store = vault.store(recipient.token)
    transport_uri = Pkcs11Uri.parse(recipient.uri)
    transport = TokenKey(
        uri=transport_uri,
        kind=KeyKind.SM2,
        label=transport_uri.object or "",
        key_id=transport_uri.id or b"",
        public_key=SM2PublicKey.from_bytes(bytes.fromhex(recipient.public_key)),
    )
    installed = import_key(
        store,
        data,
        transport_key=transport,
        trusted_senders=[SM2PublicKey.from_bytes(bytes.fromhex(s.public_key)) for s in senders],
        label=key.label,
    )
    try:
        with transaction(engine) as session:
            row = get_key(session, key.id or 0)
            record = session.exec(
                select(KeyPackageRecord)
                .where(KeyPackageRecord.package_id == package_id)
                .with_for_update()
            ).one()
            if record.imported_at is not None:
                raise PackageRefused("replayed", f"package {package_id} was imported meanwhile")
            record.imported_at, record.imported_by = now, actor.id
            session.add(record)
            session.add(
                KeyCopy(
                    city_key_id=row.id or 0,
                    holder=package.recipient,
                    token=recipient.token,
                    uri=str(installed.uri),
                    package_id=package_id,
                    installed_at=now,
                )
            )
            if package.recipient == row.province:
                row.stage, row.imported_at = AT_PROVINCE, now
                if row.city == row.province:  # 直辖市: the province is the city
                    row.stage, row.installed_at = INSTALLED, now
            else:
                row.stage, row.installed_at = INSTALLED, now
            session.add(row)
            audit.append(
                session,
                actor=actor.id,
                action=IMPORT,
                subject=row.label,
                details={
                    "package": package_id,
                    "holder": package.recipient,
                    "token": recipient.token,
                    "uri": str(installed.uri),
                    "stage": row.stage,
                },
                at=now,
            )
            session.flush()
            return Imported(
                row.id or 0,
                row.label,
                package.recipient,
                recipient.token,
                str(installed.uri),
                row.stage,
            )
    except BaseException:
        with contextlib.suppress(KeyNotFound):  # no key without its record
            store.destroy(installed.uri)
        _forget_marker(store, info.package_id)
        raise


def _forget_marker(store: KeyStore, package_id: bytes) -> None:
    """Remove the replay marker of a package whose import was rolled back, so it can be
    imported again once the database accepts it."""

    def drop(session: pkcs11.Session) -> None:
        for obj in list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: "jtca-pkg:" + package_id.hex()}
            )
        ):
            obj.destroy()

    with contextlib.suppress(pkcs11.PKCS11Error):
        store.token.run(drop)
