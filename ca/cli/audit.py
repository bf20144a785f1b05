"""``jtca audit``: verify the chain, export a verifiable bundle, verify a bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from ca import audit
from ca.authority import open_authority
from ca.cli.token import parse_point
from ca.clock import SystemClock
from ca.errors import BadInput
from ca.files import write_atomically

EXIT_TAMPERED = 8


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="COMMAND", parser_class=type(p))
    asub.required = True

    v = asub.add_parser("verify", help="check the chain and its checkpoints; name any tampering")
    v.add_argument("--bundle", type=Path, help="verify an exported bundle instead of the database")
    v.add_argument(
        "--audit-key",
        action="append",
        default=[],
        metavar="HEXPOINT",
        help="trusted audit public key(s) for the checkpoints",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_verify)

    c = asub.add_parser("checkpoint", help="sign the chain's head with the audit key (periodic)")
    c.add_argument("--share", action="append", required=True, help="root token PIN share")
    c.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: embedded)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_checkpoint)

    e = asub.add_parser("export", help="write every event and checkpoint to a verifiable bundle")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=cmd_export)


def cmd_verify(args: argparse.Namespace) -> int:
    keys = [parse_point(k, "--audit-key") for k in args.audit_key]
    if args.bundle is not None:
        try:
            data = args.bundle.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {args.bundle}: {exc.strerror}") from None
        report = audit.verify_bundle(data, keys or None)
    else:
        with Session(open_authority().engine) as session:
            report = audit.verify(session, keys or None)
    findings = [{"seq": f.seq, "problem": f.problem, "message": f.message} for f in report.findings]
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "events": report.events,
                    "checkpoints": report.checkpoints,
                    "findings": findings,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        verdict = "intact" if report.ok else f"TAMPERED ({len(findings)} findings)"
        print(f"audit chain: {report.events} events, {report.checkpoints} checkpoints: {verdict}")
        for f in findings:
            print(f"  row {f['seq']}: {f['problem']}: {f['message']}")
    return 0 if report.ok else EXIT_TAMPERED


def cmd_export(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        bundle = audit.export_bundle(session)
    write_atomically(args.out, bundle)
    events = len(json.loads(bundle)["events"])
    data = {"bundle": str(args.out), "events": events}
    print(json.dumps(data) if args.json else f"wrote {args.out}: {events} events")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:

    from sqlmodel import select

    from ca.signing import token_signer
    from ca.store.db import transaction
    from ca.store.models import KeyRecord
    from ca.tokens import state_dir
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.token import QuorumPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri
    from hsm.softhsm import use_softhsm

    authority = open_authority()
    with Session(authority.engine) as session:
        record = session.exec(
            select(KeyRecord)
            .where(KeyRecord.key_class == "audit")
            .where(KeyRecord.state == "active")
        ).first()
    if record is None:
        raise BadInput("no audit key: run the root ceremony first")
    uri = Pkcs11Uri.parse(record.uri)
    if args.module is None:
        use_softhsm(state_dir() / "softhsm2")
    with Token(uri.token, QuorumPin(args.share), module=args.module) as token:
        signer = token_signer(KeyStore(token), uri, "audit")
        with transaction(authority.engine) as session:
            cp = audit.checkpoint(session, signer, at=SystemClock().now())
            data = {"seq": cp.seq, "hash": cp.hash, "key": cp.key_uri}
    print(json.dumps(data) if args.json else f"checkpoint at row {data['seq']}: {data['hash']}")
    return 0
