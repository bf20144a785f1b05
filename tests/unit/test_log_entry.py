"""The log entry (ca.log.entry): the exact bytes hashed into the tree, and nothing else.

Round trips (``parse(encode(e)) == e`` and ``encode(parse(b)) == b``), every field's refusal
named by ``CodecError`` (field, offset), the leaf hash as RFC 9162 with SM3 recomputed from the
bytes by gmssl's SM3, and a fuzz: any bytes are either an entry read exactly or a
``CodecError`` — never another exception."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from typing import Final

import pytest
from gmssl.func import bytes_to_list
from gmssl.sm3 import sm3_hash
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ca.core.errors import CodecError
from ca.log.entry import FORMAT, KINDS, MAX_ENTRY, LogEntry, canonical, json_string
from ca.log.merkle import leaf_hash
from hsm.sm.sm3 import sm3

DIGEST: Final = sm3(b"a certificate").hex()

EVENT: Final = LogEntry(
    seq=1,
    at=1767225600,  # 2026-01-01T00:00:00Z
    kind="event",
    actor="ca-op-1",
    action="city-key.approve",
    subject="application 7",
    object_sm3=None,
    details=canonical({"province": "440000", "cities": ["440100"]}),
)
CERTIFICATE: Final = dataclasses.replace(
    EVENT, seq=2, kind="certificate", action="certificate.issue", subject="serial 0a1b",
    object_sm3=DIGEST, details="{}",
)  # fmt: skip

EVENT_BYTES: Final = (
    b"jtca-log-entry/1\n"
    b"seq 1\n"
    b"at 1767225600\n"
    b"kind event\n"
    b'actor "ca-op-1"\n'
    b'action "city-key.approve"\n'
    b'subject "application 7"\n'
    b"object -\n"
    b'details {"cities":["440100"],"province":"440000"}\n'
)


def _refusal(data: bytes) -> CodecError:
    with pytest.raises(CodecError) as caught:
        LogEntry.parse(data)
    return caught.value


def _encode_refusal(entry: LogEntry) -> CodecError:
    with pytest.raises(CodecError) as caught:
        entry.encode()
    return caught.value


# -- the encoding, byte for byte ----------------------------------------------------------------
def test_an_event_is_nine_lines_each_ending_in_lf() -> None:
    data = EVENT.encode()
    assert data == EVENT_BYTES
    assert data.count(b"\n") == 9
    assert data.endswith(b"\n")
    assert b"\r" not in data
    assert data.split(b"\n")[0] == FORMAT.encode()


def test_the_leaf_hash_is_sm3_of_zero_and_the_entry() -> None:
    data = EVENT.encode()
    assert EVENT.leaf_hash() == leaf_hash(data) == sm3(b"\x00" + data)
    assert EVENT.leaf_hash().hex() == sm3_hash(bytes_to_list(b"\x00" + data))  # gmssl's SM3


def test_a_certificate_entry_carries_the_objects_digest() -> None:
    data = CERTIFICATE.encode()
    assert b"\nkind certificate\n" in data
    assert f"\nobject {DIGEST}\n".encode() in data
    assert LogEntry.parse(data) == CERTIFICATE


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips(kind: str) -> None:
    entry = dataclasses.replace(EVENT, kind=kind, object_sm3=None if kind == "event" else DIGEST)
    assert LogEntry.parse(entry.encode()) == entry


def test_strings_are_json_strings_with_utf8_as_itself() -> None:
    entry = dataclasses.replace(
        EVENT, actor="广东省-1", action='say "hi"\\', subject="line\nbreak\ttab\x01\x7f\u2028"
    )
    data = entry.encode()
    assert 'actor "广东省-1"\n'.encode() in data  # UTF-8 itself, not \\u escapes
    assert b'action "say \\"hi\\"\\\\"\n' in data
    # control characters escaped, so no field can break a line; DEL and U+2028 are themselves
    assert 'subject "line\\nbreak\\ttab\\u0001\x7f\u2028"\n'.encode() in data
    assert data.count(b"\n") == 9
    assert LogEntry.parse(data) == entry


def test_canonical_json_sorts_keys_without_spaces() -> None:
    assert canonical({"b": 1, "a": [1, "é"], "c": {"z": None, "y": True}}) == (
        '{"a":[1,"é"],"b":1,"c":{"y":true,"z":null}}'
    )
    assert json_string('a"b') == '"a\\"b"'


# -- what encode refuses -----------------------------------------------------------------------
def test_encode_refuses_values_no_entry_can_hold() -> None:
    assert _encode_refusal(dataclasses.replace(EVENT, kind="note")).field == "kind"
    assert _encode_refusal(dataclasses.replace(EVENT, seq=0)).field == "seq"
    refused = _encode_refusal(dataclasses.replace(EVENT, at=-1))
    assert (refused.field, refused.problem) == ("at", "-1 is outside 0..9999999999999999999")
    assert _encode_refusal(dataclasses.replace(EVENT, object_sm3=DIGEST)).field == "object"
    assert _encode_refusal(dataclasses.replace(CERTIFICATE, object_sm3=None)).field == "object"
    for bad in (DIGEST.upper(), DIGEST[:-1], DIGEST + "0", "g" * 64, ""):
        refused = _encode_refusal(dataclasses.replace(CERTIFICATE, object_sm3=bad))
        assert refused.field == "object", bad
    for bad in ('{"a":\n1}', "{}\r"):
        assert _encode_refusal(dataclasses.replace(EVENT, details=bad)).field == "details"


def test_encode_refuses_a_lone_surrogate_by_name() -> None:
    """json.loads('"\\ud800"') is a str Python holds but UTF-8 cannot: a request could carry
    one into an audit subject."""
    assert _encode_refusal(dataclasses.replace(EVENT, subject="\ud800")).field == "subject"


def test_encode_refuses_what_parse_would_refuse() -> None:
    _encode_refusal(dataclasses.replace(EVENT, seq=10**19))


# -- what parse refuses, named -----------------------------------------------------------------
def _with_line(number: int, text: bytes) -> bytes:
    lines = EVENT_BYTES.split(b"\n")
    lines[number - 1] = text
    return b"\n".join(lines)


LINE_REFUSALS: Final = [
    # (line number, replacement, the field named)
    (1, b"jtca-log-entry/2", "line 1"),
    (1, b"jtca-log-entry/1 ", "line 1"),
    (2, b"seq  1", "seq"),
    (2, b"seq 01", "seq"),
    (2, b"seq -1", "seq"),
    (2, b"seq 1.0", "seq"),
    (2, b"seq 0", "seq"),
    (2, b"seq 12345678901234567890", "seq"),
    (2, b"sequence 1", "line 2"),
    (3, b"at +5", "at"),
    (3, b"at 0x10", "at"),
    (3, b"at", "line 3"),
    (4, b"kind Event", "kind"),
    (4, b"kind list ", "kind"),
    (5, b"actor ca-op-1", "actor"),
    (5, b"actor 'ca-op-1'", "actor"),
    (5, b'actor "ca-op-1" ', "actor"),
    (5, b'actor "\\u5e7f"', "actor"),  # an escape the encoding never writes
    (5, b'actor "a\\/b"', "actor"),
    (5, b"actor 17", "actor"),
    (5, b"actor null", "actor"),
    (6, b'action  "x"', "action"),
    (6, b'Action "x"', "line 6"),
    (7, b'subject "unterminated', "subject"),
    (8, b"object " + DIGEST.encode(), "object"),  # an event has no object
    (8, b"object", "line 8"),
    (9, b"details {}\r", "details"),
]


@pytest.mark.parametrize(("number", "text", "field"), LINE_REFUSALS)
def test_parse_names_the_line_or_field_refused(number: int, text: bytes, field: str) -> None:
    refused = _refusal(_with_line(number, text))
    assert refused.field == field, refused.message
    assert refused.message.startswith(f"{field} at offset ")


def test_parse_names_the_offset_of_a_malformed_line() -> None:
    data = _with_line(5, b'actr "ca-op-1"')
    refused = _refusal(data)
    assert refused.field == "line 5"
    assert refused.offset == data.index(b"actr")


def test_parse_refuses_the_wrong_shape() -> None:
    assert _refusal(EVENT_BYTES[:-1]).problem == "does not end with a line feed"
    assert _refusal(EVENT_BYTES + b"extra\n").field == "entry"  # ten lines
    assert _refusal(EVENT_BYTES.replace(b"object -\n", b"")).field == "entry"  # eight lines
    assert _refusal(EVENT_BYTES + b"\n").field == "entry"  # a trailing blank line
    assert _refusal(b"").field == "entry"
    assert _refusal(b"\n").field == "entry"
    assert _refusal(EVENT_BYTES.replace(b"\n", b"\r\n")).field in {"line 1", "entry"}
    refused = _refusal(EVENT_BYTES.replace(b"ca-op-1", b"ca-op-\xff"))
    assert (refused.field, refused.problem) == ("entry", "not UTF-8")
    assert refused.offset == EVENT_BYTES.index(b"ca-op-1") + 6
    big = b"x" * (MAX_ENTRY + 1)
    assert _refusal(big).offset == MAX_ENTRY


def test_parse_refuses_a_reordered_entry() -> None:
    lines = EVENT_BYTES.split(b"\n")
    lines[5], lines[6] = lines[6], lines[5]  # action and subject swapped
    assert _refusal(b"\n".join(lines)).field == "line 6"


def test_parse_refuses_a_deeply_nested_string_field_by_name() -> None:
    assert _refusal(_with_line(5, b"actor " + b"[" * 100_000)).field == "actor"


# -- fuzz ----------------------------------------------------------------------------------------
FIELD_TEXT: Final = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ENTRIES: Final = st.builds(
    LogEntry,
    seq=st.integers(1, 10**19 - 1),
    at=st.integers(0, 10**19 - 1),
    kind=st.sampled_from(KINDS),
    actor=FIELD_TEXT,
    action=FIELD_TEXT,
    subject=FIELD_TEXT,
    object_sm3=st.none(),
    details=st.recursive(
        st.none() | st.booleans() | st.integers() | FIELD_TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FIELD_TEXT, inner, max_size=4),
        max_leaves=12,
    ).map(canonical),
).map(
    lambda e: (
        e if e.kind == "event" else dataclasses.replace(e, object_sm3=sm3(e.subject.encode()).hex())
    )
)


@settings(max_examples=1000, deadline=None)
@given(ENTRIES)
def test_any_entry_round_trips_exactly(entry: LogEntry) -> None:
    data = entry.encode()
    assert LogEntry.parse(data) == entry
    assert data.count(b"\n") == 9
    assert entry.leaf_hash() == sm3(b"\x00" + data)


def _check_parse(data: bytes) -> None:
    refused: CodecError | None = None
    try:
        entry = LogEntry.parse(data)
    except CodecError as caught:
        refused = caught
    if refused is not None:
        assert refused.field
        assert 0 <= refused.offset <= max(len(data), MAX_ENTRY)
        return
    assert entry.encode() == data  # read exactly: nothing ignored, nothing normalised


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
@example(EVENT_BYTES)
@example(b"jtca-log-entry/1\n" * 9)
def test_any_bytes_parse_exactly_or_are_refused_by_name(data: bytes) -> None:
    _check_parse(data)


@settings(max_examples=2000, deadline=None)
@given(ENTRIES, st.data())
def test_any_mutation_of_an_entry_parses_exactly_or_is_refused_by_name(
    entry: LogEntry, data: st.DataObject
) -> None:
    """Mutations near the valid form reach the field checks that random bytes never do."""
    encoded = bytearray(entry.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from([*b' "\\\n\r-0123456789abcdefxyz{}[]:,\x00\xff\xc3']))
        if action == "insert":
            encoded[at:at] = bytes([byte])
        elif at < len(encoded):
            if action == "delete":
                del encoded[at]
            else:
                encoded[at] = byte
    _check_parse(bytes(encoded))


@settings(max_examples=500, deadline=None)
@given(ENTRIES, st.integers(0, 8), FIELD_TEXT)
def test_a_changed_line_is_another_entry_or_refused(entry: LogEntry, line: int, text: str) -> None:
    lines = entry.encode().decode().split("\n")
    changed = lines[line].split(" ", 1)[0] + " " + text
    assume(changed != lines[line])
    lines[line] = changed
    data = "\n".join(lines).encode()
    _check_parse(data)
    with contextlib.suppress(CodecError):
        assert LogEntry.parse(data).leaf_hash() != entry.leaf_hash()


def test_the_docstring_lists_the_lines_encode_writes() -> None:
    """ca/log/entry.py's docstring is what docs/audit.md copies: its line names are the ones
    encode writes, in order."""
    import ca.log.entry as module

    assert module.__doc__ is not None
    documented = re.findall(r"^    (\w[\w-]*)[ /]", module.__doc__, re.M)
    written = [line.split(" ", 1)[0] for line in EVENT.encode().decode().splitlines()]
    assert documented[: len(written)] == ["jtca-log-entry", *written[1:]]
    assert json.loads(EVENT_BYTES.split(b"\n")[8][len("details ") :]) == {
        "province": "440000",
        "cities": ["440100"],
    }
