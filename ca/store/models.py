"""The authority's tables. Every change to them is audited in the same transaction.

The schema is created and changed only by the Alembic migrations in ``ca/store/migrations``;
``tests/integration/test_store.py`` proves the migrations and these models agree.
No table holds a private key: keys are named by their PKCS#11 URI.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary
from sqlmodel import Field, SQLModel, UniqueConstraint


class AuditEvent(SQLModel, table=True):
    """One entry of the Merkle log (第二十九条: kept at least 10 years): an audit event, or a
    certificate, list or key package made (``kind``, with ``object_sm3`` of its bytes).

    Its leaf index is ``seq - 1``; ``leaf_hash`` = SM3(0x00 ‖ the entry's encoding,
    ``ca.log.entry``). ``seal`` is the service's signature over the leaf hash by the session key
    registered in entry ``seal_key`` (a ``log.seal-key`` entry signed by the audit key): it
    protects the entries newer than the last checkpoint (docs/audit.md)."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # 1, 2, 3…
    at: int = Field(sa_type=BigInteger)  # Unix seconds, UTC (BIGINT: past 2038)
    kind: str = Field(default="event", max_length=20)  # event | certificate | list | package
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100, index=True)
    subject: str = Field(max_length=500)
    object_sm3: str | None = Field(default=None, max_length=64)  # hex SM3 of the object's bytes
    details: str  # canonical JSON
    leaf_hash: str = Field(max_length=64)  # hex SM3(0x00 || entry)
    seal: str | None = Field(default=None, max_length=128)  # raw r || s, hex
    seal_key: int | None = Field(default=None, sa_type=BigInteger)  # seq of its log.seal-key


class AuditHead(SQLModel, table=True):
    """The log's size, one row: appenders lock it, so the log has one writer at a time."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = 0  # the number of entries (the tree size)


class LogNode(SQLModel, table=True):
    """The hash of one complete perfect subtree of the log (level ≥ 1): leaves
    ``[idx·2^level, (idx+1)·2^level)``. Written once, when its last leaf is appended."""

    __tablename__ = "log_node"

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    hash: str = Field(max_length=64)


class LogCheckpoint(SQLModel, table=True):
    """A signed checkpoint (C2SP tlog-checkpoint note) of the log at ``size`` entries. The same
    note is written to the checkpoint folder outside the database, where verification reads it."""

    __tablename__ = "log_checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_type=BigInteger, index=True)
    root: str = Field(max_length=64)  # hex
    at: int = Field(sa_type=BigInteger)
    note: str  # the signed note, the log's signature only (cosignatures: LogCosignature)
    key_uri: str = Field(max_length=500)
    signing_path: str = Field(max_length=20)


class LogWitness(SQLModel, table=True):
    """A witness whose cosignatures count (a province or any auditor): its name and SM2 key."""

    __tablename__ = "log_witness"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    public_key: str = Field(max_length=66)  # compressed SM2 point, hex
    state: str = Field(default="active", max_length=20)  # active | removed
    added_at: int = Field(sa_type=BigInteger)
    added_by: str = Field(max_length=100)


class LogCosignature(SQLModel, table=True):
    """A witness's cosignature of one checkpoint (C2SP tlog-cosignature, jtca's SM2 type)."""

    __tablename__ = "log_cosignature"
    __table_args__ = (UniqueConstraint("checkpoint_id", "witness_id"),)

    id: int | None = Field(default=None, primary_key=True)
    checkpoint_id: int = Field(index=True)
    witness_id: int
    timestamp: int = Field(sa_type=BigInteger)  # the cosignature's own time
    line: str  # the signature line, '— name base64'
    received_at: int = Field(sa_type=BigInteger)


class SerialCounter(SQLModel, table=True):
    """The next interop certificate serial for one central CA key. Locked while allocating."""

    __tablename__ = "serial_counter"

    ca_key: str = Field(primary_key=True, max_length=66)  # compressed SM2 point, hex
    ca_index: int
    next_serial: int = 1


class InteropCertificateRecord(SQLModel, table=True):
    __tablename__ = "interop_certificate"
    __table_args__ = (UniqueConstraint("ca_key", "serial", name="uq_interop_serial_per_ca_key"),)

    id: int | None = Field(default=None, primary_key=True)
    ca_index: int
    ca_key: str = Field(max_length=66, index=True)
    serial: int
    issuer_id: str = Field(max_length=8, index=True)
    expiry: str = Field(max_length=4)  # MMYY
    issuer_public_key: str = Field(max_length=66)
    encoded: str  # the 117-byte 互通证书域, hex
    issued_at: int = Field(sa_type=BigInteger)
    issued_by: str = Field(max_length=200)
    status: str = Field(default="valid", max_length=20)  # valid | revoked
    revoked_at: int | None = Field(default=None, sa_type=BigInteger)
    revocation_reason: str | None = None


class KeyRecord(SQLModel, table=True):
    """A key in a token, as the database knows it: never the private part (key model)."""

    __tablename__ = "key_record"

    id: int | None = Field(default=None, primary_key=True)
    uri: str = Field(max_length=500, unique=True)
    token: str = Field(max_length=100, index=True)
    label: str = Field(max_length=200)
    kind: str = Field(max_length=8)  # sm2 | sm4
    key_class: str = Field(max_length=50, index=True)
    public_key: str | None = Field(default=None, max_length=66)
    check_value: str | None = Field(default=None, max_length=32)
    state: str = Field(default="active", max_length=20)
    created_at: int = Field(sa_type=BigInteger)
    not_after: int = Field(sa_type=BigInteger)
    origin: str = Field(max_length=200)  # the ceremony or workflow that made it


class CaKey(SQLModel, table=True):
    """A central QR CA key and its public key index (annex 中心CA公钥索引)."""

    __tablename__ = "ca_key"

    public_key: str = Field(primary_key=True, max_length=66)
    ca_index: int = Field(index=True)
    key_uri: str = Field(max_length=500)
    status: str = Field(default="active", max_length=20)  # active | verify-only | retired
    created_at: int = Field(sa_type=BigInteger)
    verify_until: int = Field(sa_type=BigInteger)  # acceptors keep the key until then


class CertificateRecord(SQLModel, table=True):
    """An X.509 certificate the ceremony made (root, list signing)."""

    __tablename__ = "certificate"

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(max_length=30, index=True)  # root | list-signing
    subject: str = Field(max_length=500)
    serial: int = Field(sa_type=BigInteger)
    der: str
    sha256: str = Field(max_length=64)
    sm3: str = Field(max_length=64)
    not_before: int = Field(sa_type=BigInteger)
    not_after: int = Field(sa_type=BigInteger)
    key_uri: str = Field(max_length=500)


class CeremonyRun(SQLModel, table=True):
    __tablename__ = "ceremony_run"

    name: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=30)
    file_sha256: str = Field(max_length=64)
    at: int = Field(sa_type=BigInteger)
    transcript: str  # canonical JSON
    signature: str = Field(max_length=128)  # raw r || s by the root key, hex
    signer_public_key: str = Field(max_length=66)


class Issuer(SQLModel, table=True):
    """A QR issuer (发行机构) known to the authority, by its cn8 issuer id."""

    __tablename__ = "issuer"

    issuer_id: str = Field(primary_key=True, max_length=8)
    name: str = Field(max_length=200)
    status: str = Field(default="active", max_length=20)  # active | suspended
    registered_at: int = Field(sa_type=BigInteger)
    registered_by: str = Field(max_length=200)


class Officer(SQLModel, table=True):
    """An officer and the policy roles they hold (a provincial officer is bound to a province)."""

    __tablename__ = "officer"

    officer_id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=200)
    roles: str = Field(max_length=500)  # comma-separated role names of the policy
    province: str | None = Field(default=None, max_length=6)
    status: str = Field(default="active", max_length=20)
    added_at: int = Field(sa_type=BigInteger)
    added_by: str = Field(max_length=200)


class KeyApplication(SQLModel, table=True):
    """A province's application for the key sets of some of its cities (第九条)."""

    __tablename__ = "key_application"

    id: int | None = Field(default=None, primary_key=True)
    province: str = Field(max_length=6, index=True)
    cities: str  # comma-separated 6-digit city codes
    applicant: str = Field(max_length=100)
    state: str = Field(default="pending", max_length=20)  # pending | approved | rejected
    created_at: int = Field(sa_type=BigInteger)
    decided_at: int | None = Field(default=None, sa_type=BigInteger)


class Approval(SQLModel, table=True):
    """One officer's decision on a pending action (dual control), with the approver's token
    signature over the decision statement (``ca.officers.statements.approval_statement``)."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("subject", "approver", name="uq_one_decision_per_officer"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=100, index=True)  # e.g. "application 7"
    approver: str = Field(max_length=100)
    decision: str = Field(max_length=10)  # approve | reject
    reason: str = Field(default="", max_length=500)
    at: int = Field(sa_type=BigInteger)
    statement: str | None = None  # the signed decision statement (issue #12)
    signature: bytes | None = Field(default=None, sa_type=LargeBinary)  # DER SM2 signature
    certificate_serial: int | None = Field(default=None, sa_type=BigInteger)


class PendingRequest(SQLModel, table=True):
    """The exact signed request that opened a pending subject: approvers sign its SM3 digest."""

    __tablename__ = "pending_request"

    subject: str = Field(primary_key=True, max_length=100)  # e.g. "application 7"
    officer_id: str = Field(max_length=100)
    operation: str = Field(max_length=100)
    body: bytes = Field(sa_type=LargeBinary)  # the request body exactly as signed
    digest: str = Field(max_length=64)  # hex SM3 of body
    session_id: str = Field(max_length=64)
    signature: str = Field(max_length=200)  # the Jtca-Signature header it carried
    at: int = Field(sa_type=BigInteger)


class OfficerCertificate(SQLModel, table=True):
    """An officer certificate issued by the officer CA (issue #12): the officer's token key."""

    __tablename__ = "officer_certificate"

    serial: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    officer_id: str = Field(max_length=100, index=True)
    public_key: bytes = Field(sa_type=LargeBinary)  # 65-byte uncompressed SM2 point
    der: bytes = Field(sa_type=LargeBinary)
    not_before: int = Field(sa_type=BigInteger)
    not_after: int = Field(sa_type=BigInteger)
    status: str = Field(default="active", max_length=20)  # active|suspended|revoked|superseded
    status_reason: str = Field(default="", max_length=500)
    status_at: int | None = Field(default=None, sa_type=BigInteger)
    issued_at: int = Field(sa_type=BigInteger)
    issued_by: str = Field(max_length=200)  # "quorum" or the approving officers
    token_label: str = Field(default="", max_length=100)


class OfficerEnrolment(SQLModel, table=True):
    """A request to certify an officer's token key: a new officer, or a new key (dual control)."""

    __tablename__ = "officer_enrolment"

    id: int | None = Field(default=None, primary_key=True)
    officer_id: str = Field(max_length=100, index=True)
    name: str = Field(default="", max_length=200)
    roles: str = Field(max_length=500)
    province: str | None = Field(default=None, max_length=6)
    public_key: bytes = Field(sa_type=LargeBinary)
    token_label: str = Field(default="", max_length=100)
    requested_by: str = Field(max_length=100)
    requested_at: int = Field(sa_type=BigInteger)
    state: str = Field(default="pending", max_length=20)  # pending | approved | rejected
    certificate_serial: int | None = Field(default=None, sa_type=BigInteger)


class SignInChallenge(SQLModel, table=True):
    """A nonce the service handed out for one sign-in; used once, then spent."""

    __tablename__ = "sign_in_challenge"

    nonce: str = Field(primary_key=True, max_length=64)
    issued_at: int = Field(sa_type=BigInteger)
    expires_at: int = Field(sa_type=BigInteger)
    spent_at: int | None = Field(default=None, sa_type=BigInteger)


class OfficerSession(SQLModel, table=True):
    """A signed-in officer's session, bound to their certificate and a delegated session key."""

    __tablename__ = "officer_session"

    id: str = Field(primary_key=True, max_length=64)
    officer_id: str = Field(max_length=100, index=True)
    certificate_serial: int = Field(sa_type=BigInteger)
    session_key: bytes = Field(sa_type=LargeBinary)  # 65-byte SM2 point
    created_at: int = Field(sa_type=BigInteger)
    last_seen: int = Field(sa_type=BigInteger)
    expires_at: int = Field(sa_type=BigInteger)  # the absolute limit
    ended_at: int | None = Field(default=None, sa_type=BigInteger)
    ended_reason: str = Field(default="", max_length=100)


class RequestNonce(SQLModel, table=True):
    """A state-changing request's nonce, spent once per session (no replay)."""

    __tablename__ = "request_nonce"
    __table_args__ = (UniqueConstraint("session_id", "nonce", name="uq_request_nonce"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(max_length=64)
    nonce: str = Field(max_length=64)
    at: int = Field(sa_type=BigInteger, index=True)


class TransportKey(SQLModel, table=True):
    """A holder's transport keys (第九条: the ministry hands city keys to the province, the
    province on to the city), two SM2 key pairs kept apart as GM/T 0014/0015 keep signing and
    encryption keys apart (issue #15): key packages are enveloped to the holder's **encryption**
    key (``uri``, ``public_key``: made with CKA_DECRYPT, never CKA_SIGN) and the packages it
    sends are signed by its **signing** key (``sign_uri``, ``sign_public_key``).

    A row registered before issue #15 is ``legacy``: one key pair that both signed and
    decrypted (``uri``, ``public_key``; no signing half). It is still read — a package it
    signed verifies against its one key, a package sealed to it opens — but no new package is
    signed by it or sealed to it: its holder registers a new pair of pairs first."""

    __tablename__ = "transport_key"

    id: int | None = Field(default=None, primary_key=True)
    holder: str = Field(max_length=10, index=True)  # "ministry", a province or a city code
    token: str = Field(max_length=100)
    uri: str = Field(max_length=500, unique=True)  # the encryption key (legacy: the one key)
    public_key: str = Field(max_length=66, unique=True)  # compressed SM2 point, hex
    sign_uri: str | None = Field(default=None, max_length=500, unique=True)  # the signing key
    sign_public_key: str | None = Field(default=None, max_length=66, unique=True)
    legacy: bool = Field(default=False)  # one key signing and decrypting (before issue #15)
    status: str = Field(default="active", max_length=20)  # active | retired
    created_at: int = Field(sa_type=BigInteger)
    created_by: str = Field(max_length=100)

    @property
    def signing_public_key(self) -> str:
        """The public key the holder's packages verify against (a legacy row's one key)."""
        return self.sign_public_key if self.sign_public_key is not None else self.public_key


class CityKey(SQLModel, table=True):
    """One key of one city (一城一密): a generation of one key class, generated in the ministry
    token. ``state`` is the lifecycle (ca.citykeys.lifecycle); ``stage`` is where it has got to on
    its
    way to the city. Never the private part."""

    __tablename__ = "city_key"
    __table_args__ = (
        UniqueConstraint("city", "key_class", "generation", name="uq_city_key_generation"),
        # the officers' scans (ca.citykeys.queries): each a range on one index
        Index("ix_city_key_state_not_after", "state", "not_after"),
        Index("ix_city_key_state_delivered_at", "state", "delivered_at"),
        Index("ix_city_key_open_violations_not_after", "open_violations", "not_after"),
    )

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=100, unique=True)  # e.g. city-qr-440100-g1
    city: str = Field(max_length=6, index=True)
    province: str = Field(max_length=6, index=True)
    key_class: str = Field(max_length=50)
    kind: str = Field(max_length=8)  # sm2 | sm4
    generation: int
    application_id: int | None = None
    ministry_uri: str = Field(max_length=500)
    public_key: str | None = Field(default=None, max_length=66)
    check_value: str | None = Field(default=None, max_length=32)
    state: str = Field(default="pre-active", max_length=20)
    stage: str = Field(default="generated", max_length=30)
    created_at: int = Field(sa_type=BigInteger)
    created_by: str = Field(max_length=100)
    not_before: int = Field(sa_type=BigInteger)
    not_after: int = Field(sa_type=BigInteger, index=True)
    delivered_at: int | None = Field(default=None, sa_type=BigInteger)
    imported_at: int | None = Field(default=None, sa_type=BigInteger)
    handed_on_at: int | None = Field(default=None, sa_type=BigInteger)
    installed_at: int | None = Field(default=None, sa_type=BigInteger)
    activated_at: int | None = Field(default=None, sa_type=BigInteger)
    first_use: int | None = Field(default=None, sa_type=BigInteger)
    last_use: int | None = Field(default=None, sa_type=BigInteger)
    predecessor_id: int | None = None
    successor_id: int | None = None
    supersede_at: int | None = Field(default=None, sa_type=BigInteger)
    state_changed_at: int = Field(sa_type=BigInteger)
    reason: str = Field(default="", max_length=500)  # of the last suspension or revocation
    destroy_after: int | None = Field(default=None, sa_type=BigInteger)
    destroyed_at: int | None = Field(default=None, sa_type=BigInteger)
    open_violations: int = Field(default=0)


class KeyCopy(SQLModel, table=True):
    """A city key held in a token: the ministry's original, the province's, the city's."""

    __tablename__ = "key_copy"
    __table_args__ = (UniqueConstraint("city_key_id", "holder", name="uq_one_copy_per_holder"),)

    id: int | None = Field(default=None, primary_key=True)
    city_key_id: int = Field(index=True)
    holder: str = Field(max_length=10)
    token: str = Field(max_length=100)
    uri: str = Field(max_length=500)
    package_id: str | None = Field(default=None, max_length=32)  # hex; None for the original
    installed_at: int = Field(sa_type=BigInteger)
    # when destroy-material was carried out while this copy sat in a province's or a city's
    # token: the service never opens those, so the copy awaits destruction at its holder's site
    # until the site reports it gone (``destroyed_at``); None for a copy the service destroyed
    destroy_requested_at: int | None = Field(default=None, sa_type=BigInteger)
    destroyed_at: int | None = Field(default=None, sa_type=BigInteger)


class KeyPackageRecord(SQLModel, table=True):
    """A key package made for a holder; imported once."""

    __tablename__ = "key_package"

    package_id: str = Field(primary_key=True, max_length=32)  # hex
    city_key_id: int = Field(index=True)
    sender: str = Field(max_length=10)
    recipient: str = Field(max_length=10)
    sha256: str = Field(max_length=64)
    created_at: int = Field(sa_type=BigInteger)
    created_by: str = Field(max_length=100)
    imported_at: int | None = Field(default=None, sa_type=BigInteger)
    imported_by: str | None = Field(default=None, max_length=100)
    # the package itself (signed, and sealed to the recipient's transport key: nothing in it is
    # readable without that token), so its addressee can fetch it again if its file was lost;
    # None for a package recorded before the bytes were kept
    data: bytes | None = Field(default=None, sa_type=LargeBinary)


class UsageReport(SQLModel, table=True):
    """An activation and usage report from the data exchange (transaction data: ≥ 5 years)."""

    __tablename__ = "usage_report"

    sha256: str = Field(primary_key=True, max_length=64)
    source: str = Field(max_length=500)
    imported_at: int = Field(sa_type=BigInteger)
    imported_by: str = Field(max_length=100)
    rows: int
    refused: int
    violations: int


class UsageViolation(SQLModel, table=True):
    """A row of a usage report showing a key used outside its grant (第十条)."""

    __tablename__ = "usage_violation"

    id: int | None = Field(default=None, primary_key=True)
    city_key_id: int | None = Field(default=None, index=True)
    report: str = Field(max_length=64)
    line: int
    key_ref: str = Field(max_length=500)
    city: str = Field(max_length=6)
    used_in: str = Field(max_length=6)
    first_use: int = Field(sa_type=BigInteger)
    last_use: int = Field(sa_type=BigInteger)
    reason: str = Field(max_length=50)
    status: str = Field(default="open", max_length=20)  # open | acted-on
    found_at: int = Field(sa_type=BigInteger)


class PendingAction(SQLModel, table=True):
    """An action on city keys waiting for its approvers (dual control, 第十一条)."""

    __tablename__ = "pending_action"

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=50)
    key_ids: str  # comma-separated city_key ids
    reason: str = Field(max_length=500)
    requested_by: str = Field(max_length=100)
    requested_at: int = Field(sa_type=BigInteger)
    required: int
    state: str = Field(default="pending", max_length=20, index=True)  # pending|done|rejected
    decided_at: int | None = Field(default=None, sa_type=BigInteger)


class ListVersion(SQLModel, table=True):
    """A published signed list (第十二条: no one may alter it). Every version is kept."""

    __tablename__ = "list_version"
    __table_args__ = (UniqueConstraint("list_type", "sequence", name="uq_list_sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    list_type: str = Field(max_length=30, index=True)
    sequence: int = Field(sa_type=BigInteger)
    this_update: int = Field(sa_type=BigInteger)
    next_update: int = Field(sa_type=BigInteger)
    entries: int
    content_digest: str = Field(max_length=64)  # SM3 of the entries' canonical JSON, hex
    sha256: str = Field(max_length=64)  # of the signed DER file
    sm3: str = Field(max_length=64)
    file: str = Field(max_length=300)  # relative to the publication folder
    published_at: int = Field(sa_type=BigInteger)
    published_by: str = Field(max_length=100)
    emergency: bool = False
    diff: str  # canonical JSON: added, removed, changed keys against the previous version


class ListVersionFile(SQLModel, table=True):
    """The signed bytes of a published list version, beside its record: every service process
    on the database can serve any version and repair its own publication folder from here,
    whichever process published it (issue #11: one database, several services)."""

    __tablename__ = "list_version_file"

    list_version_id: int = Field(
        primary_key=True, foreign_key="list_version.id", sa_column_kwargs={"autoincrement": False}
    )
    der: bytes = Field(sa_type=LargeBinary)


class ListOperator(SQLModel, table=True):
    """An operator that loads the lists into its terminals and reports back (第十二条)."""

    __tablename__ = "list_operator"

    operator_id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=200)
    province: str | None = Field(default=None, max_length=6)
    registered_at: int = Field(sa_type=BigInteger)
    registered_by: str = Field(max_length=100)
    # issue #16: the SM2 key its acknowledgments are signed with (uncompressed point, hex) and the
    # cities it serves (GB/T 2260 codes, comma-separated); None for a report-only operator
    public_key: str | None = Field(default=None, max_length=130, unique=True)
    cities: str | None = Field(default=None, max_length=2000)


class ListAcknowledgment(SQLModel, table=True):
    """An operator's report that it loaded version ``sequence`` of a list into its terminals."""

    __tablename__ = "list_ack"
    __table_args__ = (
        UniqueConstraint("operator_id", "list_type", "sequence", name="uq_one_ack_per_version"),
        UniqueConstraint("operator_id", "nonce", name="uq_list_ack_nonce"),
    )

    id: int | None = Field(default=None, primary_key=True)
    operator_id: str = Field(max_length=100, index=True)
    list_type: str = Field(max_length=30)
    sequence: int = Field(sa_type=BigInteger)
    loaded_at: int = Field(sa_type=BigInteger)
    terminals: int | None = None
    reported_at: int = Field(sa_type=BigInteger)
    report: str = Field(max_length=64)  # SHA-256 of the report file; SM3 of a signed statement
    # issue #16: a signed acknowledgment (POST /acks); None for a row of an imported report
    nonce: str | None = Field(default=None, max_length=64)
    list_sm3: str | None = Field(default=None, max_length=64)
    signed_at: int | None = Field(default=None, sa_type=BigInteger)
    signature: str | None = Field(default=None, max_length=200)  # SM2, DER, hex


class Intent(SQLModel, table=True):
    """An operation that touches a token or files, written before the token or the file system
    is touched and settled after (issue #14): ``open`` until the operation's own last
    transaction marks it ``completed``, or recovery rolls it ``rolled-forward`` or
    ``rolled-back`` (``ca.service.recovery``). ``plan`` names everything the operation may
    leave behind (token, labels and ids, files, serials) so recovery finds it without guessing;
    ``progress`` records the steps done so far. ``owner`` is the process (host:pid:start time)
    that began it: recovery touches an intent only when its owner is gone."""

    __tablename__ = "intent"

    id: int | None = Field(default=None, primary_key=True)
    operation: str = Field(max_length=50, index=True)
    subject: str = Field(max_length=200)
    state: str = Field(default="open", max_length=20, index=True)
    owner: str = Field(max_length=200)
    actor: str = Field(max_length=200)
    plan: str  # canonical JSON
    progress: str = "{}"  # canonical JSON
    began_at: int = Field(sa_type=BigInteger)
    ended_at: int | None = Field(default=None, sa_type=BigInteger)
    outcome: str | None = Field(default=None, max_length=1000)


class PolicyVersion(SQLModel, table=True):
    """A policy file the authority has known (issue #16, point 4): the one adopted at the first
    start, then each proposal (``proposed`` → ``in-force`` on its approvals, or ``rejected``);
    the previous one in force becomes ``superseded``. ``text`` is the file exactly as proposed,
    ``sm3`` its hex SM3 (the name every decision's audit event gives it)."""

    __tablename__ = "policy_version"

    id: int | None = Field(default=None, primary_key=True)
    sm3: str = Field(max_length=64, index=True)
    text: str
    state: str = Field(max_length=20, index=True)  # proposed|in-force|superseded|rejected
    proposed_by: str = Field(max_length=100)
    proposed_at: int = Field(sa_type=BigInteger)
    required: int
    reason: str = Field(default="", max_length=500)
    decided_at: int | None = Field(default=None, sa_type=BigInteger)
