"""What an officer signs (ca.officers.statements), byte for byte: the sign-in, request and approval
messages and the proof of possession are fixed texts a client and the service build alike (and
docs/officers.md shows); the signature header is parsed strictly, each wrong part named; a
signed field cannot smuggle a line of its own; a signature that does not verify is an
``AuthError`` with reason ``bad-signature``."""

from __future__ import annotations

import base64

import pytest

from ca.core.errors import BadInput
from ca.officers.statements import (
    APPROVAL_CONTEXT,
    REQUEST_CONTEXT,
    SIGN_IN_CONTEXT,
    AuthError,
    RequestSignature,
    approval_statement,
    b64url,
    body_digest,
    check_nonce,
    check_officer_id,
    enrolment_message,
    parse_signature_header,
    request_base,
    sign_in_message,
    verify,
)
from hsm.sm.sm2 import SM2PrivateKey

SM3_OF_EMPTY = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
SM3_OF_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"  # GB/T 32905 A.1
NONCE = "AAECAwQFBgcICQoLDA0ODw"  # b64url of bytes 0..15
POINT = bytes([4]) + bytes(range(64))


def test_the_sign_in_message_byte_for_byte() -> None:
    message = sign_in_message(
        service="jtca-authority:0123", officer="gd-1", nonce=NONCE, at=1790000000,
        session_key=POINT,
    )  # fmt: skip
    assert message == (
        b"jtca-sign-in/1\n"
        b"service: jtca-authority:0123\n"
        b"officer: gd-1\n"
        b"nonce: AAECAwQFBgcICQoLDA0ODw\n"
        b"time: 1790000000\n"
        b"session-key: " + POINT.hex().encode() + b"\n"
    )
    assert message.startswith(SIGN_IN_CONTEXT.encode() + b"\n")


def test_the_request_base_byte_for_byte() -> None:
    base = request_base(
        method="post", path="/v1/city/apply", session="ab" * 16, at=1790000000, nonce=NONCE,
        body=b"abc",
    )  # fmt: skip
    assert base == (
        b"jtca-request/1\n"
        b"POST /v1/city/apply\n"
        b"session: " + b"ab" * 16 + b"\n"
        b"time: 1790000000\n"
        b"nonce: AAECAwQFBgcICQoLDA0ODw\n"
        b"content-sm3: " + SM3_OF_ABC.encode() + b"\n"
    )
    assert base.startswith(REQUEST_CONTEXT.encode() + b"\n")
    assert body_digest(b"") == SM3_OF_EMPTY
    assert body_digest(b"abc") == SM3_OF_ABC


def test_the_approval_statement_byte_for_byte() -> None:
    statement = approval_statement(
        subject="application 7", request_digest=SM3_OF_ABC, approve=True, officer="ca-op-1",
        serial=4611686018427387905, at=1790000000,
    )  # fmt: skip
    assert statement == (
        b"jtca-approval/1\n"
        b"subject: application 7\n"
        b"request-sm3: " + SM3_OF_ABC.encode() + b"\n"
        b"decision: approve\n"
        b"officer: ca-op-1\n"
        b"certificate: 4611686018427387905\n"
        b"time: 1790000000\n"
    )
    assert statement.startswith(APPROVAL_CONTEXT.encode() + b"\n")
    rejected = approval_statement(
        subject="enrolment 2", request_digest=SM3_OF_ABC, approve=False, officer="mot-root-2",
        serial=1, at=1,
    )  # fmt: skip
    assert b"\ndecision: reject\n" in rejected


@pytest.mark.parametrize(
    ("subject", "digest", "needle"),
    [
        ("application", SM3_OF_ABC, "not a pending subject"),
        ("application 7\nofficer: evil", SM3_OF_ABC, "not a pending subject"),
        ("Application 7", SM3_OF_ABC, "not a pending subject"),
        ("application 7", SM3_OF_ABC.upper(), "64 lower-case hex digits"),
        ("application 7", SM3_OF_ABC[:-1], "64 lower-case hex digits"),
    ],
)
def test_an_approval_statement_over_a_bad_subject_or_digest_is_refused(
    subject: str, digest: str, needle: str
) -> None:
    with pytest.raises(BadInput) as caught:
        approval_statement(
            subject=subject, request_digest=digest, approve=True, officer="x", serial=1, at=1
        )
    assert needle in caught.value.message


def test_the_proof_of_possession_message() -> None:
    assert enrolment_message(officer="gd-3", public_key=POINT) == (
        b"jtca-enrolment/1\nofficer: gd-3\npublic-key: " + POINT.hex().encode() + b"\n"
    )


def test_a_signed_field_cannot_carry_a_line_of_its_own() -> None:
    for field in ("gd-1\nofficer: mot-root-1", "gd-1\r"):
        with pytest.raises(BadInput) as caught:
            sign_in_message(service="s", officer=field, nonce=NONCE, at=1, session_key=POINT)
        assert "line break" in caught.value.message
    with pytest.raises(BadInput):
        request_base(method="POST", path="/v1/x\ntime: 1", session="s", at=1, nonce=NONCE,
                     body=b"")  # fmt: skip


def test_officer_ids_and_nonces() -> None:
    assert check_officer_id("gd-1") == "gd-1"
    for bad in ("", "-gd", "gd 1", "gd/1", "x" * 101, "张三"):
        with pytest.raises(BadInput):
            check_officer_id(bad)
    assert b64url(bytes(range(16))) == NONCE
    assert check_nonce(NONCE) == NONCE
    for bad in ("short", "A" * 65, NONCE + "=", NONCE[:-1] + "+"):
        with pytest.raises(AuthError):
            check_nonce(bad)


# -- the signature header ------------------------------------------------------------------------


def test_the_signature_header_round_trip() -> None:
    signature = RequestSignature(1790000000, NONCE, bytes(range(64)))
    header = signature.header()
    assert header == f"t=1790000000;n={NONCE};s={base64.b64encode(bytes(range(64))).decode()}"
    assert parse_signature_header(header) == signature
    spaced = header.replace(";", " ; ")
    assert parse_signature_header(spaced) == signature


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("", "expected t=<time>;n=<nonce>;s=<signature>"),
        (f"t=1;n={NONCE};x=1", "got part 'x=1'"),
        (f"t=1;t=2;n={NONCE};s=AA==", "got part 't=2'"),
        (f"t=1;n={NONCE}", "part s missing"),
        (f"n={NONCE};s=AA==", "part t missing"),
        (f"t=soon;n={NONCE};s=AA==", "t: Unix seconds"),
        (f"t=-1;n={NONCE};s=AA==", "t: Unix seconds"),
        ("t=1;n=short;s=AA==", "n: 16 to 64 base64url characters"),
        (f"t=1;n={NONCE};s=not base64!", "s: not base64"),
        (f"t=1;n={NONCE};s={base64.b64encode(bytes(63)).decode()}", "s: 63 bytes"),
        (f"t=1;n={NONCE};s={base64.b64encode(bytes(72)).decode()}", "s: 72 bytes"),
    ],
)
def test_a_bad_signature_header_names_the_part(header: str, needle: str) -> None:
    with pytest.raises(AuthError) as caught:
        parse_signature_header(header)
    assert needle in caught.value.message
    assert caught.value.http_status == 401
    assert caught.value.reason in {"bad-signature-header", "unauthenticated"}


# -- verification ------------------------------------------------------------------------------


def test_verify_accepts_the_signers_signature_only() -> None:
    key, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    message = approval_statement(
        subject="action 3", request_digest=SM3_OF_EMPTY, approve=True, officer="gd-2",
        serial=9, at=1790000000,
    )  # fmt: skip
    signature = key.sign(message)
    verify(key.public_key, signature, message, "the decision")  # no error
    for public, signed, text in (
        (other.public_key, signature, message),  # another officer's key
        (key.public_key, signature, message.replace(b"approve", b"reject")),  # altered
        (key.public_key, other.sign(message), message),  # signed by another key
        (key.public_key, bytes(64), message),  # r = s = 0
        (key.public_key, b"\xff" * 64, message),  # r, s past the order
    ):
        with pytest.raises(AuthError) as caught:
            verify(public, signed, text, "the decision")
        assert caught.value.reason == "bad-signature"
        assert caught.value.message == "the decision: the signature does not verify"
