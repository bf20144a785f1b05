"""``jtca city``: the city key lifecycle (一城一密, 第九至十一条).

Apply → approve → generate → deliver → import → hand on → install; renew; usage reports;
suspend, resume, revoke, dormant cleanup and material destruction under dual control; the
expiry queries and the report. Every command acts as the officer of this machine's session
(``jtca login``); the policy decides what that officer may do, and the reads show a provincial
officer their own province only. An approval or a rejection is signed with the approver's own
token over exactly the request it decides (``ca.cli.desk.decide``).

Each command is one round trip to the authority service (``ca.ops.city``): the use case decides;
this module reads the files the officer hands over, writes the ones asked for, and prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from ca.cli import site
from ca.cli.city_common import KEY_HELP, _emit, call, key_ids, key_json
from ca.cli.desk import add_pin_source
from ca.core.clock import iso_utc
from ca.core.errors import BadInput
from ca.core.vocabulary import STAGE_WORDS, number_ref, plural, request_ref, stage_name, stage_word
from ca.ops import city as ops
from ca.ops.base import Empty

if TYPE_CHECKING:  # imported when a report is written (jtca --help loads no drawing code)
    from ca.citykeys.report_format import ReportKey

DECIDE_KINDS: Final = ("application", "request", "action")  # "action": the old word for a request

# request fields → the options that set them, to name an option in a refusal
OPTIONS: Final = {
    "cities": "--city",
    "city": "--city",
    "province": "--province",
    "key_class": "--class",
    "state": "--state",
    "expiring": "--expiring",
    "limit": "--limit",
    "keys": "KEY",
    "reason": "--reason",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "city", help="city keys (一城一密): apply, deliver, renew, suspend, clean up"
    )
    csub = p.add_subparsers(dest="city_command", metavar="COMMAND", parser_class=type(p))
    csub.required = True

    def command(name: str, text: str, handler: Any) -> Any:
        q = csub.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(handler=handler)
        return q

    site.register(command)  # transport-key, deliver, import: ca/cli/site.py

    q = command("apply", "a province applies for its cities' key sets (第九条)", cmd_apply)
    q.add_argument("--city", action="append", required=True, metavar="CODE")

    command("applications", "applications and their state", cmd_applications)

    for name, text in (("approve", "approve"), ("reject", "reject")):
        q = command(
            name,
            f"{text} a pending application or request (a key action; dual control): "
            f"jtca city {name} application N, jtca city {name} request N",
            cmd_decide,
        )
        # no argparse choices: an unknown option (--actor X) is then said as such, not as X
        q.add_argument(
            "kind",
            nargs="?",
            metavar="application|request",
            help="an application, or a request (a key action awaiting approvers: city actions)",
        )
        q.add_argument("number", nargs="?", type=int, metavar="N", help="its number")
        # the shape before one positional shape for ids (issue #17): deprecated, still works
        q.add_argument("--application", type=int, metavar="N", help=argparse.SUPPRESS)
        q.add_argument("--action", type=int, metavar="N", help=argparse.SUPPRESS)
        q.add_argument("--reason", default="", help="required to reject")
        add_pin_source(q)
        q.set_defaults(approve=name == "approve")

    q = command(
        "generate", "generate an approved application's keys in the ministry token", cmd_generate
    )
    q.add_argument("application", type=int)

    q = command(
        "keys",
        "city keys: filter for expiring, dormant, suspended, violations",
        cmd_keys,
    )
    q.add_argument("--province")
    q.add_argument("--city")
    q.add_argument("--class", dest="key_class")
    q.add_argument("--state")
    q.add_argument(
        "--stage",
        metavar="STAGE",
        help="where the key is on its way: "
        + ", ".join(STAGE_WORDS.values())
        + " (the long names, e.g. held-by-province, too)",
    )
    q.add_argument("--expiring", type=int, metavar="DAYS", help="ending within DAYS days")
    q.add_argument("--renewal-due", action="store_true")
    q.add_argument("--dormant", action="store_true")
    q.add_argument("--suspended", action="store_true")
    q.add_argument("--violations", action="store_true")
    q.add_argument("--limit", type=int)

    q = command("show", "one key, whole", cmd_show)
    q.add_argument("key", metavar="KEY", help=KEY_HELP)

    q = command("summary", "counts for the dashboard", cmd_summary)
    q.add_argument("--province")

    q = command("renew", "make an active key's successor (in its renewal window)", cmd_renew)
    q.add_argument("key", metavar="KEY", help=KEY_HELP)

    command("sweep", "supersede and expire keys whose time has come", cmd_sweep)

    q = command("usage", "import an activation and usage report (CSV or JSON)", cmd_usage)
    q.add_argument("report", type=Path)
    q.add_argument("--format", choices=["csv", "json"], help="default: from the file name")

    for name in ("suspend", "resume", "revoke"):
        q = command(name, f"{name} keys, or all of a city's keys (第十一条)", cmd_misuse)
        add_keys(q)
        q.add_argument("--city", metavar="CODE", help="every key of this city instead")
        q.add_argument("--reason", required=True)
        q.set_defaults(operation=name)

    q = command(
        "cleanup", "revoke dormant keys (第十条); default: every dormant key in scope", cmd_cleanup
    )
    add_keys(q)
    q.add_argument("--reason", required=True)

    q = command(
        "destroy-material",
        "destroy revoked/deactivated keys' material after the grace period; default: every key due",
        cmd_destroy,
    )
    add_keys(q)

    command("actions", "requests (key actions) awaiting approvers", cmd_actions)

    q = command("report", "the expiry report: report.csv, report.md, timeline.png", cmd_report)
    q.add_argument("--out", type=Path, required=True, metavar="DIR")
    q.add_argument("--province")

    command("purge", "delete records whose retention period has ended (第二十九条)", cmd_purge)


# -- helpers -------------------------------------------------------------------------------
def add_keys(q: argparse.ArgumentParser) -> None:
    """Keys named by position (ids or labels); ``--key`` is the deprecated spelling."""
    q.add_argument("keys", nargs="*", metavar="KEY", help=KEY_HELP)
    q.add_argument("--key", action="append", default=[], help=argparse.SUPPRESS)


def named_keys(args: argparse.Namespace) -> list[int]:
    """The ids of the keys given by position and by the old ``--key``."""
    return key_ids(args, [*args.keys, *args.key])


def _outcome(args: argparse.Namespace, outcome: ops.ActionOutcome) -> int:
    data = {
        "action_id": outcome.action_id,
        "action": outcome.action,
        "state": outcome.state,
        "approvals": outcome.approvals,
        "required": outcome.required,
        "keys": list(outcome.keys),
    }
    if outcome.state == "pending" and outcome.action_id is not None:
        more = plural(outcome.required - outcome.approvals, "more approver")
        text = (
            f"{outcome.action} of {', '.join(outcome.keys)}: "
            f"{request_ref(outcome.action_id)} awaits {more}"
        )
    else:
        text = f"{outcome.action} of {', '.join(outcome.keys)}: {outcome.state}"
    _emit(args, data, text)
    return 0


# -- commands ------------------------------------------------------------------------------
def cmd_apply(args: argparse.Namespace) -> int:
    application = call(args, ops.APPLY, ops.ApplyRequest(cities=args.city), OPTIONS)
    data = {"application": application.id, "cities": args.city, "state": application.state}
    text = f"{number_ref('application', application.id)} for {', '.join(args.city)}: pending"
    _emit(args, data, text)
    return 0


def cmd_applications(args: argparse.Namespace) -> int:
    rows = call(args, ops.APPLICATIONS, ops.ApplicationsRequest()).applications
    data = [
        {
            "id": a.id,
            "province": a.province,
            "cities": list(a.cities),
            "applicant": a.applicant,
            "state": a.state,
            "created_at": iso_utc(a.created_at),
        }
        for a in rows
    ]
    text = "\n".join(
        f"{a.id:>5}  {a.state:<10} {a.province}  {','.join(a.cities)}  by {a.applicant}"
        for a in rows
    )
    _emit(args, data, text or "no applications")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from ca.cli import desk

    kind, number = _decided(args)
    client = desk.connect()
    try:
        at, signature = desk.decide(
            client, f"{kind} {number}", approve=args.approve, pin_spec=args.pin_source
        )
    finally:
        client.close()
    request = ops.DecideRequest(
        kind=kind,
        id=number,
        approve=args.approve,
        reason=args.reason,
        at=at,
        signature=signature,
    )
    decided = call(args, ops.DECIDE, request, OPTIONS)
    if decided.outcome is not None:
        return _outcome(args, decided.outcome)
    data = {"application": decided.id, "state": decided.state}
    _emit(args, data, f"{number_ref('application', decided.id)}: {decided.state}")
    return 0


def _decided(args: argparse.Namespace) -> tuple[Literal["application", "action"], int]:
    """What ``approve``/``reject`` decide: ``application N`` or ``request N`` (a key action),
    or the deprecated ``--application N``/``--action N``; exactly one."""
    given: list[tuple[Literal["application", "action"], int]] = []
    if args.kind is not None or args.number is not None:
        if args.kind is None or args.number is None or args.kind not in DECIDE_KINDS:
            raise BadInput(
                f"say what to decide: jtca city {args.city_command} application N, "
                f"or jtca city {args.city_command} request N"
            )
        given.append(("application" if args.kind == "application" else "action", args.number))
    if args.application is not None:
        given.append(("application", args.application))
    if args.action is not None:
        given.append(("action", args.action))
    if len(given) != 1:
        raise BadInput(
            f"name one thing to decide: jtca city {args.city_command} application N, "
            f"or jtca city {args.city_command} request N"
        )
    return given[0]


def cmd_generate(args: argparse.Namespace) -> int:
    request = ops.GenerateRequest(application=args.application)
    keys = call(args, ops.GENERATE, request, progress=True).keys
    data = [{"id": k.id, "label": k.label, "city": k.city, "class": k.key_class} for k in keys]
    _emit(args, data, "\n".join(f"generated {k.label} (key {k.id})" for k in keys))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    stage = None
    if args.stage is not None:
        stage = stage_name(args.stage)
        if stage is None:
            raise BadInput(
                f"--stage {args.stage}: not a stage; one of {', '.join(STAGE_WORDS.values())}"
            )
    request = ops.KeysRequest(
        province=args.province,
        city=args.city,
        key_class=args.key_class,
        state=args.state,
        expiring=args.expiring,
        renewal_due=args.renewal_due,
        dormant=args.dormant,
        suspended=args.suspended,
        violations=args.violations,
        limit=None if stage else args.limit,  # the stage is chosen here: cut after it
    )
    data = [key_json(k) for k in call(args, ops.KEYS, request, OPTIONS).keys]
    if stage is not None:
        data = [d for d in data if d["stage"] == stage][: args.limit]
    lines = [
        f"{d['id']:>6}  {d['label']:<24} {d['city_name']:<8} {d['state']:<11} "
        f"{stage_word(d['stage']):<12} {d['not_after'][:10]}  {','.join(d['flags'])}"
        for d in data
    ]
    _emit(args, data, "\n".join(lines) or "no keys match")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    (key,) = key_ids(args, [args.key])
    view = key_json(call(args, ops.SHOW, ops.KeyRequest(key=key)))
    shown = view | {"stage": stage_word(view["stage"])}
    _emit(args, view, "\n".join(f"{k:<16} {_text(v)}" for k, v in shown.items()))
    return 0


def _text(value: object) -> str:
    """A field for people: a list as comma-separated values, nothing as '-'."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def cmd_summary(args: argparse.Namespace) -> int:
    found = call(args, ops.SUMMARY, ops.SummaryRequest(province=args.province), OPTIONS)
    counts: dict[str, int] = found.model_dump(exclude={"states"})
    counts |= {f"state_{state}": n for state, n in found.states.items()}
    _emit(args, counts, "\n".join(f"{k:<22} {v}" for k, v in counts.items()))
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    (key,) = key_ids(args, [args.key])
    new = call(args, ops.RENEW, ops.KeyRequest(key=key))
    data = {"successor": new.id, "label": new.label, "not_after": iso_utc(new.not_after)}
    _emit(
        args,
        data,
        f"renewed: successor {new.label} (key {new.id}), valid to "
        f"{iso_utc(new.not_after)}; deliver it like the first",
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    changed = call(args, ops.SWEEP, Empty()).changed
    data = [{"label": k.label, "state": k.state} for k in changed]
    _emit(args, data, "\n".join(f"{k.label}: {k.state}" for k in changed) or "nothing due")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    kind = args.format or args.report.suffix.lower().lstrip(".")
    if kind not in ("csv", "json"):
        raise BadInput(f"{args.report}: say --format csv or --format json")
    try:
        text = args.report.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {args.report}: {exc}") from None
    request = ops.UsageRequest(report=text, format=kind, source=str(args.report))
    result = call(args, ops.USAGE, request)
    data = {
        "report": result.report,
        "accepted": result.accepted,
        "refused": [
            {"line": e.line, "field": e.field, "problem": e.problem} for e in result.refused
        ],
        "violations": [
            {
                "line": v.line,
                "key": v.key,
                "reason": v.reason,
                "granted": v.granted,
                "used_in": v.used_in,
            }
            for v in result.violations
        ],
        "activated": list(result.activated),
    }
    lines = [
        f"{plural(result.accepted, 'row')} kept, {len(result.refused)} refused, "
        f"{plural(len(result.violations), 'violation')}, "
        f"{plural(len(result.activated), 'key')} activated"
    ]
    lines += [f"refused: line {e.line}, {e.field}: {e.problem}" for e in result.refused]
    lines += [
        f"violation: line {v.line}, {v.key}: {v.reason} (used in {v.used_in}, "
        f"granted {v.granted or '-'}) — flagged for suspension"
        for v in result.violations
    ]
    _emit(args, data, "\n".join(lines))
    return 3 if result.refused else 0


_KEY_ACTIONS: Final = {"suspend": ops.SUSPEND, "resume": ops.RESUME, "revoke": ops.REVOKE}


def cmd_misuse(args: argparse.Namespace) -> int:
    keys = named_keys(args)
    if bool(keys) == (args.city is not None):
        raise BadInput(f"name the keys (KEY …) or --city CODE to {args.operation}, not both")
    request = ops.KeyActionRequest(keys=keys, city=args.city, reason=args.reason)
    return _outcome(args, call(args, _KEY_ACTIONS[args.operation], request, OPTIONS))


def cmd_cleanup(args: argparse.Namespace) -> int:
    request = ops.CleanupRequest(keys=named_keys(args), reason=args.reason)
    return _outcome(args, call(args, ops.CLEANUP, request, OPTIONS))


def cmd_destroy(args: argparse.Namespace) -> int:
    request = ops.DestroyRequest(keys=named_keys(args))
    return _outcome(args, call(args, ops.DESTROY_MATERIAL, request, OPTIONS))


def cmd_actions(args: argparse.Namespace) -> int:
    rows = call(args, ops.ACTIONS, ops.ActionsRequest()).actions
    data = [
        {
            "id": a.id,
            "action": a.action,
            "keys": list(a.keys),
            "reason": a.reason,
            "requested_by": a.requested_by,
            "requested_at": iso_utc(a.requested_at),
            "required": a.required,
        }
        for a in rows
    ]
    text = "\n".join(
        f"{request_ref(a.id):<11} {d['action']:<26} keys {d['keys']} by {d['requested_by']}: "
        f"{d['reason']}"
        for a, d in zip(rows, data, strict=True)
    )
    _emit(args, data, text or "no pending requests")
    return 0


def report_keys(keys: Iterable[ops.KeyView]) -> list[ReportKey]:
    """The service's key views as ``ca.citykeys.report_format`` draws them (``jtca city
    report``)."""
    from ca.citykeys.report_format import ReportKey

    return [
        ReportKey(
            key_id=k.id,
            label=k.label,
            city=k.city,
            city_name=k.city_name,
            province=k.province,
            key_class=k.key_class,
            state=k.state,
            stage=k.stage,
            not_before=k.not_before,
            not_after=k.not_after,
            flags=tuple(k.flags),
        )
        for k in keys
    ]


def cmd_report(args: argparse.Namespace) -> int:
    from ca.citykeys.report_format import write_report

    found = call(args, ops.REPORT, ops.ReportRequest(province=args.province), OPTIONS)
    rows = report_keys(found.keys)
    written = write_report(
        args.out, rows, now=found.generated_at, title=found.title, scope=found.scope
    )
    data = {name: str(path) for name, path in written.items()}
    _emit(args, data, "\n".join(f"wrote {path}" for path in written.values()))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    purged = call(args, ops.PURGE, Empty())
    data = {"keys": list(purged.keys), "usage_reports": purged.usage_reports}
    _emit(
        args,
        data,
        f"purged {plural(len(purged.keys), 'key record')} and "
        f"{plural(purged.usage_reports, 'usage report')} past retention",
    )
    return 0
