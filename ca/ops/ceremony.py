"""Operations of the ceremony area: key ceremonies run at the service, which alone holds the
ministry's tokens (see ca/ops/base.py). ``jtca ceremony plan`` is no operation: it parses the
file on the reviewer's machine (``ca.ceremony.file``).

The ceremony file travels as its text (its SHA-256 over that text is in the transcript); the
custodians' shares and the witnesses present travel in the request. The root ceremony makes
the first officers, so these operations may be called with no officer: the custodians' quorum
is their authority. A named officer must be allowed the ceremony's kind (``ceremony.run``,
``qr-ca.rollover``), and once the authority has officers a new token needs one.
"""

from __future__ import annotations

from pydantic import Field

from ca.ops.base import Model, operation


class CeremonyFile(Model):
    plan: str  # the ceremony file's text (TOML, policies/ceremonies/root-example.toml)


class CustodianShare(Model):
    custodian: str
    share: str


class TokenShares(Model):
    """The ceremony's new token and each custodian's shares of its PIN and SO PIN. Neither PIN
    is stored anywhere: only these shares leave the service."""

    token: str
    pin_shares: list[CustodianShare]
    so_pin_shares: list[CustodianShare]


class RunRequest(Model):
    plan: str
    shares: list[str]
    witnesses: list[str]


class CeremonyKey(Model):
    key_class: str  # ministry-root | central-qr-ca | list-signing | audit
    label: str
    uri: str
    public_key: str | None


class CeremonyCertificate(Model):
    role: str  # root | list-signing | audit
    subject: str
    sha256: str
    serial: str = ""  # decimal
    pem: str = ""  # the certificate (PEM): the root's and the audit key's are trust anchors


class CeremonyOutcome(Model):
    """What the ceremony made, and its transcript signed by the root key: the JSON file
    (``{"transcript": …, "signature": …, "signer_public_key": …}``) byte for byte."""

    ceremony: str
    file_sha256: str
    transcript: bytes
    keys: list[CeremonyKey]
    certificates: list[CeremonyCertificate]
    # issue #13: where the service wrote the root and audit certificates, outside the database
    # (<state>/ceremonies/root-<serial>.pem, audit-<serial>.pem); the checkpoint the ceremony
    # ended with (a signed note); what could not be written after the commit
    anchors: list[str] = Field(default_factory=list)
    checkpoint: str | None = None
    warnings: list[str] = Field(default_factory=list)


INIT_TOKEN = operation(
    "ceremony.init-token",
    CeremonyFile,
    TokenShares,
    "create the ceremony's token in the ministry's SoftHSM2; each custodian's PIN and SO PIN "
    "shares",
    officer=False,
)
RUN = operation(
    "ceremony.run",
    RunRequest,
    CeremonyOutcome,
    "run the ceremony exactly as the file says, with the custodians' shares and the witnesses "
    "present; the signed transcript",
    officer=False,
)
