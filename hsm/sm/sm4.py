"""SM4 (GB/T 32907-2016) through ``cryptography``.

A key may be a ``bytearray`` the caller wipes: ``cryptography`` reads it in place (no copy of
ours) into OpenSSL's cipher context, which is cleansed when the context is freed.
"""

from __future__ import annotations

from typing import cast

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hsm.errors import InvalidKey

SM4_BLOCK = 16
SM4_KEY_SIZE = 16
KCV_SIZE = 3


def _cipher(key: bytes | bytearray) -> Cipher[modes.ECB]:
    if len(key) != SM4_KEY_SIZE:
        raise InvalidKey(f"an SM4 key is {SM4_KEY_SIZE} bytes, got {len(key)}")
    # cryptography types the key as bytes but takes any bytes-like object, read in place
    return Cipher(algorithms.SM4(cast(bytes, key)), modes.ECB())  # noqa: S305 - single blocks by design


def sm4_encrypt_block(key: bytes | bytearray, block: bytes) -> bytes:
    """Encrypt exactly one 16-byte block (the building block of the GB/T 32907 examples)."""
    if len(block) != SM4_BLOCK:
        raise ValueError(f"an SM4 block is {SM4_BLOCK} bytes, got {len(block)}")
    enc = _cipher(key).encryptor()
    return enc.update(block) + enc.finalize()


def sm4_decrypt_block(key: bytes | bytearray, block: bytes) -> bytes:
    if len(block) != SM4_BLOCK:
        raise ValueError(f"an SM4 block is {SM4_BLOCK} bytes, got {len(block)}")
    dec = _cipher(key).decryptor()
    return dec.update(block) + dec.finalize()


def sm4_key_check_value(key: bytes | bytearray, size: int = KCV_SIZE) -> bytes:
    """Key check value: the first ``size`` bytes of SM4 over a zero block (the usual KCV)."""
    if not 1 <= size <= SM4_BLOCK:
        raise ValueError(f"a key check value is 1-{SM4_BLOCK} bytes, got {size}")
    return sm4_encrypt_block(key, bytes(SM4_BLOCK))[:size]
