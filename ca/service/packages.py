"""Use cases of the packages area: transport keys, deliveries and imports of key packages
(ca/ops/packages.py says who does what; ca/citykeys/workflow.py holds the rules).

The service uses the ministry's token only (``ctx.runtime.tokens()``): the ministry's transport
key and the ministry → province packages. What a province or a city does with its own token is
done by its site's client (``ca.site``) and reported here; every report is checked against the
records and the package itself before anything is recorded, and audited in the same
transaction. The service never needs a site's PIN.

Crashes (issue #14): the service's only token work here is sealing ministry → province
packages with the ministry's keys, which leaves nothing in a token (the package is made in
memory); the packages, their records and the delivery's intent (``packages.deliver`` in
``ca.store.intents``) are one transaction, so a delivery is recorded whole or not at all. An
intent left open by a dead process recorded nothing: its recoverer settles it rolled back. A
rerun whose keys were delivered meanwhile is told which packages await import
(``DeliveryPlan.awaiting``) and fetches them again instead of failing. The site's side (files
written, packages opened into its token) is recovered from the site's journal (``ca.site``).

Two more steps keep a site's work in its own hands: a ministry package whose file was lost is
fetched again from its record (``fetch_package``), and the copies that destroy-material left in a
province's or a city's token are listed for that site (``awaiting_destruction``) and recorded
gone when the site reports it destroyed them (``report_destroyed``).
"""

from __future__ import annotations

from typing import Final

from ca.citykeys import misuse, workflow
from ca.citykeys.common import MINISTRY, CityKeyError
from ca.core.errors import BadInput
from ca.ops import packages as ops
from ca.ops.base import Empty
from ca.registry.divisions import default_divisions
from ca.service.context import Context
from ca.service.recovery import recover_before, recoverer
from ca.service.registry import handles
from ca.service.runtime import Runtime
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import TransportKey
from hsm.crashpoints import crash_point

DELIVER_INTENT: Final = "packages.deliver"  # the intent of a ministry → province delivery


def _transport(row: TransportKey) -> ops.TransportKeyInfo:
    return ops.TransportKeyInfo(
        holder=row.holder,
        token=row.token,
        uri=row.uri,
        public_key=row.public_key,
        sign_uri=row.sign_uri,
        sign_public_key=row.sign_public_key,
        legacy=row.legacy,
        status=row.status,
    )


def _sealed(s: workflow.Sealed) -> ops.SealedPackage:
    return ops.SealedPackage(
        key=s.key_id, label=s.label, to=s.recipient, package=s.package_id, file=s.file_name,
        data=s.data,
    )  # fmt: skip


# -- transport keys -----------------------------------------------------------------------------
@handles(ops.MINISTRY_TRANSPORT_KEY)
def ministry_transport_key(ctx: Context, req: ops.MinistryTransportKey) -> ops.TransportKeyInfo:
    actor, now = ctx.actor(), ctx.now()
    workflow.check_transport_registration(actor, holder=MINISTRY, token=req.token, now=now)
    subject = f"transport keys of {MINISTRY}"
    recover_before(ctx.runtime, workflow.TRANSPORT_INTENT, subject, now=now)
    with ctx.runtime.tokens(create=True) as vault:
        plan = workflow.transport_intent_plan(
            vault.store(req.token), holder=MINISTRY, token=req.token, now=now
        )
        intent = intents.begin(
            ctx.engine, workflow.TRANSPORT_INTENT, subject, plan, actor=actor.id, now=now
        )
        try:
            row = workflow.register_transport_key(
                ctx.engine, vault, actor, holder=MINISTRY, token=req.token, now=now,
                intent_id=intent.id,
            )  # fmt: skip
        except Exception as exc:  # refused or failed: the keys were destroyed again
            intents.abandon(ctx.engine, intent.id, now=now, outcome=str(exc) or type(exc).__name__)
            raise
    return _transport(row)


@recoverer(workflow.TRANSPORT_INTENT)
def _recover_transport(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """The ministry's transport key registration cut short: both pairs kept if recorded, else
    destroyed (``workflow.recover_transport_registration``)."""
    with runtime.tokens() as vault:
        store = vault.store(str(intent.plan["token"]))
        workflow.recover_transport_registration(runtime.engine, store, intent, actor=actor, now=now)


@handles(ops.REGISTER_TRANSPORT_KEY)
def register_transport_key(ctx: Context, req: ops.SiteTransportKey) -> ops.TransportKeyInfo:
    if req.holder == MINISTRY:
        raise CityKeyError(
            "the ministry's transport key is made in the ministry token by the service "
            "(jtca city transport-key --holder ministry), not reported by a site"
        )
    # the site's new signing key signs the registration (proof of possession); the encryption
    # key's possession is not proven here: a wrong one only keeps the registrant's own packages
    # from opening, and the signature binds it to the holder (docs/citykeys.md)
    row = workflow.record_transport_key(
        ctx.engine,
        ctx.actor(),
        holder=req.holder,
        token=req.token,
        uri=req.uri,
        public_key=req.public_key,
        sign_uri=req.sign_uri,
        sign_public_key=req.sign_public_key,
        proof=req.proof,
        now=ctx.now(),
    )
    return _transport(row)


@handles(ops.TRANSPORT_KEY)
def transport_key(ctx: Context, req: ops.Holder) -> ops.HolderTransportKey:
    ctx.actor()
    row = workflow.active_transport_key(ctx.engine, req.holder)
    return ops.HolderTransportKey(
        holder=req.holder, active=_transport(row) if row is not None else None
    )


# -- delivery -------------------------------------------------------------------------------------
def _key_ids(ctx: Context, req: ops.DeliveryRequest) -> list[int]:
    if req.application is not None:
        if req.keys:
            raise BadInput("name keys or an application, not both")
        ids = workflow.application_keys_to_deliver(ctx.engine, req.application)
        if not ids:  # a rerun after a crash: the packages recorded then are fetched again
            ids = workflow.application_keys_awaiting_import(ctx.engine, req.application)
        if not ids:
            raise BadInput(f"--application {req.application}: no key of it awaits delivery")
        return ids
    return list(req.keys)


def _hop(hop: workflow.Hop) -> ops.Hop:
    key = hop.key
    return ops.Hop(
        key=key.id or 0,
        label=key.label,
        kind=key.kind,
        city=key.city,
        key_class=key.key_class,
        public_key=key.public_key,
        check_value=key.check_value,
        stage=key.stage,
        stage_after=hop.after,
        sender=hop.sender,
        recipient=hop.recipient,
        source=ops.KeyCopyRef(token=hop.source.token, uri=hop.source.uri),
        sender_transport=_transport(hop.sender_transport),
        recipient_transport=_transport(hop.recipient_transport),
    )


@handles(ops.DELIVERY_PLAN)
def delivery_plan(ctx: Context, req: ops.DeliveryRequest) -> ops.DeliveryPlan:
    actor, now = ctx.actor(), ctx.now()
    to_deliver, awaiting = workflow.awaiting_import(ctx.engine, actor, _key_ids(ctx, req), now=now)
    hops = workflow.plan_delivery(ctx.engine, actor, to_deliver, now=now) if to_deliver else []
    return ops.DeliveryPlan(
        hops=[_hop(h) for h in hops],
        awaiting=[
            ops.Awaiting(key=a.key_id, label=a.label, to=a.recipient, file=a.file_name)
            for a in awaiting
        ],
    )


@handles(ops.DELIVER)
def deliver(ctx: Context, req: ops.DeliveryRequest) -> ops.SealedPackages:
    actor, now = ctx.actor(), ctx.now()
    hops = workflow.plan_delivery(ctx.engine, actor, _key_ids(ctx, req), now=now)
    onward = [h for h in hops if h.sender != MINISTRY]
    if onward:
        raise CityKeyError(
            f"{onward[0].key.label}: province {onward[0].sender} hands its keys on to the city "
            "with its own token, at its site (jtca city deliver there)",
            title="Delivery refused",
        )
    subject = "keys " + ",".join(str(h.key.id) for h in hops)
    recover_before(ctx.runtime, DELIVER_INTENT, subject, now=now)
    plan = {
        "token": hops[0].sender_transport.token if hops else None,
        "sender_uri": hops[0].sender_transport.sign_uri if hops else None,  # the signing key
        "keys": [h.key.id for h in hops],
        "labels": [h.key.label for h in hops],
        "files": [ops.package_file_name(h.key.label, h.recipient) for h in hops],
        "leaves": "nothing in a token: packages are sealed in memory, recorded in one transaction",
    }
    intent = intents.begin(ctx.engine, DELIVER_INTENT, subject, plan, actor=actor.id, now=now)
    try:
        crash_point("packages.deliver:service-before-seal")
        with ctx.runtime.tokens() as vault:
            packages = [(hop, workflow.seal(vault, hop, now=now)) for hop in hops]
        crash_point("packages.deliver:service-after-seal")
        done = workflow.record_delivery(ctx.engine, actor, packages, now=now, intent_id=intent.id)
    except Exception as exc:  # a refusal or a token error: nothing recorded, nothing left
        intents.abandon(ctx.engine, intent.id, now=now, outcome=str(exc) or type(exc).__name__)
        raise
    crash_point("packages.deliver:service-after-record")
    return ops.SealedPackages(packages=[_sealed(s) for s in done])


@recoverer(DELIVER_INTENT)
def _recover_delivery(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """A ministry → province delivery whose process died before its records were committed
    (they and the intent's completion are one transaction): the packages existed only in that
    process's memory and sealing leaves nothing in a token, so nothing is left to undo; the
    keys are still generated and the rerun delivers them."""
    with transaction(runtime.engine) as session:
        intents.settle(
            session,
            intent,
            state=intents.ROLLED_BACK,
            outcome="nothing recorded; no package left (sealed in memory only)",
            now=now,
            actor=actor,
            details={"keys": list(intent.plan.get("keys") or [])},
        )


@handles(ops.REPORT_HANDED_ON)
def report_handed_on(ctx: Context, req: ops.HandedOn) -> ops.RecordedPackages:
    actor, now = ctx.actor(), ctx.now()
    if not req.packages:
        raise BadInput("report at least one package")
    hops = workflow.plan_delivery(ctx.engine, actor, [p.key for p in req.packages], now=now)
    packages: list[tuple[workflow.Hop, bytes]] = []
    for hop, sent in zip(hops, req.packages, strict=True):
        if hop.sender == MINISTRY:
            raise CityKeyError(
                f"{hop.key.label}: the ministry's packages are made by the service "
                "(jtca city deliver as a ministry officer), not reported",
                title="Delivery refused",
            )
        expected = ops.package_file_name(hop.key.label, hop.recipient)
        if sent.file != expected:
            raise BadInput(f"{sent.file}: the package of {hop.key.label} is named {expected}")
        workflow.check_sealed(hop, sent.data)
        packages.append((hop, sent.data))
    done = workflow.record_delivery(ctx.engine, actor, packages, now=now)
    return ops.RecordedPackages(
        packages=[
            ops.RecordedPackage(
                key=s.key_id, label=s.label, to=s.recipient, package=s.package_id, file=s.file_name
            )
            for s in done
        ]
    )


@handles(ops.FETCH_PACKAGE)
def fetch_package(ctx: Context, req: ops.PackageRequest) -> ops.SealedPackages:
    s = workflow.recorded_package(ctx.engine, ctx.actor(), req.key, now=ctx.now())
    return ops.SealedPackages(packages=[_sealed(s)])


@handles(ops.AWAITING_DELIVERY)
def awaiting_delivery(ctx: Context, _req: Empty) -> ops.KeysAwaitingDelivery:
    actor = ctx.actor()
    divisions = default_divisions()
    keys: list[ops.KeyAwaitingDelivery] = []
    for key in workflow.awaiting_delivery(ctx.engine, actor):
        city = divisions.city(key.city)
        keys.append(
            ops.KeyAwaitingDelivery(
                id=key.id or 0,
                label=key.label,
                city=key.city,
                city_name=city.name if city else "",
                province=key.province,
                key_class=key.key_class,
                kind=key.kind,
                state=key.state,
                stage=key.stage,
                to=key.province if key.stage == workflow.GENERATED else key.city,
                application=key.application_id,
                not_after=key.not_after,
            )
        )
    return ops.KeysAwaitingDelivery(keys=keys)


# -- import ---------------------------------------------------------------------------------------
@handles(ops.IMPORT_PLAN)
def import_plan(ctx: Context, req: ops.PackageBytes) -> ops.ImportPlan:
    plan = workflow.plan_import(
        ctx.engine, ctx.actor(), req.data, now=ctx.now(), accept_legacy=req.accept_legacy
    )
    return ops.ImportPlan(
        package=plan.package_id,
        key=plan.key.id or 0,
        label=plan.key.label,
        kind=plan.key.kind,
        sender=plan.sender,
        recipient=plan.recipient,
        stage_after=plan.after,
        transport=_transport(plan.transport),
        trusted_senders=[s.signing_public_key for s in plan.senders],
    )


@handles(ops.REPORT_IMPORT)
def report_import(ctx: Context, req: ops.ImportReport) -> ops.ImportedKey:
    done = workflow.record_import(
        ctx.engine,
        ctx.actor(),
        req.data,
        token=req.token,
        uri=req.uri,
        public_key=req.public_key,
        check_value=req.check_value,
        now=ctx.now(),
        accept_legacy=req.accept_legacy,
    )
    return ops.ImportedKey(
        key=done.key_id,
        label=done.label,
        holder=done.holder,
        token=done.token,
        uri=done.uri,
        stage=done.stage,
    )


@handles(ops.STATUS)
def status(ctx: Context, req: ops.PackageId) -> ops.PackageStatus:
    actor = ctx.actor()
    package, key, copy = workflow.package_status(ctx.engine, req.package)
    if actor.province is not None and actor.province != key.province:
        raise CityKeyError(
            f"package {package.package_id} is for {key.province}'s keys: "
            f"{actor.id} is not an officer of it",
            title="Unknown package",
        )
    return ops.PackageStatus(
        package=package.package_id,
        key=key.id or 0,
        label=key.label,
        sender=package.sender,
        recipient=package.recipient,
        created_at=package.created_at,
        created_by=package.created_by,
        imported_at=package.imported_at,
        imported_by=package.imported_by,
        token=copy.token if copy else None,
        uri=copy.uri if copy else None,
        stage=key.stage,
    )


# -- copies destroyed at their sites ---------------------------------------------------------------
def _site_copy(copy: misuse.SiteCopy) -> ops.SiteCopy:
    return ops.SiteCopy(
        key=copy.key_id,
        label=copy.label,
        city=copy.city,
        key_class=copy.key_class,
        kind=copy.kind,
        holder=copy.holder,
        token=copy.token,
        uri=copy.uri,
        requested_at=copy.requested_at,
        destroyed_at=copy.destroyed_at,
    )


@handles(ops.AWAITING_DESTRUCTION)
def awaiting_destruction(ctx: Context, req: ops.Holder) -> ops.SiteCopies:
    copies = misuse.copies_awaiting_destruction(ctx.engine, ctx.actor(), req.holder, now=ctx.now())
    return ops.SiteCopies(holder=req.holder, copies=[_site_copy(c) for c in copies])


@handles(ops.REPORT_DESTROYED)
def report_destroyed(ctx: Context, req: ops.DestroyedReport) -> ops.SiteCopy:
    done = misuse.record_copy_destroyed(
        ctx.engine, ctx.actor(), req.key, holder=req.holder, uri=req.uri, now=ctx.now()
    )
    return _site_copy(done)
