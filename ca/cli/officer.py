"""``jtca officer``: who may act, with which policy roles."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ca.authority import open_authority
from ca.clock import SystemClock
from ca.officers import actor_of, add_officer, officers


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
    engine = open_authority().engine
    add_officer(
        engine,
        by=actor_of(engine, args.actor),
        officer_id=args.officer_id,
        name=args.name,
        roles=args.role,
        province=args.province,
        now=SystemClock().now(),
    )
    data = {"officer": args.officer_id, "roles": sorted(args.role), "province": args.province}
    print(json.dumps(data) if args.json else f"added officer {args.officer_id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = [
        {
            "id": o.officer_id,
            "name": o.name,
            "roles": o.roles.split(","),
            "province": o.province,
            "status": o.status,
        }
        for o in officers(open_authority().engine)
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:<16} {','.join(r['roles']):<32} {r['province'] or '':<7} {r['name']}")
    return 0
