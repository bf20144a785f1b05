"""``jtca audit``: verify the chain (at the service) or an exported bundle (here, with no
service: an auditor's own check), sign a checkpoint (the custodians' shares from files or
hidden prompts), export a verifiable bundle. Every command that asks the service needs a
signed-in officer (``jtca login``) whose role the policy grants that action."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ca.cli import desk
from ca.errors import BadInput
from ca.files import write_atomically

if TYPE_CHECKING:
    from ca.ops.audit import VerifyResult

EXIT_TAMPERED: Final = 8


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
    desk.add_share_options(c, "a custodian's share of the root token's PIN")
    c.add_argument("--module", metavar="PATH", help=argparse.SUPPRESS)
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_checkpoint)

    a = asub.add_parser(
        "approval",
        help="write the evidence of a subject's signed decisions, to check with OpenSSL alone",
    )
    a.add_argument("--subject", required=True, help="e.g. 'application 7', 'action 3'")
    a.add_argument("--out", type=Path, required=True, help="a folder: one sub-folder per decision")
    a.add_argument("--json", action="store_true")
    a.set_defaults(handler=cmd_approval)

    e = asub.add_parser("export", help="write every event and checkpoint to a verifiable bundle")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=cmd_export)


def verify_bundle_here(path: Path, audit_keys: list[str]) -> VerifyResult:
    """An exported bundle checked on this machine: no service, no database (pure)."""
    from ca.audit_chain import trusted_keys, verify_bundle
    from ca.ops.audit import VerifyResult

    keys = trusted_keys(audit_keys)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    return VerifyResult.of(verify_bundle(data, keys or None))


def cmd_verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        report = verify_bundle_here(args.bundle, args.audit_key)
    else:
        from ca.ops import audit as ops

        # an officer the policy allows audit.verify: not sent without a session
        report = desk.call(ops.VERIFY, ops.VerifyRequest(audit_keys=args.audit_key))
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        findings = report.findings
        verdict = "intact" if report.ok else f"TAMPERED ({len(findings)} findings)"
        print(f"audit chain: {report.events} events, {report.checkpoints} checkpoints: {verdict}")
        for f in findings:
            print(f"  row {f.seq}: {f.problem}: {f.message}")
    return 0 if report.ok else EXIT_TAMPERED


def cmd_export(args: argparse.Namespace) -> int:
    from ca.ops import audit as ops
    from ca.ops.base import Empty

    exported = desk.call(ops.EXPORT, Empty())  # an officer allowed audit.export (the auditor)
    write_atomically(args.out, exported.bundle)
    data = {"bundle": str(args.out), "events": exported.events}
    print(json.dumps(data) if args.json else f"wrote {args.out}: {exported.events} events")
    return 0


OFFLINE_CHECK: Final = (  # the commands docs/officers.md gives (tests run them verbatim)
    "openssl x509 -in officer.pem -pubkey -noout -out officer.pub",
    "openssl dgst -sm3 -verify officer.pub -sigopt distid:1234567812345678 "
    "-signature approval.sig approval.txt",
    "openssl dgst -sm3 request.json",
    "openssl verify -vfyopt distid:1234567812345678 -CAfile officer-ca.pem officer.pem",
)
OFFLINE_CHECK_TEXT: Final = (
    "Check each decision offline, in its folder, with OpenSSL alone (docs/officers.md); the "
    "third command's SM3 equals the request-sm3 line of approval.txt:\n"
    + "".join(f"  {command}\n" for command in OFFLINE_CHECK)
)


def cmd_approval(args: argparse.Namespace) -> int:
    """Per decision, a folder ``<out>/<n>-<officer>/`` with approval.txt (the signed statement,
    byte for byte), approval.sig (DER), officer.pem (the certificate it was made under),
    officer-ca.pem and request.json (the request decided, byte for byte)."""
    from ca.ops import approvals as ops

    client = desk.connect()
    try:
        evidence = client.call(ops.EVIDENCE, ops.SubjectRequest(subject=args.subject))
    finally:
        client.close()
    written: list[dict[str, Any]] = []
    for n, decision in enumerate(evidence.decisions, 1):
        if decision.statement is None or decision.signature is None or not decision.certificate_pem:
            written.append({"officer": decision.officer, "signed": False})
            continue
        folder = args.out / f"{n}-{decision.officer}"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "approval.txt", decision.statement.encode())
        write_atomically(folder / "approval.sig", decision.signature)
        write_atomically(folder / "officer.pem", decision.certificate_pem.encode())
        write_atomically(folder / "officer-ca.pem", evidence.officer_ca_pem.encode())
        write_atomically(folder / "request.json", evidence.request.body)
        (folder / "CHECK.txt").write_text(OFFLINE_CHECK_TEXT)
        written.append(
            {
                "officer": decision.officer,
                "decision": decision.decision,
                "signed": True,
                "certificate_serial": decision.certificate_serial,
                "folder": str(folder),
            }
        )
    if args.json:
        print(json.dumps({"subject": evidence.subject, "decisions": written}))
        return 0
    print(
        f"{evidence.subject}: asked by {evidence.request.officer} ({evidence.request.operation}),"
        f" request SM3 {evidence.request.digest}"
    )
    for item in written:
        if item["signed"]:
            print(
                f"  {item['decision']} by {item['officer']} (certificate "
                f"{item['certificate_serial']}): {item['folder']}"
            )
        else:
            print(f"  {item['officer']}: decided before decisions were signed, nothing to check")
    print(OFFLINE_CHECK_TEXT, end="")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from ca.client.http import connect
    from ca.ops import audit as ops

    if args.module is not None:
        raise BadInput(
            "--module: the authority's service opens the ministry's tokens with its own "
            "PKCS#11 module; configure it where the service runs"
        )
    client = connect()
    try:
        if ops.CHECKPOINT.officer:  # asked for by an officer allowed audit.checkpoint
            desk.signed_in(client, ops.CHECKPOINT.name)
        shares = desk.read_shares(args.share_file)
        made = client.call(ops.CHECKPOINT, ops.CheckpointRequest(shares=shares))
    finally:
        client.close()
    data = {"seq": made.seq, "hash": made.hash, "key": made.key}
    print(json.dumps(data) if args.json else f"checkpoint at row {made.seq}: {made.hash}")
    return 0
