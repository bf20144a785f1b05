"""``jtca token``: keys in PKCS#11 tokens, key packages, custody shares, backup and restore.

The local token tool: it works on the tokens of the machine it runs on and talks to no
authority service. Custodians' shares are read from files (``--share-file``) or hidden prompts,
never taken from the command line. Without ``--module`` the embedded default is used: SoftHSM2 under
``STATE/softhsm2`` with the PIN file jtca keeps there. With ``--module`` the token is a real one
and the PIN comes from ``--pin-source env:VAR | file:PATH | prompt`` (default ``prompt``).

Nothing here is written to the authority's audit log (it was, directly into the database, under
the name ``$USER``). The steps the authority keeps a record of are its operations, each audited
by the service with the officer who asked: transport keys, generation, deliveries and imports of
key packages (``jtca city``, ``ca.site``), destruction of city key material, ceremonies. What
this tool does to a token in someone's hands is theirs to account for; an entry naming no
proven officer would be no evidence, and a write into the audit log from any machine is the
side door issue #11 closes.
"""

# The named exception to "ca.cli imports no hsm" (issue #11): this tool works on the local
# machine's tokens only. It never imports ca.store, sqlmodel, sqlalchemy, ca.authority or
# ca.service, and makes no request to the authority.
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ca.cli import desk
from ca.core.errors import BadInput
from ca.core.files import write_atomically
from ca.vault.embedded import embedded_token, state_dir
from hsm.backup import Backup
from hsm.custody import combine_secret, split_secret
from hsm.envelope import export_key, import_key
from hsm.errors import InvalidKey
from hsm.pkcs11.keys import KeyAttributes, KeyKind, KeyStore, TokenKey
from hsm.pkcs11.softhsm2 import token_labels, use_softhsm
from hsm.pkcs11.token import PinSource, PromptPin, Token, pin_source_from_spec
from hsm.pkcs11.uri import Pkcs11Uri, UriError
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey


def register(sub: Any) -> None:
    token = sub.add_parser("token", help="keys in PKCS#11 tokens, packages, shares, backups")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", parser_class=type(token))
    tsub.required = True

    def common(p: argparse.ArgumentParser, token_required: bool = True) -> None:
        p.add_argument("--token", required=token_required, metavar="LABEL", help="token label")
        p.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: embedded)")
        p.add_argument("--pin-source", metavar="SPEC", help="env:VAR, file:PATH or prompt")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = tsub.add_parser("init", help="create a token in the embedded SoftHSM2 (state folder)")
    p.add_argument("--token", required=True, metavar="LABEL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_init)

    p = tsub.add_parser("list", help="token labels, or the keys of one token")
    common(p, token_required=False)
    p.set_defaults(handler=cmd_list)

    p = tsub.add_parser(
        "show", help="a token's keys with their extractability attributes, and its wrapping key"
    )
    common(p)
    p.set_defaults(handler=cmd_show)

    p = tsub.add_parser("keygen", help="generate an SM2 key pair or an SM4 key in the token")
    common(p)
    p.add_argument("--label", required=True)
    p.add_argument("--kind", choices=["sm2", "sm4"], required=True)
    p.add_argument(
        "--transport",
        action="store_true",
        help="an SM2 encryption key that opens packages (it cannot sign)",
    )
    p.add_argument(
        "--class",
        dest="key_class",
        metavar="CLASS",
        help="the policy's key class: host_assisted = false makes the key CKA_EXTRACTABLE=FALSE",
    )
    p.set_defaults(handler=cmd_keygen)

    p = tsub.add_parser("destroy", help="destroy a key's material (the record stays elsewhere)")
    common(p, token_required=False)
    p.add_argument("--key", required=True, metavar="URI", help=KEY_URI_HELP)
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    p.set_defaults(handler=cmd_destroy)

    p = tsub.add_parser("export", help="seal a key to another token as a signed key package")
    common(p)
    p.add_argument("--key", required=True, metavar="URI", help="the key to move")
    p.add_argument(
        "--sender-key",
        metavar="URI",
        help="the SM2 signing key that signs the package (gmt format; not with skf)",
    )
    p.add_argument(
        "--to", required=True, metavar="HEXPOINT", help="the recipient's encryption public key"
    )
    p.add_argument(
        "--format",
        choices=["gmt", "skf"],
        default="gmt",
        help="gmt: a GM/T 0010 key package, signed (default); skf: a GM/T 0016 "
        "ENVELOPEDKEYBLOB for an SKF device (SM2 keys only, unsigned: send it beside the package)",
    )
    p.add_argument("--recipient", required=True, metavar="NAME")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(handler=cmd_export)

    p = tsub.add_parser("import", help="open a key package into the token")
    common(p)
    p.add_argument("--package", required=True, type=Path)
    p.add_argument("--transport-key", required=True, metavar="URI")
    p.add_argument("--trusted-sender", action="append", required=True, metavar="HEXPOINT")
    p.add_argument("--label", help="label in this token (default: the package's)")
    p.set_defaults(handler=cmd_import)

    p = tsub.add_parser("split", help="split a secret (PIN, key) into M-of-N custodian shares")
    p.add_argument("--threshold", type=int, required=True, metavar="M")
    p.add_argument("--shares", type=int, required=True, metavar="N")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--secret-env", metavar="VAR")
    src.add_argument("--secret-file", type=Path)
    p.set_defaults(handler=cmd_split)

    p = tsub.add_parser("check-shares", help="check that shares combine (prints no secret)")
    desk.add_share_options(p, "a custodian's share")
    p.set_defaults(handler=cmd_check_shares)

    p = tsub.add_parser("backup", help="wrapped archive of every key + M-of-N shares")
    common(p)
    p.add_argument("--threshold", type=int, required=True, metavar="M")
    p.add_argument("--custodians", type=int, required=True, metavar="N")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(handler=cmd_backup)

    p = tsub.add_parser("restore", help="restore an archive into a (fresh) token")
    common(p)
    p.add_argument("--archive", required=True, type=Path)
    desk.add_share_options(p, "a custodian's share of the backup")
    p.set_defaults(handler=cmd_restore)


# -- helpers -------------------------------------------------------------------------------
def open_store(args: argparse.Namespace) -> KeyStore:
    if args.module is None:
        if args.pin_source is None:
            return embedded_token(args.token, create=False).store
        use_softhsm(state_dir() / "softhsm2")
    pin: PinSource = (
        pin_source_from_spec(args.pin_source) if args.pin_source is not None else PromptPin()
    )
    return KeyStore(Token(args.token, pin, module=args.module))


KEY_URI_HELP = (
    "RFC 7512 URI of the key; with ?module-path=…&pin-source=file:… it names the key fully "
    "and --token, --module and --pin-source are not needed"
)


def parse_uri(text: str, option: str) -> Pkcs11Uri:
    from ca.policy.in_force import load_policy

    try:
        return Pkcs11Uri.parse(text, allow_pin_value=load_policy().pkcs11_uri.allow_pin_value)
    except UriError as exc:
        raise BadInput(f"{option}: {exc.message}") from None


def store_for_key(args: argparse.Namespace, text: str, option: str) -> tuple[KeyStore, Pkcs11Uri]:
    """The token and the key a ``--key`` URI names (issue #15, RFC 7512 §2.3).

    A URI with query attributes (module-path or module-name, pin-source, or pin-value where
    the policy allows it) names the key fully: its module is loaded, its token found and
    logged in with its PIN; the options --token, --module and --pin-source must not say
    otherwise. A URI without a query names a key in the token the options open, as before.
    The URI returned is the key's name alone (no query): what records and audit entries hold.
    """
    from ca.policy.in_force import load_policy
    from hsm.pkcs11.resolve import open_key

    uri = parse_uri(text, option)
    if not uri.has_query:
        if args.token is None:
            raise BadInput(
                f"{option} {uri}: give --token, or name the module and PIN in the URI "
                "(?module-path=/path/to/module.so&pin-source=file:/path/to/pin)"
            )
        return open_store(args), uri
    if args.token is not None and args.token != uri.token:
        raise BadInput(f"{option} names token {uri.token!r} but --token is {args.token!r}")
    if args.module is not None or args.pin_source is not None:
        raise BadInput(
            f"{option} names its module and PIN in the URI: leave out --module and --pin-source"
        )
    opened = open_key(uri, allow_pin_value=load_policy().pkcs11_uri.allow_pin_value)
    return opened.store, opened.uri


def parse_point(text: str, option: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_bytes(bytes.fromhex(text))
    except (ValueError, InvalidKey) as exc:
        raise BadInput(f"{option} {text[:16]}…: not an SM2 point ({exc})") from None


def find_key(store: KeyStore, uri: Pkcs11Uri) -> TokenKey:
    for key in store.list_keys():
        if (uri.object is None or key.label == uri.object) and (
            uri.id is None or key.key_id == uri.id
        ):
            if key.kind == KeyKind.SM4 and key.check_value is None:
                kcv = store.with_key_material(key.uri, _kcv)
                return TokenKey(key.uri, key.kind, key.label, key.key_id, None, kcv)
            return key
    raise BadInput(f"no key matches {uri} in token {store.token.label!r}")


def _kcv(value: bytearray) -> bytes:
    from hsm.sm.sm4 import sm4_key_check_value

    return sm4_key_check_value(bytes(value))


def key_json(key: TokenKey) -> dict[str, Any]:
    return {
        "uri": str(key.uri),
        "kind": key.kind.value,
        "label": key.label,
        "id": key.key_id.hex(),
        "public_key": key.public_key.compressed.hex() if key.public_key else None,
        "check_value": key.check_value.hex() if key.check_value else None,
    }


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text)


# -- commands ------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    use_softhsm(state_dir() / "softhsm2")
    existed = args.token in token_labels()
    made = embedded_token(args.token)
    data = {"token": args.token, "pin_file": str(made.pin_file), "created": not existed}
    emit(
        args,
        data,
        f"token {args.token}: {'exists' if existed else 'created'}; PIN in {made.pin_file}",
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.token is None:
        if args.module is None:
            use_softhsm(state_dir() / "softhsm2")
        labels = token_labels()
        emit(args, {"tokens": labels}, "\n".join(labels) if labels else "(no tokens)")
        return 0
    keys = open_store(args).list_keys()
    rows = [key_json(k) for k in keys]
    text = "\n".join(
        f"{k['kind']}  {k['label']:<28} {k['public_key'] or k['check_value'] or ''}  {k['uri']}"
        for k in rows
    )
    emit(args, {"token": args.token, "keys": rows}, text or "(no keys)")
    return 0


def extraction(attributes: KeyAttributes, trusted_key: bool) -> str:
    """How a key can leave its token, from its attributes (docs/tokens.md, Extractability)."""
    if not attributes.extractable:
        return "never"  # CKA_EXTRACTABLE=FALSE: not even wrapped
    if attributes.wrap_with_trusted:
        return "trusted-key-only" if trusted_key else "trusted-key-only (the token has none)"
    return "any-wrapping-key"  # a key made before the token had a trusted wrapping key


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store(args)
    status = store.trusted_wrap_status()
    rows = []
    lines = [f"token {args.token}"]
    if status.present:
        lines.append(
            f"trusted wrapping key: present; its value on this host: {status.file} "
            + ("(matches)" if status.file_matches else "(MISSING or not this token's)")
        )
    else:
        lines.append(
            "trusted wrapping key: none (a token made before issue #15): its extractable keys "
            "leave it under a one-use key of the host's, which anyone with the PIN could also "
            "make"
        )
    for key in store.list_keys():
        attributes = store.key_attributes(key.uri)
        how = extraction(attributes, status.present)
        rows.append(key_json(key) | {"attributes": attributes.as_pkcs11(), "extraction": how})
        flags = "  ".join(f"{name}={'TRUE' if on else 'FALSE'}" for name, on in (
            ("CKA_EXTRACTABLE", attributes.extractable),
            ("CKA_NEVER_EXTRACTABLE", attributes.never_extractable),
            ("CKA_ALWAYS_SENSITIVE", attributes.always_sensitive),
            ("CKA_LOCAL", attributes.local),
            ("CKA_WRAP_WITH_TRUSTED", attributes.wrap_with_trusted),
            ("CKA_SIGN", attributes.sign),
            ("CKA_DECRYPT", attributes.decrypt),
        ))  # fmt: skip
        lines.append(f"{key.kind.value}  {key.label}  {key.uri}\n    {flags}\n    leaves: {how}")
    data = {
        "token": args.token,
        "trusted_wrapping_key": {
            "present": status.present,
            "file": str(status.file) if status.file is not None else None,
            "file_matches": status.file_matches,
        },
        "keys": rows,
    }
    emit(args, data, "\n".join(lines if rows else [*lines, "(no keys)"]))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    host_assisted = True
    if args.key_class is not None:
        from ca.policy.in_force import load_policy

        policy = load_policy()
        if args.key_class not in policy.key_classes:
            known = ", ".join(sorted(policy.key_classes))
            raise BadInput(
                f"--class {args.key_class[:40]!r}: the policy has no such class ({known})"
            )
        host_assisted = policy.host_assisted_allowed(args.key_class)
    if args.kind == "sm2" and args.transport and not host_assisted:
        raise BadInput("--transport: a key that opens packages must be usable on the host")
    store = open_store(args)
    if args.kind == "sm2":
        key = store.generate_sm2(
            args.label,
            decrypt=args.transport,
            sign=not args.transport,  # an encryption key never signs (GM/T 0014/0015)
            host_assisted=host_assisted,
        )
    else:
        if args.transport:
            raise BadInput("--transport applies to SM2 keys only")
        key = store.generate_sm4(args.label, host_assisted=host_assisted)
    data = key_json(key)
    emit(args, data, f"generated {data['kind']} key {data['uri']}")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        raise BadInput("destroying key material cannot be undone: add --yes")
    store, uri = store_for_key(args, args.key, "--key")
    count = store.destroy(uri)
    emit(args, {"destroyed": str(uri), "objects": count}, f"destroyed {uri} ({count} objects)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ca.vault.signers import token_signer

    store = open_store(args)
    key = find_key(store, parse_uri(args.key, "--key"))
    recipient = parse_point(args.to, "--to")
    if args.format == "skf":
        from hsm.skf import export_skf_blob

        if args.sender_key is not None:
            raise BadInput(
                "--format skf: an ENVELOPEDKEYBLOB is not signed; leave out --sender-key"
            )
        if key.kind != KeyKind.SM2:
            raise BadInput(
                f"--format skf: {key.label} is an {key.kind} key; the blob holds SM2 keys"
            )
        blob = export_skf_blob(store, key, recipient_transport_key=recipient)
        write_atomically(args.out, blob)
        data = {"blob": str(args.out), "bytes": len(blob), "key": str(key.uri), "format": "skf"}
        emit(args, data, f"wrote {args.out}: {key.label} as an SKF ENVELOPEDKEYBLOB")
        return 0
    if args.sender_key is None:
        raise BadInput("--sender-key is required: a key package is signed by the sender")
    sender: Signer = token_signer(store, parse_uri(args.sender_key, "--sender-key"), "transport")
    package = export_key(
        store, key, sender=sender, recipient_transport_key=recipient, recipient_name=args.recipient
    )
    write_atomically(args.out, package)
    data = {"package": str(args.out), "bytes": len(package), "key": str(key.uri)}
    emit(args, data, f"wrote {args.out}: {key.label} sealed to {args.recipient}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        package = args.package.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {args.package}: {exc.strerror}") from None
    transport = find_key(store, parse_uri(args.transport_key, "--transport-key"))
    senders = [parse_point(s, "--trusted-sender") for s in args.trusted_sender]
    key = import_key(
        store, package, transport_key=transport, trusted_senders=senders, label=args.label
    )
    data = key_json(key)
    emit(args, data, f"imported {data['kind']} key {data['uri']}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if not value:
            raise BadInput(f"--secret-env {args.secret_env}: the variable is empty or unset")
        secret = value.encode("utf-8")
    else:
        try:
            secret = args.secret_file.read_bytes().rstrip(b"\n")
        except OSError as exc:
            raise BadInput(f"cannot read {args.secret_file}: {exc.strerror}") from None
    for share in split_secret(secret, args.threshold, args.shares):
        print(share)
    return 0


def cmd_check_shares(args: argparse.Namespace) -> int:
    shares = desk.read_shares(args.share_file, what="the secret")
    secret = combine_secret(shares)
    print(f"the {len(shares)} shares combine to the {len(secret)}-byte secret they came from")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """The archive written atomically under a site intent (ca.site.backup_recovery): a cut
    leaves at most a temporary file, removed by the next backup and by ``jtca recover``."""
    from ca.site.backup_recovery import backup_into

    def show(backup: Backup) -> None:
        data = {"archive": str(args.out), "shares": backup.shares}
        text = f"wrote {args.out}; give one share to each custodian:\n" + "\n".join(backup.shares)
        emit(args, data, text)
        sys.stdout.flush()

    from ca.cli.progress import tracked

    backup_into(
        open_store(args),
        args.out,
        threshold=args.threshold,
        custodians=args.custodians,
        show=show,
        # a bar on standard error while the keys are wrapped, on a terminal only (not --json)
        track=lambda keys: tracked(
            keys, len(keys), "backing up the token", json_output=bool(getattr(args, "json", False))
        ),
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Under a site intent naming every key of the archive (ca.site.backup_recovery): a rerun
    after a cut restore adopts the keys already restored and installs the rest."""
    from ca.cli.progress import Progress
    from ca.site.backup_recovery import restore_into

    try:
        archive = args.archive.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {args.archive}: {exc.strerror}") from None
    shares = desk.read_shares(args.share_file, what="the backup's key")
    bars: list[Progress] = []  # made once the archive's number of keys is known

    def advance(done: int, total: int) -> None:
        # a bar on standard error as the keys are restored, on a terminal only (not --json)
        if not bars:
            json_output = bool(getattr(args, "json", False))
            bars.append(Progress("restoring the token", total, enabled=not json_output))
        bars[0].update(done)

    try:
        keys, done = restore_into(
            open_store(args),
            args.archive,
            archive,
            shares,
            module=args.module,
            pin_source=args.pin_source,
            state=state_dir(),
            advance=advance,
        )
    finally:
        for bar in bars:
            bar.close()  # erased before the result or the error is written
    rows = [key_json(k) for k in keys]
    adopted = set(done["adopted"])
    emit(
        args,
        {"restored": rows, "adopted": sorted(adopted)},
        "\n".join(f"{'adopted' if k['label'] in adopted else 'restored'} {k['uri']}" for k in rows),
    )
    return 0
