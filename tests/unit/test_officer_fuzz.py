"""Fuzzing what a stranger sends before they are known (issue #12): the ``Jtca-Signature``
header and the sign-in fields. Whatever the bytes, the parser answers with the signature it
read or an ``AuthError`` naming the part — never another exception (which the service would
answer with a 500), and a value it accepts is exactly the one written."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ca.officers.statements import (
    AuthError,
    RequestSignature,
    check_nonce,
    parse_signature_header,
)

NONCES = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    min_size=16,
    max_size=64,
)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=300))
def test_any_header_parses_or_is_refused_by_name(header: str) -> None:
    refused: AuthError | None = None
    try:
        parsed = parse_signature_header(header)
    except AuthError as caught:
        refused = caught
    if refused is not None:
        assert refused.reason in {"bad-signature-header", "bad-nonce"}
        assert "Jtca-Signature" in refused.message
    else:  # only a header of the documented form gets through, and it means one thing
        assert len(parsed.signature) == 64
        assert 16 <= len(parsed.nonce) <= 64
        assert parse_signature_header(parsed.header()) == parsed
        assert {part.split("=", 1)[0].strip() for part in header.split(";")} == {"t", "n", "s"}


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    NONCES,
    st.binary(min_size=64, max_size=64),
)
def test_a_well_formed_header_round_trips(at: int, nonce: str, signature: bytes) -> None:
    written = RequestSignature(at, nonce, signature)
    assert parse_signature_header(written.header()) == written


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    NONCES,
    st.binary(max_size=200).filter(lambda b: len(b) != 64),
)
def test_a_signature_of_another_length_is_refused(at: int, nonce: str, blob: bytes) -> None:
    header = f"t={at};n={nonce};s={base64.b64encode(blob).decode()}"
    with pytest.raises(AuthError, match="a raw SM2 signature is 64"):
        parse_signature_header(header)


@settings(max_examples=800, deadline=None)
@given(st.text(max_size=100))
def test_any_nonce_is_checked(value: str) -> None:
    refused: AuthError | None = None
    try:
        assert check_nonce(value) == value
    except AuthError as caught:
        refused = caught
    if refused is not None:
        assert refused.reason == "bad-nonce"
    else:
        assert 16 <= len(value) <= 64
