"""Use cases of the city area (一城一密, 第九至十一条); the operations are ``ca.ops.city``.

Each use case takes the calling officer and a typed request and returns a typed result. The
policy checks, dual control, the action and its audit event are the domain functions' —
``ca.citykeys.applications`` and ``ca.citykeys.*`` — called here and from no adapter.

Province scope is decided here, once, for every client: a provincial officer reads their own
province only (a filter naming another province, or one key of another province, is refused as
``deny/other-province``), and the policy refuses their actions on any other province's city or
key. Every read needs a signed-in officer (a province's keys are nobody else's business); a
ministry officer reads every province.

The ministry's tokens are reached only through ``ctx.runtime.tokens()``, and only by the use
cases that use them (generate, renew, destroy-material, and the approval that carries out a
destruction): suspensions, revocations and their approvals change records only and never wait
for the tokens. A destruction carried out here destroys the ministry's copy only: a province's
or a city's copy is recorded as awaiting destruction at its site (``destroy_site_copies=False``;
the site destroys it in its own token and reports it, ``ca.service.packages``).

Generate and renew are crash-safe (issue #14): each writes an intent before the ministry token
is touched (``ca.citykeys.workflow``); the recoverers of ``city.generate`` and ``city.renew``
are registered here, and both use cases first recover what dead runs of either left, so a rerun
after a crash is never stuck.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from sqlmodel import Session

from ca.citykeys import applications, misuse, queries, renewal, report, usage_import, workflow
from ca.citykeys.common import CityKeyError, Vault, allowed, key_flags
from ca.citykeys.expiry import DAY
from ca.citykeys.lifecycle import KeyState
from ca.core.errors import BadInput
from ca.officers.dual_control import deciding
from ca.ops import city as ops
from ca.ops.base import Empty
from ca.policy.authorization import PolicyDenied
from ca.policy.in_force import load_policy
from ca.registry.divisions import default_divisions
from ca.service.approvals import verify_decision
from ca.service.context import Context
from ca.service.recovery import RecoveryFailed, recover, recoverer
from ca.service.registry import handles
from ca.service.runtime import Runtime
from ca.store.intents import IntentRef
from ca.store.models import CityKey, KeyApplication
from hsm.pkcs11.keys import KeyStore
from policies.rules import Actor, Policy

MAX_PAGE: Final = 5000  # rows of one page
MAX_TEXT: Final = 200  # characters of a page's free text


class InvalidField(BadInput):
    """A request field that cannot be used as given: 422, ``field`` names it, and the message
    starts with the field's name and value (a client may put its own name for it there)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class OutOfScope(PolicyDenied):
    """A provincial officer asking about another province (403)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownKey(CityKeyError):
    """No city key of that id (404; the command line's exit status stays the domain's)."""

    title = "Unknown key"
    http_status = 404


# -- scope, checks and views ------------------------------------------------------------------
MAX_DAYS: Final = 36_500  # a hundred years: any longer horizon is a typo


def province_scope(ctx: Context, asked: str | None) -> str | None:
    """The province a read is limited to: the officer's own for a provincial officer (asking
    for another is refused), else what was asked (None: every province). No officer, no read
    (``NotSignedIn``)."""
    officer = ctx.actor()
    if officer.province is None:
        return asked
    if asked is not None and asked != officer.province:
        raise OutOfScope(
            f"deny/other-province: {officer.id} sees only province {officer.province}, not {asked}",
            field="province",
        )
    return officer.province


def _check_key_scope(ctx: Context, key: CityKey) -> None:
    officer = ctx.actor()
    if officer.province is not None and key.province != officer.province:
        raise OutOfScope(
            f"deny/other-province: key {key.id} is of province {key.province}; "
            f"{officer.id} sees only province {officer.province}"
        )


def _may(actor: Actor, action: str) -> bool:
    """Whether one of the officer's roles grants ``action`` at all (the scope is the policy's
    decision for each subject when the action is taken)."""
    policy = load_policy()
    return any(action in policy.roles[r].actions for r in actor.roles if r in policy.roles)


def _city(field: str, code: str) -> str:
    if default_divisions().city(code) is None:
        raise InvalidField(
            field, f"{field} {code}: not a city code of the registry (地级市 or 直辖市)"
        )
    return code


def _province(code: str | None) -> str | None:
    if code is not None and default_divisions().province(code) is None:
        raise InvalidField("province", f"province {code}: not a province code of the registry")
    return code


def _filter(ctx: Context, query: ops.KeyQuery) -> queries.KeyFilter:
    states = [s.value for s in KeyState]
    if query.state is not None and query.state not in states:
        raise InvalidField("state", f"state {query.state}: one of {', '.join(states)}")
    classes = [c.name for c in load_policy().city_key_classes]
    if query.key_class is not None and query.key_class not in classes:
        raise InvalidField("key_class", f"key_class {query.key_class}: one of {', '.join(classes)}")
    if query.expiring is not None and not 0 <= query.expiring <= MAX_DAYS:
        raise InvalidField(
            "expiring", f"expiring {query.expiring}: a number of days from 0 to {MAX_DAYS}"
        )
    if query.city is not None:
        _city("city", query.city)
    return queries.KeyFilter(
        province=province_scope(ctx, _province(query.province)),
        city=query.city,
        key_class=query.key_class,
        state=query.state,
        expiring_days=query.expiring,
        renewal_due=query.renewal_due,
        dormant=query.dormant,
        suspended=query.suspended,
        violations=query.violations,
    )


def key_view(
    key: CityKey, now: int, policy: Policy | None = None, awaiting: Sequence[str] = ()
) -> ops.KeyView:
    """The typed view of a key record (the fields of ``ca.citykeys.queries.key_view``);
    ``awaiting``: the holders whose copy awaits destruction at their site."""
    city = default_divisions().city(key.city)
    return ops.KeyView(
        id=key.id or 0,
        label=key.label,
        city=key.city,
        city_name=city.name if city else "",
        province=key.province,
        key_class=key.key_class,
        kind=key.kind,
        generation=key.generation,
        application=key.application_id,
        state=key.state,
        stage=key.stage,
        flags=key_flags(key, now, policy),
        not_before=key.not_before,
        not_after=key.not_after,
        days_left=(key.not_after - now) // DAY,
        delivered_at=key.delivered_at,
        installed_at=key.installed_at,
        activated_at=key.activated_at,
        first_use=key.first_use,
        last_use=key.last_use,
        predecessor=key.predecessor_id,
        successor=key.successor_id,
        supersede_at=key.supersede_at,
        reason=key.reason,
        destroy_after=key.destroy_after,
        destroyed_at=key.destroyed_at,
        copies_awaiting_destruction=list(awaiting),
        open_violations=key.open_violations,
        public_key=key.public_key,
        check_value=key.check_value,
    )


def _views(keys: Sequence[CityKey], now: int, session: Session | None = None) -> list[ops.KeyView]:
    """Views of ``keys``; with ``session``, the destroyed keys' copies awaiting destruction at
    their sites (one query, and none when no key is destroyed)."""
    policy = load_policy()
    destroyed = [k.id for k in keys if k.id is not None and k.state == KeyState.DESTROYED.value]
    awaiting = misuse.awaiting_holders(session, destroyed) if session and destroyed else {}
    return [key_view(k, now, policy, awaiting.get(k.id or 0, ())) for k in keys]


def _application(application: KeyApplication) -> ops.Application:
    return ops.Application(
        id=application.id or 0,
        province=application.province,
        cities=application.cities.split(","),
        applicant=application.applicant,
        state=application.state,
        created_at=application.created_at,
        decided_at=application.decided_at,
    )


def _outcome(outcome: misuse.ActionOutcome) -> ops.ActionOutcome:
    return ops.ActionOutcome(
        action_id=outcome.action_id,
        action=outcome.action,
        state=outcome.state,
        approvals=outcome.approvals,
        required=outcome.required,
        keys=list(outcome.keys),
    )


class _NoTokens:
    """The vault of an action that changes records only: asking it for a token is a fault."""

    def store(self, token_label: str) -> KeyStore:
        raise RuntimeError(f"this key action uses no token (asked for {token_label!r})")


@contextmanager
def _vault(ctx: Context, needed: bool) -> Iterator[Vault]:
    """The ministry's tokens when the action uses them, taken before any row is locked (one
    order of locks: tokens, then rows), else a vault that has none."""
    if not needed:
        yield _NoTokens()
        return
    with ctx.runtime.tokens() as vault:
        yield vault


# -- applications (第九条) --------------------------------------------------------------------
@handles(ops.APPLY)
def apply(ctx: Context, request: ops.ApplyRequest) -> ops.Application:
    actor = ctx.actor()
    if not request.cities:
        raise InvalidField("cities", "cities: name at least one city")
    for index, code in enumerate(request.cities):
        _city(f"cities[{index}]", code)
    return _application(applications.apply(ctx.engine, actor, list(request.cities), ctx.now()))


@handles(ops.APPLICATIONS)
def list_applications(ctx: Context, request: ops.ApplicationsRequest) -> ops.ApplicationList:
    province = province_scope(ctx, None)
    with Session(ctx.engine) as session:
        rows = applications.listing(session, province=province, state=request.state)
    if request.decidable:
        actor = ctx.actor()
        may = _may(actor, applications.APPROVE)
        rows = [a for a in rows if may and a.applicant != actor.id and a.state == "pending"]
    return ops.ApplicationList(applications=[_application(a) for a in rows])


@handles(ops.DECIDE)
def decide(ctx: Context, request: ops.DecideRequest) -> ops.Decision:
    """A decision counts only with the approver's token signature over the request that opened
    the subject (``ca.service.approvals.verify_decision``, refused and audited otherwise); the
    Approval row and the audit event keep that signature and the certificate serial."""
    actor = ctx.actor()
    now = ctx.now()
    signed = verify_decision(
        ctx,
        subject=f"{request.kind} {request.id}",  # as applications and misuse name it
        approve=request.approve,
        at=request.at,
        signature=request.signature,
    )
    if request.kind == "application":
        with deciding(signed):
            decided = applications.decide_application(
                ctx.engine,
                actor,
                request.id,
                approve=request.approve,
                now=now,
                reason=request.reason,
            )
        return ops.Decision(
            kind="application",
            id=request.id,
            state=decided.state,
            application=_application(decided),
        )
    with Session(ctx.engine) as session:
        kind = misuse.action_of(session, request.id)  # an action's kind never changes
    with _vault(ctx, kind == misuse.DESTROY) as vault, deciding(signed):
        outcome = misuse.decide(
            ctx.engine,
            vault,
            actor,
            request.id,
            approve=request.approve,
            now=now,
            reason=request.reason,
            destroy_site_copies=False,  # the ministry's token only; sites destroy their own
        )
    return ops.Decision(
        kind="action", id=request.id, state=outcome.state, outcome=_outcome(outcome)
    )


# -- crash recovery of the key-making operations (issue #14) ----------------------------------
@recoverer(workflow.GENERATE_INTENT)
def _recover_generation(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """A generation whose process died: its unrecorded objects destroyed, the application left
    approved (``ca.citykeys.workflow.recover_city_key_intent``)."""
    with runtime.tokens() as vault:
        workflow.recover_city_key_intent(runtime.engine, vault, intent, actor=actor, now=now)


@recoverer(workflow.RENEW_INTENT)
def _recover_renewal(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """A renewal whose process died: its unrecorded object destroyed, the predecessor as it
    was (no successor), so the key is renewed again by a rerun."""
    with runtime.tokens() as vault:
        workflow.recover_city_key_intent(runtime.engine, vault, intent, actor=actor, now=now)


def _recover_city_key_work(ctx: Context, operation: str, subject: str, now: int) -> None:
    """Before a generation or a renewal: recover what dead runs of either left (any subject:
    their labels are in the same ministry token and may be the ones this run needs), so a
    rerun after a crash just works. Refused (RecoveryFailed) only when this operation's own
    earlier run could not be recovered; another's failure is logged, and refuses this run
    only if it claims one of its labels (IntentBusy, from ``begin_city_key_intent``)."""
    for name in workflow.CITY_KEY_INTENTS:
        for item in recover(ctx.runtime, now=now, operation=name):
            if item.result == "failed" and (item.operation, item.subject) == (operation, subject):
                raise RecoveryFailed(
                    f"{operation} on {subject}: an earlier run left intent {item.intent} that "
                    f"could not be recovered: {item.outcome}"
                )


@handles(ops.GENERATE)
def generate(ctx: Context, request: ops.GenerateRequest) -> ops.KeyList:
    actor = ctx.actor()
    now = ctx.now()
    _recover_city_key_work(
        ctx, workflow.GENERATE_INTENT, workflow.generation_subject(request.application), now
    )
    with ctx.runtime.tokens() as vault:
        keys = workflow.generate(
            ctx.engine,
            vault,
            actor,
            request.application,
            now=now,
            progress=lambda done, total: ctx.progress(
                "generating keys in the ministry token", done, total
            ),
        )
    return ops.KeyList(keys=_views(keys, now))


# -- keys ---------------------------------------------------------------------------------------
@handles(ops.KEYS)
def find_keys(ctx: Context, request: ops.KeysRequest) -> ops.KeyList:
    chosen = _filter(ctx, request)
    if request.limit is not None and request.limit < 1:
        raise InvalidField("limit", f"limit {request.limit}: 1 or more")
    now = ctx.now()
    with Session(ctx.engine) as session:
        keys = queries.find_keys(session, chosen, now=now, limit=request.limit)
        return ops.KeyList(keys=_views(keys, now, session))


@handles(ops.PAGE)
def find_page(ctx: Context, request: ops.PageRequest) -> ops.KeyPage:
    chosen = _filter(ctx, request)
    if not 1 <= request.limit <= MAX_PAGE:
        raise InvalidField("limit", f"limit {request.limit}: 1 to {MAX_PAGE}")
    if len(request.text) > MAX_TEXT:
        raise InvalidField("text", f"text: at most {MAX_TEXT} characters")
    now = ctx.now()
    with Session(ctx.engine) as session:
        keys, total = queries.find_page(
            session,
            chosen,
            now=now,
            text=request.text,
            sort=request.sort,
            descending=request.descending,
            limit=request.limit,
        )
        return ops.KeyPage(keys=_views(keys, now, session), total=total)


@handles(ops.SHOW)
def show(ctx: Context, request: ops.KeyRequest) -> ops.KeyView:
    ctx.actor()  # no officer, no answer (not even whether the key exists)
    now = ctx.now()
    with Session(ctx.engine) as session:
        key = queries.keys_by_id(session, [request.key]).get(request.key)
        if key is None:
            raise UnknownKey(f"no city key {request.key}")
        _check_key_scope(ctx, key)
        return _views([key], now, session)[0]


@handles(ops.SUMMARY)
def summary(ctx: Context, request: ops.SummaryRequest) -> ops.KeySummary:
    province = province_scope(ctx, _province(request.province))
    with Session(ctx.engine) as session:
        counts = queries.summary(session, now=ctx.now(), province=province)
    prefix = "state_"
    return ops.KeySummary(
        total=counts["total"],
        expiring_30=counts["expiring_30"],
        expiring_90=counts["expiring_90"],
        renewal_due=counts["renewal_due"],
        dormant=counts["dormant"],
        suspended=counts["suspended"],
        violations=counts["violations"],
        states={k.removeprefix(prefix): v for k, v in counts.items() if k.startswith(prefix)},
    )


@handles(ops.RENEW)
def renew(ctx: Context, request: ops.KeyRequest) -> ops.KeyView:
    actor = ctx.actor()
    now = ctx.now()
    _recover_city_key_work(ctx, workflow.RENEW_INTENT, renewal.renewal_subject(request.key), now)
    with ctx.runtime.tokens() as vault:
        successor = renewal.renew(ctx.engine, vault, actor, request.key, now=now)
    return key_view(successor, now)


@handles(ops.SWEEP)
def sweep(ctx: Context, _request: Empty) -> ops.SweepResult:
    changed = renewal.sweep(ctx.engine, now=ctx.now())
    return ops.SweepResult(changed=[ops.SweptKey(label=k, state=s) for k, s in changed])


# -- usage reports (第十、十一条) ----------------------------------------------------------------
@handles(ops.USAGE)
def import_usage(ctx: Context, request: ops.UsageRequest) -> ops.UsageResult:
    actor = ctx.actor()
    result = usage_import.import_usage(
        ctx.engine,
        actor,
        request.report,
        request.format,
        source=request.source or "(sent to the service)",
        now=ctx.now(),
    )
    return ops.UsageResult(
        report=result.report,
        accepted=result.accepted,
        refused=[
            ops.RefusedRow(line=e.line, field=e.field, problem=e.problem) for e in result.refused
        ],
        violations=[
            ops.UsageViolation(
                line=v.row.line,
                key=v.row.key,
                reason=v.reason,
                granted=v.granted_city,
                used_in=v.row.used_in,
            )
            for v in result.violations
        ],
        activated=list(result.activated),
    )


# -- key actions under dual control (第十、十一条) -----------------------------------------------
def _request_action(ctx: Context, request: ops.KeyActionRequest, action: str) -> ops.ActionOutcome:
    actor = ctx.actor()
    now = ctx.now()
    if bool(request.keys) == (request.city is not None):
        raise InvalidField("keys", "keys: name the keys or a city (one of the two)")
    key_ids = list(request.keys)
    if request.city is not None:
        city = _city("city", request.city)
        allowed(actor, action, city, None, now)  # another province's city: refused, not listed
        with Session(ctx.engine) as session:
            key_ids = misuse.keys_of_city(session, city, action)
    with _vault(ctx, False) as vault:  # suspend, resume and revoke change records only
        outcome = misuse.request(
            ctx.engine, vault, actor, action, key_ids, reason=request.reason, now=now
        )
    return _outcome(outcome)


@handles(ops.SUSPEND)
def suspend(ctx: Context, request: ops.KeyActionRequest) -> ops.ActionOutcome:
    return _request_action(ctx, request, misuse.SUSPEND)


@handles(ops.RESUME)
def resume(ctx: Context, request: ops.KeyActionRequest) -> ops.ActionOutcome:
    return _request_action(ctx, request, misuse.RESUME)


@handles(ops.REVOKE)
def revoke(ctx: Context, request: ops.KeyActionRequest) -> ops.ActionOutcome:
    return _request_action(ctx, request, misuse.REVOKE)


def _ids(keys: Sequence[CityKey], what: str) -> list[int]:
    ids = [k.id for k in keys if k.id is not None]
    if not ids:
        raise BadInput(f"no key is {what}")
    return ids


@handles(ops.CLEANUP)
def cleanup(ctx: Context, request: ops.CleanupRequest) -> ops.ActionOutcome:
    actor = ctx.actor()
    now = ctx.now()
    key_ids = list(request.keys)
    if not key_ids:
        with Session(ctx.engine) as session:
            key_ids = _ids(misuse.dormant_keys(session, now, actor.province), "dormant")
    with _vault(ctx, False) as vault:  # a revocation: records only
        outcome = misuse.request(
            ctx.engine, vault, actor, misuse.CLEANUP, key_ids, reason=request.reason, now=now
        )
    return _outcome(outcome)


@handles(ops.DESTROY_MATERIAL)
def destroy_material(ctx: Context, request: ops.DestroyRequest) -> ops.ActionOutcome:
    actor = ctx.actor()
    now = ctx.now()
    key_ids = list(request.keys)
    if not key_ids:
        with Session(ctx.engine) as session:
            due = misuse.destroy_due(session, now, actor.province)
            key_ids = _ids(due, "due for destruction")
    with _vault(ctx, True) as vault:  # the ministry's token only; sites destroy their own
        outcome = misuse.request(
            ctx.engine,
            vault,
            actor,
            misuse.DESTROY,
            key_ids,
            reason="grace period ended",
            now=now,
            destroy_site_copies=False,
        )
    return _outcome(outcome)


@handles(ops.ACTIONS)
def pending_actions(ctx: Context, request: ops.ActionsRequest) -> ops.PendingActions:
    province = province_scope(ctx, None)
    actor = ctx.actor() if request.decidable else None
    with Session(ctx.engine) as session:
        rows = misuse.pending_actions(session)
        wanted = {a.id: [int(k) for k in a.key_ids.split(",") if k] for a in rows if a.id}
        keys = queries.keys_by_id(session, [k for ids in wanted.values() for k in ids])
        approvals = misuse.approvals_of(session, list(wanted))
    found: list[ops.PendingActionView] = []
    for action in rows:
        if action.id is None:
            continue
        of = [keys[k] for k in wanted[action.id] if k in keys]
        if province is not None and any(k.province != province for k in of):
            continue
        if actor is not None and (
            action.requested_by == actor.id or not _may(actor, action.action)
        ):
            continue
        found.append(
            ops.PendingActionView(
                id=action.id,
                action=action.action,
                keys=wanted[action.id],
                labels=[k.label for k in of],
                reason=action.reason,
                requested_by=action.requested_by,
                requested_at=action.requested_at,
                required=action.required,
                approvals=approvals[action.id],
            )
        )
    return ops.PendingActions(actions=found)


# -- report and retention -----------------------------------------------------------------------
@handles(ops.REPORT)
def key_report(ctx: Context, request: ops.ReportRequest) -> ops.KeyReport:
    province = province_scope(ctx, _province(request.province))
    now = ctx.now()
    with Session(ctx.engine) as session:
        keys = queries.find_keys(session, queries.KeyFilter(province=province), now=now)
        views = _views(keys, now, session)
    return ops.KeyReport(
        generated_at=now, title=report.TITLE, scope=report.report_scope(province), keys=views
    )


@handles(ops.PURGE)
def purge(ctx: Context, _request: Empty) -> ops.PurgeResult:
    purged = queries.purge_records(ctx.engine, ctx.actor(), now=ctx.now())
    return ops.PurgeResult(keys=list(purged.keys), usage_reports=purged.usage_reports)
