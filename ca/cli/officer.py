"""``jtca officer``: who may act, with which policy roles (over ``ca.ops.officers``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("officer", help="officers and their policy roles")
    osub = p.add_subparsers(dest="officer_command", metavar="COMMAND", parser_class=type(p))
    osub.required = True
    q = osub.add_parser("add", help="add an officer (by a ministry root officer)")
    q.add_argument("--id", required=True, dest="officer_id")
    q.add_argument("--name", default="")
    q.add_argument("--role", action="append", required=True, help="a role of the policy")
    q.add_argument("--province", help="GB/T 2260 province code, for provincial officers")
    q.add_argument("--actor", required=True, help="the ministry root officer adding them")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_add)
    q = osub.add_parser("list", help="registered officers")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list)


def cmd_add(args: argparse.Namespace) -> int:
    from ca.client.http import connect
    from ca.ops import officers as ops

    client = connect(officer=args.actor)
    try:
        added = client.call(
            ops.ADD,
            ops.AddOfficerRequest(
                officer_id=args.officer_id,
                name=args.name,
                roles=args.role,
                province=args.province,
            ),
        )
    finally:
        client.close()
    data = {"officer": added.id, "roles": added.roles, "province": added.province}
    print(json.dumps(data) if args.json else f"added officer {added.id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ca.client.http import connect
    from ca.ops import officers as ops
    from ca.ops.base import Empty

    client = connect()
    try:
        found = client.call(ops.LIST, Empty()).officers
    finally:
        client.close()
    if args.json:
        rows = [o.model_dump(mode="json") for o in found]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for o in found:
            print(f"{o.id:<16} {','.join(o.roles):<32} {o.province or '':<7} {o.name}")
    return 0
