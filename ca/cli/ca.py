"""``jtca ca`` (the central QR CA) and ``jtca issuer`` (a QR issuer's side)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from ca import issuance
from ca.authority import open_authority
from ca.cli.token import open_store, parse_uri
from ca.clock import SystemClock
from ca.errors import BadInput
from ca.files import write_atomically
from ca.requests import make_request, read_request
from ca.signing import token_signer
from ca.store.models import CaKey, InteropCertificateRecord
from ca.tokens import state_dir
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import QuorumPin, Token
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.softhsm import use_softhsm


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
    q.add_argument("--actor", required=True, help="a registered officer (jtca officer list)")
    q.add_argument("--share", action="append", required=True, help="root token PIN share")
    q.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: embedded)")
    q.add_argument("--out", type=Path, help="write the 117-byte certificate here")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_issue)

    q = csub.add_parser("revoke", help="revoke an interop certificate, with a reason")
    q.add_argument("--ca-index", type=int, required=True)
    q.add_argument("--serial", type=int, required=True)
    q.add_argument("--reason", required=True)
    q.add_argument("--actor", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_revoke)

    q = csub.add_parser("certificates", help="interop certificates issued")
    q.add_argument("--issuer-id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_certificates)

    p = sub.add_parser("issuer", help="a QR issuer's side: certificate requests")
    isub = p.add_subparsers(dest="issuer_command", metavar="COMMAND", parser_class=type(p))
    isub.required = True
    q = isub.add_parser("register", help="register a QR issuer (发行机构) by its cn8 id")
    q.add_argument("--issuer-id", required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--actor", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_register)

    q = isub.add_parser("list", help="registered QR issuers")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list_issuers)

    q = isub.add_parser("request", help="a request for an interop certificate, signed by the key")
    q.add_argument("--token", required=True, metavar="LABEL")
    q.add_argument("--key", required=True, metavar="URI", help="the issuer's SM2 key")
    q.add_argument("--module", metavar="PATH")
    q.add_argument("--pin-source", metavar="SPEC")
    q.add_argument("--issuer-id", required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--expiry", required=True, metavar="MMYY")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_request)

    q = isub.add_parser(
        "make-qr",
        help="issue a user certificate under an interop certificate and sign a ride "
        "with a fresh wallet key (test and demonstration codes)",
    )
    q.add_argument("--token", required=True, metavar="LABEL")
    q.add_argument("--key", required=True, metavar="URI", help="the issuer's SM2 key")
    q.add_argument("--module", metavar="PATH")
    q.add_argument("--pin-source", metavar="SPEC")
    q.add_argument("--interop-cert", type=Path, required=True, help="the 117-byte certificate")
    q.add_argument("--account", default="31040000000000000001", help="20-digit account number")
    q.add_argument("--limit", type=int, default=20000, help="single-ride limit, fen")
    q.add_argument("--out", type=Path, required=True, help="payload file (.bin); a .png beside it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_make_qr)


def _now() -> int:
    return SystemClock().now()


def _active_ca_key(session: Session, index: int) -> CaKey:
    key = session.exec(
        select(CaKey).where(CaKey.ca_index == index).where(CaKey.status == "active")
    ).one_or_none()
    if key is None:
        raise BadInput(f"--ca-index {index}: no active central CA key has that index")
    return key


def record_json(r: InteropCertificateRecord) -> dict[str, Any]:
    return {
        "ca_index": r.ca_index,
        "ca_key": r.ca_key,
        "serial": r.serial,
        "issuer_id": r.issuer_id,
        "expiry": r.expiry,
        "issuer_public_key": r.issuer_public_key,
        "certificate": r.encoded,
        "issued_at": r.issued_at,
        "issued_by": r.issued_by,
        "status": r.status,
        "revoked_at": r.revoked_at,
        "revocation_reason": r.revocation_reason,
    }


def cmd_keys(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        keys = list(session.exec(select(CaKey).order_by(CaKey.ca_index)))  # type: ignore[arg-type]
    rows = [
        {
            "ca_index": k.ca_index,
            "public_key": k.public_key,
            "status": k.status,
            "verify_until": k.verify_until,
            "key_uri": k.key_uri,
        }
        for k in keys
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows or [
            {
                "ca_index": "-",
                "public_key": "(no CA keys: run the root ceremony)",
                "status": "",
                "verify_until": "",
                "key_uri": "",
            }
        ]:
            print(f"{r['ca_index']:>3}  {r['status']:<12} {r['public_key']}")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    from ca.authorization import interop_authorizer
    from ca.officers import actor_of

    try:
        request = read_request(args.request.read_bytes())
    except OSError as exc:
        raise BadInput(f"cannot read {args.request}: {exc.strerror}") from None
    authority = open_authority()
    with Session(authority.engine) as session:
        ca_key = _active_ca_key(session, args.ca_index)
    uri = Pkcs11Uri.parse(ca_key.key_uri)
    if args.module is None:
        use_softhsm(state_dir() / "softhsm2")
    with Token(uri.token, QuorumPin(args.share), module=args.module) as token:
        signer = token_signer(KeyStore(token), uri, "central-qr-ca")
        now = _now()
        ctx = issuance.IssueContext(
            actor=args.actor,
            ca_signer=signer,
            ca_index=args.ca_index,
            now=now,
            authorize=interop_authorizer(
                actor_of(authority.engine, args.actor), args.ca_index, now
            ),
        )
        record = issuance.issue(authority.engine, request, ctx)
    if args.out:
        write_atomically(args.out, bytes.fromhex(record.encoded))
    if args.json:
        print(json.dumps(record_json(record), indent=2))
    else:
        print(
            f"issued serial {record.serial} under CA {record.ca_index} to issuer "
            f"{record.issuer_id}, valid through {record.expiry[:2]}/20{record.expiry[2:]}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from ca.authorization import require
    from ca.officers import actor_of
    from policies.rules import Subject

    authority = open_authority()
    actor = actor_of(authority.engine, args.actor)
    require(actor, issuance.ACTION_REVOKE, Subject(ca_index=args.ca_index), _now())
    with Session(authority.engine) as session:
        keys = session.exec(select(CaKey).where(CaKey.ca_index == args.ca_index)).all()
    if not keys:
        raise BadInput(f"--ca-index {args.ca_index}: no central CA key has that index")
    for key in keys:
        with Session(authority.engine) as session:
            found = session.exec(
                select(InteropCertificateRecord)
                .where(InteropCertificateRecord.ca_key == key.public_key)
                .where(InteropCertificateRecord.serial == args.serial)
            ).one_or_none()
        if found is not None:
            record = issuance.revoke(
                authority.engine,
                ca_key_hex=key.public_key,
                serial=args.serial,
                reason=args.reason,
                actor=args.actor,
                now=_now(),
            )
            print(
                json.dumps(record_json(record), indent=2)
                if args.json
                else f"revoked serial {args.serial} of issuer {record.issuer_id}: {args.reason}"
            )
            return 0
    raise BadInput(f"--serial {args.serial}: no interop certificate under CA index {args.ca_index}")


def cmd_certificates(args: argparse.Namespace) -> int:
    with Session(open_authority().engine) as session:
        rows = [record_json(r) for r in issuance.certificates(session, args.issuer_id)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(
                f"CA {r['ca_index']} serial {r['serial']:>6}  issuer {r['issuer_id']:<8} "
                f"expiry {r['expiry']}  {r['status']}"
            )
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    store = open_store(args)
    signer = token_signer(store, parse_uri(args.key, "--key"), "qr-issuer")
    der = make_request(
        signer, issuer_id=args.issuer_id, issuer_name=args.name, requested_expiry=args.expiry
    )
    write_atomically(args.out, der)
    data = {
        "request": str(args.out),
        "issuer_id": args.issuer_id,
        "public_key": signer.public_key.compressed.hex(),
    }
    print(json.dumps(data) if args.json else f"wrote {args.out}")
    return 0


def cmd_make_qr(args: argparse.Namespace) -> int:
    from ca.qr.codec import decode_interop_certificate
    from ca.qr.image import render_png
    from ca.qr.issue import issue_user_certificate, sign_ride
    from hsm.signer import SoftwareSigner

    try:
        interop = decode_interop_certificate(args.interop_cert.read_bytes())
    except OSError as exc:
        raise BadInput(f"cannot read {args.interop_cert}: {exc.strerror}") from None
    store = open_store(args)
    issuer = token_signer(store, parse_uri(args.key, "--key"), "qr-issuer")
    wallet = SoftwareSigner.generate()
    now = _now()
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="JTCA-ISSUER-TEST",
        account_number=args.account,
        account_type=1,
        single_ride_limit=args.limit,
        user_public_key=wallet.public_key,
        expires_at=now + 86400,
        qr_validity=60,
    )
    payload = sign_ride(wallet, interop, user_cert, generated_at=now).encode()
    write_atomically(args.out, payload)
    png = args.out.with_suffix(".png")
    write_atomically(png, render_png(payload))
    data = {"payload": str(args.out), "image": str(png), "bytes": len(payload)}
    print(json.dumps(data) if args.json else f"wrote {args.out} and {png}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from ca.authorization import require
    from ca.officers import actor_of
    from ca.registry.issuers import register_issuer
    from policies.rules import Subject

    now = _now()
    engine = open_authority().engine
    require(actor_of(engine, args.actor), "issuer.register", Subject(issuer_id=args.issuer_id), now)
    issuer = register_issuer(
        engine,
        issuer_id=args.issuer_id,
        name=args.name,
        actor=args.actor,
        now=now,
    )
    data = {"issuer_id": issuer.issuer_id, "name": issuer.name, "status": issuer.status}
    print(
        json.dumps(data, ensure_ascii=False)
        if args.json
        else f"registered issuer {issuer.issuer_id} ({issuer.name})"
    )
    return 0


def cmd_list_issuers(args: argparse.Namespace) -> int:
    from ca.registry.issuers import issuers

    with Session(open_authority().engine) as session:
        rows = [
            {
                "issuer_id": i.issuer_id,
                "name": i.name,
                "status": i.status,
                "registered_at": i.registered_at,
            }
            for i in issuers(session)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print(f"{r['issuer_id']:<8} {r['status']:<10} {r['name']}")
    return 0
