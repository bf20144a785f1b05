"""Key packages at a site: its transport key, importing a package into its token, handing keys
on to a city; each step reported to the service (see ``ca.site``).

A report the service refuses undoes what the site did: the transport key or the imported key
is destroyed again (with the package's replay marker), the package files of a hand-on are
removed — no key and no package without its record. When the answer to a report is lost (the
connection broke), the site asks the service whether the report was recorded before it undoes
anything, so a recorded step is never undone.

Crashes (issue #14): a delivery and an import write an intent to the site's journal
(``ca.site.journal``) before they touch a file or the token, and settle it when done. What a
dead run left is recovered by the next run of the same operation (``recover_site_before``) and
by ``jtca recover`` (``ca.site.recovery``):

- ``packages.deliver`` names the folder, each key and its file: recovery removes the
  ``.<file>.*.tmp`` files a write left there, writes again (fetched from the service) each
  recorded package whose file is missing, and removes a hand-on's file the service never
  recorded (its package id unknown there) — no package file without its record;
- ``packages.import`` names the token, the key's label, the CKA_IDs that label already had and
  the package: recovery finds the object the unwrap made by label and new id; if the service
  has recorded the import it is kept; if not, a whole object is reported (rolled forward) and
  one the service refuses, or a half-made one, is destroyed with the package's replay marker
  (rolled back; the package can be imported again).
"""

# The named exception to "ca.cli imports no hsm" (issue #11): a site's own token.
from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import pkcs11
from pkcs11 import Attribute, ObjectClass

from ca.citykeys.sealing import make_transport_pair, point, seal_key
from ca.client.http import Client, ServiceError
from ca.core.errors import BadInput, CodecError, JtcaError
from ca.core.files import stray_temporaries, write_atomically
from ca.ops import packages as ops
from ca.site.journal import DONE_DIR, SiteIntent, SiteJournal, site_journal
from ca.site.recovery import (
    ROLLED_BACK,
    ROLLED_FORWARD,
    SiteContext,
    recover_site_before,
    site_recoverer,
)
from hsm.crashpoints import crash_point
from hsm.envelope import forget_import, import_key, read_package
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm4 import sm4_key_check_value

R = TypeVar("R")

DELIVER_OP: Final = "packages.deliver"  # the site journal's operations (ca.site.journal)
IMPORT_OP: Final = "packages.import"
REGISTER_TRANSPORT_OP: Final = "transport-key.register"  # a site's transport keys
COMPLETED: Final = "completed"
_DENIED: Final = "Not allowed by policy"  # ca.policy.authorization.PolicyDenied's title


class Tokens(Protocol):
    """The tokens of this site by label (``ca.vault.site.SiteVault``)."""

    def store(self, token_label: str) -> KeyStore: ...


def _report(
    report: Callable[[], R],
    confirm: Callable[[], R | None],
    undo: Callable[[], None],
    *,
    journaled: bool = False,
) -> R:
    """Send a report; undo the site's step if the service refuses it. If no answer came, ask
    the service (``confirm``) whether it recorded the report: keep the step if it did, undo it
    if it did not. If it cannot say (the service is gone), undo it too — unless the step is
    ``journaled``: then it is left as it is, its intent open in the site's journal, for
    recovery to settle once the service can say (a step the service recorded in its last
    moment must not be undone)."""
    try:
        return report()
    except BaseException as exc:
        if isinstance(exc, ServiceError) and (_answered(exc) or not journaled):
            undo()  # the service answered: refused
            raise
        try:
            found, said = confirm(), True
        except Exception:
            found, said = None, False
        if found is not None:
            return found
        if said or not journaled:
            undo()
        raise


# -- transport keys -------------------------------------------------------------------------------
def register_transport_key(
    client: Client,
    tokens: Tokens,
    *,
    holder: str,
    token: str,
    now: int,
    journal: SiteJournal | None = None,
) -> ops.TransportKeyInfo:
    """A holder's new transport keys — a signing key pair and an encryption key pair (issue
    #15) — : the ministry's are made by the service in the ministry token; a province's or a
    city's here, in the site's token ``token``, and only the public parts are registered, with
    the new signing key's signature over them (proof of possession). The holder's earlier keys
    are retired; a refused report destroys both new key pairs again.

    The site's journal holds a ``transport-key.register`` intent naming the token, both labels
    and the CKA_IDs each label already had, from before the first key is made until the report
    is answered; the two new CKA_IDs are noted as soon as the keys exist."""
    if holder == ops.MINISTRY:
        return client.call(ops.MINISTRY_TRANSPORT_KEY, ops.MinistryTransportKey(token=token))
    if not token.strip() or len(token) > 32:
        raise BadInput(f"--token {token!r}: a token label of 1-32 characters")
    journal = journal if journal is not None else journal_here()
    subject = f"transport keys of {holder}"
    recover_site_before(_context(client, tokens, journal, now), REGISTER_TRANSPORT_OP, subject)
    store = tokens.store(token)
    labels = {half: ops.transport_key_label(holder, now, half) for half in (ops.SIGN, ops.ENC)}
    intent = journal.begin(
        REGISTER_TRANSPORT_OP,
        subject,
        {
            "holder": holder,
            "token": token,
            "objects": [
                {
                    "half": half,
                    "label": label,
                    "existing_ids": sorted(_objects_labelled(store, label)),
                    "id": None,  # drawn at random when the key is made: see progress.made
                }
                for half, label in labels.items()
            ],
        },
        now=now,
    )
    try:
        crash_point("transport-key.register:before-generate")
        pair = make_transport_pair(store, holder=holder, token=token, now=now)
    except BaseException as exc:  # what was made is destroyed again (make_transport_pair)
        journal.end(intent, state=ROLLED_BACK, outcome=f"not made: {exc}")
        raise
    intent = journal.note(
        intent,
        made={
            ops.SIGN: {"label": pair.sign.label, "id": pair.sign.key_id.hex()},
            ops.ENC: {"label": pair.enc.label, "id": pair.enc.key_id.hex()},
        },
    )
    crash_point("transport-key.register:after-generate")
    report = ops.SiteTransportKey(
        holder=holder,
        token=token,
        **pair.registration(),
    )

    def confirm() -> ops.TransportKeyInfo | None:
        found = client.call(ops.TRANSPORT_KEY, ops.Holder(holder=holder)).active
        return found if found is not None and found.public_key == report.public_key else None

    def undo() -> None:
        pair.destroy(store)  # no key without its record

    try:
        done = _report(
            lambda: client.call(ops.REGISTER_TRANSPORT_KEY, report), confirm, undo, journaled=True
        )
    except JtcaError as exc:
        if not _ours(store, intent):  # refused: both pairs were destroyed again
            journal.end(intent, state=ROLLED_BACK, outcome=f"undone: {exc}")
        raise  # else no answer: the intent stays open for recovery to settle
    journal.end(intent, state=COMPLETED, outcome=f"registered: {done.sign_uri} and {done.uri}")
    return done


def _ours(store: KeyStore, intent: SiteIntent) -> dict[str, set[str]]:
    """{label: CKA_IDs} of the objects under the intent's labels that were not there before."""
    found: dict[str, set[str]] = {}
    for planned in intent.plan.get("objects", []):
        label = str(planned["label"])
        new = set(_objects_labelled(store, label)) - set(planned.get("existing_ids", []))
        if new:
            found[label] = new
    return found


@site_recoverer(REGISTER_TRANSPORT_OP)
def _recover_transport(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
    """A registration of a holder's transport keys cut short: the objects under the two
    planned labels that were not there before are this run's. If the service has the holder's
    keys under those labels (the report was recorded, its answer lost) they are kept — rolled
    forward; else both pairs are destroyed — rolled back (the holder registers again)."""
    plan = intent.plan
    token, holder = str(plan["token"]), str(plan["holder"])
    store: KeyStore = ctx.vault().store(token)
    ours = _ours(store, intent)
    if not ours:
        outcome = "nothing was left in the token"
        ctx.journal.end(intent, state=ROLLED_BACK, outcome=outcome)
        return ROLLED_BACK, outcome
    client: Client = ctx.client()
    active = client.call(ops.TRANSPORT_KEY, ops.Holder(holder=holder)).active
    if active is not None and active.sign_uri is not None:
        recorded = {Pkcs11Uri.parse(active.uri), Pkcs11Uri.parse(active.sign_uri)}
        if {(u.token, u.object) for u in recorded} == {(token, label) for label in ours} and all(
            (u.id or b"").hex() in ours.get(u.object or "", set()) for u in recorded
        ):
            outcome = f"the registration was recorded ({active.sign_uri}, {active.uri})"
            ctx.journal.end(intent, state=ROLLED_FORWARD, outcome=outcome)
            return ROLLED_FORWARD, outcome
    destroyed = sum(_destroy_labelled(store, label, ids) for label, ids in ours.items())
    outcome = f"not recorded: destroyed {destroyed} object(s) under {', '.join(sorted(ours))}"
    ctx.journal.end(intent, state=ROLLED_BACK, outcome=outcome)
    return ROLLED_BACK, outcome


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
    journal: SiteJournal | None = None,
) -> list[DeliveredFile]:
    """Deliver keys to their next holder and write the packages to ``out_dir``: the ministry's
    (generated keys, to the province) are sealed by the service; a province hands the keys it
    holds on to its cities from its own token (``hand_on``). Keys delivered already whose
    package awaits import (a rerun after a crash) are fetched again.

    The site's journal holds a ``packages.deliver`` intent naming the folder and every file
    from before the first package is recorded or written until all are written."""
    journal = journal if journal is not None else journal_here()
    subject = (
        f"application {application}"
        if application is not None
        else "keys " + ",".join(str(k) for k in sorted(keys))
    )
    recover_site_before(_context(client, tokens, journal, now), DELIVER_OP, subject)
    plan = client.call(
        ops.DELIVERY_PLAN, ops.DeliveryRequest(keys=list(keys), application=application)
    )
    prepare_folder(out_dir)
    senders = {hop.sender for hop in plan.hops}
    if ops.MINISTRY in senders and len(senders) > 1:
        raise BadInput("the ministry's and a province's deliveries cannot go together")
    planned = [
        {"key": hop.key, "file": ops.package_file_name(hop.label, hop.recipient)}
        for hop in plan.hops
    ] + [{"key": a.key, "file": a.file} for a in plan.awaiting]
    for item in planned:
        _file_in(out_dir, str(item["file"]))
    intent = journal.begin(
        DELIVER_OP,
        subject,
        {"folder": str(out_dir.resolve()), "packages": planned, "senders": sorted(senders)},
        now=now,
    )
    try:
        done: list[DeliveredFile] = []
        if senders == {ops.MINISTRY}:
            crash_point("packages.deliver:before-record")
            sealed = client.call(ops.DELIVER, ops.DeliveryRequest(keys=[h.key for h in plan.hops]))
            crash_point("packages.deliver:after-record")
            intent = journal.note(intent, written={p.file: p.package for p in sealed.packages})
            done += write_sealed(sealed, out_dir)
        elif plan.hops:
            done += hand_on(
                client, tokens, plan.hops, out_dir=out_dir, now=now, journal=journal, intent=intent
            )
        for waiting in plan.awaiting:  # recorded before: fetched again
            again = client.call(ops.FETCH_PACKAGE, ops.PackageRequest(key=waiting.key))
            done += write_sealed(again, out_dir)
    except ServiceError as exc:
        if not _answered(exc):
            raise  # no answer: the intent stays for recovery to settle from the records
        # refused: what this run recorded stays recorded (its files are fetched again by
        # recovery); a refusal before anything was recorded leaves nothing
        with contextlib.suppress(JtcaError):  # if not now, then by the next run or jtca recover
            _recover_delivery(_context(client, tokens, journal, now), intent)
        raise
    journal.end(intent, state=COMPLETED, outcome=f"{len(done)} package(s) written")
    return done


def write_sealed(sealed: ops.SealedPackages, out_dir: Path) -> list[DeliveredFile]:
    """Write the packages the service made (recorded already: a file that cannot be written
    is said plainly)."""
    done: list[DeliveredFile] = []
    for index, package in enumerate(sealed.packages, 1):
        path = _file_in(out_dir, package.file)
        crash_point(f"packages.deliver:before-write-{index}")
        try:
            write_atomically(path, package.data)
        except (OSError, BadInput) as exc:
            raise JtcaError(
                f"{package.label}: the delivery is recorded (package {package.package}), but "
                f"{path} could not be written ({exc}); fetch it again with "
                f"jtca city packages --key {package.key} --out DIR",
                title="Package not written",
            ) from None
        crash_point(f"packages.deliver:after-write-{index}")
        done.append(DeliveredFile(package.key, package.label, package.to, package.package, path))
    return done


def fetch_package(client: Client, *, key: int, out_dir: Path) -> list[DeliveredFile]:
    """Fetch again the package of ``key`` that awaits import (its file was lost after the
    delivery was recorded) and write it to ``out_dir`` under the name ``deliver`` gave it."""
    prepare_folder(out_dir)
    return write_sealed(client.call(ops.FETCH_PACKAGE, ops.PackageRequest(key=key)), out_dir)


def seal(tokens: Tokens, hop: ops.Hop, *, now: int) -> bytes:
    """The package of one hop, made in this site's token: the sender's copy of the key
    enveloped to the recipient's encryption key, signed by the sender's signing key (a legacy
    key on either side is refused by the service's plan; checked again here)."""
    for who, info in ((hop.sender, hop.sender_transport), (hop.recipient, hop.recipient_transport)):
        if info.legacy or info.sign_uri is None:
            raise JtcaError(
                f"the transport key of {who} is a legacy key that both signs and decrypts: "
                f"{who} registers a signing and an encryption key pair first "
                f"(jtca city transport-key --holder {who} --token {info.token})",
                title="Transport key must be rotated",
            )
    return seal_key(
        tokens,
        source_token=hop.source.token,
        source_uri=hop.source.uri,
        kind=hop.kind,
        label=hop.label,
        public_key=hop.public_key,
        check_value=hop.check_value,
        sender_token=hop.sender_transport.token,
        sender_uri=hop.sender_transport.sign_uri or "",
        recipient=hop.recipient,
        recipient_public_key=hop.recipient_transport.public_key,
        now=now,
    )


def hand_on(
    client: Client,
    tokens: Tokens,
    hops: Sequence[ops.Hop],
    *,
    out_dir: Path,
    now: int,
    journal: SiteJournal | None = None,
    intent: SiteIntent | None = None,
) -> list[DeliveredFile]:
    """Province → city: seal each key in the province's token, write the packages, report them
    (all or none: a refused report removes the files). With ``journal`` and ``intent`` (as
    ``deliver`` calls it) each package id is noted before its file is written."""
    crash_point("packages.deliver:before-seal")
    made = [(hop, seal(tokens, hop, now=now)) for hop in hops]
    crash_point("packages.deliver:after-seal")
    if journal is not None and intent is not None:
        intent = journal.note(
            intent,
            written={
                ops.package_file_name(hop.label, hop.recipient): read_package(data)[
                    0
                ].package_id.hex()
                for hop, data in made
            },
        )
    written: list[Path] = []

    def undo() -> None:
        for path in written:  # no package file without its record
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    try:
        for index, (hop, data) in enumerate(made, 1):
            path = _file_in(out_dir, ops.package_file_name(hop.label, hop.recipient))
            crash_point(f"packages.deliver:before-write-{index}")
            write_atomically(path, data)
            written.append(path)
            crash_point(f"packages.deliver:after-write-{index}")
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

    crash_point("packages.deliver:before-report")
    recorded = _report(
        lambda: client.call(ops.REPORT_HANDED_ON, report),
        confirm,
        undo,
        journaled=journal is not None and intent is not None,
    )
    crash_point("packages.deliver:after-report")
    return [
        DeliveredFile(p.key, p.label, p.to, p.package, out_dir / p.file) for p in recorded.packages
    ]


# -- import ---------------------------------------------------------------------------------------
def plan_import(client: Client, data: bytes, *, accept_legacy: bool = False) -> ops.ImportPlan:
    """The service's checks of a package before it is opened (``malformed`` is refused here
    already): the plan names the token, the transport key and the senders to trust.
    ``accept_legacy``: migration only (a package of before issue #15)."""
    read_package(data, accept_legacy=accept_legacy)
    return client.call(ops.IMPORT_PLAN, ops.PackageBytes(data=data, accept_legacy=accept_legacy))


def open_package(
    tokens: Tokens, plan: ops.ImportPlan, data: bytes, *, accept_legacy: bool = False
) -> TokenKey:
    """Open the package into the token of the encryption key it is enveloped to (a legacy
    row's one key for an old package), with every check of ``hsm.envelope`` (trusted sender —
    the sender's signing keys —, signature, addressee, replay marker, check value)."""
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
        accept_legacy=accept_legacy,
    )


def report_import(
    client: Client,
    tokens: Tokens,
    plan: ops.ImportPlan,
    data: bytes,
    installed: TokenKey,
    *,
    journaled: bool = False,
    accept_legacy: bool = False,
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
        accept_legacy=accept_legacy,
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

    return _report(
        lambda: client.call(ops.REPORT_IMPORT, report), confirm, undo, journaled=journaled
    )


def import_package(
    client: Client,
    tokens: Tokens,
    data: bytes,
    *,
    journal: SiteJournal | None = None,
    now: int | None = None,
    accept_legacy: bool = False,
) -> ops.ImportedKey:
    """Plan, open into the site's token, report: one package. The site's journal holds a
    ``packages.import`` intent naming the token, the key's label, the ids that label had and
    the package, from before the unwrap until the report is answered. A rerun after a crash
    whose import recovery reported (rolled forward) answers with the recorded import.
    ``accept_legacy`` (``--accept-legacy-format``): migration only, a package of the format
    before issue #15 is read (hsm.envelope_legacy); else it is refused ``legacy-format``."""
    journal = journal if journal is not None else journal_here()
    now = now if now is not None else int(time.time())
    # malformed: refused before anything
    package = read_package(data, accept_legacy=accept_legacy)[0].package_id.hex()
    subject = f"package {package}"
    recover_site_before(_context(client, tokens, journal, now), IMPORT_OP, subject)
    try:
        plan = plan_import(client, data, accept_legacy=accept_legacy)
    except ServiceError as exc:
        if exc.reason == "replayed":
            recovered = _recovered_import(client, journal, subject)
            if recovered is not None:
                return recovered
        raise
    store = tokens.store(plan.transport.token)
    intent = journal.begin(
        IMPORT_OP,
        subject,
        {
            "token": plan.transport.token,
            "label": plan.label,
            "existing_ids": sorted(_objects_labelled(store, plan.label)),
            "marker": _marker(plan.package),
            "package": plan.package,
            "key": plan.key,
            "kind": plan.kind,
            "data": data.hex(),  # sealed to this site's transport key: safe to keep
            "accept_legacy": accept_legacy,  # migration only: recovery reports it the same way
        },
        now=now,
    )
    try:
        crash_point("packages.import:before-unwrap")
        installed = open_package(tokens, plan, data, accept_legacy=accept_legacy)
    except JtcaError as exc:  # refused by the envelope's checks: nothing was installed
        journal.end(intent, state=ROLLED_BACK, outcome=f"refused: {exc}")
        raise
    crash_point("packages.import:after-unwrap")
    intent = journal.note(intent, key_id=installed.key_id.hex(), uri=str(installed.uri))
    try:
        crash_point("packages.import:before-report")
        done = report_import(
            client, tokens, plan, data, installed, journaled=True, accept_legacy=accept_legacy
        )
    except JtcaError as exc:
        if installed.key_id.hex() not in _objects_labelled(store, plan.label):
            # refused (or not recorded): the key and the marker were destroyed again
            journal.end(intent, state=ROLLED_BACK, outcome=f"undone: {exc}")
        raise  # else no answer: the intent stays open for recovery to settle
    crash_point("packages.import:after-report")
    journal.end(intent, state=COMPLETED, outcome=f"{done.label} in {done.token} ({done.stage})")
    return done


# -- the site's journal and recovery (issue #14) ------------------------------------------------
def journal_here() -> SiteJournal:
    """This client's journal: the embedded state folder's, else the user's."""
    from ca.client.config import has_state, state_dir

    state = state_dir()
    return site_journal(state if has_state(state) else None)


def _context(client: Client, tokens: Tokens, journal: SiteJournal, now: int) -> SiteContext:
    """Recovery inside an operation: its own tokens and its own signed-in client."""
    return SiteContext(journal, None, now, lambda: tokens, lambda: client)


def _answered(exc: ServiceError) -> bool:
    """The service answered and refused (a 4xx), as opposed to failing to answer."""
    return 400 <= exc.status < 500


def _marker(package: str) -> str:
    return "jtca-pkg:" + package


def _objects_labelled(store: KeyStore, label: str) -> dict[str, set[str]]:
    """{CKA_ID hex: {object classes}} of every object labelled ``label`` in the token."""

    def collect(session: pkcs11.Session) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for obj in session.get_objects({Attribute.LABEL: label}):
            key_id = bytes(obj[Attribute.ID]).hex()
            found.setdefault(key_id, set()).add(ObjectClass(obj[Attribute.CLASS]).name)
        return found

    result: dict[str, set[str]] = store.token.run(collect)
    return result


def _destroy_labelled(store: KeyStore, label: str, ids: set[str]) -> int:
    """Destroy every object labelled ``label`` whose CKA_ID is one of ``ids``."""

    def destroy(session: pkcs11.Session) -> int:
        count = 0
        for obj in list(session.get_objects({Attribute.LABEL: label})):
            if bytes(obj[Attribute.ID]).hex() in ids:
                obj.destroy()
                count += 1
        return count

    count: int = store.token.run(destroy)
    return count


def _has_marker(store: KeyStore, marker: str) -> bool:
    def look(session: pkcs11.Session) -> bool:
        query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: marker}
        return len(list(session.get_objects(query))) > 0

    found: bool = store.token.run(look)
    return found


def _recovered_import(client: Client, journal: SiteJournal, subject: str) -> ops.ImportedKey | None:
    """The import of ``subject`` as recorded, when this site's recovery rolled it forward (the
    run that began it died): the rerun is then complete, not a replay."""
    done = journal.folder / DONE_DIR
    settled: list[dict[str, Any]] = []
    if done.is_dir():
        for path in done.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                item = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(item, dict) and item.get("subject") == subject:
                    settled.append(item)
    if (
        not settled
        or max(settled, key=lambda i: i.get("began_at", 0)).get("state") != ROLLED_FORWARD
    ):
        return None
    package = subject.removeprefix("package ")
    status = client.call(ops.STATUS, ops.PackageId(package=package))
    if status.imported_at is None or status.token is None or status.uri is None:
        return None
    return ops.ImportedKey(
        key=status.key,
        label=status.label,
        holder=status.recipient,
        token=status.token,
        uri=status.uri,
        stage=status.stage,
    )


def _typed(
    fn: Callable[[SiteContext, SiteIntent], tuple[str, str]],
) -> Callable[[SiteContext, SiteIntent], tuple[str, str]]:
    """A recoverer whose token, file or journal trouble is a typed error naming the intent
    (``jtca recover`` lists it as failed; the intent stays open), never a traceback."""

    def recover(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
        try:
            return fn(ctx, intent)
        except (pkcs11.PKCS11Error, OSError, KeyError, ValueError, TypeError) as exc:
            raise JtcaError(
                f"site intent {intent.id} ({intent.operation} on {intent.subject}): "
                f"{type(exc).__name__}: {exc}",
                title="Recovery failed",
            ) from None

    recover.__doc__ = fn.__doc__
    return recover


@site_recoverer(IMPORT_OP)
@_typed
def _recover_import(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
    """An import whose client died between its intent and its end. The objects it made are
    those labelled as planned whose CKA_ID the label did not have before. Recorded by the
    service (the report went through): kept. Not recorded: a whole object (the key, its
    public half for SM2, the package's replay marker) is reported — rolled forward; if the
    service refuses the report (another province's officer, the package no longer
    importable), or the object is half made, it is destroyed with the marker — rolled back,
    and the package can be imported again. No answer from the service: not settled (failed)."""
    plan = intent.plan
    token, label, package = str(plan["token"]), str(plan["label"]), str(plan["package"])
    existing = {str(i) for i in plan.get("existing_ids") or []}
    store: KeyStore = ctx.vault().store(token)
    ours = {k: v for k, v in _objects_labelled(store, label).items() if k not in existing}
    marker = _has_marker(store, _marker(package))
    client: Client = ctx.client()
    try:
        status: ops.PackageStatus | None = client.call(ops.STATUS, ops.PackageId(package=package))
    except ServiceError as exc:
        if not (_answered(exc) and exc.reason == "unknown-package"):
            raise JtcaError(
                f"package {package}: cannot learn whether its import was recorded ({exc})"
            ) from None
        status = None  # not made by this authority: nothing of it may stay

    def undo(why: str) -> tuple[str, str]:
        gone = _destroy_labelled(store, label, set(ours))
        forget_import(store, bytes.fromhex(package))
        outcome = f"{why}; destroyed {gone} object(s) labelled {label} in {token}"
        ctx.journal.end(intent, state=ROLLED_BACK, outcome=outcome)
        return ROLLED_BACK, outcome

    if status is not None and status.imported_at is not None:
        recorded = Pkcs11Uri.parse(status.uri) if status.uri and status.token == token else None
        keep = recorded.id.hex() if recorded is not None and recorded.id else None
        if keep is not None and keep in ours:
            ours.pop(keep)
            stray = _destroy_labelled(store, label, set(ours))
            outcome = f"the import was recorded ({status.uri})" + (
                f"; destroyed {stray} stray object(s)" if stray else ""
            )
            ctx.journal.end(intent, state=ROLLED_FORWARD, outcome=outcome)
            return ROLLED_FORWARD, outcome
        if keep is None and not ours:
            outcome = f"imported elsewhere ({status.token}); nothing of it here"
            ctx.journal.end(intent, state=ROLLED_BACK, outcome=outcome)
            return ROLLED_BACK, outcome
        return undo(f"the import recorded is {status.uri}, not this token's object")
    if status is None:
        return undo(f"package {package} is unknown to the service")
    whole = _whole(ours, plan.get("kind"))
    if whole is None or not marker:
        return undo("nothing or a half-made object was left" if ours else "nothing was left")
    uri = store.uri(label, bytes.fromhex(whole), "private" if plan.get("kind") == "sm2" else
                    "secret-key")  # fmt: skip
    report = ops.ImportReport(
        data=bytes.fromhex(str(plan["data"])),
        token=token,
        uri=str(uri),
        public_key=store.public_key(uri).compressed.hex() if plan.get("kind") == "sm2" else None,
        check_value=(
            store.with_key_material(uri, lambda v: sm4_key_check_value(bytes(v))).hex()
            if plan.get("kind") == "sm4"
            else None
        ),
        accept_legacy=bool(plan.get("accept_legacy", False)),
    )
    try:
        done = client.call(ops.REPORT_IMPORT, report)
    except ServiceError as exc:
        if not _answered(exc):
            raise JtcaError(
                f"package {package}: the report of its import went unanswered"
            ) from None
        return undo(f"the service refused the report ({exc.message})")
    outcome = f"reported the import: {done.label} in {done.token} ({done.stage})"
    ctx.journal.end(intent, state=ROLLED_FORWARD, outcome=outcome)
    return ROLLED_FORWARD, outcome


def _whole(ours: dict[str, set[str]], kind: Any) -> str | None:
    """The one CKA_ID whose objects make a whole key (SM2: private and public; SM4: secret)."""
    needed = {"PRIVATE_KEY", "PUBLIC_KEY"} if kind == "sm2" else {"SECRET_KEY"}
    whole = [k for k, classes in ours.items() if needed <= classes]
    return whole[0] if len(whole) == 1 and len(ours) == 1 else None


@site_recoverer(DELIVER_OP)
@_typed
def _recover_delivery(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
    """A delivery whose client died (or was refused) before every file was written. In its
    folder: the temporary files of its packages removed; a file of this delivery whose package
    the service does not know (a hand-on never reported) removed; each key's recorded package
    whose file is missing fetched again and written. Rolled forward when a package of it is
    recorded, back when none is."""
    plan = intent.plan
    folder = Path(str(plan["folder"]))
    planned = [(int(p["key"]), str(p["file"])) for p in plan.get("packages") or []]
    ours = {str(v) for v in dict(intent.progress.get("written") or {}).values()}
    client: Client = ctx.client()
    temporaries = 0
    removed: list[str] = []
    kept: list[str] = []
    fetched: list[str] = []
    for _key, name in planned:
        path = _file_in(folder, name)
        for stray in stray_temporaries(folder, name):  # a live writer's are not listed
            with contextlib.suppress(FileNotFoundError):
                stray.unlink()
                temporaries += 1
        if not path.is_file():
            continue
        try:
            package = read_package(path.read_bytes())[0].package_id.hex()
        except (OSError, CodecError, JtcaError):
            continue  # not a package: not this delivery's
        try:
            client.call(ops.STATUS, ops.PackageId(package=package))
            kept.append(name)
        except ServiceError as exc:
            if not (_answered(exc) and exc.reason == "unknown-package"):
                raise JtcaError(
                    f"{path}: cannot learn whether package {package} is recorded ({exc})"
                ) from None
            if package in ours:  # written by this delivery, never recorded
                path.unlink(missing_ok=True)
                removed.append(name)
    for key, name in planned:
        if (folder / name).is_file():
            continue
        try:
            again = client.call(ops.FETCH_PACKAGE, ops.PackageRequest(key=key))
        except ServiceError as exc:
            if not _answered(exc) or exc.status == 401 or exc.title == _DENIED:
                raise JtcaError(
                    f"key {key}: cannot learn whether its package is recorded ({exc})"
                ) from None
            continue  # no package of it awaits import: this delivery did not record it
        for sealed in again.packages:
            write_atomically(_file_in(folder, sealed.file), sealed.data)
            fetched.append(sealed.file)
    state = ROLLED_FORWARD if kept or fetched else ROLLED_BACK
    parts = [f"{len(kept)} recorded file(s) in place", f"{len(fetched)} fetched again"]
    if removed:
        parts.append(f"{len(removed)} unrecorded file(s) removed")
    if temporaries:
        parts.append(f"{temporaries} temporary file(s) removed")
    outcome = f"{folder}: " + ", ".join(parts)
    ctx.journal.end(intent, state=state, outcome=outcome)
    return state, outcome
