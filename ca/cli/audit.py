"""``jtca audit``: verify the log (at the service, against checkpoint files found here and
the audit certificate file; or an exported bundle here, with no service: an auditor's own check),
sign a checkpoint now, export a verifiable bundle, write the evidence of signed approvals. Every
command that asks a remote service needs a signed-in officer (``jtca login``) whose role the
policy grants that action; verifying the embedded state needs none."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ca.cli import desk
from ca.core.errors import BadInput
from ca.core.files import write_atomically
from ca.core.vocabulary import plural

if TYPE_CHECKING:
    from ca.ops.audit import VerifyResult

EXIT_TAMPERED: Final = 8


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="COMMAND", parser_class=type(p))
    asub.required = True

    v = asub.add_parser(
        "verify",
        help="check the log against checkpoints from outside the database; name any tampering",
    )
    v.add_argument("--bundle", type=Path, help="verify an exported bundle here, with no service")
    v.add_argument(
        "--checkpoint",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a checkpoint file, or a folder of them (a checkpoint folder, a witness's folder)",
    )
    v.add_argument(
        "--witness-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a witness's folder: its copies of the checkpoints it cosigned",
    )
    v.add_argument(
        "--audit-cert",
        action="append",
        type=Path,
        default=[],
        metavar="PEM",
        help="the audit certificate from the root ceremony (default: the state folder's "
        "ceremonies/audit-*.pem)",
    )
    v.add_argument(
        "--root-cert",
        action="append",
        type=Path,
        default=[],
        metavar="PEM",
        help="the root certificate the audit certificate must chain to",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_verify)

    c = asub.add_parser(
        "checkpoint",
        help="sign a checkpoint of the log now (the service also "
        "signs one after every batch of changes)",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_checkpoint)

    r = asub.add_parser(
        "resume",
        help="after investigating a halted log, let checkpoints cover its unsealed entries",
    )
    r.add_argument(
        "--through",
        type=int,
        required=True,
        metavar="ENTRY",
        help="the last entry investigated (every unsealed entry up to it is let through)",
    )
    r.add_argument("--reason", required=True, help="what the investigation found (kept in the log)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_resume)

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


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None


def _local_anchors(args: argparse.Namespace, state: Path | None) -> tuple[list[Path], list[Path]]:
    """The certificate files to trust: those given, else the embedded state's anchor files."""
    from ca.log.anchors import anchor_files

    if args.audit_cert or state is None:
        return list(args.audit_cert), list(args.root_cert)
    audit_files, root_files = anchor_files(state)
    return audit_files, list(args.root_cert) or root_files


def verify_bundle_here(args: argparse.Namespace) -> VerifyResult:
    """An exported bundle checked on this machine: no service, no database (pure)."""
    from ca.cli.progress import tracked
    from ca.client.config import state_dir
    from ca.log.anchors import read_anchor, verifiers_from
    from ca.log.verify import read_checkpoint_files, verify_bundle
    from ca.ops.audit import VerifyResult

    state = state_dir()
    audit_files, root_files = _local_anchors(args, state if state.is_dir() else None)
    if not audit_files:
        raise BadInput("--audit-cert: give the root ceremony's audit certificate file")
    anchors = [read_anchor(p) for p in audit_files]
    verifiers = verifiers_from(anchors, [read_anchor(p) for p in root_files], "jtca")
    sources = read_checkpoint_files([*args.checkpoint, *args.witness_dir])
    keys = [v.public_key for v in verifiers]
    report = verify_bundle(
        _read(args.bundle, "the bundle"),
        checkpoints=sources,
        audit_keys=keys,
        source=str(args.bundle),
        track=lambda entries: tracked(
            entries, len(entries), "verifying the audit log", json_output=args.json
        ),
    )
    return VerifyResult.of(
        report,
        anchors=[
            f"{a.name}: audit key {k.compressed.hex()[:16]}…"
            for a, k in zip(anchors, keys, strict=False)
        ],
    )


def verify_at_service(args: argparse.Namespace) -> VerifyResult:
    """The database's log checked by the service against the checkpoint files found here."""
    from ca.log.verify import read_checkpoint_files
    from ca.ops import audit as ops

    client = desk.connect()
    try:
        state = client.target.state if client.target is not None else None
        if state is None:  # a remote service: an officer allowed audit.verify
            desk.signed_in(client, ops.VERIFY.name)
        sources = read_checkpoint_files([*args.checkpoint, *args.witness_dir])
        request = ops.VerifyRequest(
            checkpoints=[
                ops.CheckpointFile(source=name, note=data.decode("utf-8", "replace"))
                for name, data in sources
            ],
            audit_certificates=[
                ops.CertificateFile(source=str(p), data=_read(p, "the certificate"))
                for p in args.audit_cert
            ],
            root_certificates=[
                ops.CertificateFile(source=str(p), data=_read(p, "the certificate"))
                for p in args.root_cert
            ],
        )
        return desk.call_with_progress(client, ops.VERIFY, request, args)
    finally:
        client.close()


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify_bundle_here(args) if args.bundle is not None else verify_at_service(args)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return 0 if report.ok else EXIT_TAMPERED
    verdict = "intact" if report.ok else f"TAMPERED ({plural(len(report.findings), 'finding')})"
    print(f"audit log: {plural(report.events, 'entry')}: {verdict}")
    for anchor in report.anchors:
        print(f"  trusted {anchor}")
    if report.newest_checkpoint is not None:
        quorum = f" (quorum {report.witness_quorum})" if report.witness_quorum else ""
        witnessed = ", ".join(report.witnessed_by) or "no witness yet"
        print(
            f"  newest checkpoint: {plural(report.newest_checkpoint, 'entry')}, "
            f"from {report.newest_source}"
            f"; cosigned by {witnessed}{quorum}"
        )
        print(
            f"  {plural(report.checkpoints, 'signed checkpoint')} found; "
            f"{plural(report.sealed, 'newer entry')} sealed"
        )
    if report.halted:
        print(f"  HALTED: the service signs no checkpoint: {report.halted}")
    for f in report.findings:
        where = f"entry {f.seq}" if f.seq else "log"
        print(f"  {where}: {f.problem}: {f.message}")
    return 0 if report.ok else EXIT_TAMPERED


def cmd_export(args: argparse.Namespace) -> int:
    from ca.ops import audit as ops
    from ca.ops.base import Empty

    exported = desk.call(ops.EXPORT, Empty())  # an officer allowed audit.export (the auditor)
    write_atomically(args.out, exported.bundle)
    data = {"bundle": str(args.out), "entries": exported.events}
    print(
        json.dumps(data) if args.json else f"wrote {args.out}: {plural(exported.events, 'entry')}"
    )
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


def cmd_resume(args: argparse.Namespace) -> int:
    from ca.ops import audit as ops

    done = desk.call(ops.RESUME, ops.ResumeRequest(through=args.through, reason=args.reason))
    if args.json:
        print(json.dumps(done.model_dump(mode="json")))
        return 0
    listed = ", ".join(str(n) for n in done.entries)
    print(f"let through the unsealed entries {listed} (up to {done.through}); recorded in the log")
    if done.checkpoint is not None:
        print(f"checkpoint of {plural(done.checkpoint, 'entry')} signed")
    else:
        print("no checkpoint yet: later entries still stop it (jtca audit verify)")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from ca.ops import audit as ops
    from ca.ops.base import Empty

    made = desk.call(ops.CHECKPOINT, Empty())  # an officer allowed audit.checkpoint
    data = {"size": made.size, "root": made.root, "key": made.key}
    print(
        json.dumps(data)
        if args.json
        else f"checkpoint of {plural(made.size, 'entry')}: root {made.root}"
    )
    return 0
