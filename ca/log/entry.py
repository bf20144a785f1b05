"""The log entry, byte for byte (docs/audit.md, "The entry encoding").

An entry is UTF-8 text of nine lines, each ending in one LF (0x0A), no other whitespace:

    jtca-log-entry/1
    seq <decimal, no leading zeros; the first entry is 1, its leaf index is seq - 1>
    at <decimal Unix seconds, UTC>
    kind <event | certificate | list | package>
    actor <JSON string>
    action <JSON string>
    subject <JSON string>
    object <64 lowercase hex: SM3 of the certificate, list or package bytes; "-" for an event>
    details <the event's details: canonical JSON (keys sorted, no spaces, UTF-8 unescaped)>

A JSON string is the value between double quotes with ``"`` ``\\`` and the control characters
U+0000–U+001F escaped (``\\n``, ``\\u0001`` …) and every other character as itself in UTF-8, so
no field can hold a raw LF and the lines cannot be confused. Leaf hash = SM3(0x00 ‖ entry).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from ca.core.errors import CodecError
from ca.core.vocabulary import article
from ca.log.merkle import leaf_hash

FORMAT: Final = "jtca-log-entry/1"
KINDS: Final = ("event", "certificate", "list", "package")
MAX_NUMBER: Final = 10**19  # seq and at: at most 19 decimal digits (parse refuses more)
MAX_ENTRY: Final = 1 << 20  # 1 MiB: an entry carries a digest, never the object itself
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,18}")


def canonical(value: Any) -> str:
    """Canonical JSON: keys sorted, no spaces, non-ASCII as itself (the ``details`` line)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    at: int
    kind: str
    actor: str
    action: str
    subject: str
    object_sm3: str | None  # hex SM3 of the logged object (certificate, list, package)
    details: str  # canonical JSON text, as stored

    def encode(self) -> bytes:
        """The exact bytes hashed into the tree; refuses values no entry can hold."""
        if self.kind not in KINDS:
            raise CodecError("kind", 0, f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if not 1 <= self.seq < MAX_NUMBER:
            raise CodecError("seq", 0, f"{self.seq} is outside 1..{MAX_NUMBER - 1}")
        if not 0 <= self.at < MAX_NUMBER:
            raise CodecError("at", 0, f"{self.at} is outside 0..{MAX_NUMBER - 1}")
        if (self.kind == "event") != (self.object_sm3 is None):
            raise CodecError(
                "object",
                0,
                f"{article(self.kind)} entry "
                + ("has no object digest" if self.kind == "event" else "needs an object digest"),
            )
        if self.object_sm3 is not None and not _HEX64.fullmatch(self.object_sm3):
            raise CodecError("object", 0, f"{self.object_sm3!r} is not 64 lowercase hex digits")
        if "\n" in self.details or "\r" in self.details:
            raise CodecError("details", 0, "a line break in the details (canonical JSON has none)")
        text = (
            f"{FORMAT}\n"
            f"seq {self.seq}\n"
            f"at {self.at}\n"
            f"kind {self.kind}\n"
            f"actor {json_string(self.actor)}\n"
            f"action {json_string(self.action)}\n"
            f"subject {json_string(self.subject)}\n"
            f"object {self.object_sm3 or '-'}\n"
            f"details {self.details}\n"
        )
        for name in ("actor", "action", "subject", "details"):
            value = getattr(self, name)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CodecError(
                    name, exc.start, f"U+{ord(value[exc.start]):04X} cannot be written in UTF-8"
                ) from None
        return text.encode("utf-8")

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.encode())

    @classmethod
    def parse(cls, data: bytes) -> LogEntry:
        """An entry from its bytes; every departure from the encoding is named by line and
        offset (``encode`` of the result gives ``data`` back exactly)."""
        if len(data) > MAX_ENTRY:
            raise CodecError("entry", MAX_ENTRY, f"{len(data)} bytes, more than {MAX_ENTRY}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError("entry", exc.start, "not UTF-8") from None
        if not text.endswith("\n"):
            raise CodecError("entry", len(data), "does not end with a line feed")
        lines = text[:-1].split("\n")
        names = ("seq", "at", "kind", "actor", "action", "subject", "object", "details")
        if len(lines) != len(names) + 1:
            raise CodecError("entry", 0, f"{len(lines)} lines, an entry has {len(names) + 1}")
        if lines[0] != FORMAT:
            raise CodecError("line 1", 0, f"{lines[0][:40]!r} is not {FORMAT!r}")
        values: dict[str, str] = {}
        offset = len(lines[0]) + 1
        for number, (name, line) in enumerate(zip(names, lines[1:], strict=True), 2):
            if not line.startswith(name + " "):
                raise CodecError(
                    f"line {number}", offset, f"does not start with {name!r} and a space"
                )
            values[name] = line[len(name) + 1 :]
            offset += len(line.encode("utf-8")) + 1
        strings: dict[str, str] = {}
        for name in ("actor", "action", "subject"):
            if not values[name].startswith('"'):  # a JSON string, never a nested structure
                raise CodecError(name, 0, f"{values[name][:40]!r} is not a JSON string")
            try:
                value = json.loads(values[name])
            except (ValueError, RecursionError):
                value = None
            if not isinstance(value, str) or json_string(value) != values[name]:
                raise CodecError(
                    name, 0, f"{values[name][:40]!r} is not a JSON string in the entry's form"
                )
            strings[name] = value
        for name in ("seq", "at"):
            if not _DECIMAL.fullmatch(values[name]):
                raise CodecError(
                    name, 0, f"{values[name][:40]!r} is not a decimal without leading zeros"
                )
        entry = cls(
            seq=int(values["seq"]),
            at=int(values["at"]),
            kind=values["kind"],
            actor=strings["actor"],
            action=strings["action"],
            subject=strings["subject"],
            object_sm3=None if values["object"] == "-" else values["object"],
            details=values["details"],
        )
        if entry.encode() != data:
            raise CodecError("entry", 0, "not in the canonical encoding")
        return entry
