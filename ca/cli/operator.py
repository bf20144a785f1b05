"""``jtca operator``: the operators that load the lists into their terminals (issue #16, point 2;
docs/operators.md).

The operator's side (a client with its own token, no officer session):

- ``keygen``: makes the operator's SM2 key in its token and prints the public key and the proof
  of possession a ministry officer registers;
- ``ack``: signs a load acknowledgment with that key and posts it (``POST /acks``);
- ``fetch`` (``ca.cli.operator_fetch``): fetches a list over HTTP, checks and installs it.

The ministry's side (a signed-in officer the policy allows ``list.register-operator``):
``register`` (the operator's id, name, province, cities and key) and ``list``.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.cli import desk, operator_fetch
from ca.core.errors import BadInput
from ca.core.vocabulary import article

if TYPE_CHECKING:
    from ca.ops.operators import OperatorView

LIST_CHOICES = ("issuer-whitelist", "city-list", "ca-key-list")


def register(sub: Any) -> None:
    """Add ``jtca operator`` to the command line."""
    p = sub.add_parser(
        "operator", help="operators: their keys, signed load acknowledgments, list fetching"
    )
    osub = p.add_subparsers(dest="operator_command", metavar="COMMAND", parser_class=type(p))
    osub.required = True

    def command(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = osub.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(handler=handler)
        return q

    def token_options(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--token",
            metavar="LABEL",
            help="the operator's token (default: op-ID in the embedded SoftHSM2)",
        )
        q.add_argument("--module", metavar="PATH", help="the PKCS#11 module of the token")
        desk.add_pin_source(q)

    q = command(
        "keygen",
        "make the operator's SM2 key in its token; print the public key and its proof of "
        "possession for the ministry to register",
        cmd_keygen,
    )
    q.add_argument("--operator", required=True, metavar="ID", help="the operator's id")
    token_options(q)
    q.add_argument(
        "--create-token",
        action="store_true",
        help="first make the SoftHSM2 token in the state folder, with the PIN from --pin-source",
    )

    q = command(
        "register",
        "register an operator with its key and the cities it serves (list.register-operator)",
        cmd_register,
    )
    q.add_argument("--operator", required=True, metavar="ID")
    q.add_argument("--name", default="", help="the operator's name (default: its id)")
    q.add_argument("--province", required=True, metavar="CODE", help="GB/T 2260, e.g. 440000")
    q.add_argument(
        "--city",
        action="append",
        default=[],
        metavar="CODE",
        help="a city it serves, in the province (repeat)",
    )
    q.add_argument("--public-key", required=True, metavar="HEX", help="as keygen printed")
    q.add_argument("--proof", required=True, metavar="HEX", help="as keygen printed")

    command("list", "the operators, their keys and the newest version each acknowledged", cmd_list)

    q = command(
        "ack",
        "sign an acknowledgment that a list version is loaded into the terminals and post it",
        cmd_ack,
    )
    q.add_argument("--operator", required=True, metavar="ID")
    q.add_argument("--type", dest="list_type", required=True, choices=LIST_CHOICES)
    q.add_argument(
        "--list-file",
        required=True,
        type=Path,
        metavar="DER",
        help="the list file loaded (its sequence and SM3 are read from it)",
    )
    q.add_argument("--terminals", required=True, type=int, help="how many terminals loaded it")
    q.add_argument(
        "--loaded-at", metavar="ISO", help="when it was loaded, ISO-8601 with a zone (default: now)"
    )
    q.add_argument(
        "--city", action="append", default=[], metavar="CODE", help="a city it was loaded in"
    )
    q.add_argument(
        "--service",
        metavar="URL",
        help="https://HOST[:PORT] or unix:///PATH (default: the configured service)",
    )
    q.add_argument("--server-cert", type=Path, help="with https: the server's certificate (pin)")
    token_options(q)

    operator_fetch.register(osub)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def _softhsm(args: argparse.Namespace) -> Path | None:
    return None if args.module else (desk.state() / "softhsm2").resolve()


def _token(args: argparse.Namespace, *, create: bool = False) -> Any:
    from ca.site.operator_token import (
        OperatorToken,
        create_embedded_token,
        default_label,
        pin_source,
    )
    from ca.site.personal_token import GivenPin, new_pin

    if args.module and not args.token:
        raise BadInput("--module: name the token with --token LABEL")
    label = args.token or default_label(args.operator)
    softhsm = _softhsm(args)
    pin: Any = None
    if create:
        if args.module:
            raise BadInput(
                "--create-token makes a SoftHSM2 token in the state folder; a USB key or an HSM "
                "is initialised with its vendor's tool, then named with --module and --token"
            )
        if softhsm is not None:
            pin = GivenPin(new_pin(args.pin_source, f"operator {args.operator}"))
            create_embedded_token(softhsm, label, pin.pin())
    return OperatorToken(
        label,
        pin or pin_source(args.pin_source, args.operator),
        module=args.module,
        softhsm=softhsm,
    )


def cmd_keygen(args: argparse.Namespace) -> int:
    from ca.ops.operators import possession_message

    token = _token(args, create=args.create_token)
    try:
        public = token.generate_key().uncompressed.hex()
        proof = token.sign_der(possession_message(args.operator, public)).hex()
        label = token.label
    finally:
        token.close()
    data = {"operator": args.operator, "token": label, "public_key": public, "proof": proof}
    _emit(
        args,
        data,
        f"operator {args.operator}: key generated in token {label}\n"
        f"  public key {public}\n  proof      {proof}\n"
        "Have a ministry officer register it:\n"
        f"  jtca operator register --operator {args.operator} --province CODE --city CODE "
        f"--public-key {public} --proof {proof}",
    )
    return 0


def _view_json(view: OperatorView) -> dict[str, Any]:
    return view.model_dump(mode="json")


def _view_text(view: OperatorView) -> str:
    key = f"key {view.public_key[:18]}…" if view.public_key else "no key (report import only)"
    loaded = ", ".join(f"{t} {s}" for t, s in sorted(view.newest_ack.items())) or "nothing"
    cities = ",".join(view.cities) or "-"
    return (
        f"{view.operator_id}  {view.name}  province {view.province or '-'}  cities {cities}  "
        f"{key}  acknowledged: {loaded}"
    )


def cmd_register(args: argparse.Namespace) -> int:
    from ca.ops import operators as ops

    view = desk.call(
        ops.REGISTER,
        ops.OperatorKeyRequest(
            operator_id=args.operator,
            name=args.name,
            province=args.province,
            cities=args.city,
            public_key=args.public_key,
            proof=args.proof,
        ),
    )
    _emit(args, _view_json(view), "registered operator " + _view_text(view))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ca.ops import operators as ops
    from ca.ops.base import Empty

    found = desk.call(ops.LIST, Empty())
    _emit(
        args,
        {"operators": [_view_json(v) for v in found.operators]},
        "\n".join(_view_text(v) for v in found.operators) or "no operator is registered",
    )
    return 0


def _list_file(path: Path, list_type: str) -> tuple[int, str]:
    """The sequence and SM3 of the list file the terminals loaded (its type checked)."""
    from ca.lists.asn1 import decode_signed_list
    from hsm.sm.sm3 import sm3

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"--list-file {path}: cannot read it ({exc.strerror})") from None
    if len(data) > 64 * 1024 * 1024:
        raise BadInput(f"--list-file {path}: more than 64 MiB, not a list")
    content = decode_signed_list(data).content  # ListContentError names the field
    if content.list_type.value != list_type:
        raise BadInput(
            f"--list-file {path}: {article(content.list_type.value)}, not the --type {list_type} "
            "given"
        )
    return content.sequence, sm3(data).hex()


def cmd_ack(args: argparse.Namespace) -> int:
    import time

    from ca.citykeys.usage_report import parse_time
    from ca.ops.operators import AckReceipt, AckStatement, signed_message, statement_text

    if not 0 <= args.terminals < 10**18:
        raise BadInput(f"--terminals {args.terminals}: a whole number, 0 or more")
    now = int(time.time())
    loaded_at = now
    if args.loaded_at:
        try:
            loaded_at = parse_time(args.loaded_at)
        except (ValueError, OverflowError) as exc:
            raise BadInput(f"--loaded-at {args.loaded_at!r}: not ISO-8601 ({exc})") from None
    sequence, digest = _list_file(args.list_file, args.list_type)
    try:
        statement = AckStatement(
            operator=args.operator,
            list_type=args.list_type,
            sequence=sequence,
            sm3=digest,
            terminals=args.terminals,
            loaded_at=loaded_at,
            signed_at=now,
            nonce=secrets.token_hex(16),
            cities=args.city,
        )
    except ValueError as exc:
        raise BadInput(f"the acknowledgment cannot be made: {exc}") from None
    text = statement_text(statement)
    token = _token(args)
    try:
        signature = token.sign_der(signed_message(text)).hex()
    finally:
        token.close()
    receipt = AckReceipt.model_validate_json(
        _post(args, {"statement": text, "signature": signature})
    )
    _emit(
        args,
        receipt.model_dump(mode="json"),
        f"acknowledged {receipt.list_type} {receipt.sequence} for operator "
        f"{receipt.operator_id} ({receipt.terminals} terminals); statement SM3 "
        f"{receipt.statement_sm3}",
    )
    return 0


def _post(args: argparse.Namespace, body: dict[str, str]) -> bytes:
    import uuid

    import httpx

    from ca.client.http import ServiceUnavailable, _problem

    if args.service:
        from ca.client.lists_fetch import http_client

        http = http_client(args.service, args.server_cert)
    else:
        from ca.client.http import connect

        http = connect(anonymous=True).http
    try:
        try:
            response = http.post("/acks", json=body, headers={"X-Request-Id": uuid.uuid4().hex})
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the authority service at {http.base_url}: {exc}"
            ) from None
    finally:
        http.close()
    if response.status_code >= 400:
        raise _problem(response)
    return response.content
