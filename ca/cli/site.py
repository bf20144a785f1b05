"""``jtca city transport-key``, ``jtca city deliver``, ``jtca city import``, ``jtca city
destroy-copies``: the steps of the city key path that use a holder's token — the ministry's at the
service, a province's or a city's at that site, with its own token (issue #11, point 5;
``ca.site`` says how) — and ``jtca city packages``, which fetches a recorded package again when
its file was lost.

Without ``--module`` a site's token is the one of the embedded default: the SoftHSM2 of the
state folder, with the PIN file jtca keeps beside each token. A real site names its PKCS#11
module (``--module PATH``) and its PIN source (``--pin-source env:VAR | file:PATH | prompt``).
"""

# The named exception to "ca.cli imports no hsm" (issue #11): ca.site works with a token held
# at this site. Still never ca.store, sqlmodel, sqlalchemy, ca.authority or ca.service.
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.cli.city_common import KEY_HELP, key_ids
from ca.core.errors import BadInput, JtcaError
from ca.core.vocabulary import stage_word

if TYPE_CHECKING:
    from ca.client.http import Client
    from ca.ops.packages import ImportedKey
    from ca.vault.site import SiteVault


def register(command: Any) -> None:
    q = command(
        "transport-key",
        "make a holder's transport keys (a signing and an encryption key pair) in its token",
        cmd_transport,
    )
    q.add_argument("--holder", required=True, help="'ministry', a province or a city code")
    q.add_argument("--token", required=True, metavar="LABEL", help="the holder's token")
    _site_token_options(q)

    q = command("deliver", "seal keys to the next holder as key packages", cmd_deliver)
    q.add_argument("keys", nargs="*", metavar="KEY", help=KEY_HELP)
    q.add_argument("--key", action="append", default=[], help=argparse.SUPPRESS)  # deprecated
    q.add_argument("--application", type=int, metavar="N", help="every key of this application")
    q.add_argument("--out", type=Path, required=True, metavar="DIR")
    _site_token_options(q)

    q = command("import", "open key packages into the recipient's token", cmd_import)
    q.add_argument("package", type=Path, nargs="+")
    q.add_argument(
        "--accept-legacy-format",
        action="store_true",
        help="migration only: also read packages of the format before issue #15 (else they "
        "are refused legacy-format, exit 4)",
    )
    _site_token_options(q)

    q = command("packages", "fetch again a key's recorded package that awaits import", cmd_packages)
    q.add_argument("key", nargs="?", metavar="KEY", help=KEY_HELP)
    q.add_argument("--key", dest="old_key", metavar="ID", help=argparse.SUPPRESS)  # deprecated
    q.add_argument("--out", type=Path, required=True, metavar="DIR")

    q = command(
        "destroy-copies",
        "destroy a province's or a city's copies awaiting destruction, in its token",
        cmd_destroy_copies,
    )
    q.add_argument("--holder", required=True, metavar="CODE", help="a province or a city code")
    _site_token_options(q)


def _site_token_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--module", metavar="PATH", help="the site's PKCS#11 module (default: embedded SoftHSM2)"
    )
    q.add_argument(
        "--pin-source", metavar="SPEC", help="with --module: env:VAR, file:PATH or prompt"
    )


# -- helpers -------------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def _now() -> int:
    from ca.core.clock import SystemClock

    return SystemClock().now()


def _client(args: argparse.Namespace) -> Client:
    """The service, as the officer of this machine's session: every step here needs one."""
    from ca.cli import desk

    client = desk.connect()
    try:
        desk.signed_in(client, f"jtca city {args.city_command}")
    except JtcaError:
        client.close()
        raise
    return client


def _tokens(args: argparse.Namespace, *, create: bool = False) -> SiteVault:
    from ca.client.config import state_dir
    from ca.vault.site import SiteVault

    return SiteVault(
        module=args.module, pin_source=args.pin_source, state=state_dir(), create=create
    )


# -- commands ------------------------------------------------------------------------------------
def cmd_transport(args: argparse.Namespace) -> int:
    from ca.site import packages as site

    if args.holder == "ministry" and (args.module or args.pin_source):
        raise BadInput("--holder ministry: the ministry's token is the service's; no --module")
    client = _client(args)
    with _tokens(args, create=True) as tokens:
        row = site.register_transport_key(
            client, tokens, holder=args.holder, token=args.token, now=_now()
        )
    _emit(args, transport_data(row), transport_text(row))
    return 0


def transport_data(row: Any) -> dict[str, Any]:
    """A holder's transport keys (``ops.packages.TransportKeyInfo``) for ``--json``."""
    return {
        "holder": row.holder,
        "token": row.token,
        "sign": {"uri": row.sign_uri, "public_key": row.sign_public_key},
        "enc": {"uri": row.uri, "public_key": row.public_key},
        "legacy": row.legacy,
        # the encryption key, under the names of before issue #15
        "uri": row.uri,
        "public_key": row.public_key,
    }


def transport_text(row: Any) -> str:
    """The two halves of a holder's transport keys, one line each."""
    if row.legacy or row.sign_uri is None:
        return (
            f"transport key of {row.holder} (legacy: one key signs and decrypts): {row.uri}\n"
            f"  public key {row.public_key}"
        )
    return (
        f"transport keys of {row.holder} in token {row.token}:\n"
        f"  signing key    {row.sign_uri}\n"
        f"    public key   {row.sign_public_key}\n"
        f"  encryption key {row.uri}\n"
        f"    public key   {row.public_key}"
    )


def cmd_deliver(args: argparse.Namespace) -> int:
    from ca.site import packages as site

    keys = key_ids(args, [*args.keys, *args.key])
    if bool(keys) == (args.application is not None):
        raise BadInput("name the keys to deliver (KEY …) or --application N, not both")
    client = _client(args)
    with _tokens(args) as tokens:
        done = site.deliver(
            client,
            tokens,
            keys=keys,
            application=args.application,
            out_dir=args.out,
            now=_now(),
        )
    data = [
        {"key": d.key, "label": d.label, "to": d.to, "package": d.package, "file": str(d.path)}
        for d in done
    ]
    _emit(args, data, "\n".join(f"{d.label} → {d.to}: {d.path}" for d in done))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ca.site import packages as site

    client = _client(args)
    results: list[ImportedKey] = []
    with _tokens(args) as tokens:
        for path in args.package:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BadInput(f"cannot read {path}: {exc.strerror}") from None
            try:
                results.append(
                    site.import_package(
                        client, tokens, data, accept_legacy=args.accept_legacy_format
                    )
                )
            except JtcaError as exc:
                # say what was imported before the refusal, and which file was refused
                for done in results:
                    print(f"{done.label}: in {done.token} ({stage_word(done.stage)})")
                exc.message = f"{path}: {exc.message}"
                exc.args = (exc.message,)
                raise
    out = [
        {
            "key": r.key,
            "label": r.label,
            "holder": r.holder,
            "token": r.token,
            "uri": r.uri,
            "stage": r.stage,
        }
        for r in results
    ]
    text = "\n".join(f"{r.label}: in {r.token} ({stage_word(r.stage)})" for r in results)
    _emit(args, out, text)
    return 0


def cmd_packages(args: argparse.Namespace) -> int:
    from ca.site import packages as site

    given = [ref for ref in (args.key, args.old_key) if ref is not None]
    if len(given) != 1:
        raise BadInput("name one key: jtca city packages KEY --out DIR")
    (key,) = key_ids(args, given)
    client = _client(args)
    done = site.fetch_package(client, key=key, out_dir=args.out)
    data = [
        {"key": d.key, "label": d.label, "to": d.to, "package": d.package, "file": str(d.path)}
        for d in done
    ]
    _emit(args, data, "\n".join(f"{d.label} → {d.to}: {d.path}" for d in done))
    return 0


def cmd_destroy_copies(args: argparse.Namespace) -> int:
    from ca.core.clock import iso_utc
    from ca.ops.packages import SiteCopy
    from ca.site import destruction

    client = _client(args)
    done: list[SiteCopy] = []

    def line(c: SiteCopy) -> str:
        return f"{c.label}: destroyed in {c.token} ({c.uri})"

    with _tokens(args) as tokens:
        try:
            destruction.destroy_copies(client, tokens, args.holder, done=done.append)
        except JtcaError:
            if not args.json:  # say what was destroyed and reported before the refusal
                for c in done:
                    print(line(c))
            raise
    data = [
        {
            "key": c.key,
            "label": c.label,
            "holder": c.holder,
            "token": c.token,
            "uri": c.uri,
            "destroyed_at": iso_utc(c.destroyed_at) if c.destroyed_at is not None else None,
        }
        for c in done
    ]
    text = "\n".join(line(c) for c in done) or f"no copy of {args.holder} awaits destruction"
    _emit(args, data, text)
    return 0
