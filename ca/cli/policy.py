"""``jtca policy`` (issue #16, point 4): the policy in force and its dual-controlled changes.

``check FILE`` validates a policy file here and prints its SM3 (no service); ``propose FILE``
asks the service to put it in force (a signed request); ``approve N`` / ``reject N`` decide on
proposal N with the officer's own token signature; ``show`` prints the policy in force and its
SM3 (``--out FILE`` writes the file to start services with); ``history`` lists every version.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.core.errors import BadInput, JtcaError
from ca.core.vocabulary import plural

if TYPE_CHECKING:
    from ca.client.http import Client
    from ca.ops.policy import PolicyView


class BadPolicyFile(BadInput):
    title = "Bad policy file"


def register(sub: Any) -> None:
    """Add ``jtca policy`` to the command line."""
    p = sub.add_parser("policy", help="the policy in force and its dual-controlled changes")
    psub = p.add_subparsers(dest="policy_command", required=True)

    q = psub.add_parser("check", help="validate a policy file here and print its SM3")
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_check)

    q = psub.add_parser("propose", help="propose a new policy (another officer approves it)")
    q.add_argument("file", type=Path)
    q.add_argument("--reason", default="")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_propose)

    for name in ("approve", "reject"):
        q = psub.add_parser(name, help=f"{name} a proposed policy (signed with your token)")
        q.add_argument("proposal", type=int)
        q.add_argument("--reason", default="")
        q.add_argument("--json", action="store_true")
        q.add_argument(
            "--officer-pin-source",
            metavar="SPEC",
            help="your own token's PIN, to sign the decision: env:VAR, file:PATH or prompt "
            "(default: a hidden prompt)",
        )
        q.set_defaults(handler=cmd_decide, approve=name == "approve")

    q = psub.add_parser("show", help="the policy in force (or proposal N) and its SM3")
    q.add_argument("--proposal", type=int, metavar="N")
    q.add_argument("--out", type=Path, help="write the policy file here (atomically)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_show)

    q = psub.add_parser("history", help="every policy version the service knows")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_history)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def _validated(path: Path) -> tuple[str, str]:
    """The file's text and SM3, validated as the service will (PolicyError names the file,
    the field and the value)."""
    from hsm.sm.sm3 import sm3
    from policies.rules import PolicyFileError, parse_policy

    data = _read(path)
    try:
        parse_policy(data)
    except PolicyFileError as exc:
        raise BadPolicyFile(f"{path}: {exc.message}") from None
    return data.decode("utf-8"), sm3(data).hex()


def _connect(what: str) -> Client:
    from ca.cli import desk

    client = desk.connect()
    try:
        desk.signed_in(client, what)
    except JtcaError:
        client.close()
        raise
    return client


def _data(view: PolicyView) -> dict[str, Any]:
    return {
        "version": view.version,
        "sm3": view.sm3,
        "state": view.state,
        "proposed_by": view.proposed_by,
        "proposed_at": view.proposed_at,
        "required": view.required,
        "decided_at": view.decided_at,
        "running_sm3": view.running_sm3,
    }


def _print(args: argparse.Namespace, view: PolicyView, line: str) -> None:
    print(json.dumps(_data(view)) if args.json else line)


def cmd_check(args: argparse.Namespace) -> int:
    _, digest = _validated(args.file)
    print(json.dumps({"file": str(args.file), "sm3": digest}) if args.json else f"{args.file}: "
          f"a valid policy, SM3 {digest}")  # fmt: skip
    return 0


def cmd_propose(args: argparse.Namespace) -> int:
    from ca.ops import policy as ops

    text, _ = _validated(args.file)
    client = _connect("jtca policy propose")
    try:
        view = client.call(ops.PROPOSE, ops.ProposeRequest(text=text, reason=args.reason))
    finally:
        client.close()
    line = (
        f"policy {view.version} (SM3 {view.sm3}) is in force"
        if view.state == "in-force"
        else f"policy {view.version} (SM3 {view.sm3}) proposed: awaits "
        f"{plural(view.required, 'approver')} (`jtca policy approve {view.version}`)"
    )
    _print(args, view, line)
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from ca.cli import desk
    from ca.ops import policy as ops

    what = "approve" if args.approve else "reject"
    client = _connect(f"jtca policy {what}")
    try:
        at, signature = desk.decide(
            client,
            f"policy {args.proposal}",
            approve=args.approve,
            pin_spec=args.officer_pin_source,
        )
        request = ops.DecideRequest(
            proposal=args.proposal, reason=args.reason, at=at, signature=signature
        )
        view = client.call(ops.APPROVE if args.approve else ops.REJECT, request)
    finally:
        client.close()
    line = f"policy {view.version} (SM3 {view.sm3}): {view.state}"
    if view.state == "in-force":
        line += (
            "; every service on this database switches to it; install it as the file services "
            "start with (`jtca policy show --out FILE`)"
        )
    _print(args, view, line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ca.core.files import write_atomically
    from ca.ops import policy as ops

    client = _connect("jtca policy show")
    try:
        view = client.call(ops.SHOW, ops.ShowRequest(proposal=args.proposal))
    finally:
        client.close()
    if args.out is not None:
        write_atomically(args.out, view.text.encode("utf-8"))
    if args.json:
        print(json.dumps({**_data(view), "text": view.text}))
        return 0
    if args.out is None:
        print(view.text, end="" if view.text.endswith("\n") else "\n")
    print(f"# policy {view.version}, {view.state}, SM3 {view.sm3}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from ca.ops import base
    from ca.ops import policy as ops

    client = _connect("jtca policy history")
    try:
        found = client.call(ops.HISTORY, base.Empty())
    finally:
        client.close()
    if args.json:
        print(json.dumps([_data(v) for v in found.versions]))
        return 0
    for v in found.versions:
        print(f"{v.version}\t{v.state}\t{v.sm3}\t{v.proposed_by}")
    return 0
