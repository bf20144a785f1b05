"""Operations of the issuance area: the central QR CA (``ca.*``: its keys, interop certificates
issued and revoked) and the QR issuers it knows (``issuer.*``). See ca/ops/base.py.

An issuer's own tools (``jtca issuer request``, ``jtca issuer make-qr``) run at the issuer with
its own token and are no operations of the authority.
"""

from __future__ import annotations

from ca.ops.base import Empty, Model, operation


# -- views -------------------------------------------------------------------------------------
class CaKeyView(Model):
    """A central QR CA key and its public key index (annex 中心CA公钥索引)."""

    ca_index: int
    public_key: str  # compressed SM2 point, hex
    status: str  # active | verify-only | retired
    verify_until: int  # acceptors keep the key until then (Unix seconds)
    key_uri: str  # RFC 7512 PKCS#11 URI in the root token


class CaKeys(Model):
    keys: list[CaKeyView]


class InteropCertificateView(Model):
    """An interop certificate issued to a QR issuer (annex §三(五), 互通证书域)."""

    ca_index: int
    ca_key: str  # the issuing CA key's compressed SM2 point, hex
    serial: int
    issuer_id: str
    expiry: str  # MMYY
    issuer_public_key: str  # compressed SM2 point, hex
    certificate: str  # the 117-byte certificate, hex
    issued_at: int
    issued_by: str
    status: str  # valid | revoked
    revoked_at: int | None
    revocation_reason: str | None


class InteropCertificates(Model):
    certificates: list[InteropCertificateView]


class IssuerView(Model):
    """A QR issuer (发行机构) and the interop certificates issued to it, oldest first."""

    issuer_id: str  # cn8
    name: str
    status: str  # active | suspended | …
    registered_at: int
    registered_by: str
    certificates: list[InteropCertificateView]


class Issuers(Model):
    issuers: list[IssuerView]


# -- requests ----------------------------------------------------------------------------------
class IssueRequest(Model):
    """An issuer's request file (DER, signed by the key to be certified) and the root token's
    share quorum: the CA key signs in the root token, opened by M of N custodians' shares."""

    request: bytes
    ca_index: int
    shares: list[str]


class RevokeRequest(Model):
    ca_index: int
    serial: int
    reason: str


class CertificatesRequest(Model):
    issuer_id: str | None = None


class RegisterIssuerRequest(Model):
    issuer_id: str
    name: str


# -- operations --------------------------------------------------------------------------------
KEYS = operation(
    "ca.keys",
    Empty,
    CaKeys,
    "the central CA keys with their public key index and status",
    mutating=False,
    officer=False,
)
ISSUE = operation(
    "ca.issue",
    IssueRequest,
    InteropCertificateView,
    "issue an interop certificate from an issuer's request: policy, serial, signature with the "
    "CA key in the root token (opened by the custodians' share quorum), record and audit",
)
REVOKE = operation(
    "ca.revoke",
    RevokeRequest,
    InteropCertificateView,
    "revoke an interop certificate named by CA index and serial, with a reason (audited)",
)
CERTIFICATES = operation(
    "ca.certificates",
    CertificatesRequest,
    InteropCertificates,
    "the interop certificates issued, oldest first (of one issuer, if named)",
    mutating=False,
    officer=False,
)
REGISTER_ISSUER = operation(
    "issuer.register",
    RegisterIssuerRequest,
    IssuerView,
    "register a QR issuer (发行机构) by its cn8 id",
)
ISSUERS = operation(
    "issuer.list",
    Empty,
    Issuers,
    "the registered QR issuers, each with its interop certificates",
    mutating=False,
    officer=False,
)
