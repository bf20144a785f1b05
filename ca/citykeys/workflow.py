"""Apply → approve → generate → deliver → import → hand on → install (第九条).

The application and its approval are ``ca.citykeys.applications``. Here:

- every holder (the ministry, a province, a city) has **transport keys** in its token, two key
  pairs kept apart (GM/T 0014/0015; issue #15): key packages are enveloped to its encryption
  key, and the packages it sends are signed by its signing key. A holder's one key of before
  (``legacy``) still opens and verifies old packages but takes part in no new one;
- ``generate`` makes an approved application's key sets in the ministry token: for each city,
  one fresh key of each class of scope ``city`` in the policy (by default a card SM4 master key
  and a QR SM2 key pair). Every key is generated in the token on its own — never derived from
  another and never shared between cities;
- ``deliver`` seals keys to the next holder as signed key packages (``hsm.envelope``): the
  ministry's to the province, the province's on to the city;
- ``import_package`` opens a package into the recipient's token, after the envelope's checks
  (sender trusted, signature, addressee, replay, check value) and the database's (a package
  made here, for this holder, not yet imported).

Each of these is also cut into the steps the two sides take (issue #11, point 5): the service
holds the ministry's token and the database, a province or a city holds its own token. So
``register_transport_key`` = ``check_transport_registration`` + a key made in the holder's token
+ ``record_transport_key``; ``deliver`` = ``plan_delivery`` + ``seal`` (in the sender's token)
+ ``record_delivery`` (``check_sealed`` when the sender is a site); ``import_package`` =
``plan_import`` + ``hsm.envelope.import_key`` (in the recipient's token) + ``record_import``.
``ca.service.packages`` runs the database's steps, ``ca.site`` the token steps of a site.

Stages: generated → delivered-to-province → held-by-province → delivered-to-city → installed.
A key and its record are made together: if the database refuses the record, the token object
is destroyed again; every step is audited in the transaction that records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pkcs11
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from ca.citykeys.applications import ApplicationError
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
from ca.citykeys.expiry import DAY
from ca.citykeys.lifecycle import KeyState
from ca.citykeys.sealing import make_transport_pair, point, seal_key
from ca.core.errors import BadInput
from ca.core.files import write_atomically
from ca.log import audit
from ca.ops.packages import package_file_name, registration_statement
from ca.policy.authorization import PolicyDenied
from ca.policy.in_force import load_policy
from ca.registry.divisions import default_divisions
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import CityKey, KeyApplication, KeyCopy, KeyPackageRecord, TransportKey
from hsm.crashpoints import crash_point
from hsm.envelope import (
    PackageRefused,
    forget_import,
    import_key,
    key_id_of,
    read_package,
    verify_package,
)
from hsm.errors import InvalidKey, InvalidSignature
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri, UriError
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3
from policies.rules import Actor, KeyClass, is_province_code, province_of

GENERATE: Final = "city-key.generate"
DELIVER: Final = "city-key.deliver"
IMPORT: Final = "city-key.import"
REGISTER_TRANSPORT: Final = "transport-key.register"
log = logging.getLogger("jtca.citykeys")

REFETCH: Final = "city-key.package-fetched"  # the audit action of a package fetched again

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


def check_transport_registration(actor: Actor, *, holder: str, token: str, now: int) -> None:
    """May ``actor`` register ``holder``'s transport key in token ``token``? (checked before a
    key is made, and again when it is recorded)"""
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


def record_transport_key(
    engine: Engine,
    actor: Actor,
    *,
    holder: str,
    token: str,
    uri: str,
    public_key: str,
    sign_uri: str,
    sign_public_key: str,
    proof: str,
    now: int,
    intent_id: int | None = None,
) -> TransportKey:
    """Record ``holder``'s new transport keys (made in its token: here, or at the holder's
    site, which reports only the public parts): the encryption key (``uri``, ``public_key``)
    and the signing key (``sign_uri``, ``sign_public_key``), with the signing key's signature
    ``proof`` over ``ops.registration_statement``; the earlier keys are retired; audited.
    Refused: a URI that does not name a private key in ``token``, a point not on the curve, one
    key for both halves, a proof that does not verify, or a key registered before."""
    check_transport_registration(actor, holder=holder, token=token, now=now)
    halves: dict[str, tuple[str, SM2PublicKey]] = {}
    for field, (half_uri, half_point) in {
        "uri": (uri, public_key),
        "sign_uri": (sign_uri, sign_public_key),
    }.items():
        try:
            parsed = Pkcs11Uri.parse(half_uri)
        except UriError as exc:
            raise BadInput(f"{field} {half_uri!r}: {exc.message}") from None
        if parsed.token != token or parsed.object is None or parsed.type not in (None, "private"):
            raise BadInput(f"{field} {half_uri!r}: not a private key object in token {token!r}")
        name = "public_key" if field == "uri" else "sign_public_key"
        try:
            sm2_point = SM2PublicKey.from_bytes(bytes.fromhex(half_point))
        except (ValueError, InvalidKey) as exc:
            raise BadInput(f"{name} {half_point[:16]}…: not an SM2 point ({exc})") from None
        halves[field] = (half_uri, sm2_point)
    compressed = halves["uri"][1].compressed.hex()
    sign_compressed = halves["sign_uri"][1].compressed.hex()
    if compressed == sign_compressed or uri == sign_uri:
        raise CityKeyError(
            "the signing key and the encryption key are one key: register two key pairs "
            "(GM/T 0014/0015 keep them apart)",
            title="Transport key refused",
        )
    statement = registration_statement(
        holder=holder,
        token=token,
        sign_uri=sign_uri,
        sign_public_key=sign_compressed,
        uri=uri,
        public_key=compressed,
    )
    try:
        halves["sign_uri"][1].verify(bytes.fromhex(proof), statement)
    except (ValueError, InvalidSignature):
        raise CityKeyError(
            f"proof {proof[:16]}…: not the signing key {sign_compressed[:16]}…'s signature over "
            "the registration of these keys (the registrant must hold the signing key)",
            title="Transport key refused",
        ) from None
    points = (compressed, sign_compressed)
    uris = (uri, sign_uri)
    with transaction(engine) as session:
        known = session.exec(
            select(TransportKey).where(
                col(TransportKey.public_key).in_(points)
                | col(TransportKey.sign_public_key).in_(points)
                | col(TransportKey.uri).in_(uris)
                | col(TransportKey.sign_uri).in_(uris)
            )
        ).first()
        if known is not None:
            raise CityKeyError(
                f"this transport key is registered already (for {known.holder}, "
                f"{known.status}): make a new one",
                title="Transport key refused",
            )
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
            uri=uri,
            public_key=compressed,
            sign_uri=sign_uri,
            sign_public_key=sign_compressed,
            legacy=False,
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
            details={
                "token": token,
                "sign_uri": row.sign_uri,
                "sign_public_key": row.sign_public_key,
                "enc_uri": row.uri,
                "enc_public_key": row.public_key,
            },
            at=now,
        )
        if intent_id is not None:  # the registration's intent, settled with its record
            intents.complete(session, intent_id, now=now, outcome="recorded")
        return detached(session, row)


def register_transport_key(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    *,
    holder: str,
    token: str,
    now: int,
    intent_id: int | None = None,
) -> TransportKey:
    """Generate the holder's transport keys in its token — a signing key pair and an
    encryption key pair (``make_transport_pair``) — and record them; a holder's earlier
    transport keys are retired (packages already sealed to them still open). With
    ``intent_id`` (``transport_intent_plan``'s intent) the two new CKA_IDs are noted as soon as
    the keys exist and the intent is completed with the record."""
    check_transport_registration(actor, holder=holder, token=token, now=now)
    store = vault.store(token)
    pair = make_transport_pair(store, holder=holder, token=token, now=now)
    if intent_id is not None:
        intents.note(
            engine,
            intent_id,
            made={
                "sign": {"label": pair.sign.label, "id": pair.sign.key_id.hex()},
                "enc": {"label": pair.enc.label, "id": pair.enc.key_id.hex()},
            },
        )
    crash_point("transport-key.register:service-after-generate")
    try:
        return record_transport_key(
            engine,
            actor,
            holder=holder,
            token=token,
            **pair.registration(),
            now=now,
            intent_id=intent_id,
        )
    except BaseException:
        pair.destroy(store)  # no key without its record
        raise


TRANSPORT_INTENT: Final = "transport-key.register"  # the intent of the ministry's registration


def transport_intent_plan(store: KeyStore, *, holder: str, token: str, now: int) -> dict[str, Any]:
    """The plan of a registration made with a token the service holds (the ministry's): the
    token, both labels and the CKA_IDs each label had before (the new ids are drawn at random
    when the keys are made and noted then, ``progress.made``)."""
    from ca.ops.packages import ENC, SIGN, transport_key_label

    return {
        "holder": holder,
        "token": token,
        "objects": [
            {
                "half": half,
                "label": label,
                "existing_ids": sorted({i.hex() for _, i in _labelled_objects(store, label)}),
                "id": None,
            }
            for half in (SIGN, ENC)
            for label in [transport_key_label(holder, now, half)]
        ],
    }


def recover_transport_registration(
    engine: Engine, store: KeyStore, intent: IntentRef, *, actor: str, now: int
) -> None:
    """A registration cut short: objects under the planned labels whose CKA_ID was not there
    before are the run's. Recorded (a transport_key row names them): kept, rolled forward —
    the record and the intent's completion are one transaction, so this is a crash after the
    commit. Else destroyed, rolled back (the holder registers again). Audited in the settling
    transaction; idempotent."""
    ours: list[tuple[str, str, bytes]] = []
    for planned in intent.plan.get("objects", []):
        label = str(planned["label"])
        before = set(planned.get("existing_ids", []))
        ours += [(label, kind, i) for kind, i in _labelled_objects(store, label)
                 if i.hex() not in before]  # fmt: skip
    token = str(intent.plan["token"])
    with Session(engine) as session:
        recorded = {
            (u.object, u.id)
            for row in session.exec(
                select(TransportKey).where(TransportKey.holder == intent.plan["holder"])
            )
            for u in (Pkcs11Uri.parse(row.uri), Pkcs11Uri.parse(row.sign_uri or row.uri))
            if u.token == token
        }
    destroyed: list[str] = []
    for label, kind, key_id in ours:
        if (label, key_id) in recorded:
            continue
        uri = store.uri(label, key_id, kind)
        with contextlib.suppress(KeyNotFound):  # a public half gone with its private key
            store.destroy(uri)
            destroyed.append(str(uri))
    kept = any((label, key_id) in recorded for label, _, key_id in ours)
    with transaction(engine) as session:
        intents.settle(
            session,
            intent,
            state=intents.ROLLED_FORWARD if kept else intents.ROLLED_BACK,
            outcome="recorded; kept" if kept else f"not recorded: destroyed {len(destroyed)}",
            now=now,
            actor=actor,
            details={"destroyed": destroyed},
        )


def dual(row: TransportKey, *, role: str) -> TransportKey:
    """``row`` if it is a pair of pairs; a legacy row (one key that signed and decrypted) is
    refused for a new package, naming its holder and how to rotate it. ``role``: what the
    package would use it for ("sign" or "seal to")."""
    if row.legacy or row.sign_uri is None or row.sign_public_key is None:
        who = "the ministry" if row.holder == MINISTRY else row.holder
        raise CityKeyError(
            f"the transport key of {who} (token {row.token}) is a legacy key that both signs and "
            f"decrypts: no new package is {'signed by' if role == 'sign' else 'sealed to'} it. "
            f"{who} registers a signing and an encryption key pair first: jtca city "
            f"transport-key --holder {row.holder} --token {row.token}",
            title="Transport key must be rotated",
        )
    return row


def active_transport_key(engine: Engine, holder: str) -> TransportKey | None:
    """``holder``'s active transport key, if it has one."""
    with Session(engine) as session:
        found = session.exec(
            select(TransportKey)
            .where(TransportKey.holder == holder)
            .where(TransportKey.status == "active")
            .order_by(col(TransportKey.id).desc())
        ).first()
        if found is not None:
            session.expunge(found)
        return found


# -- generation -----------------------------------------------------------------------------
GENERATE_INTENT: Final = "city.generate"  # the intent of a generation (ca.store.intents)
RENEW_INTENT: Final = "city.renew"  # the intent of a renewal (ca.citykeys.renewal)
CITY_KEY_INTENTS: Final = (GENERATE_INTENT, RENEW_INTENT)
ORPHANS_DESTROYED: Final = "city-key.orphans-destroyed"  # stale objects under planned labels
_OBJECT_TYPES: Final = {  # the key objects a city key leaves in the ministry token
    pkcs11.ObjectClass.PRIVATE_KEY: "private",
    pkcs11.ObjectClass.SECRET_KEY: "secret-key",
    pkcs11.ObjectClass.PUBLIC_KEY: "public",
}


def generation_subject(application_id: int) -> str:
    """The subject of an application's generation intent."""
    return f"application {application_id}"


def planned_key(
    *, label: str, kind: str, city: str, key_class: str, generation: int
) -> dict[str, Any]:
    """One key object of an intent's plan. Its CKA_ID is drawn at random by the token layer
    when the key is made, so it cannot be named beforehand: it is noted (``progress.made``) as
    soon as the key exists, and the label — unique to a class, a city and a generation, and
    claimed by one open intent at a time (``begin_city_key_intent``) — finds the objects of a
    key whose id a crash kept from being noted."""
    return {
        "label": label,
        "kind": kind,
        "city": city,
        "class": key_class,
        "generation": generation,
        "id": None,  # random (hsm.pkcs11.keys): see progress.made
    }


def planned_labels(intent: IntentRef) -> list[str]:
    """The object labels an intent of a city key operation planned."""
    return [str(o["label"]) for o in intent.plan.get("objects", [])]


def begin_city_key_intent(
    engine: Engine,
    operation: str,
    subject: str,
    plan: Mapping[str, Any],
    *,
    actor: str,
    now: int,
) -> IntentRef:
    """Write the intent of a generation or renewal before the ministry token is touched. The
    ministry's transport key row is locked first, so intents that make keys in its token begin
    one at a time, and one is refused (IntentBusy, exit 75) while another open intent — of a
    live process, or one recovery has not reached — names one of its labels: an object under a
    planned label that no record names is then this intent's own, to destroy on the way back."""
    labels = {str(o["label"]) for o in plan["objects"]}
    with transaction(engine) as session:
        session.exec(
            select(TransportKey)
            .where(TransportKey.holder == MINISTRY)
            .where(TransportKey.status == "active")
            .with_for_update()
        ).all()
        for other in intents.open_intents(session):
            if other.operation not in CITY_KEY_INTENTS:
                continue
            if (other.operation, other.subject) == (operation, subject):
                continue  # begin_in's own refusal names it
            shared = sorted(labels & set(planned_labels(other)))
            if shared:
                raise intents.IntentBusy(
                    f"{other.operation} on {other.subject} (intent {other.id}, begun by "
                    f"{other.actor}) is making {', '.join(shared)}: wait for it, or run "
                    "`jtca recover` if its process is gone"
                )
        return intents.begin_in(session, operation, subject, plan, actor=actor, now=now)


def _labelled_objects(store: KeyStore, label: str) -> list[tuple[str, bytes]]:
    """(URI type, CKA_ID) of every key object labelled ``label`` in the store's token: private
    and secret keys first (destroying a private key takes its public half with it), then public
    keys (a half-made pair)."""

    def collect(session: pkcs11.Session) -> list[tuple[str, bytes]]:
        found = []
        for obj in list(session.get_objects({pkcs11.Attribute.LABEL: label})):
            kind = _OBJECT_TYPES.get(pkcs11.ObjectClass(obj[pkcs11.Attribute.CLASS]))
            if kind is not None:
                found.append((kind, bytes(obj[pkcs11.Attribute.ID])))
        return sorted(found, key=lambda f: f[0] == "public")

    return store.token.run(collect)


def destroy_unrecorded(engine: Engine, store: KeyStore, labels: Sequence[str]) -> list[str]:
    """Destroy every key object of the store's token under one of ``labels`` whose CKA_ID no
    city key record names (no key without its record); returns the URIs destroyed. Idempotent:
    a second run finds nothing. A label recorded with a URI that names no id is left alone."""
    if not labels:
        return []
    with Session(engine) as session:
        recorded = {
            label: Pkcs11Uri.parse(uri).id
            for label, uri in session.exec(
                select(CityKey.label, CityKey.ministry_uri).where(col(CityKey.label).in_(labels))
            )
        }
    destroyed: list[str] = []
    for label in labels:
        if label in recorded and recorded[label] is None:
            continue
        for kind, key_id in _labelled_objects(store, label):
            if recorded.get(label) == key_id:
                continue
            uri = store.uri(label, key_id, kind)
            with contextlib.suppress(KeyNotFound):  # a public half gone with its private key
                store.destroy(uri)
                destroyed.append(str(uri))
    return destroyed


def destroy_stale(
    engine: Engine, store: KeyStore, intent: IntentRef, *, actor: str, now: int
) -> None:
    """Before the first key is made: objects under the intent's labels that no record names
    were left by a crash before intents were written (no open intent claims them: they would
    be refused as duplicate labels for ever). Destroyed, noted and audited."""
    stale = destroy_unrecorded(engine, store, planned_labels(intent))
    if stale:
        with transaction(engine) as session:
            intents.note_in(session, intent.id, stale_destroyed=stale)
            audit.append(
                session,
                actor=actor,
                action=ORPHANS_DESTROYED,
                subject=intent.subject,
                details={"intent": intent.id, "token": intent.plan["token"], "destroyed": stale},
                at=now,
            )


def make_planned_key(
    engine: Engine,
    store: KeyStore,
    intent: IntentRef,
    planned: Mapping[str, Any],
    made: dict[str, Any],
) -> TokenKey:
    """Generate one planned key, between its crash points, and note it (label, id, URI)."""
    label, kind = str(planned["label"]), str(planned["kind"])
    crash_point(f"{intent.operation}:before-token")
    # the class's policy decides whether the key may ever leave the token (CKA_EXTRACTABLE): a
    # class without host-assisted use cannot be packaged either, and delivery says so
    host_assisted = load_policy().host_assisted_allowed(str(planned.get("class", "")))
    key = (
        store.generate_sm2(label, host_assisted=host_assisted)
        if kind == KeyKind.SM2.value
        else store.generate_sm4(label, host_assisted=host_assisted)
    )
    crash_point(f"{intent.operation}:after-token")
    made[label] = {"id": key.key_id.hex(), "uri": str(key.uri)}
    intents.note(engine, intent.id, made=made)
    return key


def undo_city_key_intent(
    engine: Engine, store: KeyStore, intent: IntentRef, *, now: int, error: BaseException
) -> None:
    """The clean way back of a generation or renewal that failed: its unrecorded objects are
    destroyed and the intent abandoned. When even that fails (the token gone), the intent stays
    open for recovery at the next start and the original error is raised."""
    try:
        destroyed = destroy_unrecorded(engine, store, planned_labels(intent))
        intents.abandon(
            engine,
            intent.id,
            now=now,
            outcome=f"failed: {error}; destroyed {len(destroyed)} object(s)"[:1000],
        )
    except Exception as exc:  # the original error is the one to report
        log.warning(
            "intent %s (%s): undo failed, left for recovery: %s", intent.id, intent.operation, exc
        )


def recover_city_key_intent(
    engine: Engine, vault: Vault, intent: IntentRef, *, actor: str, now: int
) -> None:
    """Recovery of a generation or renewal whose process died (``ca.service.recovery``): every
    object under a planned label that no record names is destroyed (found by label and id);
    then the intent is settled and audited (``intent.recover``) — rolled forward when the
    records were committed (they are written with the intent's completion, in one transaction,
    so this is defence only), else rolled back: the application stays approved, a renewed
    key keeps no successor, and the operation is simply run again. Idempotent."""
    labels = planned_labels(intent)
    token = str(intent.plan["token"])
    store = vault.store(token)
    destroyed = destroy_unrecorded(engine, store, labels)
    crash_point(f"{intent.operation}:recover-destroyed")
    with transaction(engine) as session:
        recorded = sorted(
            session.exec(select(CityKey.label).where(col(CityKey.label).in_(labels))).all()
        )
        forward = bool(labels) and recorded == sorted(labels)
        intents.settle(
            session,
            intent,
            state=intents.ROLLED_FORWARD if forward else intents.ROLLED_BACK,
            outcome=(
                f"the records of {', '.join(recorded)} were committed"
                if forward
                else f"destroyed {len(destroyed)} unrecorded object(s) of {len(labels)} planned"
            ),
            now=now,
            actor=actor,
            details={
                "token": token,
                "labels": labels,
                "recorded": recorded,
                "destroyed": destroyed,
            },
        )


def generate(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    application_id: int,
    *,
    now: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[CityKey]:
    """The key sets of an approved application, in the ministry token, one distinct key per
    city and class. A city that already has a live key of a class is refused (renew it).

    Crash-safe (issue #14): the intent ``city.generate`` on ``application N`` names the token
    and every label before the token is touched; each key is noted as it is made; the records,
    the application's state and the intent's completion are one transaction. A failure destroys
    what was made; a crash leaves it to ``recover_city_key_intent``. Objects under a planned
    label that no record names (left by a crash before intents were written) are destroyed
    first, so such a run is not refused as a duplicate label. ``progress(done, total)`` is told
    of each key made in the token."""
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
    plan: dict[str, Any] = {
        "token": ministry.token,
        "application": application_id,
        "objects": [
            planned_key(
                label=f"{cls.name}-{city}-g{generations[(city, cls.name)]}",
                kind=cls.algorithm,
                city=city,
                key_class=cls.name,
                generation=generations[(city, cls.name)],
            )
            for city in cities
            for cls in classes
        ],
    }
    store = vault.store(ministry.token)
    intent = begin_city_key_intent(
        engine, GENERATE_INTENT, generation_subject(application_id), plan, actor=actor.id, now=now
    )
    made: list[TokenKey] = []
    try:
        destroy_stale(engine, store, intent, actor=actor.id, now=now)
        noted: dict[str, Any] = {}
        planned_keys = intent.plan["objects"]
        for planned in planned_keys:
            if progress is not None:
                progress(len(made), len(planned_keys))
            made.append(make_planned_key(engine, store, intent, planned, noted))
        if progress is not None:
            progress(len(made), len(planned_keys))
        crash_point(f"{GENERATE_INTENT}:before-record")
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
            intents.complete(session, intent.id, now=now)
            result = [detached(session, r) for r in rows]
        crash_point(f"{GENERATE_INTENT}:after-record")
        return result
    except BaseException as exc:
        undo_city_key_intent(engine, store, intent, now=now, error=exc)
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


@dataclass(frozen=True, slots=True)
class Hop:
    """One key's next delivery, checked for the officer who asked: the key (detached), who
    sends it to whom, the stage it reaches, the sender's copy and both transport keys."""

    key: CityKey
    sender: str
    recipient: str
    after: str
    sender_transport: TransportKey
    recipient_transport: TransportKey
    source: KeyCopy


@dataclass(frozen=True, slots=True)
class Sealed:
    """A package of one hop, recorded: its id and the file name it travels under."""

    key_id: int
    label: str
    recipient: str
    package_id: str
    file_name: str
    data: bytes


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


def application_keys_to_deliver(engine: Engine, application_id: int) -> list[int]:
    """The keys of an application that await a delivery (generated, or held by the province)."""
    with Session(engine) as session:
        return [
            k
            for k in session.exec(
                select(CityKey.id)
                .where(CityKey.application_id == application_id)
                .where(col(CityKey.stage).in_([GENERATED, AT_PROVINCE]))
                .order_by(col(CityKey.id))
            )
            if k is not None
        ]


def plan_delivery(engine: Engine, actor: Actor, key_ids: Sequence[int], *, now: int) -> list[Hop]:
    """Each key's next hop, checked: a live key at a stage that is delivered, the ministry's
    hop for a ministry officer and the province's for an officer of that province, the policy,
    both transport keys registered. Nothing changes."""
    if not key_ids:
        raise CityKeyError("name at least one key to deliver")
    twice = sorted({k for k in key_ids if list(key_ids).count(k) > 1})
    if twice:
        raise CityKeyError(f"key {twice[0]} is named twice")
    hops: list[Hop] = []
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
            hops.append(
                Hop(
                    key,
                    sender,
                    recipient,
                    after,
                    dual(transport_key(session, sender), role="sign"),
                    dual(transport_key(session, recipient), role="seal to"),
                    source,
                )
            )
        session.expunge_all()  # read-only: the plans outlive the transaction
    return hops


def seal(vault: Vault, hop: Hop, *, now: int) -> bytes:
    """The package of ``hop``: the sender's copy enveloped to the recipient's encryption key
    and signed by the sender's signing key (in tokens ``vault`` reaches)."""
    return seal_key(
        vault,
        source_token=hop.source.token,
        source_uri=hop.source.uri,
        kind=hop.key.kind,
        label=hop.key.label,
        public_key=hop.key.public_key,
        check_value=hop.key.check_value,
        sender_token=hop.sender_transport.token,
        sender_uri=dual(hop.sender_transport, role="sign").sign_uri or "",
        recipient=hop.recipient,
        recipient_public_key=dual(hop.recipient_transport, role="seal to").public_key,
        now=now,
    )


def check_sealed(hop: Hop, data: bytes) -> None:
    """A package made at the sender's site for ``hop``: signed by the sender's signing key,
    enveloped to the recipient's encryption key, naming the recipient, carrying this key's
    label and check value. PackageRefused with the reason otherwise."""
    info = verify_package(data, [point(dual(hop.sender_transport, role="sign").signing_public_key)])
    if info.recipient_key_id != key_id_of(point(hop.recipient_transport.public_key)):
        raise PackageRefused(
            "misaddressed",
            f"{hop.key.label}: the package is not sealed to the transport key of {hop.recipient}",
        )
    if info.recipient_name != hop.recipient:
        raise PackageRefused(
            "misaddressed", f"{hop.key.label}: the package names {info.recipient_name!r}"
        )
    expected = hop.key.public_key if hop.key.kind == KeyKind.SM2.value else hop.key.check_value
    if info.key_label != hop.key.label or info.check_value.hex() != expected:
        raise PackageRefused(
            "check-value-mismatch",
            f"the package carries {info.key_label!r}, not key {hop.key.label} as recorded",
        )


def record_delivery(
    engine: Engine,
    actor: Actor,
    packages: Sequence[tuple[Hop, bytes]],
    *,
    now: int,
    written: Callable[[Sealed], None] | None = None,
    intent_id: int | None = None,
) -> list[Sealed]:
    """Record the packages of a delivery and move each key on, audited, all or none. A key that
    moved on meanwhile, or a package recorded before (``replayed``), refuses the whole delivery.
    ``written`` runs inside the transaction for each package (writing it: a failure rolls the
    records back). ``intent_id``: the delivery's intent (``ca.store.intents``), completed in the
    same transaction as the records (issue #14: sealed packages and their records are one)."""
    results: list[Sealed] = []
    with transaction(engine) as session:
        for hop, data in packages:
            info, _ = read_package(data)
            package_id = info.package_id.hex()
            sha256 = hashlib.sha256(data).hexdigest()
            if session.get(KeyPackageRecord, package_id) is not None:
                raise PackageRefused("replayed", f"package {package_id} was recorded before")
            row = get_key(session, hop.key.id or 0)
            if row.stage != hop.key.stage:
                raise CityKeyError(f"{hop.key.label} moved on meanwhile (now {row.stage})")
            file_name = package_file_name(row.label, hop.recipient)
            session.add(
                KeyPackageRecord(
                    package_id=package_id,
                    city_key_id=row.id or 0,
                    sender=hop.sender,
                    recipient=hop.recipient,
                    sha256=sha256,
                    created_at=now,
                    created_by=actor.id,
                    data=data,  # kept: its addressee may fetch it again (recorded_package)
                )
            )
            row.stage = hop.after
            if hop.after == TO_PROVINCE:
                row.delivered_at = now
            else:
                row.handed_on_at = now
            session.add(row)
            audit.append(
                session,
                actor=actor.id,
                action=DELIVER,
                subject=row.label,
                kind="package",  # issue #13: the package file's bytes are in the log by digest
                object_sm3=sm3(data).hex(),
                details={
                    "from": hop.sender,
                    "to": hop.recipient,
                    "package": package_id,
                    "sha256": sha256,
                    "file": file_name,
                },
                at=now,
            )
            session.flush()
            sealed = Sealed(row.id or 0, row.label, hop.recipient, package_id, file_name, data)
            if written is not None:
                written(sealed)
            results.append(sealed)
        if intent_id is not None:
            from ca.store import intents as delivery_intents

            delivery_intents.complete(session, intent_id, now=now, outcome="recorded")
    return results


@dataclass(frozen=True, slots=True)
class AwaitingImport:
    """A key delivered already whose package, recorded, awaits import: what a rerun of its
    delivery fetches again (issue #14) instead of refusing a key that moved on."""

    key_id: int
    label: str
    recipient: str
    file_name: str


def awaiting_import(
    engine: Engine, actor: Actor, key_ids: Sequence[int], *, now: int
) -> tuple[list[int], list[AwaitingImport]]:
    """Split a delivery's keys: those still to deliver, and those delivered already (to the
    province or the city) whose package awaits import and that ``actor`` may fetch again (the
    ministry's officers, or the addressee's province's). Nothing changes."""
    to_deliver: list[int] = []
    awaiting: list[AwaitingImport] = []
    with Session(engine) as session:
        for key_id in key_ids:
            key = session.get(CityKey, key_id)
            if key is None or key.stage not in (TO_PROVINCE, TO_CITY):
                to_deliver.append(key_id)  # plan_delivery says what is wrong with it
                continue
            recipient = key.province if key.stage == TO_PROVINCE else key.city
            waiting = session.exec(
                select(KeyPackageRecord.package_id)
                .where(KeyPackageRecord.city_key_id == key_id)
                .where(KeyPackageRecord.recipient == recipient)
                .where(col(KeyPackageRecord.imported_at).is_(None))
                .where(col(KeyPackageRecord.data).is_not(None))
            ).first()
            if waiting is None or KeyState(key.state) not in _LIVE:
                to_deliver.append(key_id)
                continue
            if is_ministry(actor):
                allowed(actor, DELIVER, key.city, key.key_class, now)
            elif actor.province == _holder_province(recipient):
                allowed(actor, IMPORT, key.city, key.key_class, now)
            else:
                to_deliver.append(key_id)
                continue
            awaiting.append(
                AwaitingImport(
                    key_id, key.label, recipient, package_file_name(key.label, recipient)
                )
            )
    return to_deliver, awaiting


def application_keys_awaiting_import(engine: Engine, application_id: int) -> list[int]:
    """The keys of an application delivered (to the province or the city) and not yet
    imported: a rerun of ``deliver --application`` after a crash fetches their packages."""
    with Session(engine) as session:
        return [
            k
            for k in session.exec(
                select(CityKey.id)
                .where(CityKey.application_id == application_id)
                .where(col(CityKey.stage).in_([TO_PROVINCE, TO_CITY]))
                .order_by(col(CityKey.id))
            )
            if k is not None
        ]


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
    holds. All of them or none: a refused key stops the whole delivery. (One process holding
    every token: the embedded world of the tests and the demo; the service and the sites use
    the steps — plan_delivery, seal, check_sealed, record_delivery — each on its side.)"""
    hops = plan_delivery(engine, actor, key_ids, now=now)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CityKeyError(
            f"--out {out_dir}: cannot make the folder ({exc.strerror})", title="Bad input"
        ) from None
    if not out_dir.is_dir():
        raise CityKeyError(f"--out {out_dir}: not a folder", title="Bad input")
    packages = [(hop, seal(vault, hop, now=now)) for hop in hops]
    paths: list[Path] = []

    def write(sealed: Sealed) -> None:
        path = out_dir / sealed.file_name
        write_atomically(path, sealed.data)
        paths.append(path)

    try:
        done = record_delivery(engine, actor, packages, now=now, written=write)
    except BaseException:
        for path in paths:  # no package file without its record
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    return [
        Delivered(s.key_id, s.label, s.recipient, s.package_id, out_dir / s.file_name) for s in done
    ]


def recorded_package(engine: Engine, actor: Actor, key_id: int, *, now: int) -> Sealed:
    """The package that awaits import for key ``key_id`` (the key is delivered to a province
    or to a city and the package was recorded then), for its addressee to fetch again when its
    file was lost; audited. Only the addressee's officers (the recipient's province) and the
    ministry's may fetch it; refused: a key with no package awaiting import, one no longer live,
    a package recorded before the bytes were kept."""
    with transaction(engine) as session:
        key = get_key(session, key_id, lock=False)
        if key.stage not in (TO_PROVINCE, TO_CITY):
            raise CityKeyError(
                f"{key.label} is {key.stage}: no package of it awaits import",
                title="No package",
            )
        recipient = key.province if key.stage == TO_PROVINCE else key.city
        if is_ministry(actor):
            allowed(actor, DELIVER, key.city, key.key_class, now)
        else:
            if actor.province != _holder_province(recipient):
                raise PolicyDenied(
                    f"deny/other-province: {key.label}'s package is addressed to {recipient}; "
                    f"{actor.id} is not an officer of it"
                )
            allowed(actor, IMPORT, key.city, key.key_class, now)
        if KeyState(key.state) not in _LIVE:
            raise CityKeyError(f"{key.label} is {key.state}: its packages are not imported")
        package = session.exec(
            select(KeyPackageRecord)
            .where(KeyPackageRecord.city_key_id == key_id)
            .where(KeyPackageRecord.recipient == recipient)
            .where(col(KeyPackageRecord.imported_at).is_(None))
            .order_by(col(KeyPackageRecord.created_at).desc())
        ).first()
        if package is None:
            raise CityKeyError(
                f"{key.label}: no package to {recipient} awaits import", title="No package"
            )
        if package.data is None:
            raise CityKeyError(
                f"{key.label}: package {package.package_id} was recorded before packages were "
                "kept with their records; it cannot be fetched again",
                title="No package",
            )
        file_name = package_file_name(key.label, recipient)
        audit.append(
            session,
            actor=actor.id,
            action=REFETCH,
            subject=key.label,
            details={"package": package.package_id, "to": recipient, "file": file_name},
            at=now,
        )
        return Sealed(key_id, key.label, recipient, package.package_id, file_name, package.data)


def awaiting_delivery(engine: Engine, actor: Actor) -> list[CityKey]:
    """Keys this officer's side delivers next: generated ones for the ministry, the ones a
    province holds for that province (a municipality's are installed at the province)."""
    with Session(engine) as session:
        query = select(CityKey).where(col(CityKey.state).in_([s.value for s in _LIVE]))
        if is_ministry(actor):
            query = query.where(CityKey.stage == GENERATED)
        else:
            query = (
                query.where(CityKey.stage == AT_PROVINCE)
                .where(CityKey.province == actor.province)
                .where(CityKey.city != CityKey.province)
            )
        rows = list(session.exec(query.order_by(col(CityKey.id))))
        session.expunge_all()
        return rows


# -- import ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Imported:
    key_id: int
    label: str
    holder: str
    token: str
    uri: str
    stage: str


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """A package this authority made, checked for the officer about to import it: the key, the
    stage it reaches, the recipient's transport key it is sealed to, the sender's keys."""

    package_id: str
    sha256: str
    key: CityKey
    sender: str
    recipient: str
    after: str
    transport: TransportKey
    senders: list[TransportKey]


def _holder_province(holder: str) -> str:
    return holder if is_province_code(holder) else province_of(holder)


def plan_import(
    engine: Engine, actor: Actor, data: bytes, *, now: int, accept_legacy: bool = False
) -> ImportPlan:
    """The database's checks of a package before it is opened, each refusal with its reason:
    ``malformed``; ``unknown-package`` (not made here); ``replayed`` (imported before, naming
    who); ``bad-signature`` (not the bytes that were sent); a key no longer live; an officer
    the policy refuses, or one of another province than the recipient's (``deny/…``); a key
    not at the stage this package delivers it to; ``misaddressed`` (sealed to no transport key
    of its recipient); ``legacy-format`` (a package of before issue #15) unless
    ``accept_legacy`` (migration only)."""
    info, _ = read_package(data, accept_legacy=accept_legacy)
    package_id = info.package_id.hex()
    with Session(engine) as session:
        package = session.get(KeyPackageRecord, package_id)
        if package is None:
            raise PackageRefused("unknown-package", f"package {package_id} was not made here")
        if package.imported_at is not None:
            raise PackageRefused(
                "replayed", f"package {package_id} was imported before by {package.imported_by}"
            )
        sha256 = hashlib.sha256(data).hexdigest()
        if package.sha256 != sha256:
            raise PackageRefused("bad-signature", f"package {package_id} differs from the one sent")
        key = get_key(session, package.city_key_id, lock=False)
        if KeyState(key.state) not in _LIVE:
            raise CityKeyError(f"{key.label} is {key.state}: its packages are not imported")
        allowed(actor, IMPORT, key.city, key.key_class, now)
        if actor.province != _holder_province(package.recipient):
            raise PolicyDenied(
                f"deny/other-province: {actor.id} may not import a package for {package.recipient}"
            )
        if package.recipient == key.province:  # a 直辖市's keys are installed at the province
            expected, after = TO_PROVINCE, INSTALLED if key.city == key.province else AT_PROVINCE
        else:
            expected, after = TO_CITY, INSTALLED
        if key.stage != expected:
            raise CityKeyError(
                f"{key.label} is {key.stage}: a package for {package.recipient} is imported "
                f"while the key is {expected}",
                title="Import refused",
            )
        senders = list(
            session.exec(select(TransportKey).where(TransportKey.holder == package.sender))
        )
        recipients = list(
            session.exec(select(TransportKey).where(TransportKey.holder == package.recipient))
        )
        session.expunge_all()
    transport = next(
        (r for r in recipients if key_id_of(point(r.public_key)) == info.recipient_key_id),
        None,
    )
    if transport is None:
        raise PackageRefused(
            "misaddressed", f"the package is sealed to no transport key of {package.recipient}"
        )
    return ImportPlan(
        package_id, sha256, key, package.sender, package.recipient, after, transport, senders
    )


def record_import(
    engine: Engine,
    actor: Actor,
    data: bytes,
    *,
    token: str,
    uri: str,
    public_key: str | None,
    check_value: str | None,
    now: int,
    accept_legacy: bool = False,
) -> Imported:
    """Record that a package was opened into its recipient's token as ``uri`` (here, or at the
    recipient's site, which reports it), audited. Every check of ``plan_import`` again, and:
    the object is in the token of the transport key the package is sealed to, under the key's
    label, with the key's check value or public point; the package was not imported meanwhile."""
    plan = plan_import(engine, actor, data, now=now, accept_legacy=accept_legacy)
    key = plan.key
    if token != plan.transport.token:
        raise PackageRefused(
            "misaddressed",
            f"package {plan.package_id} is sealed to the transport key in token "
            f"{plan.transport.token!r}, not {token!r}",
        )
    try:
        parsed = Pkcs11Uri.parse(uri)
    except UriError as exc:
        raise BadInput(f"uri {uri!r}: {exc.message}") from None
    if parsed.token != token or parsed.object != key.label:
        raise BadInput(f"uri {uri!r}: not key {key.label} in token {token!r}")
    shown = public_key if key.kind == KeyKind.SM2.value else check_value
    recorded = key.public_key if key.kind == KeyKind.SM2.value else key.check_value
    if shown is None or recorded is None or shown.lower() != recorded:
        raise PackageRefused(
            "check-value-mismatch",
            f"the key reported in {token} is not {key.label} as recorded",
        )
    with transaction(engine) as session:
        row = get_key(session, key.id or 0)
        record = session.exec(
            select(KeyPackageRecord)
            .where(KeyPackageRecord.package_id == plan.package_id)
            .with_for_update()
        ).one()
        if record.imported_at is not None:
            raise PackageRefused("replayed", f"package {plan.package_id} was imported meanwhile")
        if row.stage != key.stage:
            raise CityKeyError(f"{key.label} moved on meanwhile (now {row.stage})")
        record.imported_at, record.imported_by = now, actor.id
        session.add(record)
        session.add(
            KeyCopy(
                city_key_id=row.id or 0,
                holder=plan.recipient,
                token=token,
                uri=uri,
                package_id=plan.package_id,
                installed_at=now,
            )
        )
        row.stage = plan.after
        if plan.recipient == row.province:
            row.imported_at = now
        if plan.after == INSTALLED:
            row.installed_at = now
        session.add(row)
        audit.append(
            session,
            actor=actor.id,
            action=IMPORT,
            subject=row.label,
            details={
                "package": plan.package_id,
                "holder": plan.recipient,
                "token": token,
                "uri": uri,
                "stage": row.stage,
            },
            at=now,
        )
        session.flush()
        return Imported(row.id or 0, row.label, plan.recipient, token, uri, row.stage)


def package_status(
    engine: Engine, package_id: str
) -> tuple[KeyPackageRecord, CityKey, KeyCopy | None]:
    """A package's record, its key and the recipient's copy (once imported)."""
    with Session(engine) as session:
        package = session.get(KeyPackageRecord, package_id.lower())
        if package is None:
            raise PackageRefused("unknown-package", f"package {package_id} was not made here")
        key = get_key(session, package.city_key_id, lock=False)
        copy = session.exec(select(KeyCopy).where(KeyCopy.package_id == package.package_id)).first()
        session.expunge_all()
        return package, key, copy


def import_package(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    data: bytes,
    *,
    now: int,
    accept_legacy: bool = False,
) -> Imported:
    """Open a package into its recipient's token — with its encryption key (a legacy row's
    one key) — and record the copy; the sender's signing keys are trusted (a legacy row's one
    key). Refused, with its reason: anything ``hsm.envelope`` refuses (a package of before
    issue #15 unless ``accept_legacy``, migration only), a package this authority did not make,
    one already imported, and one for a key no longer live. (One process holding every token;
    a site uses the same checks through the service: ``ca.site``.)"""
    plan = plan_import(engine, actor, data, now=now, accept_legacy=accept_legacy)
    store = vault.store(plan.transport.token)
    transport_uri = Pkcs11Uri.parse(plan.transport.uri)
    transport = TokenKey(
        uri=transport_uri,
        kind=KeyKind.SM2,
        label=transport_uri.object or "",
        key_id=transport_uri.id or b"",
        public_key=point(plan.transport.public_key),
    )
    installed = import_key(
        store,
        data,
        transport_key=transport,
        trusted_senders=[point(s.signing_public_key) for s in plan.senders],
        label=plan.key.label,
        accept_legacy=accept_legacy,
    )
    try:
        return record_import(
            engine,
            actor,
            data,
            token=plan.transport.token,
            uri=str(installed.uri),
            public_key=installed.public_key.compressed.hex() if installed.public_key else None,
            check_value=installed.check_value.hex() if installed.check_value else None,
            now=now,
            accept_legacy=accept_legacy,
        )
    except BaseException:
        with contextlib.suppress(KeyNotFound):  # no key without its record
            store.destroy(installed.uri)
        with contextlib.suppress(pkcs11.PKCS11Error):
            forget_import(store, bytes.fromhex(plan.package_id))
        raise
