"""Checkpoints and cosignatures as C2SP signed notes with SM2 (ca.log.note).

- the checkpoint text (origin, size, base64 root, extensions) and the signed note round trip,
  and every malformed line is refused by ``NoteError`` naming it;
- a checkpoint signed by a ``SoftwareSigner`` verifies with ``verify_checkpoint`` **and with
  the OpenSSL command line** (``openssl dgst -sm3 -verify``, the default distinguishing ID), the
  outside judge an auditor uses: the signature is plain DER SM2 over the note text;
- the key ID is recomputed from its definition with gmssl's SM3;
- signatures by unknown keys are ignored, a bad signature by a known key is refused, a note
  signed by no trusted key is refused, a cosignature is never taken for a checkpoint signature;
- cosignatures: the timestamp comes back, any change to the note or the timestamp is refused,
  and OpenSSL verifies the cosigned message too;
- fuzz: any bytes are a note read exactly or a ``NoteError``; any mutation of a signed note
  either still carries the very same checkpoint or is refused.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest
from gmssl.func import bytes_to_list
from gmssl.sm3 import sm3_hash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ca.log.merkle import MemoryTree
from ca.log.note import (
    CHECKPOINT_TYPE,
    COSIGNATURE_TYPE,
    MAX_NOTE,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    NoteSignature,
    SignedNote,
    Verifier,
    check_cosignature,
    cosign,
    cosignature_message,
    key_id,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignature,
)
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey, raw_to_der

ORIGIN: Final = "jtca.mot.gov.cn/audit"
AUDIT_NAME: Final = ORIGIN
DISTID: Final = "1234567812345678"  # GM/T 0009 default ID, as every jtca signature uses
AUDIT: Final = SoftwareSigner(SM2PrivateKey.from_scalar(0x1F2E3D4C5B6A79880123456789ABCDEF))
WITNESS: Final = SoftwareSigner(SM2PrivateKey.from_scalar(0x0DDBA11CAFEF00D5EED0123456789ABC))
STRANGER: Final = SoftwareSigner(SM2PrivateKey.from_scalar(0x5EC0D5EC0D5EC0D5EC0D5EC0D5EC0D5))
AUDIT_VERIFIER: Final = Verifier(AUDIT_NAME, AUDIT.public_key)
WITNESS_NAME: Final = "witness.gd.example"
WITNESS_VERIFIER: Final = Verifier(WITNESS_NAME, WITNESS.public_key, COSIGNATURE_TYPE)


def _der(signer: SoftwareSigner) -> Callable[[bytes], bytes]:
    return lambda message: raw_to_der(signer.sign(message))


def _tree(size: int) -> MemoryTree:
    tree = MemoryTree()
    for i in range(size):
        tree.append(b"entry %d" % i)
    return tree


CHECKPOINT: Final = Checkpoint(ORIGIN, 5, _tree(5).root())


def _signed(checkpoint: Checkpoint = CHECKPOINT, signer: SoftwareSigner = AUDIT) -> SignedNote:
    return sign_checkpoint(checkpoint, AUDIT_NAME, signer.public_key, _der(signer))


def _refused(data: bytes | str, verifiers: list[Verifier] | None = None) -> NoteError:
    with pytest.raises(NoteError) as caught:
        verify_checkpoint(data, [AUDIT_VERIFIER] if verifiers is None else verifiers)
    return caught.value


def _parse_refused(data: bytes | str) -> NoteError:
    with pytest.raises(NoteError) as caught:
        SignedNote.parse(data)
    return caught.value


# -- the checkpoint text ------------------------------------------------------------------------
def test_the_checkpoint_text_is_origin_size_root() -> None:
    root = CHECKPOINT.root
    assert CHECKPOINT.body() == (f"{ORIGIN}\n5\n{base64.b64encode(root).decode()}\n".encode())
    assert Checkpoint.parse_body(CHECKPOINT.body()) == CHECKPOINT
    with_extensions = Checkpoint(ORIGIN, 5, root, ("jtca-at 1767225600", "x y z"))
    assert with_extensions.body().endswith(b"\njtca-at 1767225600\nx y z\n")
    assert Checkpoint.parse_body(with_extensions.body()) == with_extensions


BODY_REFUSALS: Final = [
    (b"", "origin line"),
    (b"o\n5\n", "origin line"),
    (b"o\n5\nAAAA", "origin line"),  # no final LF
    (b"jtca audit\n5\n" + base64.b64encode(bytes(32)) + b"\n", "line 1"),
    (b"a+b\n5\n" + base64.b64encode(bytes(32)) + b"\n", "line 1"),
    (b"\n5\n" + base64.b64encode(bytes(32)) + b"\n", "line 1"),
    (b"o\n05\n" + base64.b64encode(bytes(32)) + b"\n", "line 2"),
    (b"o\n-5\n" + base64.b64encode(bytes(32)) + b"\n", "line 2"),
    (b"o\n5 \n" + base64.b64encode(bytes(32)) + b"\n", "line 2"),
    (b"o\n5\n" + base64.b64encode(bytes(31)) + b"\n", "line 3"),
    (b"o\n5\n" + base64.b64encode(bytes(33)) + b"\n", "line 3"),
    (b"o\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n", "line 3"),
    (b"o\n5\n" + base64.b64encode(bytes(32)) + b"\n\nx\n", "empty extension"),
]


@pytest.mark.parametrize(("body", "named"), BODY_REFUSALS)
def test_a_malformed_checkpoint_text_is_refused_by_line(body: bytes, named: str) -> None:
    with pytest.raises(NoteError) as caught:
        Checkpoint.parse_body(body)
    assert named in caught.value.message


def test_a_checkpoint_text_that_is_not_utf8_is_refused_by_name() -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse_body(b"\xff\n5\n" + base64.b64encode(bytes(32)) + b"\n")


# -- the signed note ----------------------------------------------------------------------------
def test_a_signed_note_round_trips() -> None:
    note = _signed()
    text = note.text()
    assert text.startswith(CHECKPOINT.body().decode() + "\n— " + AUDIT_NAME + " ")
    assert text.endswith("\n")
    assert SignedNote.parse(text) == note
    assert SignedNote.parse(text.encode()) == note
    assert note.checkpoint() == CHECKPOINT
    (signature,) = note.signatures
    line = text.splitlines()[-1]
    blob = base64.b64decode(line.split(" ")[2])
    assert blob == signature.key_id + signature.signature
    assert len(signature.key_id) == 4


def test_with_signature_adds_or_replaces_by_name_and_key() -> None:
    note = _signed()
    cosig = cosign(note, WITNESS_NAME, WITNESS.public_key, 1767225600, _der(WITNESS))
    both = note.with_signature(cosig)
    assert [s.name for s in both.signatures] == [AUDIT_NAME, WITNESS_NAME]
    again = cosign(note, WITNESS_NAME, WITNESS.public_key, 1767225601, _der(WITNESS))
    replaced = both.with_signature(again)
    assert replaced.signatures == (note.signatures[0], again)
    assert SignedNote.parse(replaced.text()) == replaced


NOTE_REFUSALS: Final = [
    (b"o\n5\nAAAA\n", "no blank line"),
    (b"o\n5\nAAAA\n\n", "signature line 1"),  # a note has at least one signature
    (b"o\n5\nAAAA\n\n- k AAAAAAA=\n", "signature line 1"),  # an ASCII hyphen, not U+2014
    ("o\n5\nAAAA\n\n— AAAAAAA=\n".encode(), "signature line 1"),  # no name
    ("o\n5\nAAAA\n\n— k  AAAAAAA=\n".encode(), "signature line 1"),
    ("o\n5\nAAAA\n\n— k AAAAAAA= \n".encode(), "signature line 1"),
    ("o\n5\nAAAA\n\n— k AAAA\n".encode(), "too short"),  # 3 bytes: no key ID + signature
    ("o\n5\nAAAA\n\n— k AAAAAA=\n".encode(), "not base64"),
    ("o\n5\nAAAA\n\n— k AAAAAAA=".encode(), "no blank line"),  # no final LF
    ("o\n5\r\nAAAA\n\n— k AAAAAAA=\n".encode(), "U+000D"),
    ("o\t\n5\nAAAA\n\n— k AAAAAAA=\n".encode(), "U+0009"),
    ("o\n5\nAAAA\n\n— k AAAAAAA=\n\x00".encode(), "U+0000"),
    (b"o\n5\n\xff\n\n", "not UTF-8"),
]


@pytest.mark.parametrize(("data", "named"), NOTE_REFUSALS)
def test_a_malformed_note_is_refused_by_name(data: bytes, named: str) -> None:
    assert named in _parse_refused(data).message


def test_a_note_too_big_or_with_too_many_signatures_is_refused() -> None:
    line = "— k " + base64.b64encode(bytes(8)).decode() + "\n"
    many = CHECKPOINT.body().decode() + "\n" + line * (MAX_SIGNATURES + 1)
    assert "signature lines" in _parse_refused(many).message
    assert SignedNote.parse(CHECKPOINT.body().decode() + "\n" + line * MAX_SIGNATURES)
    big = "o\n5\n" + "x" * MAX_NOTE + "\n\n" + line
    assert "bytes, more than" in _parse_refused(big).message


def test_a_note_given_as_text_with_a_lone_surrogate_is_refused_by_name() -> None:
    _parse_refused("o\ud800\n5\nAAAA\n\n— k AAAAAAA=\n")


# -- the key ID --------------------------------------------------------------------------------
def test_the_key_id_is_sm3_of_name_lf_type_and_point() -> None:
    point = AUDIT.public_key.uncompressed
    assert len(point) == 65
    assert point[0] == 4
    for kind, name in ((CHECKPOINT_TYPE, AUDIT_NAME), (COSIGNATURE_TYPE, WITNESS_NAME)):
        message = name.encode() + b"\n" + kind + point
        assert key_id(name, kind, AUDIT.public_key).hex() == sm3_hash(bytes_to_list(message))[:8]
    assert CHECKPOINT_TYPE == b"\xffjtca/sm2-sm3"
    assert COSIGNATURE_TYPE == b"\xffjtca/sm2-sm3-cosignature/v1"
    # the same key and name, another signature type: another key ID
    assert key_id(AUDIT_NAME, CHECKPOINT_TYPE, AUDIT.public_key) != key_id(
        AUDIT_NAME, COSIGNATURE_TYPE, AUDIT.public_key
    )
    assert AUDIT_VERIFIER.key_id == _signed().signatures[0].key_id


# -- verifying checkpoints -----------------------------------------------------------------------
def test_a_checkpoint_signed_by_the_audit_key_verifies() -> None:
    note = _signed()
    checkpoint, parsed = verify_checkpoint(note.text(), [AUDIT_VERIFIER])
    assert checkpoint == CHECKPOINT
    assert parsed == note
    # the trusted list may hold more keys than signed
    other = Verifier("jtca.mot.gov.cn/audit-2027", STRANGER.public_key)
    assert verify_checkpoint(note.text().encode(), [other, AUDIT_VERIFIER])[0] == CHECKPOINT


def test_signatures_by_unknown_keys_are_ignored() -> None:
    note = _signed()
    stranger = NoteSignature("someone.else", b"\x01\x02\x03\x04", b"\x30\x06" + bytes(70))
    for order in ((stranger, note.signatures[0]), (note.signatures[0], stranger)):
        text = SignedNote(note.body, order).text()
        assert verify_checkpoint(text, [AUDIT_VERIFIER])[0] == CHECKPOINT


def test_a_bad_signature_by_a_known_key_is_refused() -> None:
    note = _signed()
    (good,) = note.signatures
    forged = NoteSignature(good.name, good.key_id, raw_to_der(STRANGER.sign(note.body)))
    message = _refused(SignedNote(note.body, (forged,)).text()).message
    assert f"the signature of {AUDIT_NAME} does not verify" in message
    garbage = NoteSignature(good.name, good.key_id, b"not DER at all")
    assert "does not verify" in _refused(SignedNote(note.body, (garbage,)).text()).message
    # a good signature of another checkpoint, moved onto this one
    other = _signed(Checkpoint(ORIGIN, 6, _tree(6).root()))
    moved = SignedNote(note.body, other.signatures)
    assert "does not verify" in _refused(moved.text()).message


def test_a_checkpoint_signed_by_no_trusted_key_is_refused() -> None:
    # another key under the audit key's name: another key ID, so not the audit key's signature
    by_stranger = _signed(signer=STRANGER)
    message = _refused(by_stranger.text()).message
    assert "signed by no trusted audit key" in message
    assert AUDIT_NAME in message  # names who did sign
    assert "signed by no trusted audit key" in _refused(_signed().text(), []).message


def test_a_cosignature_is_not_a_checkpoint_signature() -> None:
    """The audit key cosigning (another signature type) does not sign the checkpoint."""
    note = _signed()
    as_cosigner = cosign(note, AUDIT_NAME, AUDIT.public_key, 1767225600, _der(AUDIT))
    only_cosigned = SignedNote(note.body, (as_cosigner,))
    assert "no trusted audit key" in _refused(only_cosigned.text()).message


def test_a_changed_checkpoint_is_refused() -> None:
    note = _signed()
    for changed in (
        Checkpoint(ORIGIN, 6, CHECKPOINT.root),
        Checkpoint(ORIGIN, 5, _tree(6).root()),
        Checkpoint("jtca.example/audit", 5, CHECKPOINT.root),
        Checkpoint(ORIGIN, 5, CHECKPOINT.root, ("added",)),
    ):
        moved = SignedNote(changed.body(), note.signatures)
        assert "does not verify" in _refused(moved.text()).message


# -- OpenSSL as the outside judge --------------------------------------------------------------
OPENSSL_VERIFY: Final = [
    "openssl", "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", f"distid:{DISTID}",
    "-signature", "sig.der", "body.txt",
]  # fmt: skip


def _openssl(folder: Path, public_pem: bytes, signature: bytes, message: bytes) -> str:
    assert shutil.which("openssl"), "the OpenSSL 3 command line is required (Debian's openssl)"
    (folder / "pub.pem").write_bytes(public_pem)
    (folder / "sig.der").write_bytes(signature)
    (folder / "body.txt").write_bytes(message)
    done = subprocess.run(OPENSSL_VERIFY, cwd=folder, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip()


def test_openssl_verifies_the_checkpoint_signature(tmp_path: Path) -> None:
    note = _signed()
    signature = note.signatures[0].signature
    pem = AUDIT.public_key.pem()
    assert _openssl(tmp_path, pem, signature, note.body) == "Verified OK"
    # the note text after the blank line is not signed; one byte of the text changed fails
    assert "Verification failure" in _openssl(tmp_path, pem, signature, note.body + b"\n")
    changed = note.body.replace(b"\n5\n", b"\n6\n")
    assert "Verification failure" in _openssl(tmp_path, pem, signature, changed)
    assert "Verification failure" in _openssl(tmp_path, STRANGER.public_key.pem(), signature,
                                              note.body)  # fmt: skip


def test_openssl_verifies_a_cosignature(tmp_path: Path) -> None:
    note = _signed()
    timestamp = 1767225600
    cosig = cosign(note, WITNESS_NAME, WITNESS.public_key, timestamp, _der(WITNESS))
    assert cosig.signature[:8] == timestamp.to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1767225600\n" + note.body
    assert cosignature_message(note.body, timestamp) == message
    pem = WITNESS.public_key.pem()
    assert _openssl(tmp_path, pem, cosig.signature[8:], message) == "Verified OK"
    wrong_time = b"cosignature/v1\ntime 1767225601\n" + note.body
    assert "Verification failure" in _openssl(tmp_path, pem, cosig.signature[8:], wrong_time)


# -- cosignatures --------------------------------------------------------------------------------
def test_a_cosignature_verifies_and_gives_its_timestamp() -> None:
    note = _signed()
    cosig = cosign(note, WITNESS_NAME, WITNESS.public_key, 1767225600, _der(WITNESS))
    assert cosig.key_id == WITNESS_VERIFIER.key_id
    cosigned = SignedNote.parse(note.with_signature(cosig).text())
    assert verify_cosignature(cosigned, WITNESS_VERIFIER) == 1767225600
    assert check_cosignature(note.body, cosig, WITNESS_VERIFIER) == 1767225600
    # the audit signature still verifies on the cosigned note; the witness's is ignored there
    assert verify_checkpoint(cosigned.text(), [AUDIT_VERIFIER])[0] == CHECKPOINT


def test_a_cosignature_that_does_not_match_is_refused() -> None:
    note = _signed()
    cosig = cosign(note, WITNESS_NAME, WITNESS.public_key, 1767225600, _der(WITNESS))

    def refused(
        body: bytes, signature: NoteSignature, verifier: Verifier = WITNESS_VERIFIER
    ) -> str:
        with pytest.raises(NoteError) as caught:
            check_cosignature(body, signature, verifier)
        return caught.value.message

    later = NoteSignature(cosig.name, cosig.key_id,
                          (1767225601).to_bytes(8, "big") + cosig.signature[8:])  # fmt: skip
    assert "does not verify" in refused(note.body, later)
    assert "does not verify" in refused(Checkpoint(ORIGIN, 6, CHECKPOINT.root).body(), cosig)
    short = NoteSignature(cosig.name, cosig.key_id, cosig.signature[:8])
    assert "too short" in refused(note.body, short)
    other = Verifier("witness.fj.example", WITNESS.public_key, COSIGNATURE_TYPE)
    assert "not the witness witness.fj.example" in refused(note.body, cosig, other)
    impostor = Verifier(WITNESS_NAME, STRANGER.public_key, COSIGNATURE_TYPE)
    assert "names" in refused(note.body, cosig, impostor)  # same name, another key ID
    forged = cosign(note, WITNESS_NAME, WITNESS.public_key, 1767225600, _der(STRANGER))
    assert "does not verify" in refused(note.body, forged)
    with pytest.raises(NoteError) as caught:
        verify_cosignature(note, WITNESS_VERIFIER)
    assert f"no cosignature by {WITNESS_NAME}" in caught.value.message
    for bad_time in (-1, 1 << 63):
        with pytest.raises(NoteError):
            cosign(note, WITNESS_NAME, WITNESS.public_key, bad_time, _der(WITNESS))


def test_a_checkpoint_signature_is_not_a_cosignature() -> None:
    """The witness's key signing the checkpoint type does not count as its cosignature."""
    note = _signed()
    as_log = sign_checkpoint(CHECKPOINT, WITNESS_NAME, WITNESS.public_key, _der(WITNESS))
    with pytest.raises(NoteError):
        verify_cosignature(note.with_signature(as_log.signatures[0]), WITNESS_VERIFIER)


# -- fuzz ----------------------------------------------------------------------------------------
def _check_note(data: bytes) -> SignedNote | None:
    refused: NoteError | None = None
    try:
        note = SignedNote.parse(data)
    except NoteError as caught:
        refused = caught
    if refused is not None:
        assert refused.message
        return None
    # read exactly: the note text is the bytes before the last blank line, one signature per
    # line after it, each the base64 it was written in (decoded leniently, as Go's note does)
    assert data.startswith(note.body + b"\n")
    tail = data[len(note.body) + 1 :].decode().split("\n")[:-1]
    assert len(tail) == len(note.signatures)
    for line, signature in zip(tail, note.signatures, strict=True):
        name, blob = line.removeprefix("— ").split(" ")
        assert signature.name == name
        assert signature.key_id + signature.signature == base64.b64decode(blob)
    if note.text().encode() == data:
        assert SignedNote.parse(note.text()) == note
    try:
        checkpoint = note.checkpoint()
    except NoteError:
        return note
    assert checkpoint.size >= 0
    assert len(checkpoint.root) == 32
    return note


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
@example(_signed().text().encode())
@example("o\n5\nAAAA\n\n— k AAAAAAA=\n".encode())
def test_any_bytes_are_a_note_read_exactly_or_refused_by_name(data: bytes) -> None:
    _check_note(data)


@settings(max_examples=2000, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=300))
def test_any_text_is_a_note_read_exactly_or_refused_by_name(text: str) -> None:
    _check_note(text.encode())


SIGNED_TEXT: Final = (
    _signed()
    .with_signature(cosign(_signed(), WITNESS_NAME, WITNESS.public_key, 1767225600, _der(WITNESS)))
    .text()
    .encode()
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_mutation_of_a_signed_checkpoint_is_the_same_checkpoint_or_refused(
    data: st.DataObject,
) -> None:
    mutated = bytearray(SIGNED_TEXT)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from([*b"\n \t=+/AZaz09-5\x00\xff", 0xE2, 0x80, 0x94]))
        if action == "insert":
            mutated[at:at] = bytes([byte])
        elif at < len(mutated):
            if action == "delete":
                del mutated[at]
            else:
                mutated[at] = byte
    _check_note(bytes(mutated))
    refused: NoteError | None = None
    try:
        checkpoint, note = verify_checkpoint(bytes(mutated), [AUDIT_VERIFIER])
    except NoteError as caught:
        refused = caught
    if refused is None:
        assert checkpoint == CHECKPOINT  # whatever changed, it was not what the audit key signed
        assert note.body == CHECKPOINT.body()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=120))
def test_any_signature_bytes_under_the_audit_keys_name_are_refused(blob: bytes) -> None:
    """Garbage where the DER signature goes never escapes as another exception."""
    note = _signed()
    forged = NoteSignature(AUDIT_NAME, AUDIT_VERIFIER.key_id, blob)
    message = _refused(SignedNote(note.body, (forged,)).text()).message
    assert "does not verify" in message
    with pytest.raises(NoteError):
        check_cosignature(note.body, NoteSignature(WITNESS_NAME, WITNESS_VERIFIER.key_id, blob),
                          WITNESS_VERIFIER)  # fmt: skip
