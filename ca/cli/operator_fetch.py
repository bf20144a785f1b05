"""``jtca operator fetch`` (issue #16, point 1-2): the operators' reference client for lists.

``jtca operator fetch --type T --out DIR --root ROOT [--service URL]``: a conditional GET of
``/lists/T`` and, for a new list that a terminal would take, its atomic install in DIR
(``ca.client.lists_fetch``). Exit 0: installed or unchanged; 4: refused (the reason named,
nothing changed); 3: bad input; 69: the server did not answer with a list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

LIST_CHOICES = ("issuer-whitelist", "city-list", "ca-key-list")


def register(osub: Any) -> None:
    """Add ``fetch`` to ``jtca operator``'s subcommands ``osub``."""
    q = osub.add_parser(
        "fetch",
        help="fetch a list over HTTP (conditional GET), check it as a terminal does, install it",
        description=(
            "Fetch /lists/TYPE from the service or a mirror of the published folder, with the "
            "ETag and Last-Modified of the list installed in --out (304: nothing to do). A new "
            "list is checked as a terminal does (signed under the trusted root, the type asked "
            "for, not past nextUpdate, sequence after the one installed) and installed whole; "
            "a refusal names the reason and changes nothing."
        ),
    )
    q.add_argument("--type", dest="list_type", required=True, choices=LIST_CHOICES)
    q.add_argument("--out", type=Path, required=True, help="the folder the list is installed in")
    q.add_argument(
        "--root",
        type=Path,
        required=True,
        help="the ministry root certificate the operator trusts (DER or PEM; `jtca lists root`)",
    )
    q.add_argument(
        "--service",
        metavar="URL",
        help="https://HOST[:PORT], http://HOST[:PORT] (a mirror) or unix:///PATH "
        "(default: the configured service, `jtca config show`)",
    )
    q.add_argument("--server-cert", type=Path, help="with https: the server's certificate (pin)")
    q.add_argument(
        "--grace-hours", type=float, default=0.0, help="accept this long past nextUpdate"
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_fetch)


def _root(path: Path) -> bytes:
    from ca.core.errors import BadInput
    from ca.pki.x509 import pem_to_der

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"--root {path}: cannot read it ({exc.strerror})") from None
    return pem_to_der(data) if data.lstrip().startswith(b"-----BEGIN") else data


def cmd_fetch(args: argparse.Namespace) -> int:
    from ca.client.lists_fetch import fetch_list, http_client
    from ca.core.clock import SystemClock
    from ca.core.errors import BadInput
    from ca.lists.asn1 import ListType

    grace = args.grace_hours
    if not 0 <= grace <= 24 * 365:  # NaN too
        raise BadInput(f"--grace-hours {grace}: 0 or more hours (at most a year)")
    root = _root(args.root)
    if args.service:
        http = http_client(args.service, args.server_cert)
    else:
        from ca.client.http import connect

        http = connect(anonymous=True).http
    try:
        fetched = fetch_list(
            http,
            ListType(args.list_type),
            args.out,
            trusted_root_der=root,
            now=SystemClock().now(),
            grace_seconds=int(grace * 3600),
        )
    finally:
        http.close()
    if args.json:
        print(json.dumps(fetched.as_dict(), ensure_ascii=False, indent=2))
    elif fetched.action == "installed":
        before = fetched.previous_sequence
        print(
            f"{fetched.list_type.value}: installed sequence {fetched.sequence} "
            f"(was {before if before is not None else 'none'}) in {fetched.path}; "
            f"SM3 {fetched.sm3}"
        )
    else:
        print(
            f"{fetched.list_type.value}: unchanged (sequence {fetched.sequence}) in {fetched.path}"
        )
    return 0
