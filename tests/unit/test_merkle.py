"""The log's Merkle tree (ca.log.merkle, RFC 9162 §2.1) checked three ways.

1. **Another implementation's numbers.** The RFC 6962 SHA-256 vectors published with the
   Certificate Transparency reference code (tests/vectors/merkle_rfc6962.json, with the
   repository, paths and commits they were copied from): every root, perfect subtree, inclusion
   and consistency proof of the reference tree, and every verification probe (valid and
   mutated), run through the same functions with ``SHA256_HASHER``.
2. **Another algorithm and another SM3.** For SM3 trees, the recursive definitions of RFC 9162
   (MTH, PATH, PROOF/SUBPROOF) written out naively here over gmssl's pure-Python SM3 (a
   test-only dependency), against ``MemoryTree`` and the O(log n) proof generation.
3. **Properties.** For random trees up to 300 leaves and a few sparse trees of up to 2^62
   leaves, every inclusion and consistency proof verifies, and every flipped bit (proof, leaf,
   roots), wrong index or size, truncated or extended proof is refused with ``ProofError``.

And ``completed_nodes`` (what a store writes beside each leaf) is exactly the set of perfect
subtrees ``MemoryTree`` holds, so a store built from it answers the same roots and proofs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from gmssl.func import bytes_to_list
from gmssl.sm3 import sm3_hash
from hypothesis import given, settings
from hypothesis import strategies as st

from ca.log.merkle import (
    HASH_SIZE,
    SHA256_HASHER,
    SM3_HASHER,
    MemoryTree,
    ProofError,
    TreeHasher,
    completed_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    split_point,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from hsm.sm.sm3 import sm3

VECTORS: Final[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "merkle_rfc6962.json").read_text()
)


def _h(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _refused(check: Callable[[], object]) -> ProofError:
    with pytest.raises(ProofError) as caught:
        check()
    assert caught.value.message  # named, never a bare failure
    return caught.value


# -- 1. RFC 6962 vectors (SHA-256), another implementation's numbers --------------------------
def _reference_tree() -> MemoryTree:
    tree = MemoryTree(SHA256_HASHER)
    for data in VECTORS["leaf_inputs"]:
        tree.append(bytes.fromhex(data))
    return tree


def test_the_vectors_say_where_they_come_from() -> None:
    provenance = VECTORS["provenance"]
    assert provenance["repository"] == "https://github.com/transparency-dev/merkle"
    assert len(provenance["commit"]) == 40
    assert len(provenance["commit_of_proof_vectors"]) == 40
    assert set(provenance["files"]) >= {"leaf_inputs", "roots", "inclusion_proofs"}


@pytest.mark.parametrize("vector", VECTORS["hasher"], ids=lambda v: v["desc"])
def test_rfc6962_hasher(vector: dict[str, str]) -> None:
    want = bytes.fromhex(vector["want"])
    if vector["kind"] == "empty":
        assert SHA256_HASHER.empty_root() == want
    elif vector["kind"] == "leaf":
        assert SHA256_HASHER.leaf(bytes.fromhex(vector["input"])) == want
    else:
        left, right = bytes.fromhex(vector["left"]), bytes.fromhex(vector["right"])
        assert SHA256_HASHER.node(left, right) == want


def test_rfc6962_roots_at_every_size() -> None:
    tree = _reference_tree()
    assert [tree.root(n).hex() for n in range(tree.size + 1)] == VECTORS["roots"]
    empty = MemoryTree(SHA256_HASHER)
    assert empty.root().hex() == VECTORS["roots"][0]


def test_rfc6962_perfect_subtrees() -> None:
    tree = _reference_tree()
    for level, row in enumerate(VECTORS["node_hashes"]):
        assert [tree.perfect(level, i).hex() for i in range(len(row))] == row
        assert [
            subtree_hash(tree, i << level, (i + 1) << level, SHA256_HASHER).hex()
            for i in range(len(row))
        ] == row


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['index']}-of-{v['size']}"
)
def test_rfc6962_inclusion_proofs(vector: dict[str, Any]) -> None:
    tree = _reference_tree()
    index, size = vector["index"], vector["size"]
    proof = inclusion_proof(tree, index, size, SHA256_HASHER)
    assert [p.hex() for p in proof] == vector["proof"]
    verify_inclusion(index, size, tree.perfect(0, index), proof, tree.root(size), SHA256_HASHER)


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['first']}-to-{v['second']}"
)
def test_rfc6962_consistency_proofs(vector: dict[str, Any]) -> None:
    tree = _reference_tree()
    first, second = vector["first"], vector["second"]
    proof = consistency_proof(tree, first, second, SHA256_HASHER)
    assert [p.hex() for p in proof] == vector["proof"]
    verify_consistency(first, second, tree.root(first), tree.root(second), proof, SHA256_HASHER)


def test_rfc6962_every_inclusion_and_consistency_proof_of_the_reference_tree() -> None:
    """Beyond the published proofs: all of them, each verified, each against the published
    root of its size."""
    tree = _reference_tree()
    roots = _h(VECTORS["roots"])
    for size in range(1, tree.size + 1):
        for index in range(size):
            proof = inclusion_proof(tree, index, size, SHA256_HASHER)
            verify_inclusion(index, size, tree.perfect(0, index), proof, roots[size], SHA256_HASHER)
        for first in range(1, size + 1):
            proof = consistency_proof(tree, first, size, SHA256_HASHER)
            verify_consistency(first, size, roots[first], roots[size], proof, SHA256_HASHER)


def _probe_params(cases: list[dict[str, Any]]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case["file"].removeprefix("testdata/"),
        )
        for case in cases
    ]


@pytest.mark.parametrize("case", _probe_params(VECTORS["inclusion_cases"]))
def test_rfc6962_inclusion_probes(case: dict[str, Any]) -> None:
    def check() -> None:
        verify_inclusion(
            case["index"],
            case["size"],
            bytes.fromhex(case["leaf_hash"]),
            _h(case["proof"]),
            bytes.fromhex(case["root"]),
            SHA256_HASHER,
        )

    if case["want_error"]:
        _refused(check)
    else:
        check()


@pytest.mark.parametrize("case", _probe_params(VECTORS["consistency_cases"]))
def test_rfc6962_consistency_probes(case: dict[str, Any]) -> None:
    def check() -> None:
        verify_consistency(
            case["first"],
            case["second"],
            bytes.fromhex(case["first_root"]),
            bytes.fromhex(case["second_root"]),
            _h(case["proof"]),
            SHA256_HASHER,
        )

    # jtca is stricter than the reference in one way: every hash must be 32 bytes, so the
    # reference's "equal sizes, empty proof" probe with 12-byte roots is refused here.
    odd = any(len(bytes.fromhex(case[k])) != 32 for k in ("first_root", "second_root"))
    if case["want_error"] or odd:
        _refused(check)
    else:
        check()


# -- 2. SM3 trees against RFC 9162's recursive definitions over gmssl's SM3 --------------------
def _gmssl_sm3(*parts: bytes) -> bytes:
    return bytes.fromhex(sm3_hash(bytes_to_list(b"".join(parts))))


class Naive:
    """RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 as written: recursion over the entry list."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = list(entries)
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        if (start, end) not in self._mth:
            n = end - start
            if n == 0:
                value = _gmssl_sm3()
            elif n == 1:
                value = _gmssl_sm3(b"\x00", self.entries[start])
            else:
                k = 1
                while k * 2 < n:
                    k *= 2
                value = _gmssl_sm3(b"\x01", self.mth(start, start + k), self.mth(start + k, end))
            self._mth[(start, end)] = value
        return self._mth[(start, end)]

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end])."""
        n = end - start
        if n == 1:
            return []
        k = 1
        while k * 2 < n:
            k *= 2
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b)."""
        n = end - start
        if m == n:
            return [] if whole else [self.mth(start, end)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return [*self.subproof(m, start, start + k, whole), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


def _entries(n: int, tag: bytes = b"entry") -> list[bytes]:
    return [tag + b" %d" % i for i in range(n)]


def test_sm3_tree_hashing_is_rfc9162_with_sm3() -> None:
    entry = b"jtca"
    assert leaf_hash(entry) == sm3(b"\x00" + entry) == _gmssl_sm3(b"\x00", entry)
    left, right = sm3(b"L"), sm3(b"R")
    assert node_hash(left, right) == _gmssl_sm3(b"\x01", left, right)
    assert MemoryTree().root() == _gmssl_sm3() == SM3_HASHER.empty_root()
    assert len(leaf_hash(b"")) == HASH_SIZE


@pytest.mark.parametrize("size", [*range(1, 34), 63, 64, 65, 100])
def test_sm3_roots_and_proofs_match_the_naive_definitions(size: int) -> None:
    entries = _entries(size)
    naive = Naive(entries)
    tree = MemoryTree()
    for entry in entries:
        tree.append(entry)
    for n in range(size + 1):
        assert tree.root(n) == root_hash(tree, n) == naive.mth(0, n)
    for index in range(size):
        assert inclusion_proof(tree, index, size) == naive.path(index, 0, size)
    for first in range(1, size + 1):
        assert consistency_proof(tree, first, size) == naive.subproof(first, 0, size, True)


def test_split_point_is_the_largest_power_of_two_below() -> None:
    for n in range(2, 2000):
        k = split_point(n)
        assert k < n <= 2 * k
        assert k & (k - 1) == 0


def test_sm3_and_sha256_trees_differ() -> None:
    """The same algorithms, another hash: the SHA-256 hasher is never the log's."""
    sm3_tree, sha_tree = MemoryTree(), MemoryTree(SHA256_HASHER)
    for entry in _entries(5):
        sm3_tree.append(entry)
        sha_tree.append(entry)
    assert sm3_tree.root() != sha_tree.root()


# -- 3. properties ----------------------------------------------------------------------------
MAX: Final = 300
TREE: Final = MemoryTree()
for _entry in _entries(MAX, b"property"):
    TREE.append(_entry)
ROOTS: Final = [TREE.root(n) for n in range(MAX + 1)]


def _flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def inclusion_case(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX))
    return draw(st.integers(0, size - 1)), size


@st.composite
def consistency_case(draw: st.DrawFn) -> tuple[int, int]:
    second = draw(st.integers(1, MAX))
    return draw(st.integers(1, second)), second


@settings(max_examples=400, deadline=None)
@given(inclusion_case(), st.integers(0, 1 << 16))
def test_every_inclusion_proof_verifies_and_any_flipped_bit_fails(
    case: tuple[int, int], bit: int
) -> None:
    index, size = case
    leaf, root = TREE.perfect(0, index), ROOTS[size]
    proof = inclusion_proof(TREE, index, size)
    verify_inclusion(index, size, leaf, proof, root)
    _refused(lambda: verify_inclusion(index, size, _flip(leaf, bit), proof, root))
    _refused(lambda: verify_inclusion(index, size, leaf, proof, _flip(root, bit)))
    for at in range(len(proof)):
        bad = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        _refused(lambda bad=bad: verify_inclusion(index, size, leaf, bad, root))


@settings(max_examples=300, deadline=None)
@given(inclusion_case(), st.integers(0, MAX), st.integers(1, MAX))
def test_an_inclusion_proof_is_for_one_index_and_one_tree(
    case: tuple[int, int], other_index: int, other_size: int
) -> None:
    """A wrong index always fails; a wrong size fails against that size's root. (A size on
    its own proves nothing: a checkpoint signs the size and the root together, and a proof is
    checked against both.)"""
    index, size = case
    leaf, proof = TREE.perfect(0, index), inclusion_proof(TREE, index, size)
    if other_index != index:
        _refused(lambda: verify_inclusion(other_index, size, leaf, proof, ROOTS[size]))
    if other_size != size:
        _refused(lambda: verify_inclusion(index, other_size, leaf, proof, ROOTS[other_size]))
    _refused(lambda: verify_inclusion(index, size, TREE.perfect(0, (index + 1) % MAX), proof,
                                      ROOTS[size]))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(inclusion_case(), st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), st.integers(0, 64))
def test_a_truncated_or_extended_inclusion_proof_fails(
    case: tuple[int, int], extra: bytes, where: int
) -> None:
    index, size = case
    leaf, root = TREE.perfect(0, index), ROOTS[size]
    proof = inclusion_proof(TREE, index, size)
    if proof:
        _refused(lambda: verify_inclusion(index, size, leaf, proof[:-1], root))
        _refused(lambda: verify_inclusion(index, size, leaf, proof[1:], root))
    at = where % (len(proof) + 1)
    for added in (extra, root, leaf):
        longer = [*proof[:at], added, *proof[at:]]
        _refused(lambda longer=longer: verify_inclusion(index, size, leaf, longer, root))


@settings(max_examples=400, deadline=None)
@given(consistency_case(), st.integers(0, 1 << 16))
def test_every_consistency_proof_verifies_and_any_flipped_bit_fails(
    case: tuple[int, int], bit: int
) -> None:
    first, second = case
    proof = consistency_proof(TREE, first, second)
    verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)
    _refused(lambda: verify_consistency(first, second, _flip(ROOTS[first], bit), ROOTS[second],
                                        proof))  # fmt: skip
    _refused(lambda: verify_consistency(first, second, ROOTS[first], _flip(ROOTS[second], bit),
                                        proof))  # fmt: skip
    for at in range(len(proof)):
        bad = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        _refused(
            lambda bad=bad: verify_consistency(first, second, ROOTS[first], ROOTS[second], bad)
        )


@settings(max_examples=300, deadline=None)
@given(consistency_case(), st.integers(1, MAX), st.integers(1, MAX))
def test_a_consistency_proof_is_for_one_pair_of_trees(
    case: tuple[int, int], other_first: int, other_second: int
) -> None:
    first, second = case
    proof = consistency_proof(TREE, first, second)
    if other_first != first:  # with its own root, or with the first tree's
        _refused(lambda: verify_consistency(other_first, second, ROOTS[other_first],
                                            ROOTS[second], proof))  # fmt: skip
        _refused(lambda: verify_consistency(other_first, second, ROOTS[first], ROOTS[second],
                                            proof))  # fmt: skip
    if other_second != second:
        _refused(lambda: verify_consistency(first, other_second, ROOTS[first],
                                            ROOTS[other_second], proof))  # fmt: skip
    if first != second:  # swapped roots
        _refused(lambda: verify_consistency(first, second, ROOTS[second], ROOTS[first], proof))


@settings(max_examples=300, deadline=None)
@given(consistency_case(), st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), st.integers(0, 64))
def test_a_truncated_or_extended_consistency_proof_fails(
    case: tuple[int, int], extra: bytes, where: int
) -> None:
    first, second = case
    r1, r2 = ROOTS[first], ROOTS[second]
    proof = consistency_proof(TREE, first, second)
    if proof:
        _refused(lambda: verify_consistency(first, second, r1, r2, proof[:-1]))
        _refused(lambda: verify_consistency(first, second, r1, r2, proof[1:]))
    at = where % (len(proof) + 1)
    for added in (extra, r1, r2):
        longer = [*proof[:at], added, *proof[at:]]
        _refused(lambda longer=longer: verify_consistency(first, second, r1, r2, longer))


def test_proofs_refuse_what_no_tree_has() -> None:
    leaf = TREE.perfect(0, 0)
    for index, size in ((0, 0), (-1, 5), (5, 5), (7, 3)):
        _refused(lambda index=index, size=size: verify_inclusion(index, size, leaf, [], leaf))
    for first, second in ((0, 0), (0, 5), (6, 5), (-1, 3)):
        _refused(lambda a=first, b=second: verify_consistency(a, b, leaf, leaf, []))
    _refused(lambda: verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]]))  # equal, not empty
    _refused(lambda: verify_consistency(3, 3, ROOTS[3], ROOTS[4], []))  # a split view
    _refused(lambda: verify_consistency(3, 5, ROOTS[3], ROOTS[5], []))
    # generation refuses too, naming the sizes
    assert "size 301" in _refused(lambda: inclusion_proof(TREE, 0, MAX + 1)).message
    assert "index 9" in _refused(lambda: inclusion_proof(TREE, 9, 9)).message
    _refused(lambda: consistency_proof(TREE, 0, 5))
    _refused(lambda: consistency_proof(TREE, 6, 5))
    _refused(lambda: consistency_proof(TREE, 1, MAX + 1))
    _refused(lambda: root_hash(TREE, MAX + 1))
    _refused(lambda: root_hash(TREE, -1))
    _refused(lambda: subtree_hash(TREE, 4, 4))


# -- large sparse trees ------------------------------------------------------------------------
class SparseTree:
    """A tree of up to 2^62 leaves where every leaf is the same entry except a few marked ones:
    a perfect subtree with no marked leaf has one hash per level, so any subtree costs
    O(level × marks) hashes while the algorithms see a real tree of that size."""

    def __init__(self, size: int, marked: dict[int, bytes]) -> None:
        self._size = size
        self.marked = marked
        self.uniform = [leaf_hash(b"the same entry")]
        for _ in range(64):
            self.uniform.append(node_hash(self.uniform[-1], self.uniform[-1]))
        self._perfect = cache(self._compute)

    @property
    def size(self) -> int:
        return self._size

    def leaf(self, index: int) -> bytes:
        return leaf_hash(self.marked[index]) if index in self.marked else self.uniform[0]

    def perfect(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self._size
        return self._perfect(level, index)

    def _compute(self, level: int, index: int) -> bytes:
        start, end = index << level, (index + 1) << level
        if not any(start <= m < end for m in self.marked):
            return self.uniform[level]
        if level == 0:
            return self.leaf(index)
        return node_hash(
            self._perfect(level - 1, 2 * index), self._perfect(level - 1, 2 * index + 1)
        )


def test_the_sparse_tree_is_a_tree() -> None:
    marked = {3: b"three", 40: b"forty", 41: b"forty-one", 99: b"ninety-nine"}
    sparse = SparseTree(130, marked)
    naive = Naive([marked.get(i, b"the same entry") for i in range(130)])
    for n in (1, 4, 41, 42, 64, 99, 100, 128, 129, 130):
        assert root_hash(sparse, n) == naive.mth(0, n)


LARGE_SIZES: Final = (
    (1 << 20) + 1,
    (1 << 31) - 1,
    (1 << 32) + 12345,
    (1 << 40) + (1 << 39) + 7,
    (1 << 62) - 3,
)


@pytest.mark.parametrize("size", LARGE_SIZES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_large_sparse_trees(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(1, size - 1), label="first")
    bit = data.draw(st.integers(0, 255), label="bit")
    marked = {index: b"the entry proved", first - 1: b"the first tree's last entry", 0: b"first"}
    tree = SparseTree(size, marked)
    root, first_root = root_hash(tree, size), root_hash(tree, first)
    leaf = tree.leaf(index)

    proof = inclusion_proof(tree, index, size)
    assert len(proof) <= (size - 1).bit_length()
    verify_inclusion(index, size, leaf, proof, root)
    _refused(lambda: verify_inclusion(index, size, _flip(leaf, bit), proof, root))
    _refused(lambda: verify_inclusion(index, size, leaf, proof, _flip(root, bit)))
    _refused(lambda: verify_inclusion(index, size, leaf, proof[:-1], root))
    _refused(lambda: verify_inclusion(index, size, leaf, [*proof, root], root))
    _refused(lambda: verify_inclusion(index ^ 1, size, leaf, proof, root))
    _refused(lambda: verify_inclusion(index, size + 1, leaf, proof, root_hash(
        SparseTree(size + 1, marked), size + 1)))  # fmt: skip
    for at in range(len(proof)):
        bad = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        _refused(lambda bad=bad: verify_inclusion(index, size, leaf, bad, root))

    proof = consistency_proof(tree, first, size)
    verify_consistency(first, size, first_root, root, proof)
    _refused(lambda: verify_consistency(first, size, _flip(first_root, bit), root, proof))
    _refused(lambda: verify_consistency(first, size, first_root, _flip(root, bit), proof))
    _refused(lambda: verify_consistency(first, size, first_root, root, proof[:-1]))
    _refused(lambda: verify_consistency(first, size, first_root, root, [*proof, root]))
    for at in range(len(proof)):
        bad = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        _refused(lambda bad=bad: verify_consistency(first, size, first_root, root, bad))


# -- 4. completed_nodes: what a store writes beside each leaf --------------------------------
class DictStore:
    """A store that keeps only what ``completed_nodes`` says to write, like ``log_node``."""

    def __init__(self, hasher: TreeHasher = SM3_HASHER) -> None:
        self.hasher = hasher
        self.nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def perfect(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def append_leaf_hash(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        made = completed_nodes(self._size, leaf, self.perfect, self.hasher)
        self.nodes[(0, self._size)] = leaf
        for level, index, value in made:
            assert (level, index) not in self.nodes  # written once, never rewritten
            self.nodes[(level, index)] = value
        self._size += 1
        return made


@pytest.mark.parametrize("hasher", [SM3_HASHER, SHA256_HASHER], ids=["sm3", "sha256"])
def test_completed_nodes_are_exactly_the_perfect_subtrees_the_tree_holds(
    hasher: TreeHasher,
) -> None:
    tree, store = MemoryTree(hasher), DictStore(hasher)
    for index, entry in enumerate(_entries(MAX, b"nodes")):
        leaf = hasher.leaf(entry)
        made = store.append_leaf_hash(leaf)
        tree.append_leaf_hash(leaf)
        size = index + 1
        # the perfect subtrees (level ≥ 1) whose last leaf is this one, lowest level first
        expected = [
            (level, (size >> level) - 1, tree.perfect(level, (size >> level) - 1))
            for level in range(1, size.bit_length())
            if size % (1 << level) == 0
        ]
        assert made == expected
    # the store answers every root and proof the tree does
    assert len(store.nodes) == sum(MAX >> level for level in range(MAX.bit_length()))
    above = {key: value for key, value in store.nodes.items() if key[0] >= 1}
    assert {(level, index): digest for level, index, digest in tree.nodes()} == above
    for size in range(1, MAX + 1, 7):
        assert root_hash(store, size, hasher) == tree.root(size)
        assert inclusion_proof(store, size // 2, size, hasher) == inclusion_proof(
            tree, size // 2, size, hasher
        )
        assert consistency_proof(store, max(1, size // 3), size, hasher) == consistency_proof(
            tree, max(1, size // 3), size, hasher
        )


def test_completed_nodes_reads_only_left_neighbours() -> None:
    """Adding leaf 11 (binary 1011) completes (1, 5) and (2, 2), reading (0, 10) and (1, 4)."""
    tree = MemoryTree()
    for entry in _entries(11):
        tree.append(entry)
    read: list[tuple[int, int]] = []

    def sibling(level: int, index: int) -> bytes:
        read.append((level, index))
        return tree.perfect(level, index)

    leaf = leaf_hash(b"entry 11")
    made = completed_nodes(11, leaf, sibling)
    assert read == [(0, 10), (1, 4)]
    tree.append(b"entry 11")
    assert made == [(1, 5, tree.perfect(1, 5)), (2, 2, tree.perfect(2, 2))]
    assert completed_nodes(12, leaf_hash(b"entry 12"), sibling) == []  # an even index: none
