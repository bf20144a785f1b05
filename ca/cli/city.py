"""``jtca city``: the city key lifecycle (一城一密, 第九至十一条).

Apply → approve → generate → deliver → import → hand on → install; renew; usage reports;
suspend, resume, revoke, dormant cleanup and material destruction under dual control; the
expiry queries and the report. Every command names its officer with ``--actor`` (a registered
officer, jtca officer list); the policy decides what that officer may do.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from ca.applications import apply, decide_application
from ca.authority import open_authority
from ca.citykeys import misuse, queries, renewal, usage, workflow
from ca.cli import site
from ca.cli.city_common import _actor, _emit, _now
from ca.clock import iso_utc
from ca.errors import BadInput
from ca.officers import actor_of
from ca.store.models import CityKey, KeyApplication, PendingAction
from ca.tokens import EmbeddedVault
from policies.rules import Actor


def register(sub: Any) -> None:
    p = sub.add_parser(
        "city", help="city keys (一城一密): apply, deliver, renew, suspend, clean up"
    )
    csub = p.add_subparsers(dest="city_command", metavar="COMMAND", parser_class=type(p))
    csub.required = True

    def command(name: str, text: str, handler: Any, *, actor: bool = True) -> Any:
        q = csub.add_parser(name, help=text, description=text)
        if actor:
            q.add_argument("--actor", required=True, help="a registered officer")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(handler=handler)
        return q

    site.register(command)  # transport-key, deliver, import: ca/cli/site.py

    q = command("apply", "a province applies for its cities' key sets (第九条)", cmd_apply)
    q.add_argument("--city", action="append", required=True, metavar="CODE")

    command("applications", "applications and their state", cmd_applications, actor=False)

    for name, text in (("approve", "approve"), ("reject", "reject")):
        q = command(name, f"{text} a pending application or key action (dual control)", cmd_decide)
        which = q.add_mutually_exclusive_group(required=True)
        which.add_argument("--application", type=int, metavar="N")
        which.add_argument("--action", type=int, metavar="N")
        q.add_argument("--reason", default="", help="required to reject")
        q.set_defaults(approve=name == "approve")

    q = command(
        "generate", "generate an approved application's keys in the ministry token", cmd_generate
    )
    q.add_argument("application", type=int)

    q = command(
        "keys",
        "city keys: filter for expiring, dormant, suspended, violations",
        cmd_keys,
        actor=False,
    )
    q.add_argument("--actor", help="limit to what this officer's province may see")
    q.add_argument("--province")
    q.add_argument("--city")
    q.add_argument("--class", dest="key_class")
    q.add_argument("--state")
    q.add_argument("--expiring", type=int, metavar="DAYS", help="ending within DAYS days")
    q.add_argument("--renewal-due", action="store_true")
    q.add_argument("--dormant", action="store_true")
    q.add_argument("--suspended", action="store_true")
    q.add_argument("--violations", action="store_true")
    q.add_argument("--limit", type=int)

    q = command("show", "one key, whole", cmd_show, actor=False)
    q.add_argument("key", type=int)

    command("summary", "counts for the dashboard", cmd_summary, actor=False).add_argument(
        "--province"
    )

    q = command("renew", "make an active key's successor (in its renewal window)", cmd_renew)
    q.add_argument("key", type=int)

    command("sweep", "supersede and expire keys whose time has come", cmd_sweep, actor=False)

    q = command("usage", "import an activation and usage report (CSV or JSON)", cmd_usage)
    q.add_argument("report", type=Path)
    q.add_argument("--format", choices=["csv", "json"], help="default: from the file name")

    for name in ("suspend", "resume", "revoke"):
        q = command(name, f"{name} keys, or all of a city's keys (第十一条)", cmd_misuse)
        which = q.add_mutually_exclusive_group(required=True)
        which.add_argument("--key", type=int, action="append", metavar="ID")
        which.add_argument("--city", metavar="CODE")
        q.add_argument("--reason", required=True)
        q.set_defaults(action=f"city-key.{name}")

    q = command(
        "cleanup", "revoke dormant keys (第十条); default: every dormant key in scope", cmd_cleanup
    )
    q.add_argument("--key", type=int, action="append", metavar="ID")
    q.add_argument("--reason", required=True)

    q = command(
        "destroy-material",
        "destroy revoked/deactivated keys' material after the grace period; default: every key due",
        cmd_destroy,
    )
    q.add_argument("--key", type=int, action="append", metavar="ID")

    command("actions", "key actions awaiting approvers", cmd_actions, actor=False)

    q = command(
        "report", "the expiry report: report.csv, report.md, timeline.png", cmd_report, actor=False
    )
    q.add_argument("--out", type=Path, required=True, metavar="DIR")
    q.add_argument("--province")

    command("purge", "delete records whose retention period has ended (第二十九条)", cmd_purge)


# -- helpers -------------------------------------------------------------------------------
def _outcome(args: argparse.Namespace, outcome: misuse.ActionOutcome) -> int:
    data = {
        "action_id": outcome.action_id,
        "action": outcome.action,
        "state": outcome.state,
        "approvals": outcome.approvals,
        "required": outcome.required,
        "keys": list(outcome.keys),
    }
    if outcome.state == "pending":
        text = (
            f"{outcome.action} of {', '.join(outcome.keys)}: action {outcome.action_id} awaits "
            f"{outcome.required - outcome.approvals} more approver(s)"
        )
    else:
        text = f"{outcome.action} of {', '.join(outcome.keys)}: {outcome.state}"
    _emit(args, data, text)
    return 0


# -- commands ------------------------------------------------------------------------------
def cmd_apply(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    application = apply(engine, actor, args.city, _now())
    data = {"application": application.id, "cities": args.city, "state": application.state}
    _emit(args, data, f"application {application.id} for {', '.join(args.city)}: pending")
    return 0


def cmd_applications(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        rows = session.exec(select(KeyApplication).order_by(col(KeyApplication.id))).all()
        data = [
            {
                "id": a.id,
                "province": a.province,
                "cities": a.cities.split(","),
                "applicant": a.applicant,
                "state": a.state,
                "created_at": iso_utc(a.created_at),
            }
            for a in rows
        ]
    text = "\n".join(
        f"{a.id:>5}  {a.state:<10} {a.province}  {a.cities}  by {a.applicant}" for a in rows
    )
    _emit(args, data, text or "no applications")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    if args.application is not None:
        application = decide_application(
            engine, actor, args.application, approve=args.approve, now=_now(), reason=args.reason
        )
        data = {"application": application.id, "state": application.state}
        _emit(args, data, f"application {application.id}: {application.state}")
        return 0
    with EmbeddedVault() as vault:
        outcome = misuse.decide(
            engine, vault, actor, args.action, approve=args.approve, now=_now(), reason=args.reason
        )
    return _outcome(args, outcome)


def cmd_generate(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    with EmbeddedVault() as vault:
        keys = workflow.generate(engine, vault, actor, args.application, now=_now())
    data = [{"id": k.id, "label": k.label, "city": k.city, "class": k.key_class} for k in keys]
    _emit(args, data, "\n".join(f"generated {k.label} (key {k.id})" for k in keys))
    return 0


def _check_city(code: str | None, option: str = "--city") -> None:
    from ca.registry.divisions import default_divisions

    if code is not None and default_divisions().city(code) is None:
        raise BadInput(f"{option} {code}: not a city code of the registry (地级市 or 直辖市)")


def _filter(args: argparse.Namespace) -> queries.KeyFilter:
    from ca.lifecycle import KeyState
    from ca.registry.divisions import default_divisions
    from ca.signing import load_policy

    if args.state is not None and args.state not in {s.value for s in KeyState}:
        raise BadInput(f"--state {args.state}: one of {', '.join(s.value for s in KeyState)}")
    classes = [c.name for c in load_policy().city_key_classes]
    if args.key_class is not None and args.key_class not in classes:
        raise BadInput(f"--class {args.key_class}: one of {', '.join(classes)}")
    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit {args.limit}: 1 or more")
    _check_city(args.city)
    if args.province is not None and default_divisions().province(args.province) is None:
        raise BadInput(f"--province {args.province}: not a province code of the registry")
    province = args.province
    if getattr(args, "actor", None):
        actor = actor_of(open_authority().engine, args.actor)
        if actor.province is not None:
            if province is not None and province != actor.province:
                raise BadInput(f"--province {province}: {args.actor} sees only {actor.province}")
            province = actor.province
    return queries.KeyFilter(
        province=province,
        city=args.city,
        key_class=args.key_class,
        state=args.state,
        expiring_days=args.expiring,
        renewal_due=args.renewal_due,
        dormant=args.dormant,
        suspended=args.suspended,
        violations=args.violations,
    )


def cmd_keys(args: argparse.Namespace) -> int:
    if args.expiring is not None and args.expiring < 0:
        raise BadInput(f"--expiring {args.expiring}: a number of days, 0 or more")
    chosen = _filter(args)
    now = _now()
    with Session(open_authority().engine) as session:
        keys = queries.find_keys(session, chosen, now=now, limit=args.limit)
        data = [queries.key_view(k, now) for k in keys]
    lines = [
        f"{d['id']:>6}  {d['label']:<24} {d['city_name']:<8} {d['state']:<11} {d['stage']:<22} "
        f"{d['not_after'][:10]}  {','.join(d['flags'])}"
        for d in data
    ]
    _emit(args, data, "\n".join(lines) or "no keys match")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ca.citykeys.common import get_key

    with Session(open_authority().engine) as session:
        view = queries.key_view(get_key(session, args.key, lock=False), _now())
    _emit(args, view, "\n".join(f"{k:<16} {v}" for k, v in view.items()))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        counts = queries.summary(session, now=_now(), province=args.province)
    _emit(args, counts, "\n".join(f"{k:<22} {v}" for k, v in counts.items()))
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    with EmbeddedVault() as vault:
        new = renewal.renew(engine, vault, actor, args.key, now=_now())
    data = {"successor": new.id, "label": new.label, "not_after": iso_utc(new.not_after)}
    _emit(
        args,
        data,
        f"renewed: successor {new.label} (key {new.id}), valid to "
        f"{iso_utc(new.not_after)}; deliver it like the first",
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    changed = renewal.sweep(open_authority().engine, now=_now())
    data = [{"label": label, "state": state} for label, state in changed]
    _emit(args, data, "\n".join(f"{label}: {state}" for label, state in changed) or "nothing due")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    kind = args.format or args.report.suffix.lower().lstrip(".")
    if kind not in ("csv", "json"):
        raise BadInput(f"{args.report}: say --format csv or --format json")
    try:
        text = args.report.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {args.report}: {exc}") from None
    result = usage.import_usage(engine, actor, text, kind, source=str(args.report), now=_now())
    data = {
        "report": result.report,
        "accepted": result.accepted,
        "refused": [
            {"line": e.line, "field": e.field, "problem": e.problem} for e in result.refused
        ],
        "violations": [
            {
                "line": v.row.line,
                "key": v.row.key,
                "reason": v.reason,
                "granted": v.granted_city,
                "used_in": v.row.used_in,
            }
            for v in result.violations
        ],
        "activated": result.activated,
    }
    lines = [
        f"{result.accepted} row(s) kept, {len(result.refused)} refused, "
        f"{len(result.violations)} violation(s), {len(result.activated)} key(s) activated"
    ]
    lines += [f"refused: {e}" for e in result.refused]
    lines += [
        f"violation: line {v.row.line}, {v.row.key}: {v.reason} (used in {v.row.used_in}, "
        f"granted {v.granted_city or '-'}) — flagged for suspension"
        for v in result.violations
    ]
    _emit(args, data, "\n".join(lines))
    return 3 if result.refused else 0


def cmd_misuse(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    key_ids = args.key
    if args.city is not None:
        _check_city(args.city)
        with Session(engine) as session:
            key_ids = misuse.keys_of_city(session, args.city, args.action)
    with EmbeddedVault() as vault:
        outcome = misuse.request(
            engine, vault, actor, args.action, key_ids, reason=args.reason, now=_now()
        )
    return _outcome(args, outcome)


def _scoped(actor: Actor, keys: list[CityKey], what: str) -> list[int]:
    ids = [k.id for k in keys if k.id is not None]
    if not ids:
        raise BadInput(f"no key is {what}")
    return ids


def cmd_cleanup(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    now = _now()
    key_ids = args.key
    if not key_ids:
        with Session(engine) as session:
            key_ids = _scoped(actor, misuse.dormant_keys(session, now, actor.province), "dormant")
    with EmbeddedVault() as vault:
        outcome = misuse.request(
            engine, vault, actor, misuse.CLEANUP, key_ids, reason=args.reason, now=now
        )
    return _outcome(args, outcome)


def cmd_destroy(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    now = _now()
    key_ids = args.key
    if not key_ids:
        with Session(engine) as session:
            key_ids = _scoped(
                actor, misuse.destroy_due(session, now, actor.province), "due for destruction"
            )
    with EmbeddedVault() as vault:
        outcome = misuse.request(
            engine, vault, actor, misuse.DESTROY, key_ids, reason="grace period ended", now=now
        )
    return _outcome(args, outcome)


def cmd_actions(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        rows: list[PendingAction] = misuse.pending_actions(session)
        data = [
            {
                "id": a.id,
                "action": a.action,
                "keys": [int(k) for k in a.key_ids.split(",")],
                "reason": a.reason,
                "requested_by": a.requested_by,
                "requested_at": iso_utc(a.requested_at),
                "required": a.required,
            }
            for a in rows
        ]
    text = "\n".join(
        f"{d['id']:>5}  {d['action']:<26} keys {d['keys']} by {d['requested_by']}: {d['reason']}"
        for d in data
    )
    _emit(args, data, text or "no pending actions")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ca.citykeys.report import write_city_report

    now = _now()
    with Session(open_authority().engine) as session:
        written = write_city_report(session, args.out, now=now, province=args.province)
    data = {name: str(path) for name, path in written.items()}
    _emit(args, data, "\n".join(f"wrote {path}" for path in written.values()))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    purged = queries.purge_records(engine, actor, now=_now())
    data = {"keys": list(purged.keys), "usage_reports": purged.usage_reports}
    _emit(
        args,
        data,
        f"purged {len(purged.keys)} key record(s) and {purged.usage_reports} "
        "usage report(s) past retention",
    )
    return 0
