"""``jtca officer``: officers, their personal tokens and certificates (over ``ca.ops.officers``).

An officer's key is made in their own token (``keygen``: a USB key through its PKCS#11 module,
or — ``--create-token`` — a SoftHSM2 token ``officer-ID`` in the state folder). ``enrol`` sends
its public key with the token's proof of possession: requested by the signed-in ministry root
officer, it waits for a second one's signed approval (``approve --enrolment N``); with
``--quorum`` and no session, the root token's custodians' shares certify it at once — how the
first officers are enrolled. ``suspend``, ``reinstate``, ``revoke`` and ``renew`` act on the
officer's certificate; ``certificate`` and ``ca`` give the PEMs to check signatures offline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.cli import desk
from ca.core.errors import BadInput

if TYPE_CHECKING:
    from ca.ops.officers import CertificateView, Enrolment, OfficerView


def register(sub: Any) -> None:
    p = sub.add_parser("officer", help="officers: personal tokens, enrolment, certificates")
    osub = p.add_subparsers(dest="officer_command", metavar="COMMAND", parser_class=type(p))
    osub.required = True

    def command(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = osub.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(handler=handler)
        return q

    q = command("keygen", "generate an officer's key in their own token", cmd_keygen)
    q.add_argument("--officer", required=True, metavar="ID")
    q.add_argument(
        "--create-token",
        action="store_true",
        help="first make the SoftHSM2 token (officer-ID) in the state folder, with the PIN from "
        "--pin-source (embedded default only)",
    )
    desk.add_token_options(q)

    q = command(
        "enrol",
        "enrol an officer's token key: requested by a ministry root officer for a second's "
        "approval, or (--quorum, not signed in) by the root token's custodians",
        cmd_enrol,
    )
    q.add_argument("--officer", required=True, metavar="ID", help="the officer being enrolled")
    q.add_argument("--role", action="append", default=[], help="a role of the policy")
    q.add_argument("--province", help="GB/T 2260 province code, for provincial officers")
    q.add_argument("--name", default="")
    desk.add_token_options(q)
    q.add_argument(
        "--quorum",
        action="store_true",
        help="enrol under the root token's share quorum (the first officers; no session)",
    )
    desk.add_share_options(q, "a custodian's share of the root token's PIN")

    for name in ("approve", "reject"):
        q = command(
            name,
            f"{name} a pending enrolment, signed with your own token (dual control)",
            cmd_decide,
        )
        q.add_argument("enrolment", nargs="?", type=int, metavar="N", help="the enrolment")
        # the shape before one positional shape for ids (issue #17): deprecated, still works
        q.add_argument("--enrolment", dest="old_enrolment", type=int, help=argparse.SUPPRESS)
        q.add_argument("--reason", required=name == "reject", default="")
        desk.add_pin_source(q)
        q.set_defaults(approve=name == "approve")

    command("enrolments", "enrolments waiting for a second officer", cmd_enrolments)

    for name, text in (
        ("suspend", "suspend an officer's certificate: they can do nothing from then on"),
        ("reinstate", "lift an officer certificate's suspension"),
        ("revoke", "revoke an officer's certificate (final: a new key needs a new enrolment)"),
    ):
        q = command(name, text, cmd_status)
        _officer_argument(q)
        q.add_argument("--reason", required=name != "reinstate", default="")
        q.set_defaults(operation=name)

    q = command("renew", "a fresh certificate for the same token key", cmd_renew)
    _officer_argument(q)

    q = command("certificate", "an officer and their certificate (PEM)", cmd_certificate)
    _officer_argument(q)
    q.add_argument("--out", type=Path, metavar="FILE.pem", help="write the certificate here")

    q = command("ca", "the officer CA's certificate, to check officer signatures", cmd_ca)
    q.add_argument("--out", type=Path, metavar="FILE.pem", help="write the certificate here")

    command("list", "registered officers, their roles and certificates", cmd_list)


def _officer_argument(q: argparse.ArgumentParser) -> None:
    """The officer a command acts on, by position; ``--officer ID`` is the deprecated shape."""
    q.add_argument("officer", nargs="?", metavar="ID", help="the officer's id")
    q.add_argument("--officer", dest="old_officer", help=argparse.SUPPRESS)


def _one_officer(args: argparse.Namespace) -> str:
    given = [o for o in (args.officer, args.old_officer) if o is not None]
    if len(given) != 1:
        raise BadInput(f"name one officer: jtca officer {args.officer_command} ID")
    officer: str = given[0]
    args.officer = officer
    return officer


# -- helpers ---------------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def _new_pin(spec: str | None, officer: str) -> str:
    from ca.site.personal_token import new_pin

    return new_pin(spec, officer)


def _token(args: argparse.Namespace, pin: Any = None) -> Any:
    from ca.site.officer_token import OfficerToken, default_label, pin_source

    return OfficerToken(
        args.token or default_label(args.officer),
        pin or pin_source(args.pin_source, args.officer),
        module=args.module,
        state=desk.state(),
    )


def _cert_json(cert: CertificateView | None) -> dict[str, Any] | None:
    from ca.core.clock import iso_utc

    if cert is None:
        return None
    return {
        "serial": cert.serial,
        "status": cert.status,
        "not_before": iso_utc(cert.not_before),
        "not_after": iso_utc(cert.not_after),
        "token_label": cert.token_label,
        "issued_by": cert.issued_by,
    }


def _officer_json(view: OfficerView) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "roles": view.roles,
        "province": view.province,
        "status": view.status,
        "certificate": _cert_json(view.certificate),
    }


def _cert_text(cert: CertificateView | None) -> str:
    if cert is None:
        return "no certificate"
    data = _cert_json(cert) or {}
    return (
        f"certificate {cert.serial} {cert.status}, {data['not_before'][:10]} to "
        f"{data['not_after'][:10]}, token {cert.token_label or '-'}"
    )


def _enrolment_json(row: Enrolment) -> dict[str, Any]:
    return {
        "enrolment": row.id,
        "subject": row.subject,
        "officer": row.officer_id,
        "roles": row.roles,
        "province": row.province,
        "state": row.state,
        "requested_by": row.requested_by,
        "certificate": _cert_json(row.certificate),
    }


def _sm3(data: bytes) -> str:
    from hsm.sm.sm3 import sm3

    return sm3(data).hex()


# -- commands ------------------------------------------------------------------------------------
def cmd_keygen(args: argparse.Namespace) -> int:
    from ca.site.officer_token import create_embedded_token, default_label

    label = args.token or default_label(args.officer)
    pin = None
    if args.create_token:
        if args.module:
            raise BadInput(
                "--create-token makes a SoftHSM2 token in the state folder; a USB key is "
                "initialised with its vendor's tool, then named with --module and --token"
            )
        from ca.site.personal_token import GivenPin

        pin = GivenPin(_new_pin(args.pin_source, args.officer))
        create_embedded_token(desk.state(), label, pin.pin())
    token = _token(args, pin)
    try:
        public = token.generate_key().uncompressed
    finally:
        token.close()
    data = {
        "officer": args.officer,
        "token": label,
        "created_token": bool(args.create_token),
        "public_key": public.hex(),
        "sm3": _sm3(public),
    }
    _emit(
        args,
        data,
        f"key generated in token {label} for {args.officer}\n  public key {public.hex()}\n"
        f"  its SM3 {data['sm3']}\n"
        "Enrol it (jtca officer enrol) and compare this SM3 with the one the enrolment shows.",
    )
    return 0


def cmd_enrol(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops

    if args.share_file and not args.quorum:
        raise BadInput("--share-file goes with --quorum (the root token's custodians enrol)")
    token = _token(args)
    try:
        public = token.public_key.uncompressed
        proof = token.proof(args.officer)
    finally:
        token.close()
    desk.say(f"enrolling {args.officer}'s key from token {token.label}: SM3 {_sm3(public)}")
    client = desk.connect(anonymous=args.quorum)
    try:
        shares: list[str] = []
        if args.quorum:
            shares = desk.read_shares(args.share_file)
        else:
            desk.signed_in(client, "jtca officer enrol (without --quorum)")
        row = client.call(
            ops.ENROL,
            ops.EnrolRequest(
                officer_id=args.officer,
                name=args.name,
                roles=args.role,
                province=args.province,
                public_key=public,
                proof=proof,
                token_label=token.label,
                shares=shares,
            ),
        )
    finally:
        client.close()
    if row.state == "pending":
        text = (
            f"{row.subject}: {row.officer_id} ({', '.join(row.roles)}) awaits a second "
            f"officer's approval: jtca officer approve --enrolment {row.id}"
        )
    else:
        text = f"{row.subject}: {row.officer_id} enrolled — {_cert_text(row.certificate)}"
    _emit(args, _enrolment_json(row), text)
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops

    given = [n for n in (args.enrolment, args.old_enrolment) if n is not None]
    if len(given) != 1:
        raise BadInput(f"name one enrolment: jtca officer {args.officer_command} N")
    (args.enrolment,) = given
    client = desk.connect()
    try:
        at, signature = desk.decide(
            client, f"enrolment {args.enrolment}", approve=args.approve, pin_spec=args.pin_source
        )
        row = client.call(
            ops.DECIDE,
            ops.Decision(
                id=args.enrolment,
                approve=args.approve,
                reason=args.reason,
                at=at,
                signature=signature,
            ),
        )
    finally:
        client.close()
    text = f"{row.subject} of {row.officer_id}: {row.state}"
    if row.certificate is not None:
        text += f" — {_cert_text(row.certificate)}"
    _emit(args, _enrolment_json(row), text)
    return 0


def cmd_enrolments(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops
    from ca.ops.base import Empty

    rows = desk.call(ops.ENROLMENTS, Empty()).enrolments
    text = "\n".join(
        f"{r.id:>5}  {r.officer_id:<16} {','.join(r.roles):<26} {r.province or '':<7} "
        f"requested by {r.requested_by}"
        for r in rows
    )
    _emit(args, [_enrolment_json(r) for r in rows], text or "no enrolment awaits a decision")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops

    op = {"suspend": ops.SUSPEND, "reinstate": ops.REINSTATE, "revoke": ops.REVOKE}[args.operation]
    view = desk.call(op, ops.OfficerAction(officer_id=_one_officer(args), reason=args.reason))
    _emit(args, _officer_json(view), f"officer {view.id}: {_cert_text(view.certificate)}")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops

    view = desk.call(ops.RENEW, ops.OfficerId(officer_id=_one_officer(args)))
    _emit(args, _officer_json(view), f"officer {view.id}: renewed, {_cert_text(view.certificate)}")
    return 0


def _write_pem(out: Path, text: str) -> None:
    from ca.core.files import write_atomically

    try:
        write_atomically(out, text.encode("ascii"))
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write it ({exc.strerror})") from None


def cmd_certificate(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops

    view = desk.call(ops.CERTIFICATE, ops.OfficerId(officer_id=_one_officer(args)))
    if args.out is not None:
        if view.certificate is None:
            raise BadInput(f"officer {view.id} has no certificate to write")
        _write_pem(args.out, view.certificate.pem)
    data = _officer_json(view)
    if view.certificate is not None:
        data["pem"] = view.certificate.pem
    text = f"officer {view.id} ({', '.join(view.roles)}): {_cert_text(view.certificate)}"
    if args.out is not None:
        text += f"\nwrote {args.out}"
    elif view.certificate is not None:
        text += "\n" + view.certificate.pem.rstrip()
    _emit(args, data, text)
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops
    from ca.ops.base import Empty

    found = desk.call(ops.OFFICER_CA, Empty())
    if args.out is not None:
        _write_pem(args.out, found.pem)
    text = f"the officer CA (SM3 {found.sm3})"
    text += f": wrote {args.out}" if args.out is not None else "\n" + found.pem.rstrip()
    _emit(args, {"pem": found.pem, "sm3": found.sm3}, text)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ca.ops import officers as ops
    from ca.ops.base import Empty

    found = desk.call(ops.LIST, Empty()).officers
    if args.json:
        print(json.dumps([_officer_json(o) for o in found], ensure_ascii=False, indent=2))
    else:
        for o in found:
            cert = o.certificate
            mark = f"cert {cert.serial} {cert.status}" if cert else "no certificate"
            print(f"{o.id:<16} {','.join(o.roles):<32} {o.province or '':<7} {mark:<22} {o.name}")
    return 0
