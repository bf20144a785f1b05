"""Operations of the packages area: transport keys and key packages on the way ministry →
province → city (第九条; see ca/ops/base.py for what an operation is).

Who does what (issue #11, point 5: tokens stay at their sites):

- the **ministry's** transport key and the ministry → province delivery run in the service,
  with the ministry token it holds (``MINISTRY_TRANSPORT_KEY``, ``DELIVER``); the packages come
  back as bytes and the client writes them;
- a **province's or a city's** token is used by the client at that site (``ca.site``): it makes
  the site's transport key and registers only the public key (``REGISTER_TRANSPORT_KEY``), asks
  what a package needs before opening it into its token (``IMPORT_PLAN``) and reports the import
  (``REPORT_IMPORT``), and hands keys on to a city (``DELIVERY_PLAN``, ``REPORT_HANDED_ON``).
  The service checks every report against its records and never needs a site's PIN;
- a package whose file was lost is fetched again by its addressee (``FETCH_PACKAGE``): the
  service keeps every package's bytes with its record (signed and sealed: safe to keep);
- when destroy-material is carried out, the service destroys the ministry's copy only; a
  province's or a city's copy awaits destruction at its site (``AWAITING_DESTRUCTION``), whose
  client destroys it in its own token and reports it (``REPORT_DESTROYED``).

Key packages travel as their bytes (sealed to the recipient's transport key: nothing in them is
readable without that token), so the service checks a report against the package itself: its id,
its hash, who it is sealed to and who signed it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from pydantic import Field

from ca.ops.base import Empty, Model, operation

MINISTRY: Final = "ministry"  # the holder name of the ministry's transport key and token


SIGN: Final = "sign"  # the two halves of a holder's transport keys (issue #15)
ENC: Final = "enc"


def transport_key_label(holder: str, now: int, half: str) -> str:
    """The label of one half of a holder's transport keys made at ``now``:
    ``transport-HOLDER-sign-YYYYmmddHHMMSS`` (the signing key pair) or
    ``transport-HOLDER-enc-YYYYmmddHHMMSS`` (the encryption key pair); the same at the service
    and at a site (``hsm.names.object_label`` holds: letters, digits and '-')."""
    if half not in (SIGN, ENC):
        raise ValueError(f"half {half!r}: {SIGN!r} or {ENC!r}")
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")
    return f"transport-{holder}-{half}-{stamp}"


def registration_statement(
    *, holder: str, token: str, sign_uri: str, sign_public_key: str, uri: str, public_key: str
) -> bytes:
    """What a holder's new signing key signs when its transport keys are registered: the proof
    that the registrant holds the signing key, binding the encryption key to it (SM2 signature,
    default ID, over these UTF-8 bytes)."""
    return "\n".join(
        [
            "jtca transport-key registration v1",
            f"holder={holder}",
            f"token={token}",
            f"sign-uri={sign_uri}",
            f"sign-public-key={sign_public_key.lower()}",
            f"enc-uri={uri}",
            f"enc-public-key={public_key.lower()}",
        ]
    ).encode("utf-8")


def package_file_name(label: str, recipient: str) -> str:
    """The file a key package travels in: ``LABEL.to-HOLDER.jkp``, a plain file name (BadName,
    exit 3, for a label or holder that would make it a path: issue #14)."""
    from hsm.names import file_name

    return file_name(f"{label}.to-{recipient}.jkp", "package file name")


# -- transport keys ---------------------------------------------------------------------------
class MinistryTransportKey(Model):
    """Make the ministry's transport key in the ministry token ``token`` (at the service)."""

    token: str


class SiteTransportKey(Model):
    """A province's or a city's transport keys, made in its own token at its site: two key
    pairs (issue #15), a signing one and an encryption one; only the public parts and where
    they live are reported, with the signing key's signature over ``registration_statement``
    (proof that the site holds it)."""

    holder: str  # a province code or a city code (GB/T 2260)
    token: str  # the token label at the site
    uri: str  # RFC 7512 URI of the encryption private key in that token
    public_key: str  # the encryption key: compressed SM2 point, hex (66 characters)
    sign_uri: str  # RFC 7512 URI of the signing private key in that token
    sign_public_key: str  # the signing key: compressed SM2 point, hex
    proof: str  # hex r||s: the signing key's SM2 signature over registration_statement


class TransportKeyInfo(Model):
    """A holder's transport keys: the encryption key (``uri``, ``public_key``) packages are
    enveloped to, the signing key (``sign_uri``, ``sign_public_key``) its packages are signed
    with. ``legacy``: one key that did both (registered before issue #15; read only)."""

    holder: str
    token: str
    uri: str
    public_key: str
    sign_uri: str | None = None
    sign_public_key: str | None = None
    legacy: bool = False
    status: str = "active"  # active | retired


class Holder(Model):
    holder: str  # 'ministry', a province code or a city code


class HolderTransportKey(Model):
    """A holder's active transport key (``None`` if it has none): the console offers its token."""

    holder: str
    active: TransportKeyInfo | None


MINISTRY_TRANSPORT_KEY = operation(
    "packages.ministry-transport-key",
    MinistryTransportKey,
    TransportKeyInfo,
    "make the ministry's transport keys (a signing and an encryption key pair) in the ministry "
    "token (earlier ones are retired)",
)
REGISTER_TRANSPORT_KEY = operation(
    "packages.register-transport-key",
    SiteTransportKey,
    TransportKeyInfo,
    "register a province's or a city's transport keys (signing and encryption key pairs, the "
    "signing key's proof of possession), made in its token at its site",
)
TRANSPORT_KEY = operation(
    "packages.transport-key",
    Holder,
    HolderTransportKey,
    "a holder's active transport key",
    mutating=False,
)


# -- delivery ---------------------------------------------------------------------------------
class DeliveryRequest(Model):
    """The keys to deliver: by id, or an application's keys that await delivery (generated,
    or held by the province)."""

    keys: list[int] = Field(default_factory=list)
    application: int | None = None


class KeyCopyRef(Model):
    """Where a holder's copy of a city key lives (a token label and a URI)."""

    token: str
    uri: str


class Hop(Model):
    """One key's next delivery, with everything the sender's site needs to seal it."""

    key: int
    label: str
    kind: str  # sm2 | sm4
    city: str
    key_class: str
    public_key: str | None  # SM2: the key's public point (the package's check value)
    check_value: str | None  # SM4: its key check value
    stage: str  # now: generated | held-by-province
    stage_after: str  # delivered-to-province | delivered-to-city
    sender: str  # 'ministry' or the province
    recipient: str  # the province or the city
    source: KeyCopyRef  # the sender's copy of the key
    sender_transport: TransportKeyInfo  # its signing key signs the package
    recipient_transport: TransportKeyInfo  # the package is enveloped to its encryption key


class Awaiting(Model):
    """A key of the request delivered already, its package recorded and not yet imported: a
    rerun (after a crash lost the files) fetches it again instead of failing (issue #14)."""

    key: int
    label: str
    to: str
    file: str  # LABEL.to-HOLDER.jkp


class DeliveryPlan(Model):
    hops: list[Hop]
    awaiting: list[Awaiting] = Field(default_factory=list)


class SealedPackage(Model):
    """A package made by the service (ministry → province), for the client to write."""

    key: int
    label: str
    to: str
    package: str  # package id, hex
    file: str  # file name: LABEL.to-HOLDER.jkp
    data: bytes


class SealedPackages(Model):
    packages: list[SealedPackage]


class HandedOnPackage(Model):
    """A package a province made at its site for one of its cities."""

    key: int
    file: str  # the file name it was written under
    data: bytes


class HandedOn(Model):
    packages: list[HandedOnPackage]


class RecordedPackage(Model):
    key: int
    label: str
    to: str
    package: str
    file: str


class RecordedPackages(Model):
    packages: list[RecordedPackage]


class KeyAwaitingDelivery(Model):
    id: int
    label: str
    city: str
    city_name: str
    province: str
    key_class: str
    kind: str
    state: str
    stage: str
    to: str  # the next holder
    application: int | None
    not_after: int


class KeysAwaitingDelivery(Model):
    keys: list[KeyAwaitingDelivery]


DELIVERY_PLAN = operation(
    "packages.delivery-plan",
    DeliveryRequest,
    DeliveryPlan,
    "the next delivery of each key (checked for this officer): sender, recipient, transport "
    "keys; keys delivered already whose package awaits import, to fetch again",
    mutating=False,
)
DELIVER = operation(
    "packages.deliver",
    DeliveryRequest,
    SealedPackages,
    "ministry → province: seal generated keys to the province and return the packages",
)
REPORT_HANDED_ON = operation(
    "packages.report-handed-on",
    HandedOn,
    RecordedPackages,
    "province → city: record packages a province sealed at its site (checked against the keys)",
)


class PackageRequest(Model):
    key: int  # a key delivered to a province or a city, its package not yet imported


FETCH_PACKAGE = operation(
    "packages.fetch",
    PackageRequest,
    SealedPackages,
    "a recorded package that awaits import, again, for its addressee (a lost file); audited",
)
AWAITING_DELIVERY = operation(
    "packages.awaiting-delivery",
    Empty,
    KeysAwaitingDelivery,
    "keys this officer's side delivers next (ministry: generated; province: held by it)",
    mutating=False,
)


# -- import -----------------------------------------------------------------------------------
class PackageBytes(Model):
    data: bytes
    # migration only: read a package of the format before issue #15 (hsm.envelope_legacy);
    # else such a package is refused ``legacy-format``
    accept_legacy: bool = False


class ImportPlan(Model):
    """What a site needs to open a package into its token (the service's checks passed: a
    package made here, for this holder, not yet imported, by an officer of that province)."""

    package: str
    key: int
    label: str
    kind: str
    sender: str
    recipient: str
    stage_after: str  # held-by-province | installed
    transport: TransportKeyInfo  # the recipient's keys: its encryption key opens the package
    trusted_senders: list[str]  # the sender's signing public keys, hex (a legacy row's one key)


class ImportReport(Model):
    """A site's report: the package went into its token as this object."""

    data: bytes  # the package itself (its id and hash are checked against the record)
    token: str
    uri: str
    public_key: str | None = None  # SM2: the imported key's public point
    check_value: str | None = None  # SM4: its key check value
    accept_legacy: bool = False  # migration only: the package is of the format before #15


class ImportedKey(Model):
    key: int
    label: str
    holder: str
    token: str
    uri: str
    stage: str


class PackageId(Model):
    package: str  # hex


class PackageStatus(Model):
    package: str
    key: int
    label: str
    sender: str
    recipient: str
    created_at: int
    created_by: str
    imported_at: int | None
    imported_by: str | None
    token: str | None  # the recipient's copy, once imported
    uri: str | None
    stage: str  # the key's stage now


IMPORT_PLAN = operation(
    "packages.import-plan",
    PackageBytes,
    ImportPlan,
    "check a package before a site opens it: its record, recipient, sender keys",
    mutating=False,
)
REPORT_IMPORT = operation(
    "packages.report-import",
    ImportReport,
    ImportedKey,
    "record a package a site opened into its token (stage change, audited)",
)
STATUS = operation(
    "packages.status",
    PackageId,
    PackageStatus,
    "one package's record: made for whom, imported when and where",
    mutating=False,
)


# -- copies destroyed at their sites ---------------------------------------------------------------
class SiteCopy(Model):
    """A province's or a city's copy of a city key, in its token at its site."""

    key: int
    label: str
    city: str
    key_class: str
    kind: str  # sm2 | sm4
    holder: str  # the province or the city
    token: str  # the token label at the site
    uri: str  # RFC 7512 URI of the copy in that token
    requested_at: int  # when destroy-material was carried out
    destroyed_at: int | None = None  # when the site reported it gone


class SiteCopies(Model):
    holder: str
    copies: list[SiteCopy]  # oldest order first


class DestroyedReport(Model):
    """A site's report: its copy of ``key`` (at ``uri``) is gone from its token."""

    key: int
    holder: str
    uri: str


AWAITING_DESTRUCTION = operation(
    "packages.awaiting-destruction",
    Holder,
    SiteCopies,
    "a province's or a city's copies that destroy-material left for its site to destroy",
    mutating=False,
)
REPORT_DESTROYED = operation(
    "packages.report-destroyed",
    DestroyedReport,
    SiteCopy,
    "record a copy a site destroyed in its token (it must await destruction; audited)",
)
