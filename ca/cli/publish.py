"""``jtca publish`` (the publisher: unattended, on a timer) and ``jtca lists`` (history, the
terminal-side check, operators and their acknowledgments, emergency publication)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from ca.authority import open_authority
from ca.clock import SystemClock, iso_utc
from ca.errors import BadInput
from ca.lists.asn1 import ListType
from ca.officers import actor_of
from ca.publish import acks, emergency, publisher
from ca.store.models import CertificateRecord
from ca.tokens import state_dir

LIST_CHOICES = [t.value for t in ListType]


def _key_options(q: argparse.ArgumentParser) -> None:
    pins = q.add_mutually_exclusive_group()
    pins.add_argument("--share", action="append", help="root token PIN share (M of N)")
    pins.add_argument("--pin-source", metavar="SPEC", help="file:PATH or env:VAR (unattended)")
    q.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: embedded)")


def register(sub: Any) -> None:
    q = sub.add_parser(
        "publish",
        help="build, sign and publish the signed lists (idempotent; for a timer)",
        description="Publish each list whose content changed or whose nextUpdate nears; "
        "every version is kept; a lock makes two runs at once safe.",
    )
    q.add_argument("--actor", required=True, help="a registered officer with list.publish")
    q.add_argument("--out", type=Path, help="publication folder (default: STATE/lists)")
    q.add_argument("--list", action="append", choices=LIST_CHOICES, help="only these lists")
    q.add_argument("--dry-run", action="store_true", help="show what would change; sign nothing")
    q.add_argument("--validity-hours", type=float, default=24.0, help="nextUpdate - thisUpdate")
    q.add_argument("--refresh-hours", type=float, default=6.0, help="republish this close to it")
    q.add_argument("--emergency", type=int, metavar="N", help="run approved emergency request N")
    q.add_argument("--json", action="store_true")
    _key_options(q)
    q.set_defaults(handler=cmd_publish)

    p = sub.add_parser("lists", help="published lists: history, verify, acknowledgments")
    lsub = p.add_subparsers(dest="lists_command", metavar="COMMAND", parser_class=type(p))
    lsub.required = True

    q = lsub.add_parser("history", help="every published version")
    q.add_argument("--list", choices=LIST_CHOICES)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_history)

    q = lsub.add_parser("verify", help="check a list as a terminal does, and show it")
    q.add_argument("file", type=Path)
    q.add_argument("--root", type=Path, required=True, help="the trusted root certificate")
    q.add_argument("--list", choices=LIST_CHOICES, help="the type the terminal expects")
    q.add_argument("--previous-sequence", type=int, help="the sequence the terminal holds")
    q.add_argument("--grace-hours", type=float, default=0.0)
    q.set_defaults(handler=cmd_verify)

    q = lsub.add_parser("root", help="write the root certificate terminals trust (DER or PEM)")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--pem", action="store_true")
    q.set_defaults(handler=cmd_root)

    q = lsub.add_parser("operator-add", help="register an operator that loads the lists")
    q.add_argument("--id", required=True, dest="operator_id")
    q.add_argument("--name", default="")
    q.add_argument("--province")
    q.add_argument("--actor", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_operator_add)

    q = lsub.add_parser("ack", help="import operators' load reports (CSV or JSON)")
    q.add_argument("report", type=Path)
    q.add_argument("--format", choices=["csv", "json"])
    q.add_argument("--actor", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_ack)

    q = lsub.add_parser("overdue", help="operators that have not loaded a list in 15 days")
    q.add_argument("--days", type=int, default=acks.LOAD_DEADLINE_DAYS)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_overdue)

    q = lsub.add_parser("emergency", help="ask for an emergency publication (第三十四条)")
    q.add_argument("--reason", required=True)
    q.add_argument("--actor", required=True)
    q.add_argument("--out", type=Path)
    q.add_argument("--json", action="store_true")
    _key_options(q)
    q.set_defaults(handler=cmd_emergency)

    for name in ("approve", "reject"):
        q = lsub.add_parser(name, help=f"{name} an emergency publication request")
        q.add_argument("request", type=int)
        q.add_argument("--actor", required=True)
        q.add_argument("--reason", default="")
        q.add_argument("--out", type=Path)
        q.add_argument("--json", action="store_true")
        _key_options(q)
        q.set_defaults(handler=cmd_decide, approve=name == "approve")


# -- helpers -------------------------------------------------------------------------------
def _hours(value: float, option: str) -> int:
    if value != value or value < 0:  # NaN or negative
        raise BadInput(f"{option} {value}: a number of hours, 0 or more")
    return int(value * 3600)


def _out(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else state_dir() / "lists"


def _certificate(engine: Any, role: str) -> CertificateRecord:
    with Session(engine) as session:
        record = publisher.current_certificate(session, role, SystemClock().now())
    if record is None:
        raise BadInput(f"no valid {role} certificate: run the root ceremony first")
    return record


def _signing(args: argparse.Namespace, engine: Any) -> tuple[publisher.Signing, Any]:
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.token import PinSource, QuorumPin, Token, pin_source_from_spec
    from hsm.softhsm import use_softhsm

    if args.share:
        pins: PinSource = QuorumPin(args.share)
    elif args.pin_source:
        pins = pin_source_from_spec(args.pin_source)
    else:
        raise BadInput("the list-signing key needs --share (M of N) or --pin-source SPEC")
    if args.module is None:
        use_softhsm(state_dir() / "softhsm2")
    opened: list[Token] = []

    def store_of(label: str) -> KeyStore:
        opened.append(Token(label, pins, module=args.module))
        return KeyStore(opened[-1])

    signing = publisher.list_signing(engine, SystemClock().now(), store_of)
    return signing, opened[0]


def _report(args: argparse.Namespace, outcomes: list[publisher.Outcome]) -> None:
    if args.json:
        print(
            json.dumps([publisher.outcome_json(o) for o in outcomes], ensure_ascii=False, indent=2)
        )
        return
    for o in outcomes:
        head = f"{o.list_type.value}: {o.action}"
        if o.action != "unchanged":
            head += f" version {o.sequence} ({o.why}, {o.entries} entries)"
        else:
            head += f" at version {o.sequence} ({o.entries} entries)"
        print(head)
        for key in o.diff.added:
            print(f"  + {key}")
        for key in o.diff.removed:
            print(f"  - {key}")
        for key, fields in o.diff.changed.items():
            change = ", ".join(f"{f}: {old} → {new}" for f, (old, new) in fields.items())
            print(f"  ~ {key}: {change}")


def _run(args: argparse.Namespace, engine: Any, actor: Any, *, emergency_id: int | None) -> int:
    settings = publisher.Settings(
        _out(args),
        tuple(ListType(t) for t in args.list) if getattr(args, "list", None) else tuple(ListType),
        validity=_hours(getattr(args, "validity_hours", 24.0), "--validity-hours"),
        refresh=_hours(getattr(args, "refresh_hours", 6.0), "--refresh-hours"),
    )
    now = SystemClock().now()
    reason = ""
    if emergency_id is not None:
        reason = emergency.approved(engine, emergency_id).reason
    if getattr(args, "dry_run", False):
        _report(
            args,
            publisher.publish(
                engine,
                None,
                settings,
                actor=actor,
                now=now,
                dry_run=True,
                emergency=emergency_id is not None,
            ),
        )
        return 0
    signing, token = _signing(args, engine)
    try:
        outcomes = publisher.publish(
            engine,
            signing,
            settings,
            actor=actor,
            now=now,
            emergency=emergency_id is not None,
            reason=reason,
        )
    finally:
        token.close()
    if emergency_id is not None:
        emergency.mark_done(
            engine,
            emergency_id,
            actor,
            {o.list_type.value: o.sequence or 0 for o in outcomes},
            SystemClock().now(),
        )
    _report(args, outcomes)
    return 0


# -- commands ------------------------------------------------------------------------------
def cmd_publish(args: argparse.Namespace) -> int:
    engine = open_authority().engine
    actor = actor_of(engine, args.actor)
    return _run(args, engine, actor, emergency_id=args.emergency)


def cmd_history(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        rows = publisher.history(session, ListType(args.list) if args.list else None)
        data = [
            {
                "list": v.list_type,
                "sequence": v.sequence,
                "this_update": iso_utc(v.this_update),
                "next_update": iso_utc(v.next_update),
                "entries": v.entries,
                "sha256": v.sha256,
                "file": v.file,
                "published_by": v.published_by,
                "emergency": v.emergency,
                "diff": json.loads(v.diff),
            }
            for v in rows
        ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for d in data:
            mark = " EMERGENCY" if d["emergency"] else ""
            print(
                f"{d['list']:<17} {d['sequence']:>6}  {d['this_update']}  "
                f"{d['entries']:>6} entries  by {d['published_by']}{mark}"
            )
        if not data:
            print("nothing published yet")
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    from ca.lists.render import render_json
    from ca.lists.verify import load_list
    from ca.x509 import pem_to_der

    root = _read(args.root, "root certificate")
    if root.lstrip().startswith(b"-----BEGIN"):
        root = pem_to_der(root)
    verified = load_list(
        _read(args.file, "list"),
        trusted_root_der=root,
        expected_type=ListType(args.list) if args.list else None,
        previous_sequence=args.previous_sequence,
        now=SystemClock().now(),
        grace_seconds=_hours(args.grace_hours, "--grace-hours"),
    )
    print(render_json(verified))
    return 0


def cmd_root(args: argparse.Namespace) -> int:
    from ca.files import write_atomically
    from ca.x509 import pem

    der = bytes.fromhex(_certificate(open_authority().engine, "root").der)
    write_atomically(args.out, pem(der) if args.pem else der)
    print(f"wrote {args.out}")
    return 0


def cmd_operator_add(args: argparse.Namespace) -> int:
    engine = open_authority().engine
    row = acks.register_operator(
        engine,
        actor_of(engine, args.actor),
        operator_id=args.operator_id,
        name=args.name,
        province=args.province,
        now=SystemClock().now(),
    )
    data = {"operator": row.operator_id, "name": row.name, "province": row.province}
    print(json.dumps(data, ensure_ascii=False) if args.json else f"registered {row.operator_id}")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    engine = open_authority().engine
    kind = args.format or args.report.suffix.lower().lstrip(".")
    if kind not in ("csv", "json"):
        raise BadInput(f"{args.report}: say --format csv or --format json")
    try:
        text = args.report.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {args.report}: {exc}") from None
    result = acks.import_acks(
        engine,
        actor_of(engine, args.actor),
        text,
        kind,
        source=str(args.report),
        now=SystemClock().now(),
    )
    data = {
        "accepted": [{"operator": o, "list": t, "sequence": s} for o, t, s in result.accepted],
        "refused": [
            {"line": e.line, "field": e.field, "problem": e.problem} for e in result.refused
        ],
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(f"{len(result.accepted)} acknowledgment(s) kept, {len(result.refused)} refused")
        for e in result.refused:
            print(f"refused: {e}")
    return 3 if result.refused else 0


def cmd_overdue(args: argparse.Namespace) -> int:
    if args.days < 0:
        raise BadInput(f"--days {args.days}: 0 or more")
    with Session(open_authority().engine) as session:
        rows = acks.overdue(session, now=SystemClock().now(), days=args.days)
    data = [
        {
            "operator": r.operator_id,
            "name": r.name,
            "list": r.list_type,
            "loaded": r.loaded,
            "oldest_missing": r.oldest_missing,
            "published_at": iso_utc(r.published_at),
            "days_since": r.days_since,
        }
        for r in rows
    ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for d in data:
            print(
                f"{d['operator']:<20} {d['list']:<17} version {d['oldest_missing']} not loaded "
                f"after {d['days_since']} days (loaded: {d['loaded'] or 'none'})"
            )
        if not data:
            print("no operator is overdue")
    return 0


def cmd_emergency(args: argparse.Namespace) -> int:
    engine = open_authority().engine
    actor = actor_of(engine, args.actor)
    row = emergency.request(engine, actor, reason=args.reason, now=SystemClock().now())
    if row.state == "approved":  # the policy asks no second officer
        return _run(args, engine, actor, emergency_id=row.id)
    data = {"request": row.id, "state": row.state, "required": row.required}
    print(
        json.dumps(data)
        if args.json
        else f"emergency request {row.id}: awaits {row.required} approver(s)"
    )
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    engine = open_authority().engine
    actor = actor_of(engine, args.actor)
    row = emergency.decide(
        engine,
        actor,
        args.request,
        approve=args.approve,
        now=SystemClock().now(),
        reason=args.reason,
    )
    if row.state == "approved":
        return _run(args, engine, actor, emergency_id=row.id)
    data = {"request": row.id, "state": row.state}
    print(json.dumps(data) if args.json else f"emergency request {row.id}: {row.state}")
    return 0
