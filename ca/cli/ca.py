"""``jtca ca`` (the central QR CA) and ``jtca issuer`` (the QR issuers the authority knows):
thin adapters over the service's operations (``ca.ops.issuance``). The issuer's own offline
tools, ``jtca issuer request`` and ``jtca issuer make-qr``, are in ``ca.cli.issuer``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ca.cli import desk
from ca.cli import issuer as issuer_tools
from ca.core.errors import BadInput
from ca.core.files import write_atomically
from ca.core.vocabulary import ISSUER_ID_RULE, mmyy

if TYPE_CHECKING:
    from ca.ops.base import Model, Operation

    Req = TypeVar("Req", bound=Model)
    Res = TypeVar("Res", bound=Model)


def register(sub: Any) -> None:
    p = sub.add_parser("ca", help="the central QR CA: CA keys, interop certificates")
    csub = p.add_subparsers(dest="ca_command", metavar="COMMAND", parser_class=type(p))
    csub.required = True

    q = csub.add_parser("keys", help="central CA keys and their public key index")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_keys)

    q = csub.add_parser("issue", help="issue an interop certificate from an issuer's request")
    q.add_argument("--request", type=Path, required=True)
    q.add_argument("--ca-index", type=int, required=True)
    desk.add_share_options(q, "a custodian's share of the root token's PIN")
    q.add_argument("--module", metavar="PATH", help=argparse.SUPPRESS)
    q.add_argument("--out", type=Path, help="write the 117-byte certificate here")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_issue)

    q = csub.add_parser("revoke", help="revoke an interop certificate, with a reason")
    q.add_argument("--ca-index", type=int, required=True)
    q.add_argument("--serial", type=int, required=True)
    q.add_argument("--reason", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_revoke)

    q = csub.add_parser("certificates", help="interop certificates issued")
    q.add_argument("--issuer-id", help=f"only this QR issuer ({ISSUER_ID_RULE})")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_certificates)

    p = sub.add_parser("issuer", help="QR issuers: registration; an issuer's certificate requests")
    isub = p.add_subparsers(dest="issuer_command", metavar="COMMAND", parser_class=type(p))
    isub.required = True
    q = isub.add_parser("register", help="register a QR issuer (发行机构) by its cn8 id")
    q.add_argument("--issuer-id", required=True, help=f"QR issuer id: {ISSUER_ID_RULE}")
    q.add_argument("--name", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_register)

    q = isub.add_parser("list", help="registered QR issuers")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list_issuers)

    issuer_tools.register(isub)


def call(args: argparse.Namespace, op: Operation[Req, Res], request: Req) -> Res:
    """``op`` at the authority's service, as the officer of this machine's session."""
    return desk.call(op, request)


def no_module(args: argparse.Namespace) -> None:
    """``--module`` named the root token's PKCS#11 module when the command opened the token
    itself; the service holds the ministry's tokens now and opens them with its own."""
    if getattr(args, "module", None) is not None:
        raise BadInput(
            "--module: the authority's service opens the ministry's tokens with its own "
            "PKCS#11 module; configure it where the service runs"
        )


def cmd_keys(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops
    from ca.ops.base import Empty

    keys = call(args, ops.KEYS, Empty()).keys
    if args.json:
        print(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
    elif not keys:
        print(f"{'-':>3}  {'':<12} (no CA keys: run the root ceremony)")
    else:
        for k in keys:
            print(f"{k.ca_index:>3}  {k.status:<12} {k.public_key}")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops

    no_module(args)
    try:
        request = args.request.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {args.request}: {exc.strerror}") from None
    client = desk.connect()
    try:
        desk.signed_in(client, ops.ISSUE.name)
        shares = desk.read_shares(args.share_file)
        record = desk.call(
            ops.ISSUE,
            ops.IssueRequest(request=request, ca_index=args.ca_index, shares=shares),
            client,
        )
    finally:
        client.close()
    if args.out:
        write_atomically(args.out, bytes.fromhex(record.certificate))
    if args.json:
        print(json.dumps(record.model_dump(mode="json"), indent=2))
    else:
        print(
            f"issued serial {record.serial} under CA {record.ca_index} to issuer "
            f"{record.issuer_id}, valid through {mmyy(record.expiry)}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops

    record = call(
        args,
        ops.REVOKE,
        ops.RevokeRequest(ca_index=args.ca_index, serial=args.serial, reason=args.reason),
    )
    print(
        json.dumps(record.model_dump(mode="json"), indent=2)
        if args.json
        else f"revoked serial {args.serial} of issuer {record.issuer_id}: {args.reason}"
    )
    return 0


def cmd_certificates(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops

    found = call(args, ops.CERTIFICATES, ops.CertificatesRequest(issuer_id=args.issuer_id))
    if args.json:
        print(json.dumps([c.model_dump(mode="json") for c in found.certificates], indent=2))
    else:
        for c in found.certificates:
            print(
                f"CA {c.ca_index} serial {c.serial:>6}  issuer {c.issuer_id:<8} "
                f"expiry {mmyy(c.expiry)}  {c.status}"
            )
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops

    issuer = call(
        args,
        ops.REGISTER_ISSUER,
        ops.RegisterIssuerRequest(issuer_id=args.issuer_id, name=args.name),
    )
    data = {"issuer_id": issuer.issuer_id, "name": issuer.name, "status": issuer.status}
    print(
        json.dumps(data, ensure_ascii=False)
        if args.json
        else f"registered issuer {issuer.issuer_id} ({issuer.name})"
    )
    return 0


def cmd_list_issuers(args: argparse.Namespace) -> int:
    from ca.ops import issuance as ops
    from ca.ops.base import Empty

    issuers = call(args, ops.ISSUERS, Empty()).issuers
    if args.json:
        rows = [
            {
                "issuer_id": i.issuer_id,
                "name": i.name,
                "status": i.status,
                "registered_at": i.registered_at,
            }
            for i in issuers
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for i in issuers:
            print(f"{i.issuer_id:<8} {i.status:<10} {i.name}")
    return 0
