"""``jtca login``, ``jtca logout``, ``jtca whoami`` (issue #12): an officer proves who they are.

``jtca login --officer ID`` asks the service for a fresh challenge, has the officer's own token
sign it (with a fresh session key it delegates), and writes the session it gets back to this
machine's session file (``ca.client.session``: mode 0600; ``$JTCA_SESSION``, or one file per
service under ``$XDG_STATE_HOME/jtca/sessions``). Every later command signs its requests with
that session key; the token is needed again only to approve. The PIN comes from a hidden
prompt, ``--pin-source env:VAR`` or ``file:PATH`` — never the command line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ca.cli import desk
from ca.core.errors import JtcaError


def register(sub: Any) -> None:
    q = sub.add_parser(
        "login",
        help="sign in as an officer, with your own token (challenge and response)",
        description="Sign in as OFFICER: your token signs the service's challenge; the session "
        "is kept in this machine's session file (mode 0600) until it ends or jtca logout.",
    )
    q.add_argument("--officer", required=True, metavar="ID", help="your officer id")
    desk.add_token_options(q)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_login)

    q = sub.add_parser("logout", help="end this machine's session with the service")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_logout)

    q = sub.add_parser("whoami", help="who this machine's session is, and until when")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_whoami)


def _until(at: int) -> str:
    from ca.core.clock import iso_utc

    return iso_utc(at)


def cmd_login(args: argparse.Namespace) -> int:
    from ca.client.session import save, session_path

    client = desk.connect(anonymous=True)
    try:
        data = desk.sign_in_with_token(
            client, args.officer, token=args.token, module=args.module, pin=args.pin_source
        )
    finally:
        client.close()
    path = session_path(data.url)
    _end_previous(path)
    save(path, data)
    out = {
        "officer": data.officer,
        "roles": data.roles,
        "province": data.province,
        "certificate_serial": data.certificate_serial,
        "expires_at": _until(data.expires_at),
        "service": data.service,
        "session_file": str(path),
    }
    where = f", province {data.province}" if data.province else ""
    text = (
        f"signed in as {data.officer} ({', '.join(data.roles)}{where}) until "
        f"{_until(data.expires_at)} at the latest; certificate {data.certificate_serial}; "
        f"session kept in {path}"
    )
    print(json.dumps(out, ensure_ascii=False) if args.json else text)
    return 0


def _end_previous(path: Path) -> None:
    """A session this file still holds (another officer's, or an earlier one) is ended at the
    service before the new one replaces it; if that fails, it ends by itself (idle limit)."""
    from ca.client.session import RequestSigner, load
    from ca.ops import auth as ops
    from ca.ops.base import Empty

    try:
        old = load(path)
    except JtcaError:
        return
    if old is None:
        return
    client = desk.connect(anonymous=True)
    try:
        if client.target is not None and client.target.url == old.url:
            client.signed_in(RequestSigner(old)).call(ops.SIGN_OUT, Empty())
    except (JtcaError, ValueError):
        pass  # an ended session, or a file that is not one: nothing to end
    finally:
        client.close()


def cmd_logout(args: argparse.Namespace) -> int:
    from ca.client.http import ServiceError
    from ca.client.session import remove, session_path
    from ca.ops import auth as ops
    from ca.ops.base import Empty

    client = desk.connect()
    url = client.target.url if client.target else str(client.http.base_url)
    officer = client.officer
    ended = False
    try:
        if client.signer is not None:
            try:
                client.call(ops.SIGN_OUT, Empty())
                ended = True
            except ServiceError as exc:
                if exc.status != 401:  # an ended or unknown session: nothing left to end
                    raise
    finally:
        client.close()
        remove(session_path(url))  # the session key leaves this machine whatever the service said
    if officer is None:
        text = "not signed in: no session to end"
    elif ended:
        text = f"signed out: {officer}'s session ended at the service and removed here"
    else:
        text = f"{officer}'s session had already ended at the service; removed here"
    data = {"officer": officer, "ended": ended}
    print(json.dumps(data) if args.json else text)
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    from ca.client.session import session_path
    from ca.ops import auth as ops
    from ca.ops.base import Empty

    client = desk.connect()
    try:
        data = desk.signed_in(client, "jtca whoami")
        who = client.call(ops.WHOAMI, Empty())
    finally:
        client.close()
    if args.json:
        out = who.model_dump(mode="json")
        out["session_file"] = str(session_path(data.url))
        out["token_label"] = data.token_label
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    officer = who.officer
    where = f", province {officer.province}" if officer.province else ""
    print(
        "\n".join(
            (
                f"{officer.id} ({officer.name}): {', '.join(officer.roles)}{where}",
                f"  certificate {who.certificate_serial}, valid until "
                f"{_until(who.certificate_not_after)}; token {data.token_label}",
                f"  signed in {_until(who.signed_in_at)}; the session ends after "
                f"{who.idle_seconds // 60} idle minutes, at {_until(who.expires_at)} at the latest",
                f"  may: {', '.join(who.actions) or 'nothing'}",
            )
        )
    )
    return 0
