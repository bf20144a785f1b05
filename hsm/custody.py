"""M-of-N custody of a secret (a token PIN, a backup-wrapping key) with Shamir's scheme.

Splitting and combining run in pycryptodome (``Crypto.Protocol.SecretSharing.Shamir``), which
shares 16-byte blocks; a longer secret is length-prefixed, padded to whole blocks and each block
shared under the same custodian indexes.

A share is printable text a custodian can copy by hand, in groups of five::

    JTCA1-2OF3-1-7F3A2C91-<base32 payload>-<check>

- ``2OF3``: threshold and number of shares; ``1``: this custodian's index;
- ``7F3A2C91``: the set, so shares of different splits are never mixed;
- the payload carries SM3(secret)[:4], so a combination of genuine shares from the same set that
  still yields a wrong secret is caught;
- ``check``: SM3 over everything before it, so a mistyped share is caught *before* combining,
  naming the share that is wrong.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from typing import Final

from Crypto.Protocol.SecretSharing import Shamir

from hsm.errors import JtcaError
from hsm.sm.sm3 import sm3

PREFIX: Final = "JTCA1"
BLOCK: Final = 16
MAX_SECRET: Final = 255
_HEADER = re.compile(r"^JTCA1-(\d+)OF(\d+)-(\d+)-([0-9A-F]{8})-([A-Z2-7]+)-([0-9A-F]{8})$")


class ShareError(JtcaError):
    title = "Bad share"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class Share:
    threshold: int
    total: int
    index: int
    set_id: str
    digest: bytes  # SM3(secret)[:4]
    blocks: tuple[bytes, ...]

    def text(self) -> str:
        payload = base64.b32encode(self.digest + b"".join(self.blocks)).decode().rstrip("=")
        body = f"{PREFIX}-{self.threshold}OF{self.total}-{self.index}-{self.set_id}-{payload}"
        return f"{body}-{_check(body)}"


def _check(body: str) -> str:
    return sm3(body.encode("ascii")).hex()[:8].upper()


def split_secret(secret: bytes, threshold: int, total: int) -> list[str]:
    """Split ``secret`` into ``total`` printable shares, any ``threshold`` of which rebuild it."""
    if not 2 <= threshold <= total <= 255:
        raise ShareError(f"need 2 ≤ threshold ≤ shares ≤ 255, got {threshold} of {total}")
    if not 1 <= len(secret) <= MAX_SECRET:
        raise ShareError(f"a shared secret is 1 to {MAX_SECRET} bytes, got {len(secret)}")
    framed = bytes((len(secret),)) + secret
    framed += bytes(-len(framed) % BLOCK)
    per_block = [
        Shamir.split(threshold, total, framed[i : i + BLOCK]) for i in range(0, len(framed), BLOCK)
    ]
    set_id = secrets.token_hex(4).upper()
    digest = sm3(secret)[:4]
    shares = []
    for n in range(total):
        index = per_block[0][n][0]
        blocks = tuple(block_shares[n][1] for block_shares in per_block)
        shares.append(Share(threshold, total, index, set_id, digest, blocks).text())
    return shares


def parse_share(text: str, position: int = 1) -> Share:
    """Parse one share, refusing it (with its position in the list) if it was mistyped."""
    compact = "".join(text.split()).upper()
    match = _HEADER.match(compact)
    if not match:
        raise ShareError(f"share {position} is not a jtca share (expected {PREFIX}-MOFN-…)")
    threshold, total, index = int(match[1]), int(match[2]), int(match[3])
    body = compact[: compact.rfind("-")]
    if _check(body) != match[6]:
        raise ShareError(f"share {position} (custodian {index}) fails its checksum: mistyped?")
    raw = base64.b32decode(match[5] + "=" * (-len(match[5]) % 8))
    if len(raw) < 4 + BLOCK or (len(raw) - 4) % BLOCK:
        raise ShareError(f"share {position} has a payload of the wrong length")
    blocks = tuple(raw[i : i + BLOCK] for i in range(4, len(raw), BLOCK))
    if not 1 <= index <= total or not 2 <= threshold <= total:
        raise ShareError(
            f"share {position} names custodian {index} of {total}, threshold {threshold}"
        )
    return Share(threshold, total, index, match[4], raw[:4], blocks)


def combine_secret(texts: list[str]) -> bytes:
    """Rebuild the secret from at least ``threshold`` shares of one set."""
    shares = [parse_share(t, i) for i, t in enumerate(texts, 1)]
    if not shares:
        raise ShareError("no shares given")
    first = shares[0]
    for i, share in enumerate(shares[1:], 2):
        if (share.set_id, share.threshold, share.total) != (
            first.set_id,
            first.threshold,
            first.total,
        ):
            raise ShareError(
                f"share {i} belongs to another split (set {share.set_id}, not {first.set_id})"
            )
        if len(share.blocks) != len(first.blocks) or share.digest != first.digest:
            raise ShareError(
                f"share {i} does not match share 1 (different secret length or digest)"
            )
    indexes = [s.index for s in shares]
    if len(set(indexes)) != len(indexes):
        raise ShareError(f"the same custodian's share was given twice (indexes {indexes})")
    if len(shares) < first.threshold:
        raise ShareError(
            f"{len(shares)} share(s) given; this secret needs {first.threshold} of {first.total}"
        )
    chosen = shares[: first.threshold]
    framed = b"".join(
        Shamir.combine([(s.index, s.blocks[b]) for s in chosen]) for b in range(len(first.blocks))
    )
    length = framed[0]
    secret = framed[1 : 1 + length]
    if length == 0 or sm3(secret)[:4] != first.digest:
        raise ShareError("the shares do not combine to the secret they were split from")
    return secret
