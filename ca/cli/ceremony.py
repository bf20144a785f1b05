"""``jtca ceremony``: plan (here, from the file alone), init-token and run (at the service,
which alone holds the ministry's tokens; the file's text, the shares and the witnesses travel
in the request, the signed transcript comes back and is written here). The custodians' shares
come from files (``--share-file``) or hidden prompts, never the command line. Once the
authority has officers, the ceremony is also asked for by the officer signed in here.

A root ceremony's root and audit certificates — the audit log's trust anchors (issue #13) — are
written beside the transcript too, as ``<transcript stem>-root.pem`` and ``-audit.pem``: the
copies the ministry keeps outside the authority's machine for verifiers and witnesses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.ceremony.file import CeremonyError, load_ceremony, plan
from ca.cli import desk
from ca.core.errors import BadInput
from ca.core.files import write_atomically

if TYPE_CHECKING:
    from ca.client.http import Client


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
    desk.add_share_options(q)
    q.add_argument("--witness", action="append", required=True, help="a witness present")
    q.add_argument("--module", metavar="PATH", help=argparse.SUPPRESS)
    q.add_argument("--transcript", type=Path, help="where to write the signed transcript")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_run)


def file_text(path: Path) -> str:
    """The ceremony file's text, as its SHA-256 in the transcript is computed over it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CeremonyError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        shown = exc.object[exc.start : exc.start + 8].hex(" ")
        raise CeremonyError(
            f"{path}: not UTF-8 text: byte offset {exc.start}: {exc.reason} (bytes there: {shown})"
        ) from None


def connected(args: argparse.Namespace) -> Client:
    """The authority's service, as the officer signed in here if any: before the root ceremony
    there is none, and the custodians' quorum is the ceremony's authority."""
    return desk.connect()


def cmd_plan(args: argparse.Namespace) -> int:
    ceremony = load_ceremony(file_text(args.file), source=str(args.file))
    steps = plan(ceremony)
    if args.json:
        print(json.dumps({"ceremony": ceremony.name, "steps": steps}, ensure_ascii=False, indent=2))
    else:
        for i, step in enumerate(steps, 1):
            print(f"{i:>2}. {step}")
    return 0


def cmd_init_token(args: argparse.Namespace) -> int:
    from ca.ops import ceremony as ops

    text = file_text(args.file)
    client = connected(args)
    try:
        made = client.call(ops.INIT_TOKEN, ops.CeremonyFile(plan=text))
    finally:
        client.close()
    if args.json:
        print(json.dumps(made.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        print(
            f"token {made.token} created. Hand each custodian their two shares, then clear "
            "this screen:"
        )
        for pin, so_pin in zip(made.pin_shares, made.so_pin_shares, strict=True):
            print(f"  {pin.custodian}\n    PIN share:    {pin.share}")
            print(f"    SO PIN share: {so_pin.share}")
    return 0


def _write_once(path: Path, data: bytes) -> None:
    """Written atomically, unless the file holds these bytes already: the embedded service
    writes the transcript and its certificate copies into its own ``ceremonies/`` folder, which
    is where this command puts them by default (issue #14: one writer, one recovery)."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return
    except OSError:
        pass
    write_atomically(path, data)


def cmd_run(args: argparse.Namespace) -> int:
    from ca.ops import ceremony as ops

    if args.module is not None:
        raise BadInput(
            "--module: the authority's service opens the ministry's tokens with its own "
            "PKCS#11 module; configure it where the service runs"
        )
    text = file_text(args.file)
    client = connected(args)
    try:
        shares = desk.read_shares(args.share_file)
        outcome = client.call(
            ops.RUN, ops.RunRequest(plan=text, shares=shares, witnesses=args.witness)
        )
        embedded_state = client.target.state if client.target is not None else None
    finally:
        client.close()
    name = f"{outcome.file_sha256[:12]}.json"
    if args.transcript is not None:
        out = args.transcript
    elif embedded_state is not None:  # the embedded default keeps them in its state folder
        out = embedded_state / "ceremonies" / name
    else:
        out = Path(f"ceremony-{name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror}") from None
    _write_once(out, outcome.transcript)
    anchors = []
    for cert in outcome.certificates:
        if cert.role in ("root", "audit") and cert.pem:
            target = out.with_name(f"{out.stem}-{cert.role}.pem")
            _write_once(target, cert.pem.encode("ascii"))
            anchors.append((cert.role, target))
    if args.json:
        data = json.loads(outcome.transcript)["transcript"]
        print(
            json.dumps(
                {
                    "transcript": str(out),
                    "anchors": {role: str(path) for role, path in anchors},
                    "service_anchors": outcome.anchors,
                    "checkpoint": outcome.checkpoint,
                    "warnings": outcome.warnings,
                    **data,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(f"ceremony {outcome.ceremony!r} done; transcript {out}")
        for key in outcome.keys:
            print(f"  {key.key_class:<14} {key.public_key}  {key.uri}")
        for cert in outcome.certificates:
            print(f"  certificate {cert.role:<12} SHA-256 {cert.sha256}")
        for role, path in anchors:
            print(f"  trust anchor {role:<11} {path}")
        for path in outcome.anchors:
            print(f"  at the service {path}")
        if outcome.checkpoint is not None:
            first, size = outcome.checkpoint.split("\n")[:2]
            print(f"  checkpoint   {first} size {size}")
        for warning in outcome.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    return 0
