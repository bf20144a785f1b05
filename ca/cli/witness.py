"""``jtca witness``: a witness of the audit log (issue #13; docs/witness.md).

A province or an auditor runs the witness (``init``, ``cosign``, ``show``): a client that holds
no database and no ministry token, only its own token and folder. Each ``cosign`` round checks
the log's newest checkpoint against the audit certificate in the folder and against the last
checkpoint it cosigned, cosigns it, keeps its copy and hands the cosignature in; a split view is
refused, recorded and reported (exit 9).

The ministry registers and removes witnesses (``register``, ``remove``; a signed-in officer the
policy allows ``log.witness``) and lists them with the newest checkpoint each cosigned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ca.cli import desk
from ca.core.errors import BadInput, JtcaError
from ca.core.vocabulary import plural

if TYPE_CHECKING:
    from ca.ops.log import WitnessView
    from ca.witness.round import RoundResult, SplitView

MAX_EVERY: Final = 86400


def register(sub: Any) -> None:
    p = sub.add_parser("witness", help="a witness of the audit log: check, cosign, keep copies")
    wsub = p.add_subparsers(dest="witness_command", metavar="COMMAND", parser_class=type(p))
    wsub.required = True

    def command(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = wsub.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(handler=handler)
        return q

    q = command(
        "init",
        "make a witness: its key in its own token, its folder with the certificates it trusts",
        cmd_init,
    )
    q.add_argument("--name", required=True, help="the witness's name, e.g. witness.gd.gov.cn/jtca")
    q.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the witness's folder")
    q.add_argument(
        "--audit-cert",
        required=True,
        action="append",
        type=Path,
        metavar="PEM",
        help="the audit key's certificate from the root ceremony (repeat for each audit key)",
    )
    q.add_argument(
        "--root-cert",
        action="append",
        type=Path,
        default=[],
        metavar="PEM",
        help="the root certificate the audit certificate must be signed by",
    )
    q.add_argument(
        "--token",
        metavar="LABEL",
        help="the witness's token (default: witness-NAME in the embedded SoftHSM2)",
    )
    q.add_argument(
        "--create-token",
        action="store_true",
        help="first make the SoftHSM2 token in the state folder, with the PIN from --pin-source",
    )
    q.add_argument("--module", metavar="PATH", help="the PKCS#11 module of the witness's token")
    desk.add_pin_source(q)

    q = command(
        "cosign",
        "one round (or one every --every seconds): fetch, check, cosign and keep the newest "
        "checkpoint; a split view is refused and recorded (exit 9)",
        cmd_cosign,
    )
    q.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the witness's folder")
    q.add_argument("--every", type=int, metavar="SECONDS", help="keep going: a round every SECONDS")
    q.add_argument(
        "--rounds", type=int, default=0, metavar="N", help="with --every: stop after N rounds"
    )
    desk.add_pin_source(q)

    q = command("show", "the witness: its name, key, trust and the checkpoints it kept", cmd_show)
    q.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the witness's folder")

    q = command(
        "register",
        "register a witness's name and public key at the service (an officer allowed log.witness)",
        cmd_register,
    )
    q.add_argument("--name", required=True)
    q.add_argument(
        "--public-key", required=True, metavar="HEX", help="as jtca witness init printed"
    )
    q.add_argument("--note", default="", help="who runs it, for the record")

    q = command(
        "remove", "remove a witness: its cosignatures no longer count (log.witness)", cmd_remove
    )
    q.add_argument("--name", required=True)
    q.add_argument("--reason", required=True)

    command("list", "the log's witnesses and the newest checkpoint each cosigned", cmd_list)


# -- helpers ---------------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def _sm3(data: bytes) -> str:
    from hsm.sm.sm3 import sm3

    return sm3(data).hex()


def _iso(at: int | None) -> str | None:
    from ca.core.clock import iso_utc

    return iso_utc(at) if at is not None else None


def _new_pin(spec: str | None, name: str) -> str:
    from ca.site.personal_token import new_pin

    return new_pin(spec, f"witness {name}")


def _read_cert(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(data) > 64 * 1024:
        raise BadInput(f"{what} {path}: more than 64 KiB, not a certificate")
    return data


# -- the witness ---------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from ca.core.files import write_atomically
    from ca.log.anchors import Anchor, audit_key_of, root_keys
    from ca.ops.log import witness_name_problem
    from ca.witness.folder import TRUST, WitnessConfig, WitnessFolder, WitnessFolderError
    from ca.witness.token import WitnessToken, create_embedded_token, default_label, pin_source

    problem = witness_name_problem(args.name)
    if problem is not None:
        raise BadInput(f"--name: {problem}")
    if args.create_token and args.module:
        raise BadInput(
            "--create-token makes a SoftHSM2 token in the state folder; a USB key or an HSM is "
            "initialised with its vendor's tool, then named with --module and --token"
        )
    if args.module and not args.token:
        raise BadInput("--module: name the token with --token LABEL")
    folder = WitnessFolder(args.dir)
    if folder.exists():
        raise WitnessFolderError(
            f"{args.dir} is already the folder of a witness ({folder.config_path}); a witness is "
            "made once"
        )
    # the certificates first: nothing is made for a witness that could trust nothing
    audits = [Anchor(str(p), _read_cert(p, "--audit-cert")) for p in args.audit_cert]
    roots = [Anchor(str(p), _read_cert(p, "--root-cert")) for p in args.root_cert]
    trusted_roots = root_keys(roots)
    audit_keys = [audit_key_of(anchor, trusted_roots) for anchor in audits]

    label = args.token or default_label(args.name)
    softhsm = None if args.module else (desk.state() / "softhsm2").resolve()
    pin: Any = None
    if args.create_token and softhsm is not None:
        from ca.site.personal_token import GivenPin

        pin = GivenPin(_new_pin(args.pin_source, args.name))
        create_embedded_token(softhsm, label, pin.pin())
    token = WitnessToken(
        label, pin or pin_source(args.pin_source, args.name), module=args.module, softhsm=softhsm
    )
    try:
        public = token.generate_key().uncompressed
    finally:
        token.close()

    try:
        (args.dir / TRUST).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--dir {args.dir}: cannot make it ({exc.strerror})") from None
    names: dict[str, list[str]] = {"audit": [], "root": []}
    for role, anchors in (("audit", audits), ("root", roots)):
        for i, anchor in enumerate(anchors, 1):
            name = f"{TRUST}/{role}-{i}.pem"
            write_atomically(args.dir / name, anchor.data)
            names[role].append(name)
    config = WitnessConfig(
        name=args.name,
        public_key=public.hex(),
        token_label=label,
        module=args.module,
        softhsm=str(softhsm) if softhsm else None,
        audit_certs=tuple(names["audit"]),
        root_certs=tuple(names["root"]),
        created_at=int(time.time()),
    )
    folder.save(config)
    data = {
        "name": args.name,
        "dir": str(args.dir),
        "token": label,
        "created_token": bool(args.create_token),
        "public_key": public.hex(),
        "sm3": _sm3(public),
        "audit_keys": [k.compressed.hex() for k in audit_keys],
    }
    _emit(
        args,
        data,
        f"witness {args.name}: key generated in token {label}\n"
        f"  public key {public.hex()}\n  its SM3 {data['sm3']}\n"
        f"  trusts the audit key(s) {', '.join(data['audit_keys'])}\n"
        "Have a ministry root officer register it:\n"
        f"  jtca witness register --name {args.name} --public-key {public.hex()}\n"
        f"then run: jtca witness cosign --dir {args.dir}",
    )
    return 0


def _round_json(result: RoundResult) -> dict[str, Any]:
    import base64

    accepted = result.accepted
    return {
        "size": result.size,
        "root": base64.b64encode(result.root).decode(),
        "previous": result.previous,
        "new": result.new,
        "copy": str(result.copy),
        "cosigners": accepted.cosigners if accepted else None,
        "quorum": accepted.quorum if accepted else None,
        "witnessed": accepted.witnessed if accepted else None,
        "error": (
            {"title": result.submit_error.title, "message": result.submit_error.message}
            if result.submit_error
            else None
        ),
    }


def _round_text(result: RoundResult) -> str:
    what = "cosigned" if result.new else "already cosigned"
    since = (
        "its first checkpoint"
        if result.previous is None
        else f"consistent with size {result.previous}"
        if result.previous != result.size
        else "the same tree as before"
    )
    text = f"{what} the checkpoint of size {result.size} ({since}); copy {result.copy}"
    if result.accepted is not None:
        a = result.accepted
        state = "witnessed" if a.witnessed else "not yet witnessed"
        text += (
            f"\n  the service counts {a.cosigners} of {plural(a.quorum, 'cosignature')}: {state}"
        )
    elif result.submit_error is not None:
        err = result.submit_error
        text += f"\n  the service did not take the cosignature: {err.title}: {err.message}"
    return text


def split_view_banner(exc: SplitView) -> str:
    line = "!" * 78
    return "\n".join(
        (
            line,
            f"SPLIT VIEW: {exc.headline}",
            f"  {exc.detail}",
            "  This witness refused to cosign and will never cosign that view.",
            f"  Evidence: {exc.evidence}",
            "  Keep the folder; tell the ministry and the other witnesses (docs/witness.md).",
            line,
        )
    )


def cmd_cosign(args: argparse.Namespace) -> int:
    from ca.client.http import connect
    from ca.witness.folder import WitnessFolder
    from ca.witness.round import EXIT_SPLIT_VIEW, ServiceLog, SplitView, Witness
    from ca.witness.token import WitnessToken, pin_source

    if args.every is not None and not 1 <= args.every <= MAX_EVERY:
        raise BadInput(f"--every: {args.every} seconds, use 1 to {MAX_EVERY}")
    if args.rounds < 0 or (args.rounds and args.every is None):
        raise BadInput("--rounds: a positive number of rounds, with --every")
    pin_source(args.pin_source, "")  # a PIN given as the value is refused before anything
    folder = WitnessFolder(args.dir)
    config = folder.load()
    token = WitnessToken(
        config.token_label,
        pin_source(args.pin_source, config.name),
        module=config.module,
        softhsm=Path(config.softhsm) if config.softhsm else None,
    )
    client = connect(anonymous=True)
    try:
        witness = Witness(folder, token, ServiceLog(client))
        done = 0
        while True:
            try:
                result = witness.round()
            except SplitView as exc:
                print(split_view_banner(exc), file=sys.stderr)
                if args.json:
                    print(json.dumps({"split_view": exc.headline, "evidence": str(exc.evidence)}))
                return EXIT_SPLIT_VIEW
            except JtcaError as exc:
                if args.every is None:
                    raise
                from ca.cli.main import report  # one round's error; the next is tried

                report(exc.title, exc.message, exc.exit_code, as_json=args.json)
            else:
                _emit(args, _round_json(result), _round_text(result))
                if args.every is None:
                    if result.submit_error is not None:
                        raise result.submit_error
                    return 0
            done += 1
            if args.rounds and done >= args.rounds:
                return 0
            sys.stdout.flush()
            time.sleep(args.every)
    finally:
        client.close()
        token.close()


def cmd_show(args: argparse.Namespace) -> int:
    import base64

    from ca.log.note import COSIGNATURE_TYPE, SignedNote, Verifier
    from ca.witness.folder import WitnessFolder
    from hsm.sm.sm2 import SM2PublicKey

    folder = WitnessFolder(args.dir)
    config = folder.load()
    newest: dict[str, Any] | None = None
    raw = folder.newest()
    if raw is not None:
        note = SignedNote.parse(raw)
        checkpoint = note.checkpoint()
        me = Verifier(
            config.name, SM2PublicKey.from_bytes(bytes.fromhex(config.public_key)), COSIGNATURE_TYPE
        )
        own = me.find(note)
        newest = {
            "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root).decode(),
            "cosigned_at": _iso(int.from_bytes(own.signature[:8], "big")) if own else None,
        }
    splits = [str(p) for p in folder.split_views()]
    data = {
        "name": config.name,
        "dir": str(args.dir),
        "public_key": config.public_key,
        "sm3": _sm3(bytes.fromhex(config.public_key)),
        "token": config.token_label,
        "module": config.module,
        "softhsm": config.softhsm,
        "origin": config.origin,
        "audit_certs": list(config.audit_certs),
        "root_certs": list(config.root_certs),
        "checkpoints": len(folder.sizes()),
        "newest": newest,
        "split_views": splits,
    }
    lines = [
        f"witness {config.name} ({args.dir})",
        f"  key {config.public_key} (SM3 {data['sm3']}) in token {config.token_label}"
        + (f" ({config.module})" if config.module else ""),
        f"  watches the log {config.origin or '(not yet seen)'}, trusting "
        + ", ".join(config.audit_certs + config.root_certs),
        f"  {plural(len(folder.sizes()), 'checkpoint')} cosigned"
        + (
            f"; the newest: size {newest['size']}, root {newest['root']}, cosigned "
            f"{newest['cosigned_at']}"
            if newest
            else ""
        ),
    ]
    lines += [f"  SPLIT VIEW recorded: {path}" for path in splits]
    _emit(args, data, "\n".join(lines))
    return 0


# -- the ministry's side --------------------------------------------------------------------------
def _witness_json(view: WitnessView) -> dict[str, Any]:
    return {
        "name": view.name,
        "public_key": view.public_key,
        "state": view.state,
        "added_at": _iso(view.added_at),
        "added_by": view.added_by,
        "last_size": view.last_size,
        "last_at": _iso(view.last_at),
    }


def _witness_text(view: WitnessView) -> str:
    last = (
        f"last cosigned size {view.last_size} at {_iso(view.last_at)}"
        if view.last_size is not None
        else "nothing cosigned yet"
    )
    return f"{view.name}  {view.state}  key {view.public_key[:16]}…  {last}"


def cmd_register(args: argparse.Namespace) -> int:
    from ca.ops import log as ops

    view = desk.call(
        ops.WITNESS_ADD,
        ops.WitnessAddRequest(name=args.name, public_key=args.public_key, note=args.note),
    )
    _emit(args, _witness_json(view), "registered witness " + _witness_text(view))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from ca.ops import log as ops

    view = desk.call(
        ops.WITNESS_REMOVE, ops.WitnessRemoveRequest(name=args.name, reason=args.reason)
    )
    _emit(args, _witness_json(view), "removed witness " + _witness_text(view))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ca.ops import log as ops

    found = desk.call(ops.WITNESSES, ops.Empty())
    data = {"quorum": found.quorum, "witnesses": [_witness_json(w) for w in found.witnesses]}
    text = "\n".join(
        [f"quorum: {plural(found.quorum, 'cosignature')} make a checkpoint witnessed"]
        + [_witness_text(w) for w in found.witnesses]
    )
    _emit(args, data, text)
    return 0
