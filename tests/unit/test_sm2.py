"""SM2 (GB/T 32918) in hsm.sm.sm2: the standard's worked example, signatures, and encodings.

Vector and provenance: tests/vectors/sm2.json (GB/T 32918.5-2017 Annex A). Outside judges of the
same code (the OpenSSL 3 CLI and gmssl) live in tests/integration/.

The module's fast point loader (``_load_point``) reaches into tongsuopy's backend; the tests
under "fast point loader" prove it agrees with the public-API loader (``_public_api_load``) on
every input ``SM2PublicKey.from_bytes`` lets through, valid or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asn1crypto.algos import DSASignature
from asn1crypto.keys import PublicKeyInfo
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from tongsuopy.crypto import serialization as t_ser

from hsm.errors import InvalidKey, InvalidSignature, JtcaError
from hsm.signer import Signer, SigningPath, SoftwareSigner
from hsm.sm.sm2 import (
    COMPRESSED_POINT_SIZE,
    DEFAULT_ID,
    GX,
    GY,
    RAW_SIGNATURE_SIZE,
    SM2_CURVE_OID,
    SM2_CURVE_OID_DER,
    UNCOMPRESSED_POINT_SIZE,
    A,
    B,
    N,
    P,
    SM2PrivateKey,
    SM2PublicKey,
    _load_point,
    _public_api_load,
    der_to_raw,
    raw_to_der,
    sm2_digest,
    sm2_z,
)
from hsm.sm.sm3 import sm3

VECTOR: dict[str, str] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm2.json").read_text()
)["vectors"][0]


def _int(name: str) -> int:
    return int(VECTOR[name], 16)


D, X, Y = _int("private_key"), _int("public_x"), _int("public_y")
R, S, K = _int("r"), _int("s"), _int("k")
MESSAGE = VECTOR["message_ascii"].encode("ascii")
USER_ID = VECTOR["user_id_ascii"].encode("ascii")
RAW = R.to_bytes(32, "big") + S.to_bytes(32, "big")

scalars = st.integers(min_value=1, max_value=N - 2)
components = st.one_of(
    st.integers(min_value=1, max_value=N - 1),
    st.integers(min_value=1, max_value=2**16),  # leading zero bytes in the 32-byte form
    st.integers(min_value=2**255, max_value=N - 1),  # high bit set: DER needs a 0x00 sign byte
    st.sampled_from([1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 2**255 - 1, 2**255, N - 1]),
)


def on_curve(x: int, y: int) -> bool:
    return (y * y - (x * x * x + A * x + B)) % P == 0


def is_quadratic_residue(value: int) -> bool:
    """Euler's criterion (p is an odd prime); 0 counts as a square (y = 0)."""
    return value % P == 0 or pow(value, (P - 1) // 2, P) == 1


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def vector_public_key() -> SM2PublicKey:
    return SM2PublicKey.from_coordinates(X, Y)


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


# -- the curve itself --------------------------------------------------------------------------
def test_curve_constants_are_consistent() -> None:
    """GB/T 32918.5-2017 §3: G is on the curve; 1·G = G and (n-2)·G = -(2·G), as it must be
    when G has order n (checked through Tongsuo's scalar multiplication)."""
    assert on_curve(GX, GY)
    assert P % 4 == 3  # so a square root is v^((p+1)/4), used below
    one = SM2PrivateKey.from_scalar(1).public_key
    assert (one.x, one.y) == (GX, GY)
    minus_two = SM2PrivateKey.from_scalar(N - 2).public_key
    two = SM2PrivateKey.from_scalar(2).public_key
    assert (minus_two.x, minus_two.y) == (two.x, P - two.y)


# -- GB/T 32918.5-2017 Annex A -----------------------------------------------------------------
def test_vector_public_key_from_private_scalar() -> None:
    public = SM2PrivateKey.from_scalar(D).public_key
    assert (public.x, public.y) == (X, Y)
    assert SM2PrivateKey.from_scalar(D.to_bytes(32, "big")).public_key == public


def test_vector_z_and_e(vector_public_key: SM2PublicKey) -> None:
    assert USER_ID == DEFAULT_ID
    assert sm2_z(vector_public_key).hex().upper() == VECTOR["z"]
    assert sm2_z(vector_public_key, USER_ID).hex().upper() == VECTOR["z"]
    assert sm2_digest(vector_public_key, MESSAGE).hex().upper() == VECTOR["e"]
    assert sm3(bytes.fromhex(VECTOR["z"]), MESSAGE).hex().upper() == VECTOR["e"]


def test_vector_z_follows_the_formula(vector_public_key: SM2PublicKey) -> None:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2-2016 §5.5."""
    entl = (len(USER_ID) * 8).to_bytes(2, "big")
    fields = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY, X, Y))
    assert sm3(entl + USER_ID + fields).hex().upper() == VECTOR["z"]


def test_vector_r_and_s_follow_from_k(vector_public_key: SM2PublicKey) -> None:
    """GB/T 32918.2-2016 §6.1: r = (e + x1) mod n with (x1, y1) = [k]G; s = (1+d)⁻¹(k - r·d)."""
    e = int.from_bytes(sm2_digest(vector_public_key, MESSAGE), "big")
    x1 = SM2PrivateKey.from_scalar(K).public_key.x
    assert (e + x1) % N == R
    assert pow(1 + D, -1, N) * (K - R * D) % N == S


def test_vector_verifies_raw(vector_public_key: SM2PublicKey) -> None:
    assert vector_public_key.verify(RAW, MESSAGE) is None


def test_vector_verifies_der(vector_public_key: SM2PublicKey) -> None:
    der = DSASignature({"r": R, "s": S}).dump()
    assert raw_to_der(RAW) == der
    assert vector_public_key.verify_der(der, MESSAGE) is None


def test_vector_verifies_with_a_key_loaded_from_its_compressed_point() -> None:
    compressed = bytes((2 + (Y & 1),)) + X.to_bytes(32, "big")
    public = SM2PublicKey.from_bytes(compressed)
    assert (public.x, public.y) == (X, Y)
    public.verify(RAW, MESSAGE)


@pytest.mark.parametrize("bit", [0, 7, 8 * len(MESSAGE) - 1, 8 * 5 + 3])
def test_vector_refuses_a_flipped_message_bit(vector_public_key: SM2PublicKey, bit: int) -> None:
    with pytest.raises(InvalidSignature):
        vector_public_key.verify(RAW, flip_bit(MESSAGE, bit))


@pytest.mark.parametrize("bit", [0, 1, 100, 255, 256, 257, 400, 511])
def test_vector_refuses_a_flipped_signature_bit(vector_public_key: SM2PublicKey, bit: int) -> None:
    """Bits 0-255 are r, 256-511 are s (bit 0 is the most significant bit of r)."""
    with pytest.raises(InvalidSignature):
        vector_public_key.verify(flip_bit(RAW, bit), MESSAGE)


@pytest.mark.parametrize(
    "message",
    [b"", b"message digesT", b"message digest ", b"message", MESSAGE + b"\x00"],
    ids=["empty", "last-letter", "trailing-space", "prefix", "trailing-nul"],
)
def test_vector_refuses_other_messages(vector_public_key: SM2PublicKey, message: bytes) -> None:
    with pytest.raises(InvalidSignature):
        vector_public_key.verify(RAW, message)


def test_vector_refuses_another_public_key() -> None:
    other = SM2PrivateKey.from_scalar(D + 1).public_key
    with pytest.raises(InvalidSignature):
        other.verify(RAW, MESSAGE)


def test_vector_refuses_the_negated_public_key() -> None:
    """Same Z-relevant x, other y: Z covers y, and so does the verification equation."""
    with pytest.raises(InvalidSignature):
        SM2PublicKey.from_coordinates(X, P - Y).verify(RAW, MESSAGE)


def test_vector_refuses_the_swapped_components(vector_public_key: SM2PublicKey) -> None:
    with pytest.raises(InvalidSignature):
        vector_public_key.verify(RAW[32:] + RAW[:32], MESSAGE)


def test_vector_refuses_n_minus_s(vector_public_key: SM2PublicKey) -> None:
    """SM2 has no (r, n-s) malleability of ECDSA's kind."""
    with pytest.raises(InvalidSignature):
        vector_public_key.verify(R.to_bytes(32, "big") + (N - S).to_bytes(32, "big"), MESSAGE)


def test_z_depends_on_the_user_id(vector_public_key: SM2PublicKey) -> None:
    other = sm2_z(vector_public_key, b"ALICE123@YAHOO.COM")
    assert other != sm2_z(vector_public_key)
    assert sm2_z(vector_public_key, b"") != sm2_z(vector_public_key)
    assert sm2_digest(vector_public_key, MESSAGE, b"") == sm3(
        sm2_z(vector_public_key, b""), MESSAGE
    )


def test_z_user_id_length_limit(vector_public_key: SM2PublicKey) -> None:
    """ENTL is two bytes of bit length: 8191 bytes fit (65528 bits), 8192 do not."""
    assert len(sm2_z(vector_public_key, b"i" * 8191)) == 32
    with pytest.raises(ValueError, match="8191"):
        sm2_z(vector_public_key, b"i" * 8192)


_OUT_OF_RANGE = [0, N, N + 1, 2**256 - 1]


@pytest.mark.parametrize("bad", _OUT_OF_RANGE, ids=["0", "n", "n+1", "2^256-1"])
@pytest.mark.parametrize("which", ["r", "s"])
def test_out_of_range_component_raises_invalid_signature(
    vector_public_key: SM2PublicKey, which: str, bad: int
) -> None:
    r, s = (bad, S) if which == "r" else (R, bad)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    with pytest.raises(InvalidSignature, match=r"outside \[1, n-1\]"):
        vector_public_key.verify(raw, MESSAGE)
    with pytest.raises(InvalidSignature):
        raw_to_der(raw)


@pytest.mark.parametrize("bad", _OUT_OF_RANGE, ids=["0", "n", "n+1", "2^256-1"])
@pytest.mark.parametrize("which", ["r", "s"])
def test_out_of_range_component_in_der_raises_invalid_signature(
    vector_public_key: SM2PublicKey, which: str, bad: int
) -> None:
    r, s = (bad, S) if which == "r" else (R, bad)
    der = DSASignature({"r": r, "s": s}).dump()
    with pytest.raises(InvalidSignature):
        vector_public_key.verify_der(der, MESSAGE)
    with pytest.raises(InvalidSignature, match=r"outside \[1, n-1\]"):
        der_to_raw(der)


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 70, 128])
def test_raw_signature_of_the_wrong_length_raises_invalid_signature(
    vector_public_key: SM2PublicKey, size: int
) -> None:
    raw = (RAW * 2)[:size]
    with pytest.raises(InvalidSignature, match=f"64 bytes .*got {size}"):
        vector_public_key.verify(raw, MESSAGE)


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30\x00", b"garbage", b"\x30\x06\x02\x01\x01\x02\x01\x01"],
    ids=["empty", "empty-sequence", "garbage", "r=s=1"],
)
def test_verify_der_refuses_malformed_or_wrong_signatures(
    vector_public_key: SM2PublicKey, der: bytes
) -> None:
    with pytest.raises(InvalidSignature):
        vector_public_key.verify_der(der, MESSAGE)


def test_verify_der_refuses_ber_forms_of_a_valid_signature(
    vector_public_key: SM2PublicKey,
) -> None:
    der = raw_to_der(RAW)
    long_form = b"\x30\x81" + der[1:]  # same content, BER long-form length
    with pytest.raises(InvalidSignature):
        vector_public_key.verify_der(long_form, MESSAGE)
    with pytest.raises(InvalidSignature):
        vector_public_key.verify_der(der + b"\x00", MESSAGE)


def test_invalid_signature_is_a_jtca_error_with_a_title(vector_public_key: SM2PublicKey) -> None:
    with pytest.raises(InvalidSignature) as caught:
        vector_public_key.verify(RAW, b"other")
    assert isinstance(caught.value, JtcaError)
    assert caught.value.title == "Invalid signature"
    assert caught.value.message
    assert caught.value.exit_code == 4


# -- raw <-> DER -------------------------------------------------------------------------------
@settings(max_examples=300)
@given(r=components, s=components)
@example(r=1, s=1)
@example(r=N - 1, s=N - 1)
@example(r=0x80, s=0x7F)
def test_raw_der_round_trip_matches_asn1crypto(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = raw_to_der(raw)
    assert der == DSASignature({"r": r, "s": s}).dump()
    assert der_to_raw(der) == raw
    assert len(der_to_raw(der)) == RAW_SIGNATURE_SIZE
    parsed = DSASignature.load(der)
    assert (parsed["r"].native, parsed["s"].native) == (r, s)


def test_der_sign_byte_and_minimal_length() -> None:
    high = raw_to_der((2**255).to_bytes(32, "big") + (1).to_bytes(32, "big"))
    assert high == bytes.fromhex("3026022100" + "80" + "00" * 31 + "020101")
    small = raw_to_der((0x80).to_bytes(32, "big") + (0x7F).to_bytes(32, "big"))
    assert small == bytes.fromhex("30070202008002017f")


_VALID_DER = bytes.fromhex("3006020101020101")  # r = s = 1, valid DER


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(b"\x30\x81\x06\x02\x01\x01\x02\x01\x01", id="ber-long-form-sequence-length"),
        pytest.param(b"\x30\x07\x02\x81\x01\x01\x02\x01\x01", id="ber-long-form-integer-length"),
        pytest.param(b"\x30\x80\x02\x01\x01\x02\x01\x01\x00\x00", id="ber-indefinite-length"),
        pytest.param(_VALID_DER + b"\x00", id="trailing-byte"),
        pytest.param(_VALID_DER + _VALID_DER, id="trailing-signature"),
        pytest.param(b"\x30\x07\x02\x02\x00\x01\x02\x01\x01", id="non-minimal-integer"),
        pytest.param(b"\x30\x06\x02\x01\xff\x02\x01\x01", id="negative-r"),
        pytest.param(b"\x30\x06\x02\x01\x01\x02\x01\x80", id="negative-s"),
        pytest.param(b"\x30\x06\x04\x01\x01\x04\x01\x01", id="octet-strings"),
        pytest.param(b"\x30\x06\x02\x01\x01\x01\x01\xff", id="boolean-s"),
        pytest.param(b"\x31\x06\x02\x01\x01\x02\x01\x01", id="set-not-sequence"),
        pytest.param(b"\xa0\x06\x02\x01\x01\x02\x01\x01", id="context-tag"),
        pytest.param(b"\x10\x06\x02\x01\x01\x02\x01\x01", id="primitive-sequence"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="s-missing"),
        pytest.param(b"\x30\x09\x02\x01\x01\x02\x01\x01\x02\x01\x01", id="third-integer"),
        pytest.param(b"\x30\x06\x02\x01\x01\x02\x01", id="truncated"),
        pytest.param(b"\x30\x00", id="empty-sequence"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x02\x01\x01", id="bare-integer"),
        pytest.param(RAW, id="raw-not-der"),
        # issue #15: the library parser (cryptography's decode_dss_signature) must keep these out
        pytest.param(b"\x30\x05\x02\x00\x02\x01\x01", id="empty-integer"),
        pytest.param(b"\x30\x06\x02\x01\x01\x02\x01\x01\x00", id="trailing-inside-length"),
        pytest.param(b"\x30\x08\x02\x01\x01\x02\x01\x01\x05\x00", id="trailing-null-inside"),
        pytest.param(b"\x30\x06\x02\x01\x01\x02\x02\x00", id="s-overruns-sequence"),
        pytest.param(b"\x30\x82\x00\x06\x02\x01\x01\x02\x01\x01", id="ber-two-byte-length"),
        pytest.param(b"\x30\x06\x02\x01\x00\x02\x01\x01", id="r-zero"),
        pytest.param(b"\x30\x06\x02\x01\x01\x02\x01\x00", id="s-zero"),
        pytest.param(
            bytes.fromhex("3027022200") + b"\x80" + b"\x00" * 31 + bytes.fromhex("020101"),
            id="non-minimal-high-r",
        ),
        pytest.param(
            bytes.fromhex("30450221")
            + N.to_bytes(33, "big")
            + bytes.fromhex("0220")
            + b"\x01" * 32,
            id="r-equals-n",
        ),
    ],
)
def test_der_to_raw_refuses_non_der(der: bytes) -> None:
    with pytest.raises(InvalidSignature, match="SM2 signature"):
        der_to_raw(der)


def test_der_to_raw_refuses_a_non_bytes_argument() -> None:
    with pytest.raises(InvalidSignature):
        der_to_raw("3006020101020101")  # type: ignore[arg-type]


def test_der_to_raw_takes_any_bytes_like_of_the_same_der() -> None:
    der = raw_to_der(RAW)
    assert der_to_raw(bytearray(der)) == der_to_raw(memoryview(der)) == RAW  # type: ignore[arg-type]


def test_der_conversion_is_the_library_encoding() -> None:
    """raw_to_der and der_to_raw are cryptography's encode/decode_dss_signature (issue #15,
    point 7), with the SM2 range check around them: the same bytes, one encoding."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    for r, s in ((R, S), (1, 1), (N - 1, N - 1), (0x80, 0x7F), (2**255, 1)):
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert raw_to_der(raw) == encode_dss_signature(r, s)
        assert decode_dss_signature(raw_to_der(raw)) == (r, s)
        assert der_to_raw(encode_dss_signature(r, s)) == raw
    # the library would encode r = n or r = 0; the SM2 range check refuses them both ways
    for r in (0, N):
        with pytest.raises(InvalidSignature, match=r"outside \[1, n-1\]"):
            der_to_raw(encode_dss_signature(r, 1))
        with pytest.raises(InvalidSignature, match=r"outside \[1, n-1\]"):
            raw_to_der(r.to_bytes(32, "big") + (1).to_bytes(32, "big"))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=80))
@example(data=_VALID_DER)
def test_der_to_raw_on_arbitrary_bytes_accepts_only_canonical_der(data: bytes) -> None:
    """Whatever the input, der_to_raw either raises InvalidSignature (nothing else) or returns
    a raw signature whose DER is exactly the input: it accepts one encoding per signature."""
    try:
        raw = der_to_raw(data)
    except InvalidSignature:
        return
    assert raw_to_der(raw) == data


@settings(max_examples=300)
@given(position=st.integers(0, 71), value=st.integers(0, 255))
def test_der_to_raw_on_mutated_signatures_accepts_only_canonical_der(
    position: int, value: int
) -> None:
    der = bytearray(raw_to_der(RAW))
    assume(position < len(der))
    der[position] = value
    try:
        raw = der_to_raw(bytes(der))
    except InvalidSignature:
        return
    assert raw_to_der(raw) == bytes(der)


# -- points: compressed and uncompressed ---------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(d=scalars)
@example(d=1)
@example(d=N - 2)
@example(d=D)
def test_point_encodings_round_trip(d: int) -> None:
    public = SM2PrivateKey.from_scalar(d).public_key
    x, y = public.x, public.y
    assert on_curve(x, y)
    compressed, uncompressed = public.compressed, public.uncompressed
    assert len(compressed) == COMPRESSED_POINT_SIZE
    assert len(uncompressed) == UNCOMPRESSED_POINT_SIZE
    assert compressed == bytes((2 + (y & 1),)) + x.to_bytes(32, "big")  # the parity byte
    assert uncompressed == b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")

    from_compressed = SM2PublicKey.from_bytes(compressed)
    from_uncompressed = SM2PublicKey.from_bytes(uncompressed)
    for loaded in (from_compressed, from_uncompressed):
        assert (loaded.x, loaded.y) == (x, y)
        assert loaded.compressed == compressed
        assert loaded.uncompressed == uncompressed
        assert loaded == public
        assert hash(loaded) == hash(public)


def test_parity_byte_for_even_and_odd_y() -> None:
    seen = set()
    for d in range(1, 40):
        public = SM2PrivateKey.from_scalar(d).public_key
        assert public.compressed[0] == (3 if public.y % 2 else 2)
        seen.add(public.compressed[0])
    assert seen == {2, 3}


def test_compressed_point_of_the_negated_key_differs_only_in_parity() -> None:
    public = SM2PublicKey.from_coordinates(X, Y)
    negated = SM2PublicKey.from_coordinates(X, P - Y)
    assert public.compressed[1:] == negated.compressed[1:]
    assert {public.compressed[0], negated.compressed[0]} == {2, 3}
    assert public != negated
    assert SM2PublicKey.from_bytes(negated.compressed).y == P - Y


def _smallest_x(*, residue: bool) -> int:
    return next(x for x in range(1000) if is_quadratic_residue(x**3 + A * x + B) == residue)


NON_RESIDUE_X = _smallest_x(residue=False)
RESIDUE_X = _smallest_x(residue=True)


def test_non_residue_x_really_has_no_point() -> None:
    """Guard of the fixture below: x³ + ax + b for NON_RESIDUE_X has no square root mod p,
    and for RESIDUE_X it has one (and both parities then decompress)."""
    v = (NON_RESIDUE_X**3 + A * NON_RESIDUE_X + B) % P
    root = pow(v, (P + 1) // 4, P)
    assert root * root % P != v
    w = (RESIDUE_X**3 + A * RESIDUE_X + B) % P
    root = pow(w, (P + 1) // 4, P)
    assert root * root % P == w
    for prefix in (2, 3):
        loaded = SM2PublicKey.from_bytes(bytes((prefix,)) + RESIDUE_X.to_bytes(32, "big"))
        assert loaded.x == RESIDUE_X
        assert loaded.y % 2 == prefix - 2
        assert on_curve(loaded.x, loaded.y)


_GOOD = SM2PrivateKey.from_scalar(D).public_key
_RESIDUE_Y = SM2PublicKey.from_bytes(b"\x02" + RESIDUE_X.to_bytes(32, "big")).y
_GOOD_C, _GOOD_U = _GOOD.compressed, _GOOD.uncompressed


def _b32(v: int) -> bytes:
    return v.to_bytes(32, "big")


# (id, bytes, what the message must say)
BAD_POINTS: list[tuple[str, bytes, str]] = [
    ("prefix-00-33", b"\x00" + _GOOD_C[1:], "33 bytes starting 02/03"),
    ("prefix-05-33", b"\x05" + _GOOD_C[1:], "starting 0x05"),
    ("prefix-04-33", b"\x04" + _GOOD_C[1:], "starting 0x04"),
    ("prefix-02-65", b"\x02" + _GOOD_U[1:], "65 bytes starting 04"),
    ("prefix-03-65", b"\x03" + _GOOD_U[1:], "starting 0x03"),
    ("prefix-00-65", b"\x00" + _GOOD_U[1:], "starting 0x00"),
    ("hybrid-06-65", b"\x06" + _GOOD_U[1:], "starting 0x06"),
    ("hybrid-07-65", b"\x07" + _GOOD_U[1:], "starting 0x07"),
    ("infinity-1", b"\x00", "got 1 bytes"),
    ("empty", b"", "got 0 bytes starting nothing"),
    ("x-only-32", _GOOD_C[1:], "got 32 bytes"),
    ("compressed-34", _GOOD_C + b"\x00", "got 34 bytes"),
    ("compressed-32", _GOOD_C[:-1], "got 32 bytes"),
    ("uncompressed-64", _GOOD_U[:-1], "got 64 bytes"),
    ("uncompressed-66", _GOOD_U + b"\x00", "got 66 bytes"),
    ("raw-xy-64", _GOOD_U[1:], "got 64 bytes"),
    ("compressed-x-eq-p", b"\x02" + _b32(P), "x coordinate is not below"),
    ("compressed-x-eq-p+1", b"\x03" + _b32(P + 1), "x coordinate is not below"),
    ("compressed-x-max", b"\x02" + b"\xff" * 32, "x coordinate is not below"),
    # x + p is another name of a valid x (RESIDUE_X is small enough for x + p to fit 32 bytes)
    ("compressed-x-plus-p", b"\x02" + _b32(RESIDUE_X + P), "x coordinate is not below"),
    ("uncompressed-x-plus-p", b"\x04" + _b32(RESIDUE_X + P) + _b32(_RESIDUE_Y), "x coordinate"),
    ("uncompressed-y-eq-p", b"\x04" + _b32(X) + _b32(P), "y coordinate is not below"),
    ("uncompressed-y-max", b"\x04" + _b32(X) + b"\xff" * 32, "y coordinate is not below"),
    ("compressed-non-residue-02", b"\x02" + _b32(NON_RESIDUE_X), "compressed .*not on the curve"),
    ("compressed-non-residue-03", b"\x03" + _b32(NON_RESIDUE_X), "compressed .*not on the curve"),
    ("uncompressed-y+1", b"\x04" + _b32(X) + _b32(Y + 1), "uncompressed .*not on the curve"),
    ("uncompressed-x+1", b"\x04" + _b32(X + 1) + _b32(Y), "uncompressed .*not on the curve"),
    ("uncompressed-zero", b"\x04" + bytes(64), "uncompressed .*not on the curve"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    [pytest.param(data, message, id=name) for name, data, message in BAD_POINTS],
)
def test_from_bytes_refuses_bad_points_with_a_message(data: bytes, message: str) -> None:
    with pytest.raises(InvalidKey, match=message) as caught:
        SM2PublicKey.from_bytes(data)
    assert caught.value.title == "Invalid key"


@pytest.mark.parametrize(
    ("x", "y"),
    [(P, Y), (X, P), (-1, Y), (X, -1), (0, 0), (X, Y + 1), (X + 1, Y)],
    ids=["x=p", "y=p", "x<0", "y<0", "origin", "y+1", "x+1"],
)
def test_from_coordinates_refuses_bad_points(x: int, y: int) -> None:
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_coordinates(x, y)


# -- fast point loader ---------------------------------------------------------------------------
def _encodings(key: Any) -> tuple[bytes, bytes]:
    return (
        bytes(key.public_bytes(t_ser.Encoding.X962, t_ser.PublicFormat.CompressedPoint)),
        bytes(key.public_bytes(t_ser.Encoding.X962, t_ser.PublicFormat.UncompressedPoint)),
    )


def _outcome(loader: Any, data: bytes) -> tuple[str, Any]:
    try:
        key = loader(data)
    except ValueError:
        return ("refused", None)
    numbers = key.public_numbers()
    return ("loaded", (_encodings(key), numbers.x, numbers.y, key.curve.name, key.key_size))


def test_fast_loader_is_the_one_in_use() -> None:
    """With the pinned tongsuopy the fast loader must be active; if it had silently fallen back
    to the public API, the agreement tests below would prove nothing."""
    assert _load_point is not _public_api_load
    assert _load_point.__name__ == "load"


@settings(max_examples=80, deadline=None)
@given(d=scalars)
@example(d=1)
@example(d=N - 2)
@example(d=D)
def test_fast_loader_agrees_with_public_api_on_valid_points(d: int) -> None:
    public = SM2PrivateKey.from_scalar(d).public_key
    for data in (public.compressed, public.uncompressed):
        fast, reference = _outcome(_load_point, data), _outcome(_public_api_load, data)
        assert fast == reference
        assert fast[0] == "loaded"
        assert fast[1][0] == (public.compressed, public.uncompressed)


def test_fast_loader_agrees_with_public_api_for_every_leading_byte_of_x() -> None:
    """A systematic sweep besides the random one: walk d = 1, 2, … until x has taken every
    leading byte value with both parities of y (≈ 3,000 keys, both encodings of each)."""
    wanted = {(first, parity) for first in range(256) for parity in (2, 3)}
    d = 0
    while wanted:
        d += 1
        public = SM2PrivateKey.from_scalar(d).public_key
        compressed = public.compressed
        key = (compressed[1], compressed[0])
        if key not in wanted:
            continue
        wanted.discard(key)
        for data in (compressed, public.uncompressed):
            fast = _outcome(_load_point, data)
            assert fast == _outcome(_public_api_load, data), (d, data.hex())
            assert fast[1][0] == (compressed, public.uncompressed), (d, data.hex())


@pytest.mark.parametrize(
    "data",
    [pytest.param(data, id=name) for name, data, _ in BAD_POINTS],
)
def test_fast_loader_agrees_with_public_api_on_bad_points_from_bytes_admits(data: bytes) -> None:
    """Every bad point that gets past from_bytes' length/prefix gate is refused by both
    loaders alike. (The gate matters: outside it the loaders differ — the fast loader's
    EC_POINT_oct2point accepts the one-byte infinity encoding 00 and the hybrid forms 06/07,
    which from_encoded_point refuses by prefix; from_bytes refuses those first, see above.)"""
    admitted = (len(data) == COMPRESSED_POINT_SIZE and data[:1] in (b"\x02", b"\x03")) or (
        len(data) == UNCOMPRESSED_POINT_SIZE and data[:1] == b"\x04"
    )
    if admitted:
        assert _outcome(_load_point, data) == _outcome(_public_api_load, data) == ("refused", None)
    else:
        with pytest.raises(InvalidKey):
            SM2PublicKey.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([2, 3]), x=st.integers(0, 2**256 - 1))
@example(prefix=2, x=0)
@example(prefix=2, x=NON_RESIDUE_X)
@example(prefix=3, x=RESIDUE_X)
@example(prefix=2, x=P - 1)
@example(prefix=2, x=P)
def test_fast_loader_agrees_with_public_api_on_arbitrary_compressed_points(
    prefix: int, x: int
) -> None:
    """Random x: about half are on the curve, so both outcomes are exercised."""
    data = bytes((prefix,)) + x.to_bytes(32, "big")
    fast = _outcome(_load_point, data)
    assert fast == _outcome(_public_api_load, data)
    expected = x < P and is_quadratic_residue(x**3 + A * x + B)
    assert (fast[0] == "loaded") == expected
    if expected:
        assert fast[1][0][0] == data
        assert fast[1][2] % 2 == prefix - 2


@settings(max_examples=100, deadline=None)
@given(d=scalars, dy=st.integers(-3, 3), dx=st.integers(-3, 3))
def test_fast_loader_agrees_with_public_api_on_perturbed_uncompressed_points(
    d: int, dy: int, dx: int
) -> None:
    public = SM2PrivateKey.from_scalar(d).public_key
    x, y = (public.x + dx) % 2**256, (public.y + dy) % 2**256
    data = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    fast = _outcome(_load_point, data)
    assert fast == _outcome(_public_api_load, data)
    assert (fast[0] == "loaded") == (x < P and y < P and on_curve(x, y))


@settings(max_examples=15, deadline=None)
@given(d=scalars, message=st.binary(max_size=200))
def test_keys_from_the_fast_loader_verify_signatures(d: int, message: bytes) -> None:
    private = SM2PrivateKey.from_scalar(d)
    signature = private.sign(message)
    for data in (private.public_key.compressed, private.public_key.uncompressed):
        fast = SM2PublicKey(_load_point(data))
        reference = SM2PublicKey(_public_api_load(data))
        assert fast == reference == private.public_key
        fast.verify(signature, message)
        reference.verify(signature, message)
        with pytest.raises(InvalidSignature):
            fast.verify(signature, message + b"!")
        with pytest.raises(InvalidSignature):
            reference.verify(signature, message + b"!")


def test_fast_loaded_key_serialises_like_a_public_api_key() -> None:
    fast = SM2PublicKey(_load_point(_GOOD_C))
    reference = SM2PublicKey(_public_api_load(_GOOD_C))
    assert fast.spki_der() == reference.spki_der()
    assert fast.pem() == reference.pem()
    assert fast._key.curve.name == reference._key.curve.name == "SM2"


# -- signing --------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(message=st.binary(max_size=600))
def test_signatures_are_64_bytes_and_verify(key: SM2PrivateKey, message: bytes) -> None:
    signature = key.sign(message)
    assert len(signature) == RAW_SIGNATURE_SIZE
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert 0 < r < N
    assert 0 < s < N
    key.public_key.verify(signature, message)
    key.public_key.verify_der(raw_to_der(signature), message)
    with pytest.raises(InvalidSignature):
        key.public_key.verify(signature, message + b"\x00")


def test_sign_der_is_der_of_a_verifying_signature(key: SM2PrivateKey) -> None:
    der = key.sign_der(b"payload")
    raw = der_to_raw(der)
    assert raw_to_der(raw) == der
    key.public_key.verify_der(der, b"payload")
    key.public_key.verify(raw, b"payload")


def test_two_signatures_of_one_message_differ(key: SM2PrivateKey) -> None:
    """k is random (Tongsuo's CSPRNG): the same message never gives the same r."""
    signatures = {key.sign(b"same message") for _ in range(8)}
    assert len(signatures) == 8
    assert len({sig[:32] for sig in signatures}) == 8
    for signature in signatures:
        key.public_key.verify(signature, b"same message")


def test_signature_does_not_verify_under_another_key(key: SM2PrivateKey) -> None:
    signature = key.sign(b"m")
    with pytest.raises(InvalidSignature):
        SM2PrivateKey.generate().public_key.verify(signature, b"m")


def test_software_signer() -> None:
    signer = SoftwareSigner.generate()
    assert isinstance(signer, Signer)
    assert signer.path is SigningPath.SOFTWARE
    assert signer.path == "software"
    assert signer.key_uri == "software:" + signer.public_key.compressed.hex()
    signature = signer.sign(b"whitelist v17")
    assert len(signature) == RAW_SIGNATURE_SIZE
    signer.public_key.verify(signature, b"whitelist v17")
    with pytest.raises(InvalidSignature):
        signer.public_key.verify(signature, b"whitelist v18")


def test_software_signer_over_a_given_key_signs_with_that_key() -> None:
    private = SM2PrivateKey.from_scalar(D)
    signer = SoftwareSigner(private)
    assert signer.public_key == SM2PublicKey.from_coordinates(X, Y)
    signer.public_key.verify(signer.sign(MESSAGE), MESSAGE)
    SM2PublicKey.from_coordinates(X, Y).verify(signer.sign(MESSAGE), MESSAGE)


def test_generated_keys_differ() -> None:
    assert SM2PrivateKey.generate().public_key != SM2PrivateKey.generate().public_key


@pytest.mark.parametrize(
    "d",
    [0, N - 1, N, N + 1, -1, 2**256, bytes(32), (N - 1).to_bytes(32, "big"), N.to_bytes(32, "big")],
    ids=["0", "n-1", "n", "n+1", "-1", "2^256", "bytes-0", "bytes-n-1", "bytes-n"],
)
def test_from_scalar_refuses_out_of_range(d: int | bytes) -> None:
    """GB/T 32918.1-2016 §6.1: d ∈ [1, n-2] (n-1 is excluded because 1 + d must be invertible)."""
    with pytest.raises(InvalidKey, match=r"\[1, n-2\]"):
        SM2PrivateKey.from_scalar(d)


@pytest.mark.parametrize("d", [1, 2, N - 2, D], ids=["1", "2", "n-2", "vector"])
def test_from_scalar_accepts_the_range_ends(d: int) -> None:
    private = SM2PrivateKey.from_scalar(d)
    private.public_key.verify(private.sign(b"x"), b"x")


def test_private_key_pem_round_trip(key: SM2PrivateKey) -> None:
    pem = key.pkcs8_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = SM2PrivateKey.from_pem(pem)
    assert again.public_key == key.public_key
    assert again.pkcs8_pem() == pem
    assert again.pkcs8_der() == key.pkcs8_der()
    key.public_key.verify(again.sign(b"after reload"), b"after reload")


def test_private_key_pem_of_the_vector_key_carries_the_scalar() -> None:
    der = SM2PrivateKey.from_scalar(D).pkcs8_der()
    assert D.to_bytes(32, "big") in der
    assert SM2_CURVE_OID_DER in der


def test_private_key_repr_hides_the_scalar() -> None:
    private = SM2PrivateKey.from_scalar(D)
    text = repr(private)
    assert VECTOR["private_key"].lower() not in text.lower()
    assert private.public_key.compressed.hex() in text


@pytest.mark.parametrize(
    "pem",
    [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ids=["empty", "garbage", "bad-base64-body"],
)
def test_private_key_from_pem_refuses_garbage(pem: bytes) -> None:
    with pytest.raises(InvalidKey, match="not a PEM SM2 private key"):
        SM2PrivateKey.from_pem(pem)


def test_private_key_from_pem_refuses_a_password_for_an_unencrypted_key(
    key: SM2PrivateKey,
) -> None:
    with pytest.raises(InvalidKey):
        SM2PrivateKey.from_pem(key.pkcs8_pem(), b"password")


def test_public_key_pem_round_trip(key: SM2PrivateKey) -> None:
    public = key.public_key
    pem = public.pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    again = SM2PublicKey.from_pem(pem)
    assert again == public
    assert (again.x, again.y) == (public.x, public.y)
    assert again.pem() == pem


def test_public_key_spki_der_round_trip(key: SM2PrivateKey) -> None:
    public = key.public_key
    der = public.spki_der()
    again = SM2PublicKey.from_spki_der(der)
    assert again == public
    assert again.spki_der() == der
    assert again.uncompressed == public.uncompressed


def test_spki_is_an_ec_key_on_the_sm2_curve_with_the_uncompressed_point() -> None:
    """Checked with asn1crypto, not with the library that wrote it."""
    public = SM2PublicKey.from_coordinates(X, Y)
    info = PublicKeyInfo.load(public.spki_der())
    assert info["algorithm"]["algorithm"].native == "ec"
    assert info["algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID
    assert bytes(info["public_key"]) == public.uncompressed
    assert SM2_CURVE_OID_DER in public.spki_der()


@pytest.mark.parametrize(
    ("loader", "data"),
    [
        (SM2PublicKey.from_pem, b""),
        (SM2PublicKey.from_pem, b"garbage"),
        (SM2PublicKey.from_spki_der, b""),
        (SM2PublicKey.from_spki_der, b"garbage"),
        (SM2PublicKey.from_spki_der, SM2PublicKey.from_coordinates(X, Y).spki_der()[:-1]),
    ],
    ids=["pem-empty", "pem-garbage", "der-empty", "der-garbage", "der-truncated"],
)
def test_public_key_loaders_refuse_garbage(loader: Any, data: bytes) -> None:
    with pytest.raises(InvalidKey):
        loader(data)


def test_public_key_equality_and_hash_are_by_point() -> None:
    a = SM2PublicKey.from_coordinates(X, Y)
    b = SM2PublicKey.from_bytes(a.compressed)
    c = SM2PublicKey.from_pem(a.pem())
    d = SM2PrivateKey.from_scalar(D).public_key
    other = SM2PrivateKey.from_scalar(D + 1).public_key
    assert a == b == c == d
    assert len({a, b, c, d}) == 1
    assert {a: "x"}[b] == "x"
    assert a != other
    assert hash(a) != hash(other)
    assert a != a.compressed
    assert a != object()
    assert repr(a) == f"SM2PublicKey({a.compressed.hex()})"
