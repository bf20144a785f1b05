"""``jtca init``, ``jtca config show``, ``jtca service status|stop``: where the authority is.

``jtca init`` makes a state folder for the embedded default (tokens, database, the service's
socket and log all under it) and starts the service on it, which creates the database. No other
client command creates anything: with no service configured and no state folder they say so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ca.client.config import has_state, resolve, state_dir


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init", help="create a state folder for the embedded default and start its service"
    )
    p.add_argument("--state", metavar="DIR", help="default: $JTCA_STATE or ./state")
    p.set_defaults(handler=cmd_init)
    c = sub.add_parser("config", help="which authority service this client talks to")
    csub = c.add_subparsers(dest="config_command", metavar="COMMAND", parser_class=type(c))
    csub.required = True
    q = csub.add_parser("show", help="the service in use and where that setting came from")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_config_show)
    s = sub.add_parser("service", help="the embedded default's service: status, stop")
    ssub = s.add_subparsers(dest="service_command", metavar="COMMAND", parser_class=type(s))
    ssub.required = True
    q = ssub.add_parser("status", help="whether the service answers, its version and schema")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_status)
    q = ssub.add_parser("stop", help="stop the embedded service of the state folder")
    q.set_defaults(handler=cmd_stop)
    r = sub.add_parser(
        "recover",
        help="finish or undo every operation a crash left unfinished (service and this site)",
    )
    r.add_argument("--operation", metavar="NAME", help="only this operation (city.generate, …)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_recover)


def cmd_init(args: argparse.Namespace) -> int:
    from ca.client.embedded import ensure_running, mark_state

    state = Path(args.state) if args.state else state_dir()
    existed = has_state(state)
    mark_state(state)
    sock = ensure_running(state)
    verb = "already a state folder" if existed else "created"
    print(f"jtca init: {state.resolve()} {verb}; the embedded service answers on {sock}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    target = resolve()
    data = {
        "source": target.source,
        "url": target.url,
        "server_cert": str(target.server_cert) if target.server_cert else None,
        "config_file": str(target.config_file) if target.config_file else None,
        "state": str(target.state.resolve()) if target.state else None,
        "state_exists": has_state(target.state) if target.state else None,
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"service: {target.url}")
    print(f"from:    {target.source}" + (f" ({target.config_file})" if target.config_file else ""))
    if target.server_cert:
        print(f"pinned:  {target.server_cert}")
    if target.state is not None:
        made = "exists" if has_state(target.state) else "missing: create it with `jtca init`"
        print(f"state:   {target.state.resolve()} ({made})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ca.client.http import connect
    from ca.ops import system
    from ca.ops.base import Empty

    client = connect()
    info = client.call(system.INFO, Empty())
    if args.json:
        print(
            json.dumps(
                {"url": client.target.url if client.target else None, **info.model_dump()}, indent=2
            )
        )
    else:
        where = client.target.url if client.target else "?"
        embedded = f", embedded on {info.state}" if info.embedded else ""
        print(
            f"jtca service {info.version} at {where}: schema {info.schema_revision}, "
            f"{info.database}{embedded}"
        )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from ca.client.embedded import stop

    state = state_dir()
    if stop(state):
        print(f"jtca service: stopped the embedded service of {state.resolve()}")
    else:
        print(f"jtca service: no embedded service running for {state.resolve()}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Recover at the service (an officer allowed system.recover), then this site's own token
    work (key packages opened, backups restored) left by a dead client. A province's officer,
    whom the policy does not let recover the service's operations, still recovers the site's."""
    from ca.cli import desk
    from ca.core.errors import JtcaError
    from ca.ops import system as ops

    refused: JtcaError | None = None
    recovered: list[dict[str, Any]] = []
    still: list[ops.IntentInfo] = []
    try:
        result = desk.call(ops.RECOVER, ops.RecoverRequest(operation=args.operation))
        recovered = [r.model_dump() for r in result.recovered]
        still = list(result.open)
    except JtcaError as exc:
        refused = exc
    site = _recover_site(args.operation)
    if refused is not None and not site:
        raise refused
    data: dict[str, Any] = {
        "recovered": recovered + site,
        "open": [i.model_dump() for i in still],
    }
    if refused is not None:
        data["service"] = f"{refused.title}: {refused.message}"
    if args.json:
        print(json.dumps(data))
    else:
        if refused is not None:
            print(f"the service's operations were not recovered: {data['service']}")
        items = data["recovered"]
        if not items:
            print("nothing to recover")
        for item in items:
            print(
                f"intent {item['intent']} ({item['operation']} on {item['subject']}): "
                f"{item['result']}: {item['outcome']}"
            )
        for info in still:
            who = "its process is running" if info.owner_alive else "not recovered"
            print(f"still open: intent {info.intent} ({info.operation} on {info.subject}), {who}")
    failed = [r for r in data["recovered"] if r["result"] == "failed"]
    return 5 if failed else 0


def _recover_site(operation: str | None) -> list[dict[str, Any]]:
    """This site's journal (ca.site.recovery), when this client has one."""
    from ca.site.recovery import recover_site_here

    return recover_site_here(operation)
