"""``jtca issuer request`` and ``jtca issuer make-qr``: a QR issuer's own offline tools, run at
the issuer with the issuer's token in its own hands. They touch neither the authority's service
nor its database: the request file they write is what the issuer hands to the central CA
(``jtca ca issue --request F``), and a QR code is made under the certificate it got back.

This is the one place of the ``jtca issuer``/``jtca ca`` commands that opens a token (through
``ca.cli.token``, the local token tools), so the heavy imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ca.core.clock import SystemClock
from ca.core.errors import BadInput
from ca.core.files import write_atomically
from ca.core.vocabulary import ISSUER_ID_RULE


def register(isub: Any) -> None:
    """Add the issuer-side subcommands to ``jtca issuer``."""
    q = isub.add_parser("request", help="a request for an interop certificate, signed by the key")
    q.add_argument("--token", metavar="LABEL", help="needed unless --key names its module and PIN")
    q.add_argument("--key", required=True, metavar="URI", help="the issuer's SM2 key (RFC 7512)")
    q.add_argument("--module", metavar="PATH")
    q.add_argument("--pin-source", metavar="SPEC")
    q.add_argument("--issuer-id", required=True, help=f"QR issuer id: {ISSUER_ID_RULE}")
    q.add_argument("--name", required=True)
    q.add_argument(
        "--expiry", required=True, metavar="MMYY", help="requested expiry: 1230 is 12/2030"
    )
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_request)

    q = isub.add_parser(
        "make-qr",
        help="issue a user certificate under an interop certificate and sign a ride "
        "with a fresh wallet key (test and demonstration codes)",
    )
    q.add_argument("--token", metavar="LABEL", help="needed unless --key names its module and PIN")
    q.add_argument("--key", required=True, metavar="URI", help="the issuer's SM2 key (RFC 7512)")
    q.add_argument("--module", metavar="PATH")
    q.add_argument("--pin-source", metavar="SPEC")
    q.add_argument("--interop-cert", type=Path, required=True, help="the 117-byte certificate")
    q.add_argument("--account", default="31040000000000000001", help="20-digit account number")
    q.add_argument("--limit", type=int, default=20000, help="single-ride limit, fen")
    q.add_argument("--out", type=Path, required=True, help="payload file (.bin); a .png beside it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_make_qr)


def cmd_request(args: argparse.Namespace) -> int:
    from ca.cli.token import store_for_key
    from ca.qr.cert_request import make_request
    from ca.vault.signers import token_signer

    store, uri = store_for_key(args, args.key, "--key")
    signer = token_signer(store, uri, "qr-issuer")
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
    from ca.cli.token import store_for_key
    from ca.qr.codec import decode_interop_certificate
    from ca.qr.image import render_png
    from ca.qr.issue import issue_user_certificate, sign_ride
    from ca.vault.signers import token_signer
    from hsm.signer import SoftwareSigner

    try:
        interop = decode_interop_certificate(args.interop_cert.read_bytes())
    except OSError as exc:
        raise BadInput(f"cannot read {args.interop_cert}: {exc.strerror}") from None
    store, uri = store_for_key(args, args.key, "--key")
    issuer = token_signer(store, uri, "qr-issuer")
    wallet = SoftwareSigner.generate()
    now = SystemClock().now()
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
