"""What every command needs of the officer at this desk (issue #12).

- **The session.** A command acts as the officer of this machine's session with the service
  (``jtca login`` wrote it; ``ca.client.http.connect`` loads it). There is no ``--actor``: who
  acts is whoever proved it with their token at sign-in. A command whose operation needs an
  officer and finds no session stops here, before any request, naming ``jtca login``.
- **Signed decisions.** An approval or a rejection is signed with the approver's own token (the
  one they signed in with: label and module from the session file, the PIN from
  ``--pin-source`` or a hidden prompt) over exactly the request that opened the subject, which
  is shown first — operation, requester, its SM3 — so the approver sees what they sign.
- **Secrets never on a command line.** PINs come from ``--pin-source env:VAR|file:PATH|prompt``;
  custodians' shares from ``--share-file PATH`` (one share per file, repeatable) or hidden
  prompts, one per share. ``/proc/PID/cmdline`` holds neither.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from ca.core.errors import BadInput, JtcaError

if TYPE_CHECKING:
    from ca.client.http import Client
    from ca.client.session import SessionData
    from ca.ops.approvals import PendingRequestView
    from ca.ops.base import Model, Operation

    Req = TypeVar("Req", bound=Model)
    Res = TypeVar("Res", bound=Model)

MAX_SHARES: Final = 16  # ca.ops.officers.MAX_SHARES, the requests' limit
PIN_SOURCE_HELP: Final = (
    "where your token's PIN comes from: env:VAR, file:PATH or prompt (default: a hidden prompt; "
    "never the PIN itself)"
)


class NotSignedIn(JtcaError):
    title = "Not signed in"
    exit_code = 6


class NoShares(JtcaError):
    title = "No shares"
    exit_code = 3


# -- the session ---------------------------------------------------------------------------------
def connect(*, anonymous: bool = False) -> Client:
    """The configured service, signing as this machine's session (if any)."""
    from ca.client.http import connect as open_client

    return open_client(anonymous=anonymous)


def sign_in_with_token(
    client: Client, officer: str, *, token: str | None, module: str | None, pin: str | None
) -> SessionData:
    """Challenge and response with the officer's own token (``token`` or ``officer-<id>``,
    the embedded SoftHSM2 unless ``module``; the PIN from ``pin``: env:, file: or a prompt);
    the token is closed again."""
    from ca.site.officer_token import OfficerToken, default_label, pin_source, sign_in

    opened = OfficerToken(
        token or default_label(officer), pin_source(pin, officer), module=module, state=state()
    )
    try:
        return sign_in(client, opened, officer)
    finally:
        opened.close()


def signed_in(client: Client, what: str) -> SessionData:
    """The session's data, or a refusal saying how to sign in (before any request is sent)."""
    if client.signer is None:
        where = client.target.url if client.target else "the service"
        raise NotSignedIn(
            f"{what} needs a signed-in officer and this machine has no session with {where}: "
            "run jtca login --officer ID (the PIN of your own token is asked for)"
        )
    return client.signer.data


def call(op: Operation[Req, Res], request: Req, client: Client | None = None) -> Res:
    """``op`` at the service, as the officer of this machine's session. An operation that needs
    an officer is not sent without one."""
    own = client is None
    active = connect() if client is None else client
    try:
        if op.officer:
            signed_in(active, op.name)
        return active.call(op, request)
    finally:
        if own:
            active.close()


def call_with_progress(
    client: Client, op: Operation[Req, Res], request: Req, args: argparse.Namespace
) -> Res:
    """``op`` at the service as one long call: on a terminal, and not with ``--json``, a bar
    draws what the service reports under the call's progress token (``ca.cli.progress``)."""
    from ca.cli.progress import awaited

    return awaited(
        lambda token: client.call(op, request, progress_token=token),
        client.progress,
        json_output=bool(getattr(args, "json", False)),
    )


# -- the officer's token -------------------------------------------------------------------------
def add_token_options(q: argparse.ArgumentParser, *, label_help: str | None = None) -> None:
    q.add_argument(
        "--token",
        metavar="LABEL",
        help=label_help or "the officer's token (default: officer-ID, the embedded SoftHSM2's)",
    )
    q.add_argument(
        "--module",
        metavar="PATH",
        help="the PKCS#11 module of the officer's token, e.g. a USB key's (default: embedded "
        "SoftHSM2)",
    )
    add_pin_source(q)


def add_pin_source(q: argparse.ArgumentParser, flag: str = "--pin-source") -> None:
    q.add_argument(flag, metavar="SPEC", help=PIN_SOURCE_HELP)


def state() -> Path:
    from ca.client.config import state_dir

    return state_dir()


def decide(
    client: Client, subject: str, *, approve: bool, pin_spec: str | None
) -> tuple[int, bytes]:
    """Show the request that opened ``subject``, then sign the decision with the signed-in
    officer's own token: ``(at, signature)`` for the deciding request."""
    from ca.ops import approvals as approval_ops
    from ca.site.officer_token import DecisionRefused, OfficerToken, pin_source, sign_decision

    data = signed_in(client, f"a decision on {subject}")
    shown = client.call(approval_ops.REQUEST, approval_ops.SubjectRequest(subject=subject))
    say(decision_text(shown, approve=approve, data=data))
    token = OfficerToken(
        data.token_label, pin_source(pin_spec, data.officer), module=data.module, state=state()
    )
    try:
        at, signature, signed = sign_decision(client, token, subject, approve=approve)
    finally:
        token.close()
    if signed.digest != shown.digest:
        raise DecisionRefused(
            f"{subject}: the request changed while you were signing (SM3 {shown.digest[:16]}… "
            f"became {signed.digest[:16]}…); nothing was sent — look at it again"
        )
    return at, signature


def decision_text(shown: PendingRequestView, *, approve: bool, data: SessionData) -> str:
    from ca.core.clock import iso_utc
    from ca.core.vocabulary import subject_words

    return "\n".join(
        (
            f"You sign: {'APPROVE' if approve else 'REJECT'} {subject_words(shown.subject)}",
            f"  the request: {shown.operation} by {shown.officer} at {iso_utc(shown.at)}",
            f"  its SM3:     {shown.digest}",
            *(f"    {line}" for line in request_lines(shown.body)),
            f"  signed by {data.officer} (certificate {data.certificate_serial}) with token "
            f"{data.token_label}",
        )
    )


def request_lines(body: bytes, limit: int = 100) -> list[str]:
    """The request's fields, one a line; a public key by its SM3 (what ``jtca officer keygen``
    printed, to compare), a proof of possession left out (the service checked it)."""
    import base64
    import json

    from hsm.sm.sm3 import sm3

    try:
        fields = json.loads(body)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        text = body.decode("utf-8", "replace")
        return [text if len(text) <= limit else text[:limit] + "…"]
    lines = []
    for name, value in fields.items():
        if name == "proof" or value in (None, "", []):
            continue
        if name == "public_key" and isinstance(value, str):
            try:
                point = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                point = b""
            name, value = "public_key SM3", sm3(point).hex()
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        lines.append(f"{name}: {text if len(text) <= limit else text[:limit] + '…'}")
    return lines


def say(text: str) -> None:
    """For the person at the desk, not for a pipe: standard error (stdout stays --json's)."""
    print(text, file=sys.stderr)


# -- shares --------------------------------------------------------------------------------------
def add_share_options(q: argparse.ArgumentParser, what: str = "a custodian's PIN share") -> None:
    q.add_argument(
        "--share-file",
        action="append",
        type=Path,
        metavar="PATH",
        help=f"a file holding {what} (one per file; repeat for each custodian). Without any, "
        "each custodian types theirs at a hidden prompt",
    )


def read_shares(
    files: list[Path] | None,
    *,
    what: str = "the root token's PIN",
    ask: Callable[[str], str] | None = None,
) -> list[str]:
    """The shares in ``files``, or typed at hidden prompts (an empty entry ends them)."""
    if files:
        if len(files) > MAX_SHARES:
            raise BadInput(f"--share-file: at most {MAX_SHARES} shares")
        return [_share_in(path) for path in files]
    import getpass

    prompt = ask or getpass.getpass
    shares: list[str] = []
    while len(shares) < MAX_SHARES:
        typed = prompt(
            f"Share {len(shares) + 1} of {what} (hidden; press Enter with none to finish): "
        ).strip()
        if not typed:
            break
        shares.append(typed)
    if not shares:
        raise NoShares(
            f"no share of {what} entered: each custodian types theirs at the prompt, or give "
            "--share-file PATH for each"
        )
    return shares


def _share_in(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--share-file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BadInput(f"--share-file {path}: not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise BadInput(
            f"--share-file {path}: holds {len(lines)} lines; a share file holds exactly one "
            "custodian's share"
        )
    return lines[0]
