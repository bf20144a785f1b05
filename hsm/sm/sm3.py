"""SM3 (GB/T 32905-2016) through ``cryptography``."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

SM3_DIGEST_SIZE = 32


def sm3(*parts: bytes) -> bytes:
    """SM3 digest of the concatenation of ``parts``."""
    h = hashes.Hash(hashes.SM3())
    for part in parts:
        h.update(part)
    return h.finalize()
