"""SM2 digital signatures (GB/T 32918.2-2016) on the recommended curve (GB/T 32918.5-2017).

Signing and verification run in Tongsuo (``tongsuopy``), which hashes ``e = SM3(Z || M)`` with
``Z`` over the default distinguishing ID ``1234567812345678`` (GM/T 0009-2012 §10). This module
adds only encodings: raw ``r || s`` (what the QR payload carries) and DER (what X.509, CMS and
OpenSSL carry), compressed points (what the QR payload carries) and SubjectPublicKeyInfo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from tongsuopy.crypto import hashes as _t_hashes
from tongsuopy.crypto import serialization as _t_ser
from tongsuopy.crypto.asymciphers import ec as _t_ec
from tongsuopy.crypto.exceptions import InternalError as _TInternalError
from tongsuopy.crypto.exceptions import InvalidSignature as _TInvalidSignature
from tongsuopy.crypto.exceptions import UnsupportedAlgorithm as _TUnsupported

from hsm.errors import InvalidKey, InvalidSignature
from hsm.sm.sm3 import sm3

# GB/T 32918.5-2017 §3, the recommended 256-bit curve y² = x³ + ax + b over F_p.
P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

SM2_CURVE_OID: Final = "1.2.156.10197.1.301"
SM2_CURVE_OID_DER: Final = bytes.fromhex("06082A811CCF5501822D")
DEFAULT_ID: Final = b"1234567812345678"  # GM/T 0009-2012 §10: the default user ID

RAW_SIGNATURE_SIZE: Final = 64
COMPRESSED_POINT_SIZE: Final = 33
UNCOMPRESSED_POINT_SIZE: Final = 65

_CURVE: Final = _t_ec.SM2()
_ALGORITHM: Final = _t_ec.ECDSA(_t_hashes.SM3())  # tongsuopy's name for "SM2 with SM3 and Z"


def _public_api_load(data: bytes) -> _t_ec.EllipticCurvePublicKey:
    return _t_ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, data)


def _make_fast_loader() -> Callable[[bytes], _t_ec.EllipticCurvePublicKey]:
    """Point loading through Tongsuo with a shared curve group.

    ``from_encoded_point`` builds the curve group from its parameters on every call
    (``EC_KEY_new_by_curve_name``), which costs more than the point decompression itself. A
    cold QR verification loads two points, so this loader copies a prepared group instead
    (``EC_KEY_set_group``) and then does exactly what ``from_encoded_point`` does: the same
    ``EC_POINT_oct2point`` (which rejects x ≥ p and points off the curve) and the same key
    object. It reaches into tongsuopy's backend, so tongsuopy is pinned and the loader falls
    back to the public API if that backend ever changes; tests/unit/test_sm2.py proves both
    loaders agree, on good points and bad.
    """
    try:
        from tongsuopy.backends.tongsuo import backend as be
        from tongsuopy.backends.tongsuo.ec import _EllipticCurvePublicKey

        lib, ffi = be._lib, be._ffi
        template = be._ec_key_new_by_curve(_CURVE)
        group = lib.EC_KEY_get0_group(template)
        if group == ffi.NULL:
            return _public_api_load
    except (ImportError, AttributeError):
        return _public_api_load

    def load(data: bytes, _keep_group_alive: object = template) -> _t_ec.EllipticCurvePublicKey:
        # The same first-byte check from_encoded_point makes (no infinity, no hybrid forms).
        if not data or data[0] not in (2, 3, 4):
            raise ValueError("Unsupported elliptic curve point type")
        ec_key = lib.EC_KEY_new()
        be.openssl_assert(ec_key != ffi.NULL)
        ec_key = ffi.gc(ec_key, lib.EC_KEY_free)
        be.openssl_assert(lib.EC_KEY_set_group(ec_key, group) == 1)
        point = ffi.gc(lib.EC_POINT_new(group), lib.EC_POINT_free)
        if lib.EC_POINT_oct2point(group, point, data, len(data), ffi.NULL) != 1:
            be._consume_errors()
            raise ValueError("Invalid public bytes for the given curve")
        be.openssl_assert(lib.EC_KEY_set_public_key(ec_key, point) == 1)
        # What _EllipticCurvePublicKey.__init__ would set, without re-deriving the curve name
        # from a group that is ours by construction (and oct2point never yields infinity from
        # a 33- or 65-byte encoding).
        key = object.__new__(_EllipticCurvePublicKey)
        key._backend = be
        key._ec_key = ec_key
        key._evp_pkey = be._ec_cdata_to_evp_pkey(ec_key)
        key._curve = _CURVE
        return key

    return load


def _b32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def raw_to_der(raw: bytes) -> bytes:
    """Raw ``r || s`` (32 + 32 bytes) to the DER ``SEQUENCE { r INTEGER, s INTEGER }``
    (the X9.62/RFC 3279 ``Dss-Sig-Value`` GM/T 0009 §7.3 repeats as ``SM2Signature``).

    The DER is written by ``cryptography`` (``encode_dss_signature``), not by hand. Raises
    InvalidSignature unless 1 ≤ r, s < n: such values can never verify, and refusing them here
    keeps malformed input away from the C library.
    """
    if len(raw) != RAW_SIGNATURE_SIZE:
        raise InvalidSignature(f"a raw SM2 signature is 64 bytes (r || s), got {len(raw)}")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if not (0 < r < N and 0 < s < N):
        raise InvalidSignature("SM2 signature component r or s is outside [1, n-1]")
    return bytes(encode_dss_signature(r, s))


def der_to_raw(der: bytes) -> bytes:
    """DER ``SEQUENCE { r, s }`` to raw ``r || s``; strict DER only.

    ``cryptography``'s ``decode_dss_signature`` (rust-asn1, a DER parser) refuses BER lengths,
    non-minimal and negative INTEGERs and trailing bytes; the result is then encoded again and
    must be the input byte for byte, so exactly one encoding of each signature is accepted
    whatever a future parser tolerates. Raises InvalidSignature, never anything else.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise InvalidSignature(f"not a DER SM2 signature: {type(der).__name__}, not bytes")
    data = bytes(der)
    try:
        r, s = decode_dss_signature(data)
    except (ValueError, TypeError) as exc:
        raise InvalidSignature(f"not a DER SM2 signature: {exc}") from None
    if not (0 < r < N and 0 < s < N):
        raise InvalidSignature("SM2 signature component r or s is outside [1, n-1]")
    if encode_dss_signature(r, s) != data:  # pragma: no cover - rust-asn1 parses DER only
        raise InvalidSignature("not a DER SM2 signature: not the canonical DER encoding")
    return _b32(r) + _b32(s)


_load_point: Final = _make_fast_loader()


class SM2PublicKey:
    """An SM2 public key on the recommended curve, checked to be on the curve when made."""

    __slots__ = ("_compressed", "_key", "_xy")

    def __init__(self, key: _t_ec.EllipticCurvePublicKey, compressed: bytes | None = None) -> None:
        if not isinstance(key.curve, _t_ec.SM2):
            raise InvalidKey(f"not an SM2 key: curve {key.curve.name}")
        self._key = key
        # The coordinates are read lazily: a verifier that loads a compressed point never needs
        # them, and reading them costs as much as a tenth of a verification.
        self._xy: tuple[int, int] | None = None
        self._compressed = compressed or bytes(
            key.public_bytes(_t_ser.Encoding.X962, _t_ser.PublicFormat.CompressedPoint)
        )

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes) -> SM2PublicKey:
        """A point as ``02/03 || x`` (compressed) or ``04 || x || y`` (uncompressed).

        Raises InvalidKey naming the problem: wrong length or prefix, x or y not below p, or a
        point that is not on the curve (for a compressed point: x³ + ax + b has no square root).
        """
        if len(data) == COMPRESSED_POINT_SIZE and data[0] in (2, 3):
            what = "compressed"
        elif len(data) == UNCOMPRESSED_POINT_SIZE and data[0] == 4:
            what = "uncompressed"
        else:
            prefix = f"0x{data[0]:02x}" if data else "nothing"
            raise InvalidKey(
                f"an SM2 point is 33 bytes starting 02/03 or 65 bytes starting 04; got "
                f"{len(data)} bytes starting {prefix}"
            )
        if int.from_bytes(data[1:33], "big") >= P:
            raise InvalidKey("SM2 point x coordinate is not below the field prime p")
        if what == "uncompressed" and int.from_bytes(data[33:], "big") >= P:
            raise InvalidKey("SM2 point y coordinate is not below the field prime p")
        try:
            key = _load_point(bytes(data))
        except ValueError:
            raise InvalidKey(f"{what} SM2 point is not on the curve") from None
        return cls(key, bytes(data) if what == "compressed" else None)

    @classmethod
    def from_coordinates(cls, x: int, y: int) -> SM2PublicKey:
        if not (0 <= x < P and 0 <= y < P):
            raise InvalidKey("SM2 point coordinates must be below the field prime p")
        return cls.from_bytes(b"\x04" + _b32(x) + _b32(y))

    @classmethod
    def from_pem(cls, pem: bytes) -> SM2PublicKey:
        try:
            key = _t_ser.load_pem_public_key(pem)
        except (ValueError, TypeError, _TUnsupported) as exc:
            raise InvalidKey(f"not a PEM SM2 public key: {exc}") from None
        if not isinstance(key, _t_ec.EllipticCurvePublicKey):
            raise InvalidKey("not an elliptic-curve public key")
        return cls(key)

    @classmethod
    def from_spki_der(cls, der: bytes) -> SM2PublicKey:
        try:
            key = _t_ser.load_der_public_key(der)
        except (ValueError, TypeError, _TUnsupported) as exc:
            raise InvalidKey(f"not a DER SM2 SubjectPublicKeyInfo: {exc}") from None
        if not isinstance(key, _t_ec.EllipticCurvePublicKey):
            raise InvalidKey("not an elliptic-curve public key")
        return cls(key)

    # -- encodings ------------------------------------------------------------------------
    def _coordinates(self) -> tuple[int, int]:
        if self._xy is None:
            numbers = self._key.public_numbers()
            self._xy = (numbers.x, numbers.y)
        return self._xy

    @property
    def x(self) -> int:
        return self._coordinates()[0]

    @property
    def y(self) -> int:
        return self._coordinates()[1]

    @property
    def compressed(self) -> bytes:
        """``02/03 || x``: 33 bytes, as the QR payload carries public keys."""
        return self._compressed

    @property
    def uncompressed(self) -> bytes:
        x, y = self._coordinates()
        return b"\x04" + _b32(x) + _b32(y)

    def spki_der(self) -> bytes:
        return bytes(
            self._key.public_bytes(_t_ser.Encoding.DER, _t_ser.PublicFormat.SubjectPublicKeyInfo)
        )

    def pem(self) -> bytes:
        return bytes(
            self._key.public_bytes(_t_ser.Encoding.PEM, _t_ser.PublicFormat.SubjectPublicKeyInfo)
        )

    # -- verification ---------------------------------------------------------------------
    def verify(self, signature: bytes, message: bytes) -> None:
        """Verify a raw ``r || s`` signature over ``message`` (Z over the default ID).

        Raises InvalidSignature; returns nothing on success.
        """
        self.verify_der(raw_to_der(signature), message)

    def verify_der(self, der_signature: bytes, message: bytes) -> None:
        try:
            self._key.verify(der_signature, message, _ALGORITHM)
        except (_TInvalidSignature, _TInternalError):
            raise InvalidSignature("SM2 signature does not verify") from None

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2 public-key encryption (GB/T 32918.4) in Tongsuo: DER ``SM2Cipher``
        (GM/T 0009 §7.2: x, y, SM3 hash, ciphertext). Used to seal key packages."""
        return _pkey_crypt(self._key, plaintext, encrypt=True)

    # -- value semantics ------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other._compressed == self._compressed

    def __hash__(self) -> int:
        return hash(self._compressed)

    def __repr__(self) -> str:
        return f"SM2PublicKey({self._compressed.hex()})"


class SM2PrivateKey:
    """A software SM2 private key. Tokens keep theirs; this one serves tests, the demo and the
    single use of a host-assisted signature. It never prints its scalar."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: _t_ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, _t_ec.SM2):
            raise InvalidKey(f"not an SM2 key: curve {key.curve.name}")
        self._key = key
        self._public = SM2PublicKey(key.public_key())

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A fresh key from Tongsuo's CSPRNG."""
        return cls(_t_ec.generate_private_key(_CURVE))

    @classmethod
    def from_scalar(cls, d: int | bytes) -> SM2PrivateKey:
        value = int.from_bytes(d, "big") if isinstance(d, bytes) else d
        # GB/T 32918.1 §6.1: d ∈ [1, n-2]
        if not 1 <= value <= N - 2:
            raise InvalidKey("an SM2 private scalar must lie in [1, n-2]")
        return cls(_t_ec.derive_private_key(value, _CURVE))

    @classmethod
    def from_scalar_buffer(cls, d: bytearray | memoryview) -> SM2PrivateKey:
        """A key from a 32-byte big-endian scalar in a buffer the caller owns and wipes,
        making no Python copy of it: no ``bytes``, no ``int`` (``from_scalar`` makes both, and
        tongsuopy's ``derive_private_key`` one more). Tongsuo reads the buffer in place
        (``BN_bin2bn``); its BIGNUMs are freed with ``BN_clear_free``, which zeroes them, when the
        key object goes (``EC_KEY_free``). Raises InvalidKey unless 1 <= d <= n-2."""
        from tongsuopy.backends.tongsuo import backend as be
        from tongsuopy.backends.tongsuo.ec import _EllipticCurvePrivateKey

        if len(d) != 32:
            raise InvalidKey(f"an SM2 private scalar is 32 bytes, got {len(d)}")
        if not _in_range(d):
            raise InvalidKey("an SM2 private scalar must lie in [1, n-2]")
        lib, ffi = be._lib, be._ffi
        ec_cdata = be._ec_key_new_by_curve(_CURVE)
        group = lib.EC_KEY_get0_group(ec_cdata)
        scalar = lib.BN_bin2bn(ffi.from_buffer(d), 32, ffi.NULL)
        be.openssl_assert(scalar != ffi.NULL)
        try:
            point = ffi.gc(lib.EC_POINT_new(group), lib.EC_POINT_free)
            be.openssl_assert(point != ffi.NULL)
            bn_ctx = ffi.gc(lib.BN_CTX_new(), lib.BN_CTX_free)
            be.openssl_assert(
                lib.EC_POINT_mul(group, point, scalar, ffi.NULL, ffi.NULL, bn_ctx) == 1
            )
            be.openssl_assert(lib.EC_KEY_set_public_key(ec_cdata, point) == 1)
            be.openssl_assert(lib.EC_KEY_set_private_key(ec_cdata, scalar) == 1)
        finally:
            lib.BN_clear_free(scalar)
        evp_pkey = be._ec_cdata_to_evp_pkey(ec_cdata)
        return cls(_EllipticCurvePrivateKey(be, ec_cdata, evp_pkey))

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> SM2PrivateKey:
        try:
            key = _t_ser.load_pem_private_key(pem, password)
        except (ValueError, TypeError, _TUnsupported) as exc:
            raise InvalidKey(f"not a PEM SM2 private key: {exc}") from None
        if not isinstance(key, _t_ec.EllipticCurvePrivateKey):
            raise InvalidKey("not an elliptic-curve private key")
        return cls(key)

    @property
    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """Raw ``r || s`` over ``message`` with Z over the default ID."""
        return der_to_raw(self.sign_der(message))

    def sign_der(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message, _ALGORITHM))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Open a DER ``SM2Cipher``; raises InvalidKey if it was not sealed to this key or was
        altered (the SM3 hash inside does not match)."""
        return _pkey_crypt(self._key, ciphertext, encrypt=False)

    def pkcs8_der(self) -> bytes:
        """Unencrypted PKCS#8 DER: what a token unwraps into an EC private key object."""
        return bytes(
            self._key.private_bytes(
                _t_ser.Encoding.DER,
                _t_ser.PrivateFormat.PKCS8,
                _t_ser.NoEncryption(),
            )
        )

    def pkcs8_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM, for handing to the OpenSSL CLI in tests."""
        return bytes(
            self._key.private_bytes(
                _t_ser.Encoding.PEM,
                _t_ser.PrivateFormat.PKCS8,
                _t_ser.NoEncryption(),
            )
        )

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self._public.compressed.hex()})"


_N_MINUS_1: Final = (N - 1).to_bytes(32, "big")


def _in_range(d: bytearray | memoryview) -> bool:
    """1 <= d <= n-2 for a 32-byte big-endian d, compared byte by byte (no int of d)."""
    nonzero = 0
    below = 0  # d < n-1, decided at the first byte that differs
    decided = 0
    for i in range(32):
        byte, limit = d[i], _N_MINUS_1[i]
        nonzero |= byte
        if not decided and byte != limit:
            below = 1 if byte < limit else 0
            decided = 1
    return bool(nonzero) and bool(below)


def _pkey_crypt(key: object, data: bytes, *, encrypt: bool) -> bytes:
    """EVP_PKEY_encrypt/decrypt on an SM2 key through tongsuopy's binding (tongsuopy has no
    public API for SM2 encryption; the primitive runs in Tongsuo)."""
    from tongsuopy.backends.tongsuo import backend as be

    lib, ffi = be._lib, be._ffi
    evp_pkey = key._evp_pkey  # type: ignore[attr-defined]
    ctx = ffi.gc(lib.EVP_PKEY_CTX_new(evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
    init, run = (
        (lib.EVP_PKEY_encrypt_init, lib.EVP_PKEY_encrypt)
        if encrypt
        else (lib.EVP_PKEY_decrypt_init, lib.EVP_PKEY_decrypt)
    )
    what = "encrypt" if encrypt else "decrypt"
    if ctx == ffi.NULL or init(ctx) != 1:
        be._consume_errors()
        raise InvalidKey(f"cannot {what} with this SM2 key")
    out_len = ffi.new("size_t *")
    if run(ctx, ffi.NULL, out_len, data, len(data)) != 1:
        be._consume_errors()
        raise InvalidKey(f"SM2 {what}ion refused the input ({len(data)} bytes)")
    buf = ffi.new("unsigned char[]", out_len[0])
    if run(ctx, buf, out_len, data, len(data)) != 1:
        be._consume_errors()
        raise InvalidKey(f"SM2 {what}ion failed: wrong key or altered ciphertext")
    result = bytes(ffi.buffer(buf)[: out_len[0]])
    ffi.memmove(buf, b"\x00" * out_len[0], out_len[0])
    return result


def sm2_z(public_key: SM2PublicKey, user_id: bytes = DEFAULT_ID) -> bytes:
    """``Z = SM3(ENTL || ID || a || b || Gx || Gy || Px || Py)`` (GB/T 32918.2 §5.5).

    Tongsuo computes Z itself when it signs; this is for tokens whose vendor mechanism signs a
    pre-hashed ``e = SM3(Z || M)`` and for checking the standard's worked example.
    """
    entl = len(user_id) * 8
    if entl > 0xFFFF:
        raise ValueError("SM2 user ID longer than 8191 bytes")
    return sm3(
        entl.to_bytes(2, "big"),
        user_id,
        _b32(A),
        _b32(B),
        _b32(GX),
        _b32(GY),
        _b32(public_key.x),
        _b32(public_key.y),
    )


def sm2_digest(public_key: SM2PublicKey, message: bytes, user_id: bytes = DEFAULT_ID) -> bytes:
    """``e = SM3(Z || M)``, the value an SM2 signature actually signs."""
    return sm3(sm2_z(public_key, user_id), message)
