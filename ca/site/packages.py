"""Key packages at a site: its transport key, importing a package into its token, handing keys
on to a city; each step reported to the service (see ``ca.site``).

A report the service refuses undoes what the site did: the transport key or the imported key
is destroyed again (with the package's replay marker), the package files of a hand-on are
removed — no key and no package without its record. When the answer to a report is lost (the
connection broke), the site asks the service whether the report was recorded before it undoes
anything, so a recorded step is never undone.
"""

# The named exception to "ca.cli imports no hsm" (issue #11): a site's own token.
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pkcs11

from ca.citykeys.sealing import point, seal_key
from ca.client.http import Client, ServiceError
from ca.errors import BadInput, JtcaError
from ca.files import write_atomically
from ca.ops import packages as ops
from hsm.envelope import forget_import, import_key, read_package
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri

R = TypeVar("R")


class Tokens(Protocol):
    """The tokens of this site by label (``ca.site.vault.SiteVault``)."""

    def store(self, token_label: str) -> KeyStore: ...


def _report(
    report: Callable[[], R], confirm: Callable[[], R | None], undo: Callable[[], None]
) -> R:
    """Send a report; undo the site's step if the service refuses it. If no answer came, ask
    the service (``confirm``) whether it recorded the report: keep the step if it did, undo it
    if it did not or cannot say."""
    try:
        return report()
    except ServiceError:  # the service answered: refused
        undo()
        raise
    except BaseException:
        try:
            found = confirm()
        except Exception:
            found = None
        if found is not None:
            return found
        undo()
        raise


# -- transport keys -------------------------------------------------------------------------------
def register_transport_key(
    client: Client, tokens: Tokens, *, holder: str, token: str, now: int
) -> ops.TransportKeyInfo:
    """A holder's new transport key: the ministry's is made by the service in the ministry
    token; a province's or a city's here, in the site's token ``token``, and only its public
    part is registered. An earlier key of the holder is retired."""
    if holder == ops.MINISTRY:
        return client.call(ops.MINISTRY_TRANSPORT_KEY, ops.MinistryTransportKey(token=token))
    if not token.strip() or len(token) > 32:
        raise BadInput(f"--token {token!r}: a token label of 1-32 characters")
    store = tokens.store(token)
    key = store.generate_sm2(ops.transport_key_label(holder, now), decrypt=True)
    if key.public_key is None:
        raise JtcaError(f"token {token!r} returned no public key for the transport key")
    report = ops.SiteTransportKey(
        holder=holder, token=token, uri=str(key.uri), public_key=key.public_key.compressed.hex()
    )

    def confirm() -> ops.TransportKeyInfo | None:
        found = client.call(ops.TRANSPORT_KEY, ops.Holder(holder=holder)).active
        return found if found is not None and found.public_key == report.public_key else None

    def undo() -> None:
        with contextlib.suppress(KeyNotFound):
            store.destroy(key.uri)  # no key without its record

    return _report(lambda: client.call(ops.REGISTER_TRANSPORT_KEY, report), confirm, undo)


# -- delivery -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeliveredFile:
    key: int
    label: str
    to: str
    package: str  # package id, hex
    path: Path


def prepare_folder(out_dir: Path) -> None:
    """Make ``out_dir`` and prove it takes a file, before anything is recorded."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out_dir}: cannot make the folder ({exc.strerror})") from None
    if not out_dir.is_dir():
        raise BadInput(f"--out {out_dir}: not a folder")
    probe = out_dir / f".jtca-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"--out {out_dir}: cannot write there ({exc.strerror})") from None


def _file_in(out_dir: Path, name: str) -> Path:
    if not name or Path(name).name != name or name.startswith("."):
        raise JtcaError(f"the service named a package file {name!r}: not a plain file name")
    return out_dir / name


def deliver(
    client: Client,
    tokens: Tokens,
    *,
    keys: Sequence[int] = (),
    application: int | None = None,
    out_dir: Path,
    now: int,
) -> list[DeliveredFile]:
    """Deliver keys to their next holder and write the packages to ``out_dir``: the ministry's
    (generated keys, to the province) are sealed by the service; a province hands the keys it
    holds on to its cities from its own token (``hand_on``)."""
    plan = client.call(
        ops.DELIVERY_PLAN, ops.DeliveryRequest(keys=list(keys), application=application)
    )
    prepare_folder(out_dir)
    senders = {hop.sender for hop in plan.hops}
    if senders == {ops.MINISTRY}:
        sealed = client.call(ops.DELIVER, ops.DeliveryRequest(keys=[h.key for h in plan.hops]))
        return write_sealed(sealed, out_dir)
    if ops.MINISTRY in senders:
        raise BadInput("the ministry's and a province's deliveries cannot go together")
    return hand_on(client, tokens, plan.hops, out_dir=out_dir, now=now)


def write_sealed(sealed: ops.SealedPackages, out_dir: Path) -> list[DeliveredFile]:
    """Write the packages the service made (recorded already: a file that cannot be written
    is said plainly)."""
    done: list[DeliveredFile] = []
    for package in sealed.packages:
        path = _file_in(out_dir, package.file)
        try:
            write_atomically(path, package.data)
        except OSError as exc:
            raise JtcaError(
                f"{package.label}: the delivery is recorded (package {package.package}), but "
                f"{path} could not be written ({exc.strerror}); fetch it again with "
                f"jtca city packages --key {package.key} --out DIR",
                title="Package not written",
            ) from None
        done.append(DeliveredFile(package.key, package.label, package.to, package.package, path))
    return done


def fetch_package(client: Client, *, key: int, out_dir: Path) -> list[DeliveredFile]:
    """Fetch again the package of ``key`` that awaits import (its file was lost after the
    delivery was recorded) and write it to ``out_dir`` under the name ``deliver`` gave it."""
    prepare_folder(out_dir)
    return write_sealed(client.call(ops.FETCH_PACKAGE, ops.PackageRequest(key=key)), out_dir)


def seal(tokens: Tokens, hop: ops.Hop, *, now: int) -> bytes:
    """The package of one hop, made in this site's token: the sender's copy of the key sealed
    to the recipient's transport key, signed by the sender's transport key."""
    return seal_key(
        tokens,
        source_token=hop.source.token,
        source_uri=hop.source.uri,
        kind=hop.kind,
        label=hop.label,
        public_key=hop.public_key,
        check_value=hop.check_value,
        sender_token=hop.sender_transport.token,
        sender_uri=hop.sender_transport.uri,
        recipient=hop.recipient,
        recipient_public_key=hop.recipient_transport.public_key,
        now=now,
    )


def hand_on(
    client: Client, tokens: Tokens, hops: Sequence[ops.Hop], *, out_dir: Path, now: int
) -> list[DeliveredFile]:
    """Province → city: seal each key in the province's token, write the packages, report them
    (all or none: a refused report removes the files)."""
    made = [(hop, seal(tokens, hop, now=now)) for hop in hops]
    written: list[Path] = []

    def undo() -> None:
        for path in written:  # no package file without its record
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    try:
        for hop, data in made:
            path = _file_in(out_dir, ops.package_file_name(hop.label, hop.recipient))
            write_atomically(path, data)
            written.append(path)
    except BaseException:
        undo()
        raise
    report = ops.HandedOn(
        packages=[
            ops.HandedOnPackage(key=hop.key, file=path.name, data=data)
            for (hop, data), path in zip(made, written, strict=True)
        ]
    )

    def confirm() -> ops.RecordedPackages | None:
        recorded: list[ops.RecordedPackage] = []
        for hop, data in made:
            package = read_package(data)[0].package_id.hex()
            status = client.call(ops.STATUS, ops.PackageId(package=package))
            recorded.append(
                ops.RecordedPackage(
                    key=status.key,
                    label=status.label,
                    to=status.recipient,
                    package=package,
                    file=ops.package_file_name(hop.label, hop.recipient),
                )
            )
        return ops.RecordedPackages(packages=recorded)  # STATUS refuses an unknown package

    recorded = _report(lambda: client.call(ops.REPORT_HANDED_ON, report), confirm, undo)
    return [
        DeliveredFile(p.key, p.label, p.to, p.package, out_dir / p.file) for p in recorded.packages
    ]


# -- import ---------------------------------------------------------------------------------------
def plan_import(client: Client, data: bytes) -> ops.ImportPlan:
    """The service's checks of a package before it is opened (``malformed`` is refused here
    already): the plan names the token, the transport key and the senders to trust."""
    read_package(data)
    return client.call(ops.IMPORT_PLAN, ops.PackageBytes(data=data))


def open_package(tokens: Tokens, plan: ops.ImportPlan, data: bytes) -> TokenKey:
    """Open the package into the token of the transport key it is sealed to, with every check
    of ``hsm.envelope`` (trusted sender, signature, addressee, replay marker, check value)."""
    uri = Pkcs11Uri.parse(plan.transport.uri)
    transport = TokenKey(
        uri=uri,
        kind=KeyKind.SM2,
        label=uri.object or "",
        key_id=uri.id or b"",
        public_key=point(plan.transport.public_key),
    )
    return import_key(
        tokens.store(plan.transport.token),
        data,
        transport_key=transport,
        trusted_senders=[point(s) for s in plan.trusted_senders],
        label=plan.label,
    )


def report_import(
    client: Client, tokens: Tokens, plan: ops.ImportPlan, data: bytes, installed: TokenKey
) -> ops.ImportedKey:
    """Report an opened package; if the service refuses the report, the key object and the
    package's replay marker are destroyed again (the package can be imported once the cause
    is put right)."""
    store = tokens.store(plan.transport.token)
    report = ops.ImportReport(
        data=data,
        token=plan.transport.token,
        uri=str(installed.uri),
        public_key=installed.public_key.compressed.hex() if installed.public_key else None,
        check_value=installed.check_value.hex() if installed.check_value else None,
    )

    def confirm() -> ops.ImportedKey | None:
        status = client.call(ops.STATUS, ops.PackageId(package=plan.package))
        if status.imported_at is None or status.uri != report.uri:
            return None
        return ops.ImportedKey(
            key=status.key,
            label=status.label,
            holder=status.recipient,
            token=report.token,
            uri=report.uri,
            stage=status.stage,
        )

    def undo() -> None:
        with contextlib.suppress(KeyNotFound):  # no key without its record
            store.destroy(installed.uri)
        with contextlib.suppress(pkcs11.PKCS11Error):
            forget_import(store, bytes.fromhex(plan.package))

    return _report(lambda: client.call(ops.REPORT_IMPORT, report), confirm, undo)


def import_package(client: Client, tokens: Tokens, data: bytes) -> ops.ImportedKey:
    """Plan, open into the site's token, report: one package."""
    plan = plan_import(client, data)
    installed = open_package(tokens, plan, data)
    return report_import(client, tokens, plan, data, installed)
