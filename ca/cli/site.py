"""``jtca city transport-key``, ``jtca city deliver``, ``jtca city import``: the steps of the
city key path that use a holder's token — the ministry's at the service, a province's or a
city's at that site (issue #11, point 5)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from ca.citykeys import workflow
from ca.cli.city_common import _actor, _emit, _now
from ca.errors import BadInput, JtcaError
from ca.store.models import CityKey
from ca.tokens import EmbeddedVault


def register(command: Any) -> None:
    q = command("transport-key", "make a holder's transport key in its token", cmd_transport)
    q.add_argument("--holder", required=True, help="'ministry', a province or a city code")
    q.add_argument("--token", required=True, metavar="LABEL", help="the holder's token")

    q = command("deliver", "seal keys to the next holder as key packages", cmd_deliver)
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", type=int, action="append", metavar="ID")
    which.add_argument("--application", type=int, metavar="N")
    q.add_argument("--out", type=Path, required=True, metavar="DIR")

    q = command("import", "open key packages into the recipient's token", cmd_import)
    q.add_argument("package", type=Path, nargs="+")


# -- commands --------------------------------------------------------------------------
def cmd_transport(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    with EmbeddedVault(create=True) as vault:
        row = workflow.register_transport_key(
            engine, vault, actor, holder=args.holder, token=args.token, now=_now()
        )
    data = {"holder": row.holder, "token": row.token, "uri": row.uri, "public_key": row.public_key}
    _emit(args, data, f"transport key of {row.holder}: {row.uri}\n  public key {row.public_key}")
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    key_ids = args.key
    if args.application is not None:
        with Session(engine) as session:
            key_ids = [
                k
                for k in session.exec(
                    select(CityKey.id)
                    .where(CityKey.application_id == args.application)
                    .where(col(CityKey.stage).in_([workflow.GENERATED, workflow.AT_PROVINCE]))
                    .order_by(col(CityKey.id))
                )
                if k is not None
            ]
        if not key_ids:
            raise BadInput(f"--application {args.application}: no key of it awaits delivery")
    with EmbeddedVault() as vault:
        done = workflow.deliver(engine, vault, actor, key_ids, out_dir=args.out, now=_now())
    data = [
        {
            "key": d.key_id,
            "label": d.label,
            "to": d.recipient,
            "package": d.package_id,
            "file": str(d.path),
        }
        for d in done
    ]
    _emit(args, data, "\n".join(f"{d.label} → {d.recipient}: {d.path}" for d in done))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    engine, actor = _actor(args)
    results: list[workflow.Imported] = []
    with EmbeddedVault() as vault:
        for path in args.package:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BadInput(f"cannot read {path}: {exc.strerror}") from None
            try:
                results.append(workflow.import_package(engine, vault, actor, data, now=_now()))
            except JtcaError as exc:
                # say what was imported before the refusal, and which file was refused
                for done in results:
                    print(f"{done.label}: in {done.token} ({done.stage})")
                exc.message = f"{path}: {exc.message}"
                exc.args = (exc.message,)
                raise
    out = [
        {
            "key": r.key_id,
            "label": r.label,
            "holder": r.holder,
            "token": r.token,
            "uri": r.uri,
            "stage": r.stage,
        }
        for r in results
    ]
    _emit(args, out, "\n".join(f"{r.label}: in {r.token} ({r.stage})" for r in results))
    return 0
