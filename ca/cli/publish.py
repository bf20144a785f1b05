"""``jtca publish`` (the publisher: unattended, on a timer) and ``jtca lists`` (history, the
terminal-side check, operators and their acknowledgments, emergency publication): clients of the
authority service (``ca.ops.lists``).

The service publishes into its own publication folder. ``jtca publish --out DIR`` mirrors it:
every version the folder lacks goes to ``DIR/archive/<type>/<type>-<sequence>.der`` and each
list's current version to ``DIR/<type>.der`` with its JSON rendering ``DIR/<type>.json``, each
file written atomically, the current ones only after they pass the terminal-side check against
the root — the layout terminals and ``jtca qr inspect --lists DIR`` read. Each version's log
proof (issue #13, docs/lists.md) goes beside it as ``<file>.proof`` once a checkpoint covers it
(a version published by this run gets its proof on the next run, or from ``jtca lists proof``).
``jtca lists verify`` needs no service: it is what a terminal does; ``jtca lists check-proof``
checks a proof with the audit certificate alone.

Commands act as the officer of this machine's session (``jtca login``, issue #12); a timer's
unattended ``jtca publish --officer ID --officer-pin-source file:…`` signs in for its run only.
An emergency request's approval is signed with the approver's own token. The list-signing key's
token is opened with the custodians' shares (``--share-file``, ``--share-prompt``) or its PIN
(``--pin-source``), never values on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ca.core.errors import BadInput, JtcaError
from ca.core.vocabulary import plural, request_ref

if TYPE_CHECKING:
    from ca.client.http import Client
    from ca.ops import lists as ops
    from ca.ops.base import Model

M = TypeVar("M", bound="Model")

LIST_CHOICES: Final = ["issuer-whitelist", "city-list", "ca-key-list"]  # ca.ops.lists.LIST_NAMES
LOAD_DEADLINE_DAYS: Final = 15  # 第十二条
LOCK_NAME: Final = ".publish.lock"  # a mirror folder's lock: one writer of its files at a time
PROOF_SUFFIX: Final = ".proof"  # ca.log.proofbundle.SUFFIX: a version's log proof beside it


class NoPin(JtcaError):
    title = "No PIN"
    exit_code = 5


class MirrorError(JtcaError):
    title = "Mirror refused"
    exit_code = 4


def _key_options(q: argparse.ArgumentParser) -> None:
    """How the service opens the list-signing key's token: the custodians' shares (from files or
    hidden prompts) or the token's PIN (from a PIN source) — never on the command line."""
    pins = q.add_mutually_exclusive_group()
    pins.add_argument(
        "--share-file",
        action="append",
        type=Path,
        metavar="PATH",
        help="a file holding a custodian's share of the root token's PIN (one per file; M of N)",
    )
    pins.add_argument(
        "--share-prompt",
        action="store_true",
        help="the custodians type their shares of the root token's PIN at hidden prompts",
    )
    pins.add_argument(
        "--pin-source",
        metavar="SPEC",
        help="the list-signing token's PIN: file:PATH, env:VAR or prompt (unattended)",
    )
    q.add_argument("--module", metavar="PATH", help=argparse.SUPPRESS)  # the service's now


def _run_officer_options(q: argparse.ArgumentParser) -> None:
    """An unattended run (a timer) signs in for itself: the officer's own token signs the
    challenge, the session lives for this run only (no session file) and is ended after."""
    q.add_argument(
        "--officer",
        metavar="ID",
        help="sign in as this officer for this run only (unattended; default: this machine's "
        "session, jtca login)",
    )
    q.add_argument("--officer-token", metavar="LABEL", help="with --officer: their token")
    q.add_argument("--officer-module", metavar="PATH", help="with --officer: its PKCS#11 module")
    q.add_argument(
        "--officer-pin-source",
        metavar="SPEC",
        help="with --officer: their token's PIN, env:VAR, file:PATH or prompt",
    )


def register(sub: Any) -> None:
    q = sub.add_parser(
        "publish",
        help="build, sign and publish the signed lists (idempotent; for a timer)",
        description="Publish each list whose content changed or whose nextUpdate nears "
        "(the authority service signs and keeps every version), then mirror the published "
        "lists into --out; a database lock makes publishers at once safe.",
    )
    q.add_argument("--out", type=Path, help="the folder to mirror into (default: STATE/lists)")
    q.add_argument("--list", action="append", choices=LIST_CHOICES, help="only these lists")
    q.add_argument("--dry-run", action="store_true", help="show what would change; sign nothing")
    q.add_argument("--validity-hours", type=float, default=24.0, help="nextUpdate - thisUpdate")
    q.add_argument("--refresh-hours", type=float, default=6.0, help="republish this close to it")
    # `jtca publish emergency N`: the same positional shape for ids as `jtca lists approve N`
    # (issue #17); no argparse choices, so a wrong word is said as such
    q.add_argument(
        "kind",
        nargs="?",
        metavar="emergency",
        help="publish approved emergency request N (第三十四条) instead of the routine lists",
    )
    q.add_argument("number", nargs="?", type=int, metavar="N", help="the request's number")
    # the shape before one positional shape for ids (issue #17): deprecated, still works
    q.add_argument("--emergency", type=int, metavar="N", help=argparse.SUPPRESS)
    q.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for another publisher's lock before exit 75 (default 120)",
    )
    q.add_argument("--json", action="store_true")
    _key_options(q)
    _run_officer_options(q)
    q.set_defaults(handler=cmd_publish)

    p = sub.add_parser("lists", help="published lists: history, verify, acknowledgments")
    lsub = p.add_subparsers(dest="lists_command", metavar="COMMAND", parser_class=type(p))
    lsub.required = True

    q = lsub.add_parser("history", help="every published version")
    q.add_argument("--list", choices=LIST_CHOICES)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_history)

    q = lsub.add_parser("verify", help="check a list as a terminal does, and show it")
    q.add_argument("file", type=Path)
    q.add_argument("--root", type=Path, required=True, help="the trusted root certificate")
    q.add_argument("--list", choices=LIST_CHOICES, help="the type the terminal expects")
    q.add_argument("--previous-sequence", type=int, help="the sequence the terminal holds")
    q.add_argument("--grace-hours", type=float, default=0.0)
    q.set_defaults(handler=cmd_verify)

    q = lsub.add_parser(
        "proof",
        help="write a published version's log proof (jtca-log-proof/1, docs/lists.md)",
        description="Fetch the proof that the audit log holds a published list version: its log "
        "entry, the inclusion proof and the cosigned checkpoint covering it. Keep it beside the "
        "list as <list file>.proof. Refused (exit 75) until a checkpoint covers the entry.",
    )
    q.add_argument("list_type", metavar="TYPE", choices=LIST_CHOICES)
    q.add_argument("sequence", metavar="SEQUENCE", type=int)
    q.add_argument("--out", type=Path, required=True, metavar="FILE")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_proof)

    q = lsub.add_parser(
        "check-proof",
        help="check a list's log proof offline, trusting only the audit certificate",
        description="Check that the audit log holds this list: the proof's entry records the "
        "list's SM3, the inclusion proof leads to the checkpoint's root, the checkpoint is "
        "signed by the audit key the certificate file certifies (checked against the root "
        "certificate when given) and, with --quorum, cosigned by enough of the witnesses "
        "given. No service, no database, no token.",
    )
    q.add_argument("--list", type=Path, required=True, dest="list_file", metavar="LIST.der")
    q.add_argument("--proof", type=Path, metavar="FILE", help="default: LIST.der.proof")
    q.add_argument(
        "--audit-cert",
        type=Path,
        action="append",
        required=True,
        metavar="PEM",
        help="the audit key's certificate from the root ceremony (repeat for several)",
    )
    q.add_argument(
        "--root-cert",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="the root certificate the audit certificate must be signed by",
    )
    q.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="a trusted witness: its name and SM2 public key in hex (repeat)",
    )
    q.add_argument("--quorum", type=int, default=0, help="witnesses that must have cosigned")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_check_proof)

    q = lsub.add_parser("root", help="write the root certificate terminals trust (DER or PEM)")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--pem", action="store_true")
    q.set_defaults(handler=cmd_root)

    q = lsub.add_parser("operator-add", help="register an operator that loads the lists")
    q.add_argument("--id", required=True, dest="operator_id")
    q.add_argument("--name", default="")
    q.add_argument("--province")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_operator_add)

    q = lsub.add_parser("ack", help="import operators' load reports (CSV or JSON)")
    q.add_argument("report", type=Path)
    q.add_argument("--format", choices=["csv", "json"])
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_ack)

    q = lsub.add_parser("overdue", help="operators that have not loaded a list in 15 days")
    q.add_argument("--days", type=int, default=LOAD_DEADLINE_DAYS)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_overdue)

    q = lsub.add_parser("emergency", help="ask for an emergency publication (第三十四条)")
    q.add_argument("--reason", required=True)
    q.add_argument("--out", type=Path)
    q.add_argument("--json", action="store_true")
    _key_options(q)
    q.set_defaults(handler=cmd_emergency)

    for name in ("approve", "reject"):
        q = lsub.add_parser(name, help=f"{name} an emergency publication request")
        q.add_argument("request", type=int)
        q.add_argument("--reason", default="")
        q.add_argument("--out", type=Path)
        q.add_argument("--json", action="store_true")
        _key_options(q)
        q.add_argument(
            "--officer-pin-source",
            metavar="SPEC",
            help="your own token's PIN, to sign the decision: env:VAR, file:PATH or prompt "
            "(default: a hidden prompt)",
        )
        q.set_defaults(handler=cmd_decide, approve=name == "approve")


# -- helpers -------------------------------------------------------------------------------
def _hours(value: float, option: str) -> int:
    if value != value or value < 0:  # NaN or negative
        raise BadInput(f"{option} {value}: a number of hours, 0 or more")
    return int(value * 3600)


def _out(args: argparse.Namespace) -> Path:
    from ca.client.config import state_dir

    return args.out if args.out is not None else state_dir() / "lists"


def _connect(what: str | None = None) -> Client:
    """The service, as the officer of this machine's session; ``what`` needs one."""
    from ca.cli import desk

    client = desk.connect()
    if what is not None:
        try:
            desk.signed_in(client, what)
        except JtcaError:
            client.close()
            raise
    return client


def _run_client(args: argparse.Namespace) -> Client:
    """``jtca publish``'s client: signed in for this run with ``--officer`` (unattended), else
    this machine's session."""
    if args.officer is None:
        for option in ("officer_token", "officer_module", "officer_pin_source"):
            if getattr(args, option) is not None:
                raise BadInput(f"--{option.replace('_', '-')} goes with --officer")
        return _connect("jtca publish")
    from ca.cli import desk
    from ca.client.session import RequestSigner

    client = desk.connect(anonymous=True)
    try:
        data = desk.sign_in_with_token(
            client,
            args.officer,
            token=args.officer_token,
            module=args.officer_module,
            pin=args.officer_pin_source,
        )
    except BaseException:
        client.close()
        raise
    return client.signed_in(RequestSigner(data))


def _sign_out(client: Client, args: argparse.Namespace) -> None:
    """End a run's own session (``--officer``); this machine's session is left as it was."""
    if getattr(args, "officer", None) is None or client.signer is None:
        return
    from ca.client.http import ServiceError
    from ca.ops import auth as auth_ops
    from ca.ops.base import Empty

    try:
        client.call(auth_ops.SIGN_OUT, Empty())
    except (ServiceError, JtcaError) as exc:  # the run's work is done; say it, do not fail it
        print(f"jtca: warning: the run's session did not end: {exc.message}", file=sys.stderr)


def _read_pin(spec: str) -> str:
    """The token PIN named by ``env:VAR``, ``file:PATH`` or ``prompt``, read here and sent to
    the service, which opens the token with it."""
    kind, _, rest = spec.partition(":")
    if kind == "env" and rest:
        value = os.environ.get(rest)
        if not value:
            raise NoPin(f"environment variable {rest} holds no PIN")
        return value
    if kind == "file" and rest:
        try:
            value = Path(rest).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise NoPin(f"cannot read PIN file {rest}: {problem}") from None
        if not value:
            raise NoPin(f"PIN file {rest} is empty")
        return value
    if spec == "prompt":
        import getpass

        value = getpass.getpass("Token PIN: ")
        if not value:
            raise NoPin("no PIN entered")
        return value
    raise NoPin(
        f"PIN source {spec!r}: use env:VARIABLE, file:PATH or prompt", title="Bad PIN source"
    )


def _unlock(args: argparse.Namespace) -> dict[str, Any]:
    """The request's key fields: the shares (from files or hidden prompts), or the PIN the pin
    source names."""
    from ca.cli import desk

    if getattr(args, "module", None):
        raise BadInput(
            "--module: the authority service holds the tokens and their PKCS#11 module; "
            "configure it where the service runs"
        )
    if args.share_file or args.share_prompt:
        return {"shares": desk.read_shares(args.share_file)}
    if args.pin_source:
        return {"pin": _read_pin(args.pin_source)}
    return {}


def _request(model: type[M], **fields: Any) -> M:
    """A request model, or one line naming the field the service would refuse."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "(request)"
        raise BadInput(f"{where}: {first.get('msg', 'invalid')}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sm3(data: bytes) -> str:
    from hsm.sm.sm3 import sm3

    return sm3(data).hex()


# -- the mirror ----------------------------------------------------------------------------
def archive_path(out: Path, list_type: str, sequence: int) -> Path:
    return out / "archive" / list_type / f"{list_type}-{sequence:010d}.der"


@contextlib.contextmanager
def _mirror_lock(out: Path) -> Iterator[None]:
    """One writer of a mirror folder at a time (flock: released if the process dies)."""
    import fcntl

    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _held_sequence(out: Path, list_type: str) -> int:
    """The sequence of the folder's current list, by its JSON rendering (0 if none)."""
    try:
        held = json.loads((out / f"{list_type}.json").read_text(encoding="utf-8"))
        return int(held["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _sweep(out: Path) -> None:
    """Remove the temporary files a mirror killed inside a write left (``.<name>.<random>.tmp``,
    ``ca.core.files.write_atomically``) in the folder and its archive folders: called with the
    folder's lock held, so no live mirror of it is mid-write (issue #14)."""
    folders = [out]
    with contextlib.suppress(OSError):
        folders += [p for p in (out / "archive").iterdir() if p.is_dir()]
    for folder in folders:
        with contextlib.suppress(OSError):
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()


def mirror(client: Client, out: Path, result: ops.PublishResult) -> None:
    """Write what the service published into ``out`` (see the module docstring): the versions
    this run published come with the result, the others the folder lacks are fetched
    (``lists.version``). A current file is replaced only by a newer version, so two mirrors of
    one folder at once never turn it back."""
    from ca.client.http import ServiceError
    from ca.core.files import write_atomically
    from ca.ops import lists as ops
    from ca.ops.base import Empty
    from hsm.crashpoints import crash_point

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create {out}: {exc.strerror}") from None
    given = {(f.list_type, f.sequence): f for f in result.published}
    root: list[bytes] = []
    with _mirror_lock(out):
        _sweep(out)
        for current in result.current:
            name = current.list_type
            for sequence in range(1, current.sequence + 1):
                path = archive_path(out, name, sequence)
                newest = sequence == current.sequence
                if path.exists() and (not newest or _sha256(path.read_bytes()) == current.sha256):
                    continue
                try:
                    found = given.get((name, sequence)) or client.call(
                        ops.VERSION, ops.VersionRequest(list_type=name, sequence=sequence)
                    )
                except ServiceError as exc:
                    if newest:
                        raise
                    print(
                        f"jtca: warning: {name} version {sequence}: {exc.message}", file=sys.stderr
                    )
                    continue
                if _sha256(found.der) != found.sha256 or (
                    newest and found.sha256 != current.sha256
                ):
                    raise MirrorError(
                        f"the service sent {name} version {sequence} with a SHA-256 that is not "
                        "the one it recorded"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, found.der)
                crash_point("lists.mirror:after-archive")
            target = out / f"{name}.der"
            with contextlib.suppress(OSError):
                if _sha256(target.read_bytes()) == current.sha256:
                    continue
            if _held_sequence(out, name) > current.sequence:
                continue  # a newer mirror came first
            if not root:
                root.append(client.call(ops.ROOT, Empty()).der)
            data = archive_path(out, name, current.sequence).read_bytes()
            write_atomically(out / f"{name}.json", _rendered(data, current, root[0]))
            crash_point("lists.mirror:after-json")
            with contextlib.suppress(FileNotFoundError):  # the old version's proof, not this one's
                (out / f"{name}.der{PROOF_SUFFIX}").unlink()
            write_atomically(target, data)
            crash_point("lists.mirror:after-current")
        for current in result.current:
            _mirror_proofs(client, out, current)


def _mirror_proofs(client: Client, out: Path, current: ops.CurrentVersion) -> None:
    """Each mirrored version's log proof beside it (``<file>.proof``, docs/lists.md), newest
    first: one a checkpoint covers is written (and copied beside the current file); one no
    checkpoint covers yet is left for the next run; the walk stops at a version that has its
    proof already or that no log entry records (published before lists were logged)."""
    from ca.client.http import ServiceError
    from ca.core.files import write_atomically
    from ca.ops import lists as ops

    name = current.list_type
    for sequence in range(current.sequence, 0, -1):
        path = archive_path(out, name, sequence)
        proof_path = path.with_name(path.name + PROOF_SUFFIX)
        if proof_path.exists():
            break
        if not path.exists():
            continue
        try:
            found = client.call(ops.PROOF, ops.ProofRequest(list_type=name, sequence=sequence))
        except ServiceError as exc:
            if exc.status == 409:  # not yet in a checkpoint: the next run writes it
                continue
            if exc.status != 404:
                print(f"jtca: warning: {name} version {sequence}: {exc.message}", file=sys.stderr)
            break
        from ca.log.entry import LogEntry
        from ca.log.proofbundle import LogProof

        mirrored = _sm3(path.read_bytes())
        try:  # the proof's own entry must name the bytes mirrored, whatever the service says
            logged = LogEntry.parse(LogProof.parse(found.proof).entry).object_sm3
        except JtcaError as exc:
            raise MirrorError(
                f"the service sent an unreadable log proof of {name} version {sequence}: {exc}"
            ) from None
        if mirrored not in (found.sm3, logged) or found.sm3 != logged:
            raise MirrorError(
                f"the service sent a log proof of {name} version {sequence} for other bytes "
                f"(its entry names SM3 {logged}) than the version mirrored (SM3 {mirrored})"
            )
        write_atomically(proof_path, found.proof)
    current_proof = archive_path(out, name, current.sequence)
    current_proof = current_proof.with_name(current_proof.name + PROOF_SUFFIX)
    beside = out / f"{name}.der{PROOF_SUFFIX}"
    if (
        current_proof.exists()
        and not beside.exists()
        and _held_sequence(out, name) == current.sequence
    ):
        write_atomically(beside, current_proof.read_bytes())


def _rendered(data: bytes, current: ops.CurrentVersion, root_der: bytes) -> bytes:
    """The JSON rendering of a list that passed the terminal-side check (signature, signer
    certified by the root, type and sequence) as of its own thisUpdate."""
    from ca.lists.asn1 import ListType
    from ca.lists.render import render_json
    from ca.lists.verify import load_list

    verified = load_list(
        data,
        trusted_root_der=root_der,
        expected_type=ListType(current.list_type),
        now=current.this_update,
        grace_seconds=0,
    )
    if verified.sequence != current.sequence:
        raise MirrorError(f"{current.list_type}: got version {verified.sequence}, not the current")
    return render_json(verified).encode("utf-8")


def _report(args: argparse.Namespace, result: ops.PublishResult, out: Path | None) -> None:
    if args.json:
        rows = [
            {
                "list": o.list_type,
                "action": o.action,
                "why": o.why,
                "sequence": o.sequence,
                "entries": o.entries,
                "diff": o.diff.model_dump(),
                "file": str(out / f"{o.list_type}.der")
                if out is not None and o.action == "published"
                else None,
                "sha256": o.sha256,
            }
            for o in result.outcomes
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for o in result.outcomes:
        head = f"{o.list_type}: {o.action}"
        if o.action != "unchanged":
            head += f" version {o.sequence} ({o.why}, {plural(o.entries, 'entry')})"
        else:
            head += f" at version {o.sequence} ({plural(o.entries, 'entry')})"
        print(head)
        for key in o.diff.added:
            print(f"  + {key}")
        for key in o.diff.removed:
            print(f"  - {key}")
        for key, fields in o.diff.changed.items():
            change = ", ".join(f"{f}: {old} → {new}" for f, (old, new) in fields.items())
            print(f"  ~ {key}: {change}")


def _published(client: Client, args: argparse.Namespace, result: ops.PublishResult) -> int:
    out = None
    if not result.dry_run:
        out = _out(args)
        mirror(client, out, result)
    _report(args, result, out)
    return 0


# -- commands ------------------------------------------------------------------------------
def _emergency(args: argparse.Namespace) -> int | None:
    """The emergency request ``jtca publish emergency N`` runs (or the deprecated
    ``--emergency N``), None for the routine lists."""
    named = args.kind is not None or args.number is not None
    if named and (args.kind != "emergency" or args.number is None):
        said = " ".join(str(w) for w in (args.kind, args.number) if w is not None)
        raise BadInput(f"jtca publish {said}: say jtca publish emergency N (N: the request)")
    if named and args.emergency is not None and args.emergency != args.number:
        raise BadInput(
            f"emergency request {args.number} and --emergency {args.emergency}: name one"
        )
    number: int | None = args.number if named else args.emergency
    return number


def cmd_publish(args: argparse.Namespace) -> int:
    from ca.ops import lists as ops

    if args.wait != args.wait or not 0 <= args.wait <= 600:
        raise BadInput(f"--wait {args.wait}: 0 to 600 seconds")
    request = _request(
        ops.PublishRequest,
        lists=args.list or [],
        dry_run=args.dry_run,
        validity_seconds=_hours(args.validity_hours, "--validity-hours"),
        refresh_seconds=_hours(args.refresh_hours, "--refresh-hours"),
        emergency=_emergency(args),
        wait_seconds=args.wait,
        **({} if args.dry_run else _unlock(args)),
    )
    client = _run_client(args)
    try:
        from ca.cli import desk

        return _published(client, args, desk.call_with_progress(client, ops.PUBLISH, request, args))
    finally:
        _sign_out(client, args)
        client.close()


def cmd_history(args: argparse.Namespace) -> int:
    from ca.core.clock import iso_utc
    from ca.ops import lists as ops

    client = _connect()
    try:
        found = client.call(ops.HISTORY, ops.HistoryRequest(list_type=args.list))
    finally:
        client.close()
    data = [
        {
            "list": v.list_type,
            "sequence": v.sequence,
            "this_update": iso_utc(v.this_update),
            "next_update": iso_utc(v.next_update),
            "entries": v.entries,
            "sha256": v.sha256,
            "file": v.file,
            "published_by": v.published_by,
            "emergency": v.emergency,
            "diff": v.diff.model_dump(),
        }
        for v in found.versions
    ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for d in data:
            mark = " EMERGENCY" if d["emergency"] else ""
            print(
                f"{d['list']:<17} {d['sequence']:>6}  {d['this_update']}  "
                f"{d['entries']:>6} entries  by {d['published_by']}{mark}"
            )
        if not data:
            print("nothing published yet")
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    """What a terminal does, here and now: no service, no database, no token."""
    from ca.core.clock import SystemClock
    from ca.lists.asn1 import ListType
    from ca.lists.render import render_json
    from ca.lists.verify import load_list
    from ca.pki.x509 import pem_to_der

    root = _read(args.root, "root certificate")
    if root.lstrip().startswith(b"-----BEGIN"):
        root = pem_to_der(root)
    verified = load_list(
        _read(args.file, "list"),
        trusted_root_der=root,
        expected_type=ListType(args.list) if args.list else None,
        previous_sequence=args.previous_sequence,
        now=SystemClock().now(),
        grace_seconds=_hours(args.grace_hours, "--grace-hours"),
    )
    print(render_json(verified))
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    from ca.core.files import write_atomically
    from ca.ops import lists as ops

    request = _request(ops.ProofRequest, list_type=args.list_type, sequence=args.sequence)
    client = _connect()
    try:
        found = client.call(ops.PROOF, request)
    finally:
        client.close()
    write_atomically(args.out, found.proof)
    if args.json:
        data = found.model_dump(exclude={"proof"}) | {"file": str(args.out)}
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    witnessed = "witnessed" if found.witnessed else "not yet witnessed"
    cosigners = ", ".join(found.cosigners) or "none"
    print(
        f"wrote {args.out}: {found.list_type} version {found.sequence} is log entry {found.seq}, "
        f"in the checkpoint of {plural(found.size, 'entry')} ({witnessed}: "
        f"{len(found.cosigners)} of {plural(found.quorum, 'cosignature')}; cosigned by {cosigners})"
    )
    return 0


def cmd_check_proof(args: argparse.Namespace) -> int:
    """The log proof of a list, checked here with the audit certificate alone (docs/lists.md)."""
    from ca.log import proofbundle
    from ca.log.anchors import read_anchor, verifiers_from

    if not 0 <= args.quorum <= len(args.witness):
        raise BadInput(
            f"--quorum {args.quorum}: 0 to the number of --witness given ({len(args.witness)})"
        )
    data = _read(args.list_file, "list")
    proof_path = args.proof or args.list_file.with_name(args.list_file.name + proofbundle.SUFFIX)
    bundle = _read(proof_path, "log proof")
    verifiers = verifiers_from(
        [read_anchor(p) for p in args.audit_cert],
        [read_anchor(p) for p in args.root_cert],
        proofbundle.origin_of(bundle),
    )
    witnesses = [proofbundle.witness_verifier(spec) for spec in args.witness]
    result = proofbundle.verify_proof(bundle, data, verifiers, witnesses, args.quorum)
    entry = result.entry
    if args.json:
        out = {
            "ok": True,
            "list": str(args.list_file),
            "proof": str(proof_path),
            "sm3": entry.object_sm3,
            "entry": {
                "seq": entry.seq,
                "at": entry.at,
                "kind": entry.kind,
                "actor": entry.actor,
                "action": entry.action,
                "subject": entry.subject,
            },
            "index": result.index,
            "size": result.size,
            "root": result.checkpoint.root.hex(),
            "origin": result.checkpoint.origin,
            "signed_by": list(result.signed_by),
            "witnessed_by": [{"name": n, "timestamp": ts} for n, ts in result.witnessed_by],
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    print(
        f"log proof ok: {args.list_file} (SM3 {entry.object_sm3}) is log entry {entry.seq} "
        f"({entry.action} {entry.subject!r} by {entry.actor}), in the checkpoint of "
        f"{plural(result.size, 'entry')} of {result.checkpoint.origin} signed by the audit key"
    )
    if result.witnessed_by:
        names = ", ".join(name for name, _ in result.witnessed_by)
        print(f"cosigned by {len(result.witnessed_by)} trusted witnesses: {names}")
    return 0


def cmd_root(args: argparse.Namespace) -> int:
    from ca.core.files import write_atomically
    from ca.ops import lists as ops
    from ca.ops.base import Empty

    client = _connect()
    try:
        root = client.call(ops.ROOT, Empty())
    finally:
        client.close()
    write_atomically(args.out, root.pem.encode("ascii") if args.pem else root.der)
    print(f"wrote {args.out}")
    return 0


def cmd_operator_add(args: argparse.Namespace) -> int:
    from ca.ops import lists as ops

    client = _connect(ops.OPERATOR_ADD.name)
    try:
        row = client.call(
            ops.OPERATOR_ADD,
            _request(
                ops.OperatorRequest,
                operator_id=args.operator_id,
                name=args.name,
                province=args.province,
            ),
        )
    finally:
        client.close()
    data = {"operator": row.operator_id, "name": row.name, "province": row.province}
    print(json.dumps(data, ensure_ascii=False) if args.json else f"registered {row.operator_id}")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from ca.ops import lists as ops

    kind = args.format or args.report.suffix.lower().lstrip(".")
    if kind not in ("csv", "json"):
        raise BadInput(f"{args.report}: say --format csv or --format json")
    try:
        text = args.report.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {args.report}: {exc}") from None
    client = _connect(ops.ACK.name)
    try:
        result = client.call(ops.ACK, ops.AckRequest(text=text, kind=kind, source=str(args.report)))
    finally:
        client.close()
    data = {
        "accepted": [
            {"operator": a.operator, "list": a.list_type, "sequence": a.sequence}
            for a in result.accepted
        ],
        "refused": [
            {"line": e.line, "field": e.field, "problem": e.problem} for e in result.refused
        ],
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(
            f"{plural(len(result.accepted), 'acknowledgment')} kept, {len(result.refused)} refused"
        )
        for e in result.refused:
            print(f"refused: line {e.line}, {e.field}: {e.problem}")
    return 3 if result.refused else 0


def cmd_overdue(args: argparse.Namespace) -> int:
    from ca.core.clock import iso_utc
    from ca.ops import lists as ops

    if args.days < 0:
        raise BadInput(f"--days {args.days}: 0 or more")
    client = _connect()
    try:
        found = client.call(ops.OVERDUE, _request(ops.OverdueRequest, days=args.days))
    finally:
        client.close()
    data = [
        {
            "operator": r.operator_id,
            "name": r.name,
            "list": r.list_type,
            "loaded": r.loaded,
            "oldest_missing": r.oldest_missing,
            "published_at": iso_utc(r.published_at),
            "days_since": r.days_since,
        }
        for r in found.operators
    ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for d in data:
            print(
                f"{d['operator']:<20} {d['list']:<17} version {d['oldest_missing']} not loaded "
                f"after {d['days_since']} days (loaded: {d['loaded'] or 'none'})"
            )
        if not data:
            print("no operator is overdue")
    return 0


def cmd_emergency(args: argparse.Namespace) -> int:
    from ca.ops import lists as ops

    client = _connect(ops.EMERGENCY.name)
    try:
        request = _request(ops.EmergencyRequest, reason=args.reason, **_unlock(args))
        row = client.call(ops.EMERGENCY, request)
        if row.publication is not None:  # the policy asks no second officer
            return _published(client, args, row.publication)
    finally:
        client.close()
    data = {"request": row.request, "state": row.state, "required": row.required}
    print(
        json.dumps(data)
        if args.json
        else f"emergency {request_ref(row.request)}: awaits {plural(row.required, 'approver')}"
    )
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from ca.cli import desk
    from ca.ops import lists as ops

    client = _connect(f"jtca lists {'approve' if args.approve else 'reject'}")
    try:
        at, signature = desk.decide(
            client,
            f"action {args.request}",
            approve=args.approve,
            pin_spec=args.officer_pin_source,
        )
        unlock = _unlock(args)
        request = _request(
            ops.DecideRequest,
            request=args.request,
            reason=args.reason,
            at=at,
            signature=signature,
            **unlock,
        )
        row = client.call(ops.APPROVE if args.approve else ops.REJECT, request)
        if row.publication is not None:  # the last approval published every list
            return _published(client, args, row.publication)
    finally:
        client.close()
    data = {"request": row.request, "state": row.state}
    text = f"emergency {request_ref(row.request)}: {row.state}"
    print(json.dumps(data) if args.json else text)
    return 0
