"""RFC 9162 §2.1 Merkle trees with SM3 in place of SHA-256.

    leaf hash  = SM3(0x00 ‖ entry)
    node hash  = SM3(0x01 ‖ left ‖ right)
    MTH({})    = SM3()                      (the empty tree)

A tree is read through a ``SubtreeSource``: the hash of every *perfect* subtree (2^level leaves,
aligned) that is complete. Those hashes never change once written, so a store keeps them and
any root, inclusion proof or consistency proof at any size costs O(log n) lookups
(``subtree_hash``). Proof generation follows RFC 9162 §2.1.3.1 and §2.1.4.1; verification is the
algorithm of §2.1.3.2 and §2.1.4.2 word for word, and raises ``ProofError`` naming what failed
(verification never returns a bare bool). ``TreeHasher`` takes the hash function so the same code
is checked against the RFC 6962 SHA-256 vectors (tests/vectors/merkle_rfc6962.json).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from hsm.errors import JtcaError
from hsm.sm.sm3 import sm3

HASH_SIZE: Final = 32


class ProofError(JtcaError):
    """A proof or a tree that does not verify; the message names what failed."""

    title = "Merkle proof"
    exit_code = 8


@dataclass(frozen=True, slots=True)
class TreeHasher:
    """RFC 9162 §2.1.1 domain-separated hashing over one hash function."""

    digest: Callable[..., bytes]

    def empty_root(self) -> bytes:
        return self.digest(b"")

    def leaf(self, entry: bytes) -> bytes:
        return self.digest(b"\x00", entry)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.digest(b"\x01", left, right)


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


SM3_HASHER: Final = TreeHasher(sm3)
SHA256_HASHER: Final = TreeHasher(_sha256)  # RFC 6962's own vectors only: never for the log


def leaf_hash(entry: bytes) -> bytes:
    return SM3_HASHER.leaf(entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    return SM3_HASHER.node(left, right)


class SubtreeSource(Protocol):
    """The hashes of a tree's complete perfect subtrees."""

    @property
    def size(self) -> int: ...

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of leaves ``[index·2^level, (index+1)·2^level)``; all of them exist."""
        ...


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` ≥ 2): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(source: SubtreeSource, size: int) -> None:
    if size < 0 or size > source.size:
        raise ProofError(f"tree size {size} is outside the log (it holds {source.size} entries)")


def subtree_hash(
    source: SubtreeSource, start: int, end: int, hasher: TreeHasher = SM3_HASHER
) -> bytes:
    """MTH(D[start:end]) from perfect subtrees: O(log n) lookups."""
    width = end - start
    if width <= 0:
        raise ProofError(f"empty range [{start}, {end})")
    if width & (width - 1) == 0 and start % width == 0:
        return source.perfect(width.bit_length() - 1, start // width)
    k = split_point(width)
    return hasher.node(
        subtree_hash(source, start, start + k, hasher), subtree_hash(source, start + k, end, hasher)
    )


def root_hash(
    source: SubtreeSource, size: int | None = None, hasher: TreeHasher = SM3_HASHER
) -> bytes:
    """The tree head of the first ``size`` entries (the whole log by default)."""
    n = source.size if size is None else size
    _check_size(source, n)
    return hasher.empty_root() if n == 0 else subtree_hash(source, 0, n, hasher)


def inclusion_proof(
    source: SubtreeSource, index: int, size: int, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf side first."""
    _check_size(source, size)
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # walk down from the root, then reverse (the RFC's recursion order)
        k = split_point(end - start)
        if index < start + k:
            path.append(subtree_hash(source, start + k, end, hasher))
            end = start + k
        else:
            path.append(subtree_hash(source, start, start + k, hasher))
            start = start + k
    path.reverse()
    return path


def consistency_proof(
    source: SubtreeSource, first: int, second: int, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """PROOF(first, D[0:second]) of RFC 9162 §2.1.4.1 (empty when ``first == second``)."""
    _check_size(source, second)
    if not 1 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    proof: list[bytes] = []
    start, end, m, whole = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                proof.append(subtree_hash(source, start, end, hasher))
            break
        k = split_point(n)
        if m <= k:
            proof.append(subtree_hash(source, start + k, end, hasher))
            end = start + k
        else:
            proof.append(subtree_hash(source, start, start + k, hasher))
            start, m, whole = start + k, m - k, False
    proof.reverse()
    return proof


def _check_lengths(proof: Sequence[bytes], **hashes: bytes) -> None:
    for name, value in hashes.items():
        if len(value) != HASH_SIZE:
            raise ProofError(f"the {name.replace('_', ' ')} is {len(value)} bytes, not {HASH_SIZE}")
    for n, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise ProofError(f"proof hash {n} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    index: int,
    size: int,
    leaf: bytes,
    proof: Sequence[bytes],
    root: bytes,
    hasher: TreeHasher = SM3_HASHER,
) -> None:
    """RFC 9162 §2.1.3.2. Raises ProofError; returns nothing when the leaf is in the tree."""
    _check_lengths(leaf=leaf, root=root, proof=proof)
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"the inclusion proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = hasher.node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hasher.node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the inclusion proof is too short ({len(proof)} hashes)")
    if r != root:
        raise ProofError(
            f"entry {index} is not in the tree of size {size} with root {root.hex()}: the proof "
            f"leads to {r.hex()}"
        )


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
    hasher: TreeHasher = SM3_HASHER,
) -> None:
    """RFC 9162 §2.1.4.2: the tree of size ``second`` extends the one of size ``first``."""
    _check_lengths(first_root=first_root, second_root=second_root, proof=proof)
    if not 1 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == second:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for the same size {first}")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = hasher.node(c, fr)
            sr = hasher.node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hasher.node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the consistency proof is too short ({len(proof)} hashes)")
    if fr != first_root:
        raise ProofError(
            f"the tree of size {second} does not extend the tree of size {first}: the proof "
            f"gives {fr.hex()} for size {first}, the checkpoint says {first_root.hex()}"
        )
    if sr != second_root:
        raise ProofError(
            f"the consistency proof from size {first} leads to {sr.hex()}, not the root "
            f"{second_root.hex()} of size {second}"
        )


class MemoryTree:
    """A whole tree in memory (auditors' bundles, tests, benchmarks): every perfect subtree kept
    as it completes, so roots and proofs at any size are O(log n)."""

    __slots__ = ("_hasher", "_levels")

    def __init__(self, hasher: TreeHasher = SM3_HASHER) -> None:
        self._hasher = hasher
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append_leaf_hash(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index."""
        levels = self._levels
        levels[0].append(leaf)
        level = 0
        while len(levels[level]) % 2 == 0:
            row = levels[level]
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(self._hasher.node(row[-2], row[-1]))
            level += 1
        return self.size - 1

    def append(self, entry: bytes) -> int:
        return self.append_leaf_hash(self._hasher.leaf(entry))

    def perfect(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self, size, self._hasher)

    def nodes(self) -> Iterator[tuple[int, int, bytes]]:
        """Every perfect subtree above the leaves, as ``(level, index, hash)``."""
        for level, row in enumerate(self._levels[1:], 1):
            for index, digest in enumerate(row):
                yield level, index, digest


def completed_nodes(
    index: int, leaf: bytes, sibling: Callable[[int, int], bytes], hasher: TreeHasher = SM3_HASHER
) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees that adding leaf ``index`` completes, as ``(level, index, hash)``
    with level ≥ 1: what a store writes beside the leaf. ``sibling(level, index)`` reads an
    existing perfect subtree (the left neighbours, all complete)."""
    made: list[tuple[int, int, bytes]] = []
    level, position, current = 0, index, leaf
    while position & 1:
        current = hasher.node(sibling(level, position - 1), current)
        level, position = level + 1, position >> 1
        made.append((level, position, current))
    return made
