"""The log proof file (ca/log/proofbundle.py, docs/lists.md "The log proof file"), pure.

A log is built here in memory (``ca.log.merkle.MemoryTree``) from entries encoded by
``ca.log.entry``; its checkpoint is signed by a SoftwareSigner standing in for the audit key and
cosigned by two software witnesses. Every proof made for every object entry must verify, and any
flipped byte — in the object, in the entry, in any proof hash, anywhere in the checkpoint — must
fail, naming the step that caught it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ca.log import proofbundle as pb
from ca.log.anchors import Anchor, AnchorError, verifiers_from
from ca.log.entry import LogEntry, canonical
from ca.log.merkle import MemoryTree, inclusion_proof
from ca.log.note import (
    COSIGNATURE_TYPE,
    Checkpoint,
    SignedNote,
    Verifier,
    cosign,
    sign_checkpoint,
)
from ca.pki.x509 import LOG_SIGNING_EKU, issue_certificate, key_identifier, pem, self_signed_root
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der
from hsm.sm.sm3 import sm3

ORIGIN = "jtca.mot.gov.cn/audit"
NOW = 1_773_561_600  # 2026-03-15T08:00:00Z
KINDS = ("event", "list", "certificate", "event", "package", "list", "event")


def der_signer(signer: SoftwareSigner):  # type: ignore[no-untyped-def]
    return lambda message: raw_to_der(signer.sign(message))


@dataclass
class World:
    tree: MemoryTree
    entries: list[bytes]
    objects: dict[int, bytes]  # index -> the object's bytes
    audit: SoftwareSigner
    witnesses: list[tuple[str, SoftwareSigner]]

    def note(self, size: int, *, cosigned: int = 2) -> str:
        point = Checkpoint(ORIGIN, size, self.tree.root(size))
        note = sign_checkpoint(point, ORIGIN, self.audit.public_key, der_signer(self.audit))
        for name, signer in self.witnesses[:cosigned]:
            line = cosign(note, name, signer.public_key, NOW + 5, der_signer(signer))
            note = note.with_signature(line)
        return note.text()

    def proof(self, index: int, size: int | None = None, **note: int) -> bytes:
        size = self.tree.size if size is None else size
        return pb.build(
            self.entries[index],
            index,
            size,
            inclusion_proof(self.tree, index, size),
            self.note(size, **note),
        )

    @property
    def verifiers(self) -> list[Verifier]:
        return [Verifier(ORIGIN, self.audit.public_key)]

    @property
    def witness_verifiers(self) -> list[Verifier]:
        return [Verifier(n, s.public_key, COSIGNATURE_TYPE) for n, s in self.witnesses]


def make_world(count: int = len(KINDS) * 3, actor: str = "ministry-officer-1") -> World:
    tree = MemoryTree()
    entries: list[bytes] = []
    objects: dict[int, bytes] = {}
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        obj = f"object {i}: 城市名单 ".encode() * (i + 1) if kind != "event" else None
        entry = LogEntry(
            seq=i + 1,
            at=NOW + i,
            kind=kind,
            actor=actor,
            action="list.publish" if kind == "list" else f"test.{kind}",
            subject=f"city-list {i}",
            object_sm3=sm3(obj).hex() if obj is not None else None,
            details=canonical({"i": i, "名": "测试"}),
        ).encode()
        entries.append(entry)
        tree.append(entry)
        if obj is not None:
            objects[i] = obj
    witnesses = [(f"witness.{p}.example", SoftwareSigner.generate()) for p in ("440000", "110000")]
    return World(tree, entries, objects, SoftwareSigner.generate(), witnesses)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def step_of(bundle: bytes, obj: bytes, w: World, quorum: int = 0) -> str:
    with pytest.raises(pb.LogProofError) as caught:
        pb.verify_proof(bundle, obj, w.verifiers, w.witness_verifiers, quorum)
    assert caught.value.message.startswith(caught.value.step + ": ")
    return caught.value.step


def fields(bundle: bytes) -> dict[str, object]:
    value = json.loads(bundle)
    assert isinstance(value, dict)
    return value


def rebuilt(bundle: bytes, **changes: object) -> bytes:
    return (canonical(fields(bundle) | changes) + "\n").encode()


# -- it verifies -------------------------------------------------------------------------------
def test_every_object_entry_verifies_at_every_size_that_holds_it(world: World) -> None:
    for index, obj in world.objects.items():
        for size in (index + 1, index + 2, world.tree.size):
            if size > world.tree.size:
                continue
            result = pb.verify_proof(
                world.proof(index, size), obj, world.verifiers, world.witness_verifiers, 2
            )
            assert result.index == index
            assert result.size == size
            assert result.entry.seq == index + 1
            assert result.entry.object_sm3 == sm3(obj).hex()
            assert result.checkpoint.root == world.tree.root(size)
            assert result.signed_by == (ORIGIN,)
            assert [name for name, _ in result.witnessed_by] == [n for n, _ in world.witnesses]
            assert all(t == NOW + 5 for _, t in result.witnessed_by)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_random_trees_every_proof_verifies(count: int, data: st.DataObject) -> None:
    w = make_world(count)
    if not w.objects:
        return
    index = data.draw(st.sampled_from(sorted(w.objects)))
    size = data.draw(st.integers(min_value=index + 1, max_value=count))
    bundle = w.proof(index, size, cosigned=0)
    pb.verify_proof(bundle, w.objects[index], w.verifiers)


def test_the_file_is_canonical_json_byte_for_byte(world: World) -> None:
    index = min(world.objects)
    bundle = world.proof(index)
    value = fields(bundle)
    assert bundle == (json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                      + "\n").encode("utf-8")  # fmt: skip
    assert list(value) == sorted(pb.FIELDS)
    assert value["format"] == "jtca-log-proof/1"
    assert base64.b64decode(str(value["entry"])) == world.entries[index]
    assert value["index"] == index
    assert value["size"] == world.tree.size
    assert [base64.b64decode(h) for h in value["inclusion"]] == inclusion_proof(  # type: ignore[attr-defined]
        world.tree, index, world.tree.size
    )
    assert "— witness.440000.example " in str(value["checkpoint"])  # the em dash as itself
    assert pb.LogProof.parse(bundle).encode() == bundle


def test_a_reader_accepts_the_same_json_with_other_whitespace(world: World) -> None:
    index = min(world.objects)
    pretty = json.dumps(fields(world.proof(index)), indent=2).encode()
    pb.verify_proof(pretty, world.objects[index], world.verifiers)


# -- any flipped byte fails, naming the step ---------------------------------------------------
def test_a_flipped_byte_in_the_object_fails_at_object(world: World) -> None:
    index = max(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    for i in range(0, len(obj), 7):
        flipped = bytearray(obj)
        flipped[i] ^= 0x01
        assert step_of(bundle, bytes(flipped), world) == "object"
    assert step_of(bundle, obj + b"\x00", world) == "object"
    assert step_of(bundle, b"", world) == "object"


def test_a_flipped_byte_in_the_entry_fails(world: World) -> None:
    index = max(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    entry = world.entries[index]
    seen = set()
    for i in range(len(entry)):
        flipped = bytearray(entry)
        flipped[i] ^= 0x01
        step = step_of(rebuilt(bundle, entry=base64.b64encode(flipped).decode()), obj, world)
        assert step in {"entry", "object", "inclusion"}
        seen.add(step)
    assert seen == {"entry", "object", "inclusion"}


def test_a_changed_field_of_the_entry_fails_at_inclusion(world: World) -> None:
    index = max(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    entry = LogEntry.parse(world.entries[index])
    for change in ({"actor": "someone-else"}, {"at": entry.at + 1}, {"details": "{}"}):
        forged = replace(entry, **change).encode()  # type: ignore[arg-type]
        assert step_of(rebuilt(bundle, entry=base64.b64encode(forged).decode()), obj, world) == (
            "inclusion"
        )


def test_a_flipped_bit_in_any_proof_hash_fails_at_inclusion(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    hashes = [base64.b64decode(h) for h in fields(bundle)["inclusion"]]  # type: ignore[attr-defined]
    assert len(hashes) >= 3
    for which in range(len(hashes)):
        for bit in (0, 77, 255):
            changed = list(hashes)
            flipped = bytearray(changed[which])
            flipped[bit // 8] ^= 1 << (bit % 8)
            changed[which] = bytes(flipped)
            forged = rebuilt(bundle, inclusion=[base64.b64encode(h).decode() for h in changed])
            assert step_of(forged, obj, world) == "inclusion"
    for shorter in (hashes[:-1], [*hashes, hashes[0]], hashes[::-1]):
        forged = rebuilt(bundle, inclusion=[base64.b64encode(h).decode() for h in shorter])
        assert step_of(forged, obj, world) == "inclusion"


def test_a_flipped_byte_anywhere_in_the_checkpoint_fails(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    note = str(fields(bundle)["checkpoint"]).encode()
    seen = set()
    for i in range(len(note)):
        flipped = bytearray(note)
        flipped[i] ^= 0x01
        try:
            text = flipped.decode()
        except UnicodeDecodeError:
            continue  # a JSON string holds text: a byte that breaks UTF-8 cannot be written
        step = step_of(rebuilt(bundle, checkpoint=text), obj, world, quorum=2)
        assert step in {"checkpoint", "witnesses"}, i
        seen.add(step)
    assert seen == {"checkpoint", "witnesses"}


def test_a_flipped_bit_anywhere_in_the_file_fails(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    steps = set()
    for i in range(len(bundle)):
        for bit in (0x01, 0x20):
            flipped = bytearray(bundle)
            flipped[i] ^= bit
            steps.add(step_of(bytes(flipped), obj, world, quorum=2))
    assert steps == set(pb.STEPS)


def test_base64_has_one_spelling(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    value = fields(bundle)
    last = str(value["inclusion"][-1])  # type: ignore[index]
    assert last.endswith("=")  # 32 bytes: two unused low bits in the last character
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    other = last[:-2] + alphabet[alphabet.index(last[-2]) ^ 0x01] + "="
    assert base64.b64decode(other) == base64.b64decode(last)
    forged = rebuilt(bundle, inclusion=[*value["inclusion"][:-1], other])  # type: ignore[index]
    with pytest.raises(pb.LogProofError, match="non-canonical base64"):
        pb.verify_proof(forged, obj, world.verifiers)


def test_a_checkpoint_signed_by_another_key_fails_at_checkpoint(world: World) -> None:
    index = min(world.objects)
    impostor = replace(world, audit=SoftwareSigner.generate())
    bundle = impostor.proof(index)
    assert step_of(bundle, world.objects[index], world) == "checkpoint"


def test_a_checkpoint_of_another_tree_fails_at_inclusion(world: World) -> None:
    index = min(world.objects)
    other = make_world(actor="ministry-officer-2")  # the same objects, another history
    other.audit = world.audit
    bundle = world.proof(index)
    foreign = other.note(world.tree.size)
    assert step_of(rebuilt(bundle, checkpoint=foreign), world.objects[index], world) == "inclusion"


def test_index_and_size_must_agree(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index), world.objects[index]
    assert step_of(rebuilt(bundle, index=index + 1), obj, world) == "entry"
    assert step_of(rebuilt(bundle, size=world.tree.size - 1), obj, world) == "checkpoint"


def test_an_event_entry_proves_no_object(world: World) -> None:
    index = next(i for i in range(world.tree.size) if i not in world.objects)
    size = world.tree.size
    with pytest.raises(pb.LogProofError) as caught:
        pb.build(
            world.entries[index], index, size, inclusion_proof(world.tree, index, size),
            world.note(size),
        )  # fmt: skip
    assert caught.value.step == "entry"


def test_too_few_witnesses_fail_at_witnesses(world: World) -> None:
    index = min(world.objects)
    bundle, obj = world.proof(index, cosigned=1), world.objects[index]
    pb.verify_proof(bundle, obj, world.verifiers, world.witness_verifiers, 1)
    with pytest.raises(pb.LogProofError, match=r"witnesses: 1 of the 2 .* 2 are needed"):
        pb.verify_proof(bundle, obj, world.verifiers, world.witness_verifiers, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v | {"format": "jtca-log-proof/2"}, "is not 'jtca-log-proof/1'"),
        (lambda v: v | {"extra": 1}, "unknown extra"),
        (lambda v: {k: x for k, x in v.items() if k != "size"}, "missing size"),
        (lambda v: v | {"index": -1}, "index '-1' is not an integer"),
        (lambda v: v | {"size": True}, "size 'True' is not an integer"),
        (lambda v: v | {"entry": "not base64!"}, "entry: 'not base64!' is not base64"),
        (lambda v: v | {"inclusion": ["AAAA"]}, r"inclusion\[0\] is 3 bytes"),
        (lambda v: v | {"checkpoint": 7}, "checkpoint is not a JSON string"),
    ],
)
def test_a_malformed_file_fails_at_bundle(world: World, change, message) -> None:  # type: ignore[no-untyped-def]
    index = min(world.objects)
    forged = (canonical(change(fields(world.proof(index)))) + "\n").encode()
    with pytest.raises(pb.LogProofError, match=message) as caught:
        pb.verify_proof(forged, world.objects[index], world.verifiers)
    assert caught.value.step == "bundle"


def test_not_json_fails_at_bundle(world: World) -> None:
    for data in (
        b"",
        b"\xff",
        b"[]",
        b"{",
        b"x" * (pb.MAX_BUNDLE + 1),
        b"[" * 100_000,  # nested beyond the parser's depth
        b'{"size":' + b"9" * 5000 + b"}",  # an integer too long to read
    ):
        assert step_of(data, b"", world) == "bundle"


def test_a_member_given_twice_fails_at_bundle(world: World) -> None:
    index = min(world.objects)
    bundle = world.proof(index)
    twice = bundle.replace(b'"index":', b'"index":0,"index":', 1)
    with pytest.raises(pb.LogProofError, match="'index' appears twice"):
        pb.verify_proof(twice, world.objects[index], world.verifiers)


def test_build_refuses_a_proof_that_cannot_verify(world: World) -> None:
    index, size = min(world.objects), world.tree.size
    proof = inclusion_proof(world.tree, index, size)
    with pytest.raises(pb.LogProofError, match="inclusion"):
        pb.build(world.entries[index], index, size, proof[:-1], world.note(size))
    with pytest.raises(pb.LogProofError, match="checkpoint: the checkpoint is of size"):
        pb.build(world.entries[index], index, size, proof, world.note(size - 1))


# -- the trusted keys --------------------------------------------------------------------------
def test_the_audit_key_comes_from_its_certificate_files_under_the_proofs_origin(
    world: World,
) -> None:
    """What ``jtca lists check-proof --audit-cert --root-cert`` does: the verifier is the
    certified key, named by the origin the proof's checkpoint carries."""
    start = datetime.fromtimestamp(NOW, UTC)
    name = {"C": "CN", "O": "Ministry of Transport", "CN": "root"}
    root = SoftwareSigner.generate()

    def certify(key: SoftwareSigner, by: SoftwareSigner = root) -> bytes:
        return issue_certificate(
            by,
            subject={"C": "CN", "O": "Ministry of Transport", "CN": "audit"},
            subject_public_key=key.public_key,
            issuer_name=name,
            serial=2,
            not_before=start,
            not_after=start + timedelta(days=3650),
            ca=False,
            path_length=None,
            key_usage={"digital_signature"},
            extended_key_usage=[LOG_SIGNING_EKU],
            issuer_key_id=key_identifier(by.public_key),
        )

    root_pem = Anchor("root.pem", pem(self_signed_root(root, name, 1, start, start + timedelta(9))))
    index = min(world.objects)
    bundle = world.proof(index)
    assert pb.origin_of(bundle) == ORIGIN
    trusted = verifiers_from([Anchor("audit.pem", pem(certify(world.audit)))], [root_pem], ORIGIN)
    pb.verify_proof(bundle, world.objects[index], trusted)
    stranger = verifiers_from(
        [Anchor("other.pem", pem(certify(SoftwareSigner.generate())))], [root_pem], ORIGIN
    )
    with pytest.raises(pb.LogProofError, match=r"checkpoint: .*no trusted audit key"):
        pb.verify_proof(bundle, world.objects[index], stranger)
    forged = Anchor("forged.pem", pem(certify(world.audit, by=SoftwareSigner.generate())))
    with pytest.raises(AnchorError, match=r"forged.pem: .* not signed by the root"):
        verifiers_from([forged], [root_pem], ORIGIN)


def test_witness_keys_are_name_equals_hex() -> None:
    signer = SoftwareSigner.generate()
    v = pb.witness_verifier("w.example=" + signer.public_key.compressed.hex())
    assert v.name == "w.example"
    assert v.public_key == signer.public_key
    assert v.signature_type == COSIGNATURE_TYPE
    for bad in ("no-equals", "=00", "w=zz", "w=" + "00" * 33):
        with pytest.raises(pb.LogProofError, match="witnesses"):
            pb.witness_verifier(bad)


def test_signed_note_round_trip_is_what_the_file_carries(world: World) -> None:
    note = world.note(world.tree.size)
    assert SignedNote.parse(note).text() == note


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_proof_or_a_named_refusal(data: bytes) -> None:
    """Fuzz: arbitrary bytes never raise anything but LogProofError."""
    with pytest.raises(pb.LogProofError) as caught:
        pb.verify_proof(data, b"", [])
    assert caught.value.step in pb.STEPS


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_mutation_of_a_real_proof_is_refused_by_name(data: st.DataObject) -> None:
    w = _FUZZ_WORLD
    index = min(w.objects)
    bundle = bytearray(_FUZZ_BUNDLE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(bundle) - 1))
        bundle[at] = data.draw(
            st.integers(min_value=0, max_value=255).filter(lambda b, at=at: b != bundle[at])
        )
    with pytest.raises(pb.LogProofError) as caught:
        pb.verify_proof(bytes(bundle), w.objects[index], w.verifiers, w.witness_verifiers, 2)
    assert caught.value.step in pb.STEPS


_FUZZ_WORLD = make_world(9)
_FUZZ_BUNDLE = _FUZZ_WORLD.proof(min(_FUZZ_WORLD.objects))
