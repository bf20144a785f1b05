"""Decoding any malformed input raises CodecError naming the field, the offset and what was
wrong, and nothing else escapes — proved with hypothesis over random bytes and over valid
payloads with bytes flipped, truncated or extended. Flipped payloads are never accepted by an
acceptor, cold or with its certificate cache warm."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.core.clock import FixedClock
from ca.core.errors import CodecError
from ca.qr.codec import FIELDS, decode_payload
from ca.qr.verify import Reason, Rejected, VerifiedRide, verify_payload

try:  # tests/unit may become a package while others work in the tree
    from . import qr_fixtures as fx
except ImportError:
    import qr_fixtures as fx

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Two valid payloads, made once: without and with the 32-byte extension (versions 0 and 1).
CHAINS = {
    0: fx.make_chain(structure_version=0),
    32: fx.make_chain(structure_version=1, extension=fx.EXTENSION_32),
}
PAYLOADS = {L: c.data for L, c in CHAINS.items()}
# A warm verifier per chain: the valid payload has been verified once, so its certificates
# are cached and a flipped ride takes the cached path.
WARM = {L: c.verifier(FixedClock(fx.NOW)) for L, c in CHAINS.items()}
for L, verifier in WARM.items():
    assert verifier.verify(PAYLOADS[L]).signatures_verified == 3
    assert verifier.verify(PAYLOADS[L]).signatures_verified == 1


def check_codec_error(err: CodecError, data: bytes) -> None:
    """What every CodecError from decode_payload must say about ``data``."""
    assert isinstance(err.field, str)
    assert err.field in FIELDS, err.field
    assert isinstance(err.offset, int)
    assert not isinstance(err.offset, bool)
    assert isinstance(err.problem, str)
    assert err.problem.strip()
    assert str(err) == f"{err.field} at offset {err.offset}: {err.problem}"
    # Which L the decoder used: only known once byte 197 has been read.
    L = data[197] if len(data) > 197 and data[197] in (0, 32) else 0
    start = fx.spec_offset(err.field, L)
    span = max(fx.spec_length(err.field, L), 1)
    # The offset lies inside the named field (issuer data names the exact byte).
    assert start <= err.offset < start + span, (err.field, err.offset)
    if "payload truncated at" in err.problem:
        # The first field that the data does not hold: it starts at or before the end of the
        # data and reaches past it. So the offset may equal len(data), never exceed it.
        assert err.offset <= len(data) < start + span
    else:
        # Anything else is about bytes that are there: the whole named field is present.
        assert 0 <= err.offset < len(data)
        assert start + span <= len(data)


def decode_or_error(data: bytes) -> CodecError | None:
    try:
        payload = decode_payload(data)
    except CodecError as err:
        check_codec_error(err, data)
        return err
    # Whatever decodes is a faithful reading: it encodes back to the very same bytes.
    assert payload.encode() == data
    return None


# --- (a) random bytes -----------------------------------------------------------------------
@FUZZ
@given(st.binary(min_size=0, max_size=500))
def test_random_bytes(data: bytes) -> None:
    decode_or_error(data)


# --- (b) random bytes behind a valid-looking prefix -----------------------------------------
@st.composite
def prefixed(draw: st.DrawFn) -> bytes:
    """0x80/0x81 and the right length, then random bytes: past the guide."""
    size = draw(st.sampled_from([332, 364]) | st.integers(3, 500))
    body = draw(st.binary(min_size=size - 3, max_size=size - 3))
    head = draw(st.sampled_from([0x80, 0x81]))
    return bytes((head,)) + (size - 3).to_bytes(2, "big") + body


@FUZZ
@given(prefixed())
def test_random_bytes_behind_a_valid_guide(data: bytes) -> None:
    err = decode_or_error(data)
    assert err is not None  # random bytes do not make a payload
    assert err.field not in ("guide.type_version",)


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """A valid payload's first k bytes, then random bytes up to the right length: reaches every
    field of the decoder, in order."""
    valid = PAYLOADS[draw(st.sampled_from([0, 32]))]
    k = draw(st.integers(0, len(valid)))
    tail = draw(st.binary(min_size=len(valid) - k, max_size=len(valid) - k))
    return valid[:k] + tail


@FUZZ
@given(spliced())
def test_valid_prefix_then_random_bytes(data: bytes) -> None:
    decode_or_error(data)


# --- (c) valid payloads with bytes flipped ---------------------------------------------------
@st.composite
def flipped(draw: st.DrawFn) -> tuple[int, bytes, dict[int, int]]:
    L = draw(st.sampled_from([0, 32]))
    valid = PAYLOADS[L]
    flips = draw(
        st.dictionaries(st.integers(0, len(valid) - 1), st.integers(1, 255), min_size=1, max_size=8)
    )
    data = bytearray(valid)
    for k, mask in flips.items():
        data[k] ^= mask
    return L, bytes(data), flips


def expected_single_flip_reasons(k: int, L: int) -> set[Reason]:
    """What an acceptor must say when only byte ``k`` differs (spec check order)."""
    if k == 0:  # type/version: malformed, or the other known version → user signature
        return {Reason.MALFORMED, Reason.BAD_USER_SIGNATURE}
    if k in (1, 2) or 3 <= k < 8:  # length, record header, service id
        return {Reason.MALFORMED}
    if k == 8:  # CA index: only index 1 is trusted
        return {Reason.UNKNOWN_CA_KEY}
    if 9 <= k < 56:  # signed by the CA: either malformed or the CA signature breaks
        return {Reason.MALFORMED, Reason.BAD_CA_SIGNATURE}
    if 56 <= k < 120:
        return {Reason.BAD_CA_SIGNATURE}
    if 120 <= k < 198 + L:  # signed by the issuer
        return {Reason.MALFORMED, Reason.BAD_ISSUER_SIGNATURE}
    if k == 198 + L:
        return {Reason.MALFORMED}
    if 198 + L < k < 263 + L:
        return {Reason.BAD_ISSUER_SIGNATURE}
    if 263 + L <= k < 267 + L:  # generation time
        return {Reason.QR_EXPIRED, Reason.QR_NOT_YET_VALID, Reason.BAD_USER_SIGNATURE}
    if k == 267 + L:
        return {Reason.MALFORMED}
    return {Reason.BAD_USER_SIGNATURE}


def reject(verify: object, data: bytes) -> Rejected:
    try:
        verify(data)  # type: ignore[operator]
    except Rejected as exc:
        rejection = exc
    else:
        raise AssertionError("a flipped payload was accepted")
    assert isinstance(rejection.reason_code, Reason)
    assert rejection.reason == rejection.reason_code.value
    if rejection.reason_code is Reason.MALFORMED:
        assert rejection.codec_error is not None
        check_codec_error(rejection.codec_error, data)
    else:
        assert rejection.codec_error is None
    return rejection


def cold(L: int):  # type: ignore[no-untyped-def]
    chain = CHAINS[L]
    return lambda data: verify_payload(
        data,
        ca_keys={fx.CA_INDEX: chain.ca.public_key},
        accepted_issuers={fx.ISSUER_ID},
        clock=FixedClock(fx.NOW),
    )


@settings(max_examples=800, deadline=None)
@given(flipped())
def test_flipped_bytes_decode_faithfully_or_fail_and_are_never_accepted(
    case: tuple[int, bytes, dict[int, int]],
) -> None:
    L, data, flips = case
    err = decode_or_error(data)
    cold_rejection = reject(cold(L), data)
    warm_rejection = reject(WARM[L].verify, data)
    # Cold and warm acceptors agree.
    assert cold_rejection.reason_code is warm_rejection.reason_code
    if err is not None:
        assert cold_rejection.reason_code is Reason.MALFORMED
        assert cold_rejection.codec_error is not None
        assert (cold_rejection.codec_error.field, cold_rejection.codec_error.offset) == (
            err.field,
            err.offset,
        )
        # (f) the error is about a flipped byte: one lies inside the named field (or, for the
        # declared length, the extension length byte that decides the size was flipped) —
        # so the offset is at or before a flip, and for a single flip at or before it.
        start = fx.spec_offset(err.field, L)
        end = start + max(fx.spec_length(err.field, L), 1)
        assert any(start <= k < end for k in flips) or (
            err.field == "guide.data_length" and 197 in flips
        ), (err, sorted(flips))
        assert err.offset <= max(flips)
        if len(flips) == 1:
            assert err.offset <= min(flips)
    else:
        assert cold_rejection.reason_code is not Reason.MALFORMED
    if len(flips) == 1:
        ((k, _mask),) = flips.items()
        assert cold_rejection.reason_code in expected_single_flip_reasons(k, L)


@pytest.mark.parametrize("L", [0, 32])
def test_every_single_bit_flip_is_rejected_for_the_right_reason(L: int) -> None:
    """Exhaustive over positions: every byte, flipped in its low bit and its high bit."""
    valid = PAYLOADS[L]
    verify = cold(L)
    for k in range(len(valid)):
        for mask in (0x01, 0x80):
            data = bytearray(valid)
            data[k] ^= mask
            data = bytes(data)
            err = decode_or_error(data)
            if err is not None:
                assert err.offset <= k, (k, mask, err)
            rejection = reject(verify, data)
            assert rejection.reason_code in expected_single_flip_reasons(k, L), (k, mask)


# --- (d) truncation, every length -----------------------------------------------------------
@pytest.mark.parametrize("L", [0, 32])
def test_every_truncation_is_refused(L: int) -> None:
    valid = PAYLOADS[L]
    for n in range(len(valid)):
        data = valid[:n]
        err = decode_or_error(data)
        assert err is not None, n
        if n < 3:
            assert "payload truncated at" in err.problem
            assert err.field == ("guide.type_version" if n == 0 else "guide.data_length")
        else:  # the declared length no longer matches
            assert (err.field, err.offset) == ("guide.data_length", 1), n
        with pytest.raises(Rejected) as info:
            cold(L)(data)
        assert info.value.reason_code is Reason.MALFORMED


@pytest.mark.parametrize("L", [0, 32])
def test_every_truncation_with_the_length_rewritten_is_refused(L: int) -> None:
    """The declared length made to agree, so the decoder has to notice the missing field."""
    valid = PAYLOADS[L]
    for n in range(3, len(valid)):
        data = valid[:1] + (n - 3).to_bytes(2, "big") + valid[3:n]
        err = decode_or_error(data)
        assert err is not None, n
        if n < 198:
            assert "payload truncated at" in err.problem
            start = fx.spec_offset(err.field)
            assert start <= n < start + max(fx.spec_length(err.field), 1), (n, err)
        else:
            assert (err.field, err.offset) == ("guide.data_length", 1), n


# --- (e) extension by random bytes ------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 32]), st.binary(min_size=1, max_size=64), st.booleans())
def test_extended_payloads_are_refused(L: int, extra: bytes, fix_length: bool) -> None:
    data = PAYLOADS[L] + extra
    if fix_length:
        data = data[:1] + (len(data) - 3).to_bytes(2, "big") + data[3:]
    err = decode_or_error(data)
    assert err is not None
    assert (err.field, err.offset) == ("guide.data_length", 1)
    with pytest.raises(Rejected) as info:
        WARM[L].verify(data)
    assert info.value.reason_code is Reason.MALFORMED


# --- verifier over random input: Rejected(malformed), nothing else ---------------------------
@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=400), prefixed(), spliced()))
def test_verifier_refuses_random_input_as_malformed_or_by_signature(data: bytes) -> None:
    try:
        outcome: VerifiedRide | Rejected = WARM[0].verify(data)
    except Rejected as exc:
        outcome = exc
    if isinstance(outcome, Rejected):
        assert isinstance(outcome.reason_code, Reason)
    else:  # only the valid payload itself (a splice that kept every byte)
        assert data == PAYLOADS[0], data.hex()
        assert outcome.payload.encode() == data
