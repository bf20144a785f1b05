"""The audit log's trust anchors (ca.log.anchors): an audit key certificate from the root
ceremony becomes the verifier of checkpoint signatures; anything else is refused naming the
file. Certificates are made here with software keys (the token-made ones are checked against
OpenSSL in tests/integration/test_log_keys.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ca.log.anchors import (
    AnchorError,
    anchor_files,
    anchor_name,
    audit_verifiers,
)
from ca.log.note import Checkpoint, NoteError, sign_checkpoint, verify_checkpoint
from ca.pki.x509 import (
    LIST_SIGNING_EKU,
    LOG_SIGNING_EKU,
    issue_certificate,
    key_identifier,
    pem,
    self_signed_root,
)
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der

ORIGIN = "jtca.mot.gov.cn/audit"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT_SUBJECT = {"C": "CN", "O": "中华人民共和国交通运输部", "CN": "交通运输部 交通一卡通根CA 2026"}


def root_cert(signer: SoftwareSigner, serial: int = 7) -> bytes:
    return self_signed_root(
        signer,
        subject=ROOT_SUBJECT,
        serial=serial,
        not_before=NOW,
        not_after=NOW + timedelta(days=3650),
        path_length=1,
        key_usage=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
    )


def leaf_cert(
    root: SoftwareSigner,
    key: SoftwareSigner,
    *,
    eku: str = LOG_SIGNING_EKU,
    cn: str = "交通一卡通审计日志签名 2026",
    usage: frozenset[str] = frozenset({"digital_signature"}),
) -> bytes:
    return issue_certificate(
        root,
        subject={"C": "CN", "O": "中华人民共和国交通运输部", "CN": cn},
        subject_public_key=key.public_key,
        issuer_name=ROOT_SUBJECT,
        serial=11,
        not_before=NOW,
        not_after=NOW + timedelta(days=365),
        ca=False,
        path_length=None,
        key_usage=set(usage),
        extended_key_usage=[eku],
        issuer_key_id=key_identifier(root.public_key),
    )


@dataclass(frozen=True)
class World:
    root: SoftwareSigner
    audit: SoftwareSigner
    root_pem: Path
    audit_pem: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    root, audit = SoftwareSigner.generate(), SoftwareSigner.generate()
    folder = tmp_path / "ceremonies"
    folder.mkdir()
    root_pem = folder / anchor_name("root", 7)
    root_pem.write_bytes(pem(root_cert(root)))
    audit_pem = folder / anchor_name("audit", 11)
    audit_pem.write_bytes(pem(leaf_cert(root, audit)))
    return World(root, audit, root_pem, audit_pem)


def signed_note(signer: SoftwareSigner, origin: str = ORIGIN) -> str:
    note = sign_checkpoint(
        Checkpoint(origin, 5, bytes(range(32))),
        origin,
        signer.public_key,
        lambda body: raw_to_der(signer.sign(body)),
    )
    return note.text()


def test_audit_certificate_becomes_the_checkpoint_verifier(world: World) -> None:
    audit = world.audit
    verifiers = audit_verifiers([world.audit_pem], [world.root_pem], ORIGIN)
    assert [(v.name, v.public_key.compressed) for v in verifiers] == [
        (ORIGIN, audit.public_key.compressed)
    ]
    checkpoint, _ = verify_checkpoint(signed_note(audit), verifiers)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 5)
    # a checkpoint signed by another key under the same name is not trusted
    with pytest.raises(NoteError, match="no trusted audit key"):
        verify_checkpoint(signed_note(SoftwareSigner.generate()), verifiers)
    # without root certificates the audit certificate is taken as it is (no chain check)
    alone = audit_verifiers([world.audit_pem], [], ORIGIN)
    assert alone == verifiers
    # the same certificate twice (the service's copy and the transcript's) is one verifier
    twice = audit_verifiers([world.audit_pem, world.audit_pem], [], ORIGIN)
    assert len(twice) == 1


def test_anchor_files_finds_the_ceremony_files(world: World, tmp_path: Path) -> None:
    (tmp_path / "ceremonies" / "0123abcd.json").write_text("{}")
    (tmp_path / "ceremonies" / "0123abcd-audit.pem").write_text("")
    audit_files, root_files = anchor_files(tmp_path)
    assert audit_files == [world.audit_pem]
    assert root_files == [world.root_pem]
    assert anchor_files(tmp_path / "nowhere") == ([], [])


def test_refuses_an_audit_certificate_not_signed_by_the_root(world: World, tmp_path: Path) -> None:
    other_root = SoftwareSigner.generate()
    forged = tmp_path / "audit-99.pem"
    forged.write_bytes(pem(leaf_cert(other_root, SoftwareSigner.generate())))
    with pytest.raises(AnchorError, match=r"audit-99\.pem: .* not signed by the root") as info:
        audit_verifiers([forged], [world.root_pem], ORIGIN)
    assert str(world.root_pem) in info.value.message


def test_refuses_a_certificate_without_log_signing(world: World, tmp_path: Path) -> None:
    root = world.root
    lists = tmp_path / "list-signing.pem"
    lists.write_bytes(pem(leaf_cert(root, SoftwareSigner.generate(), eku=LIST_SIGNING_EKU)))
    with pytest.raises(AnchorError, match=r"list-signing\.pem: .*not an audit key certificate"):
        audit_verifiers([lists], [world.root_pem], ORIGIN)
    # the root certificate itself is no audit certificate either
    with pytest.raises(AnchorError, match=r"root-7\.pem: .*not an audit key certificate"):
        audit_verifiers([world.root_pem], [world.root_pem], ORIGIN)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            "not an SM2",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not 'CERTIFICATE'"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n", "PEM"),
        (b"\x30\x03\x02\x01\x01", "not an SM2"),
        (b"", "not an SM2"),
        (b"x" * 70_000, "more than"),
    ],
    ids=[
        "fail/garbage-der",
        "fail/not-certificate",
        "fail/broken-pem",
        "fail/der",
        "fail/empty",
        "fail/huge",
    ],
)
def test_refuses_garbage_by_file_name(
    world: World, tmp_path: Path, content: bytes, reason: str
) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_bytes(content)
    with pytest.raises(AnchorError, match=r"garbage\.pem: ") as info:
        audit_verifiers([bad], [world.root_pem], ORIGIN)
    assert reason in info.value.message
    # a garbage root certificate is refused by its name too
    with pytest.raises(AnchorError, match=r"garbage\.pem: "):
        audit_verifiers([world.audit_pem], [bad], ORIGIN)


def test_refuses_a_root_that_is_no_root(world: World, tmp_path: Path) -> None:
    # the audit certificate given as the root: not a CA
    with pytest.raises(AnchorError, match=r"audit-11\.pem: .* is not a CA certificate"):
        audit_verifiers([world.audit_pem], [world.audit_pem], ORIGIN)
    # a "root" whose self-signature was made by another key
    root = world.root
    impostor = tmp_path / "root-8.pem"
    impostor.write_bytes(
        pem(
            issue_certificate(
                SoftwareSigner.generate(),
                subject=ROOT_SUBJECT,
                subject_public_key=root.public_key,
                issuer_name=ROOT_SUBJECT,
                serial=8,
                not_before=NOW,
                not_after=NOW + timedelta(days=10),
                ca=True,
                path_length=None,
                key_usage={"key_cert_sign"},
            )
        )
    )
    with pytest.raises(AnchorError, match=r"root-8\.pem: .*self-signature does not verify"):
        audit_verifiers([world.audit_pem], [impostor], ORIGIN)


def test_missing_files_and_origins(world: World, tmp_path: Path) -> None:
    with pytest.raises(AnchorError, match="no audit key certificate given"):
        audit_verifiers([], [world.root_pem], ORIGIN)
    with pytest.raises(AnchorError, match=r"absent\.pem: cannot read it"):
        audit_verifiers([tmp_path / "absent.pem"], [], ORIGIN)
    with pytest.raises(AnchorError, match="no spaces"):
        audit_verifiers([world.audit_pem], [], "jtca audit")
