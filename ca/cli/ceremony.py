"""``jtca ceremony``: plan, init-token, run."""

from __future__ import annotations

import argparse
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ca.authority import open_authority
from ca.ceremony import init_token_shares, plan, read_ceremony, run
from ca.errors import BadInput
from ca.files import write_atomically
from ca.tokens import state_dir
from hsm.softhsm import init_token, token_labels, use_softhsm


def register(sub: Any) -> None:
    p = sub.add_parser("ceremony", help="key ceremonies from a reviewed declarative file")
    csub = p.add_subparsers(dest="ceremony_command", metavar="COMMAND", parser_class=type(p))
    csub.required = True

    q = csub.add_parser("plan", help="print what the ceremony will do, for review")
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_plan)

    q = csub.add_parser(
        "init-token", help="create the ceremony's token (embedded SoftHSM2); print PIN shares"
    )
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_init_token)

    q = csub.add_parser("run", help="run the ceremony: custodians' shares, witnesses present")
    q.add_argument("file", type=Path)
    q.add_argument("--share", action="append", required=True, help="a custodian's PIN share")
    q.add_argument("--witness", action="append", required=True, help="a witness present")
    q.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: embedded)")
    q.add_argument("--transcript", type=Path, help="where to write the signed transcript")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_run)


def cmd_plan(args: argparse.Namespace) -> int:
    ceremony = read_ceremony(args.file)
    steps = plan(ceremony)
    if args.json:
        print(json.dumps({"ceremony": ceremony.name, "steps": steps}, ensure_ascii=False, indent=2))
    else:
        for i, step in enumerate(steps, 1):
            print(f"{i:>2}. {step}")
    return 0


def cmd_init_token(args: argparse.Namespace) -> int:
    ceremony = read_ceremony(args.file)
    use_softhsm(state_dir() / "softhsm2")
    if ceremony.token in token_labels():
        raise BadInput(f"token {ceremony.token!r} already exists; its custodians hold the shares")
    pin, so_pin = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    init_token(ceremony.token, pin, so_pin)
    pin_shares = init_token_shares(ceremony, pin)
    so_shares = init_token_shares(ceremony, so_pin)
    # Nothing of either PIN is written anywhere: only the custodians' shares leave this process.
    if args.json:
        print(
            json.dumps(
                {
                    "token": ceremony.token,
                    "pin_shares": [{"custodian": c, "share": s} for c, s in pin_shares],
                    "so_pin_shares": [{"custodian": c, "share": s} for c, s in so_shares],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(
            f"token {ceremony.token} created. Hand each custodian their two shares, then clear "
            "this screen:"
        )
        for (custodian, share), (_, so_share) in zip(pin_shares, so_shares, strict=True):
            print(f"  {custodian}\n    PIN share:    {share}\n    SO PIN share: {so_share}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    ceremony = read_ceremony(args.file)
    authority = open_authority()
    if args.module is None:
        use_softhsm(state_dir() / "softhsm2")
    transcript = run(
        ceremony,
        authority.engine,
        module=args.module,
        shares=args.share,
        witnesses_present=args.witness,
        now=datetime.now(UTC).replace(microsecond=0),
    )
    out = args.transcript or state_dir() / "ceremonies" / f"{ceremony.file_sha256[:12]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, transcript.json().encode("utf-8"))
    data = transcript.data
    if args.json:
        print(json.dumps({"transcript": str(out), **data}, ensure_ascii=False, indent=2))
    else:
        print(f"ceremony {ceremony.name!r} done; transcript {out}")
        for key in data["keys"]:
            print(f"  {key['class']:<14} {key['public_key']}  {key['uri']}")
        for cert in data["certificates"]:
            print(f"  certificate {cert['role']:<12} SHA-256 {cert['sha256']}")
    return 0
