"""An SM2 key for a city token that is a GM/T 0016 (SKF) device: the ``ENVELOPEDKEYBLOB``.

An SKF device imports an SM2 key pair with ``SKF_ImportECCKeyPair(hContainer,
PENVELOPEDKEYBLOB)``; this module writes that blob (and reads it back, for tests and checks).
GM/T 0016-2012 §6.4.8 fixes its layout, little-endian ``ULONG`` (32-bit) fields, 32-byte values
right-aligned in 64-byte fields (the ``ECC_MAX_*_BITS_LEN`` of 512 bits)::

    ENVELOPEDKEYBLOB {
        ULONG   Version;                 -- 1
        ULONG   ulSymmAlgID;             -- SGD_SM4_ECB 0x00000401
        ULONG   ulBits;                  -- 256
        BYTE    cbEncryptedPriKey[64];   -- SM4-ECB of the 32-byte scalar, right-aligned
        ECCPUBLICKEYBLOB PubKey {        -- the key pair's public point
            ULONG BitLen;                -- 256
            BYTE  XCoordinate[64];
            BYTE  YCoordinate[64]; }
        ECCCIPHERBLOB ECCCipherBlob {    -- the SM4 key, SM2-encrypted to the device's
            BYTE  XCoordinate[64];       --   encryption key (C1)
            BYTE  YCoordinate[64];
            BYTE  HASH[32];              --   C3
            ULONG CipherLen;             --   16
            BYTE  Cipher[CipherLen]; }   --   C2
    }

THE ONE PLACE jtca uses SM4-ECB: the device standard has no IV field and names
``SGD_SM4_ECB``; a device would not take anything else. The blob is not signed either (GM/T 0016
has no field for it): deliver it beside a signed GM/T 0010 package of the same key, or over a
channel that authenticates the sender (docs/keypackages.md). Everything else jtca sends is
SM4-CBC in GM/T 0010 (``hsm.envelope``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, cast

from hsm import gmt0010 as gm
from hsm.errors import InvalidKey, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey, _fresh_key, wipe
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey
from hsm.sm.sm4 import SM4_BLOCK, SM4_KEY_SIZE, sm4_decrypt_block, sm4_encrypt_block

VERSION: Final = 1
SGD_SM4_ECB: Final = 0x00000401  # GM/T 0006 / GM/T 0016 algorithm identifier
BITS: Final = 256
FIELD: Final = 64  # ECC_MAX_XCOORDINATE_BITS_LEN / 8 = ECC_MAX_MODULUS_BITS_LEN / 8
_HEAD: Final = struct.Struct("<III")
_ULONG: Final = struct.Struct("<I")
FIXED_SIZE: Final = _HEAD.size + FIELD + (4 + 2 * FIELD) + (2 * FIELD + 32 + 4)


class SkfBlobError(JtcaError):
    title = "Not an SKF ENVELOPEDKEYBLOB"
    exit_code = 4


def _right(value: bytes) -> bytes:
    """A value of at most 64 bytes right-aligned in a 64-byte field (GM/T 0016 §6.4.5)."""
    if len(value) > FIELD:
        raise SkfBlobError(f"a value of {len(value)} bytes does not fit a 64-byte field")
    return bytes(FIELD - len(value)) + value


@dataclass(frozen=True, slots=True)
class EnvelopedKeyBlob:
    version: int
    symm_alg_id: int
    bits: int
    encrypted_private_key: bytes  # the 32 bytes of cbEncryptedPriKey that carry it
    public_key: SM2PublicKey
    cipher_x: int
    cipher_y: int
    cipher_hash: bytes
    cipher: bytes

    def sm2_cipher_der(self) -> bytes:
        """The ECCCIPHERBLOB as the GM/T 0009 §7.2 DER SM2Cipher (C1C3C2) OpenSSL reads."""
        der: bytes = gm.SM2Cipher(
            {
                "x": self.cipher_x,
                "y": self.cipher_y,
                "hash": self.cipher_hash,
                "cipher_text": self.cipher,
            }
        ).dump()
        return der


def export_skf_blob(
    store: KeyStore, key: TokenKey, *, recipient_transport_key: SM2PublicKey
) -> bytes:
    """The SM2 key ``key`` (from ``store``'s token) as an ``ENVELOPEDKEYBLOB`` for an SKF device
    whose encryption public key is ``recipient_transport_key``."""
    if key.kind != KeyKind.SM2 or key.public_key is None:
        raise InvalidKey(f"{key.uri}: an ENVELOPEDKEYBLOB carries an SM2 key pair (with its point)")
    public_key = key.public_key
    symmetric = _fresh_key(SM4_KEY_SIZE)  # libcrypto RAND into our buffer
    try:

        def seal(scalar: bytearray) -> bytes:
            if len(scalar) != 32:
                raise InvalidKey(f"{key.uri}: an SM2 scalar is 32 bytes, got {len(scalar)}")
            out = []
            for i in range(0, 32, SM4_BLOCK):
                block = bytearray(scalar[i : i + SM4_BLOCK])
                try:
                    out.append(sm4_encrypt_block(symmetric, cast(bytes, block)))  # read in place
                finally:
                    wipe(block)
            return b"".join(out)

        encrypted = store.with_key_material(key.uri, seal)
        sealed = recipient_transport_key.encrypt(bytes(symmetric))
    finally:
        wipe(symmetric)
    cipher = gm.SM2Cipher.load(sealed, strict=True)
    c1x, c1y = int(cipher["x"].native), int(cipher["y"].native)
    c2 = bytes(cipher["cipher_text"].native)
    return b"".join(
        (
            _HEAD.pack(VERSION, SGD_SM4_ECB, BITS),
            _right(encrypted),
            _ULONG.pack(BITS),
            _right(public_key.x.to_bytes(32, "big")),
            _right(public_key.y.to_bytes(32, "big")),
            _right(c1x.to_bytes(32, "big")),
            _right(c1y.to_bytes(32, "big")),
            bytes(cipher["hash"].native),
            _ULONG.pack(len(c2)),
            c2,
        )
    )


def _value(field: bytes, what: str) -> bytes:
    """The 32-byte value right-aligned in a 64-byte field; the 32 bytes before it are zero."""
    if any(field[: FIELD - 32]):
        raise SkfBlobError(f"{what}: more than 32 bytes used of its 64-byte field")
    return field[FIELD - 32 :]


def read_skf_blob(data: bytes) -> EnvelopedKeyBlob:
    """Parse an ``ENVELOPEDKEYBLOB`` strictly: the sizes, Version 1, SGD_SM4_ECB, 256 bits, a
    public point on the curve, a 16-byte cipher and nothing after it."""
    if len(data) < FIXED_SIZE:
        raise SkfBlobError(f"{len(data)} bytes, an ENVELOPEDKEYBLOB is at least {FIXED_SIZE}")
    version, algorithm, bits = _HEAD.unpack_from(data, 0)
    if (version, algorithm, bits) != (VERSION, SGD_SM4_ECB, BITS):
        raise SkfBlobError(
            f"Version {version}, ulSymmAlgID 0x{algorithm:08x}, ulBits {bits}: expected 1, "
            f"SGD_SM4_ECB 0x{SGD_SM4_ECB:08x}, 256"
        )
    at = _HEAD.size
    encrypted = _value(data[at : at + FIELD], "cbEncryptedPriKey")
    at += FIELD
    (bit_len,) = _ULONG.unpack_from(data, at)
    if bit_len != BITS:
        raise SkfBlobError(f"PubKey.BitLen {bit_len}, expected 256")
    at += 4
    x = _value(data[at : at + FIELD], "PubKey.XCoordinate")
    y = _value(data[at + FIELD : at + 2 * FIELD], "PubKey.YCoordinate")
    at += 2 * FIELD
    try:
        public_key = SM2PublicKey.from_bytes(b"\x04" + x + y)
    except InvalidKey as exc:
        raise SkfBlobError(f"PubKey: {exc}") from None
    c1x = _value(data[at : at + FIELD], "ECCCipherBlob.XCoordinate")
    c1y = _value(data[at + FIELD : at + 2 * FIELD], "ECCCipherBlob.YCoordinate")
    at += 2 * FIELD
    digest = data[at : at + 32]
    at += 32
    (cipher_len,) = _ULONG.unpack_from(data, at)
    at += 4
    if cipher_len != SM4_KEY_SIZE or len(data) != at + cipher_len:
        raise SkfBlobError(
            f"ECCCipherBlob.CipherLen {cipher_len} with {len(data) - at} bytes left: expected "
            f"a 16-byte SM4 key and nothing after it"
        )
    return EnvelopedKeyBlob(
        version=version,
        symm_alg_id=algorithm,
        bits=bits,
        encrypted_private_key=encrypted,
        public_key=public_key,
        cipher_x=int.from_bytes(c1x, "big"),
        cipher_y=int.from_bytes(c1y, "big"),
        cipher_hash=digest,
        cipher=data[at:],
    )


def open_skf_blob(blob: EnvelopedKeyBlob, recipient: SM2PrivateKey) -> bytearray:
    """The scalar inside a blob, checked against its public point (what a device does on
    import): for tests; the caller wipes the result."""
    symmetric = bytearray(recipient.decrypt(blob.sm2_cipher_der()))
    try:
        scalar = bytearray(32)
        for i in range(0, 32, SM4_BLOCK):
            scalar[i : i + SM4_BLOCK] = sm4_decrypt_block(
                symmetric, blob.encrypted_private_key[i : i + SM4_BLOCK]
            )
    finally:
        wipe(symmetric)
    private = SM2PrivateKey.from_scalar_buffer(scalar)
    if private.public_key != blob.public_key:
        wipe(scalar)
        raise SkfBlobError("the decrypted private key does not match PubKey")
    return scalar
