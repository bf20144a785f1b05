"""Bounded loaders for files a person hands us (issue #14, point 3): TOML, JSON and CSV.

Everything that could recurse or blow up is checked *before* the standard parser sees it: the
size, UTF-8 (the error names the byte offset), NUL bytes, the nesting depth (brackets and braces
outside strings, and dotted TOML keys, which ``tomllib`` handles in quadratic time), the digits
of a number (``int()`` of a 5,000-digit string raises ``ValueError``; 0x… integers are bounded
after parsing) and the size of a CSV field (below the csv module's own process-wide limit, so
``csv.Error`` never surprises a caller). A failure is one typed error, ``BadFile``, naming the
source and the place: line, column, byte offset, field.

Pure: bytes (or text) in, values out; no I/O. ``policies`` may not import ``hsm`` (the layers
contract), so ``BadFile`` is not a ``JtcaError``: it carries the same ``title``,
``exit_code`` and ``message``, and a caller in ``ca`` turns it into its own area's error.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, count, islice
from operator import sub
from typing import Any, Final

MAX_TOML_BYTES: Final = 64 * 1024  # a policy or ceremony file is a few KiB (authority.toml: 8)
MAX_JSON_BYTES: Final = 2 * 1024 * 1024  # a usage report of 10,000 keys is ~1.5 MiB
MAX_CSV_BYTES: Final = 2 * 1024 * 1024
MAX_DEPTH: Final = 32  # arrays, tables and objects inside one another; TOML key segments
MAX_DIGITS: Final = 40  # digits of one number (2**128 has 39)
MAX_FIELD: Final = 64 * 1024  # characters of one CSV field (the csv module stops at 131,072)
MAX_COLUMNS: Final = 256

_BOM: Final = b"\xef\xbb\xbf"


class BadFile(Exception):
    """A file that is not what it claims to be, or too big, deep or long to parse safely.

    ``source`` names the file (or ``(a report)``); ``line`` and ``column`` count from 1,
    ``offset`` is the byte offset from 0; ``field`` is the dotted key, the JSON path or the CSV
    column. Shaped like ``hsm.errors.JtcaError`` (title, exit code, message) for the callers
    that wrap it."""

    title = "Bad file"
    exit_code = 3

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
        offset: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        self.offset = offset
        if field is not None and (len(field) > 200 or not field.isprintable()):
            field = repr(field)[:200]  # a key of the file: shown, never printed raw
        self.field = field
        self.message = f"{source}{self.place}: {problem}"
        super().__init__(self.message)

    @property
    def place(self) -> str:
        """``, line 3, column 7 (byte offset 40), field key`` — the parts that are known."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        text = ", ".join(parts)
        if self.offset is not None:
            text = f"{text} (byte offset {self.offset})" if text else f"byte offset {self.offset}"
        if self.field is not None:
            text = f"{text}, field {self.field}" if text else f"field {self.field}"
        return f", {text}" if text else ""

    def __str__(self) -> str:
        return self.message


def _at(data: bytes, offset: int) -> tuple[int, int]:
    """Line and column (from 1, the column in characters) of a byte offset."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _fail(data: bytes, source: str, offset: int, problem: str) -> BadFile:
    line, column = _at(data, offset)
    return BadFile(source, problem, line=line, column=column, offset=offset)


def _checked(
    data: bytes | str, source: str, max_bytes: int, *, strip_bom: bool, allow_nul: bool = False
) -> tuple[bytes, str]:
    """The bytes and their text: at most ``max_bytes``, UTF-8, no NUL (unless ``allow_nul``:
    CSV refuses a NUL row by row)."""
    if isinstance(data, str):
        given = data
        try:
            data = given.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON body's \ud800
            prefix = given[: exc.start].encode("utf-8", "surrogatepass")
            raise _fail(prefix, source, len(prefix), "not UTF-8 text (a lone surrogate)") from None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadFile(source, f"expected bytes or text, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise BadFile(source, f"{len(data):,} bytes: at most {max_bytes:,} are accepted")
    if strip_bom and data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            data, source, exc.start, f"not UTF-8 text ({exc.reason}: byte 0x{data[exc.start]:02x})"
        ) from None
    nul = -1 if allow_nul else data.find(b"\x00")
    if nul >= 0:
        raise _fail(data, source, nul, "a NUL byte: not a text file")
    return data, text


# -- TOML ------------------------------------------------------------------------------------
# A sequential lexer over the bytes: each position is looked at once (linear time), and an
# unterminated string ends the scan — tomllib refuses the file there before it reads further.
_TOML_TOKEN: Final = re.compile(
    rb"""
    (?P<space>[ \t\r]+)
  | (?P<newline>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<mlbasic>\"\"\"(?:[^"\\]|\\[\s\S]|"(?!""))*\"{3,5})
  | (?P<mlliteral>'''(?:[^']|'(?!''))*'{3,5})
  | (?P<basic>"(?:[^"\\\n]|\\.)*")
  | (?P<literal>'[^'\n]*')
  | (?P<open>[\[{])
  | (?P<close>[\]}])
  | (?P<dot>\.)
  | (?P<separator>[=,])
  | (?P<digits>[0-9_]+)
  | (?P<sign>[+:-])
  | (?P<word>[A-Za-z][A-Za-z0-9_+:-]*)
  | (?P<other>[^ \t\r\n\#"'\[\]{}.=,A-Za-z0-9_+:-]+)
    """,
    re.VERBOSE,
)


def _scan_toml(data: bytes, source: str, max_depth: int, max_digits: int) -> None:
    depth = 0
    chain = 0  # dots in the key being read: a.b.c nests as deep as [a] [b] [c]
    pos = 0
    end = len(data)
    while pos < end:
        m = _TOML_TOKEN.match(data, pos)
        if m is None:  # an unterminated string (or a stray quote): tomllib stops here too
            return
        kind = m.lastgroup
        if kind == "open":
            depth += 1
            chain = 0
            if depth > max_depth:
                raise _fail(data, source, pos, f"nested deeper than {max_depth} levels")
        elif kind == "close":
            depth = max(depth - 1, 0)
            chain = 0
        elif kind == "dot":
            chain += 1
            if chain >= max_depth:
                raise _fail(data, source, pos, f"a dotted key of more than {max_depth} parts")
        elif kind in ("newline", "separator"):
            chain = 0
        elif kind == "digits":
            digits = len(m.group()) - m.group().count(b"_")
            if digits > max_digits:
                raise _fail(
                    data, source, pos, f"a number of {digits:,} digits: at most {max_digits}"
                )
        pos = m.end()


def _walk(value: Any, source: str, max_depth: int, max_digits: int) -> None:
    """After parsing, without recursion: no deeper than ``max_depth``, no integer longer than
    ``max_digits`` digits (a TOML 0x… or 0o… integer is parsed in linear time, but printing or
    converting it later is not)."""
    bound = 10**max_digits
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise BadFile(source, f"nested deeper than {max_depth} levels", field=path or "(file)")
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -bound < item < bound:
                raise BadFile(
                    source,
                    f"an integer of {item.bit_length():,} bits: at most {max_digits} digits",
                    field=path or "(file)",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            for i, child in enumerate(item):
                stack.append((child, f"{path}[{i}]", depth + 1))


_TOML_WHERE: Final = re.compile(r" ?\(at (?:line (\d+), column (\d+)|end of document)\)")


def load_toml(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int = MAX_TOML_BYTES,
    max_depth: int = MAX_DEPTH,
    max_digits: int = MAX_DIGITS,
) -> dict[str, Any]:
    """The TOML document, or ``BadFile`` naming the place."""
    raw, text = _checked(data, source, max_bytes, strip_bom=False)
    _scan_toml(raw, source, max_depth, max_digits)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_WHERE.search(str(exc))
        problem = f"not valid TOML: {_TOML_WHERE.sub('', str(exc))}"
        if found is not None and found.group(1):
            raise BadFile(
                source, problem, line=int(found.group(1)), column=int(found.group(2))
            ) from None
        raise BadFile(source, problem) from None
    except (RecursionError, ValueError, MemoryError) as exc:  # the scan should have caught it
        raise BadFile(source, f"cannot be parsed safely ({type(exc).__name__})") from None
    _walk(doc, source, max_depth, max_digits)
    return doc


# -- JSON ------------------------------------------------------------------------------------
_ESCAPE: Final = re.compile(rb"\\[\s\S]")
_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP: Final = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_BRACKET_OR_QUOTE: Final = re.compile(rb'["\[\]{}]')
_LONG_DIGITS_TEMPLATE: Final = rb"[0-9]{%d,}"
_CHUNK: Final = 1 << 16


def _json_depth(data: bytes, plain: bytes, source: str, max_depth: int) -> None:
    """Refuse brackets and braces nested deeper than ``max_depth`` outside strings, in C-speed
    passes over ``plain`` (the bytes with every escape pair blanked, same length): only quotes
    and brackets kept, the runs between quote pairs (strings) dropped, then the running depth
    a block at a time."""
    marks = plain.translate(None, _STRUCTURE)
    parts = marks.split(b'"')
    if len(parts) % 2 == 0:  # an unterminated string: json stops there
        parts.pop()
    outside_parts = parts[0::2]
    outside = b"".join(outside_parts)
    if outside.count(b"[") + outside.count(b"{") <= max_depth:
        return
    depth = 0
    for start in range(0, len(outside), _CHUNK):
        chunk = outside[start : start + _CHUNK]
        opens = chunk.count(b"[") + chunk.count(b"{")
        if depth + opens <= max_depth:
            depth += 2 * opens - len(chunk)
        else:
            levels = list(map(sub, accumulate(chunk.translate(_STEP)), count(1)))
            if max(levels) + depth > max_depth:
                k = start + levels.index(max_depth + 1 - depth)  # in ``outside``
                ends = list(accumulate(map(len, outside_parts)))
                p = bisect_right(ends, k)
                within = k - (ends[p - 1] if p else 0)
                nth = sum(map(len, parts[: 2 * p])) + 2 * p + within  # in ``marks``
                raise _fail(
                    data, source, _nth_mark(plain, nth), f"nested deeper than {max_depth} levels"
                )
            depth += levels[-1]
        if depth < 0:  # a closer with nothing open: json refuses the file there
            return


def _nth_mark(plain: bytes, nth: int) -> int:
    """The byte offset of the ``nth`` (from 0) quote or bracket, counted a block at a time."""
    for block in range(0, len(plain), _CHUNK):
        marks = len(plain[block : block + _CHUNK].translate(None, _STRUCTURE))
        if nth < marks:
            found = islice(_BRACKET_OR_QUOTE.finditer(plain, block, block + _CHUNK), nth, None)
            return next(found).start()
        nth -= marks
    return len(plain)


def _long_number(plain: bytes, max_digits: int) -> int | None:
    """The byte offset of the first run of more than ``max_digits`` digits outside strings
    (``int()`` refuses 4,300; a JSON number of that many digits is never a real value)."""
    quotes = 0
    last = 0
    for m in re.finditer(_LONG_DIGITS_TEMPLATE % (max_digits + 1), plain):
        quotes += plain.count(b'"', last, m.start())
        last = m.start()
        if quotes % 2 == 0:
            return m.start()
    return None


def load_json(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
    max_digits: int = MAX_DIGITS,
) -> Any:
    """The JSON value, or ``BadFile`` naming the place. A UTF-8 byte order mark is skipped;
    NaN and Infinity are refused (they are not JSON)."""
    raw, text = _checked(data, source, max_bytes, strip_bom=True)
    plain = _ESCAPE.sub(b"__", raw)
    _json_depth(raw, plain, source, max_depth)
    long = _long_number(plain, max_digits)
    if long is not None:
        digits = re.match(rb"[0-9]+", plain[long:])
        length = len(digits.group()) if digits else 0
        raise _fail(raw, source, long, f"a number of {length:,} digits: at most {max_digits}")

    def constant(name: str) -> Any:
        raise json.JSONDecodeError(f"{name} is not a JSON number", text, 0)

    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        if exc.pos == 0 and exc.msg.endswith("is not a JSON number"):
            raise BadFile(source, exc.msg) from None
        offset = len(text[: exc.pos].encode("utf-8"))
        raise BadFile(
            source, f"not JSON: {exc.msg}", line=exc.lineno, column=exc.colno, offset=offset
        ) from None
    except (RecursionError, ValueError, MemoryError) as exc:  # the scan should have caught it
        raise BadFile(source, f"cannot be parsed safely ({type(exc).__name__})") from None
    return value  # no deeper than the scan allowed, no number longer than the hooks allowed


# -- CSV -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CsvRow:
    """One record: its line (csv's line_num, the line it ends on; the header is line 1) and
    values, or the ``problem`` that refuses this row alone (a field over the limit, a NUL byte,
    too many columns, a quoting error) — the other rows are read on."""

    line: int
    values: tuple[str, ...]
    problem: BadFile | None = None


@dataclass(frozen=True, slots=True)
class CsvTable:
    header: tuple[str, ...]
    rows: tuple[CsvRow, ...]

    def record(self, row: CsvRow) -> dict[str, str]:
        """A row by column name (values past the header's columns are left out: check
        ``len(row.values) > len(table.header)`` first)."""
        return dict(zip(self.header, row.values, strict=False))


def _column(header: tuple[str, ...], index: int) -> str:
    return header[index] if 0 <= index < len(header) and header[index] else f"column {index + 1}"


def _row_problem(
    values: list[str],
    header: tuple[str, ...],
    source: str,
    line: int,
    max_field: int,
    max_columns: int,
) -> BadFile | None:
    if len(values) > max_columns:
        return BadFile(source, f"{len(values):,} columns: at most {max_columns}", line=line)
    for index, value in enumerate(values):
        if len(value) > max_field:
            return BadFile(
                source,
                f"{len(value):,} characters: a field has at most {max_field:,}",
                line=line,
                field=_column(header, index),
            )
        if "\x00" in value:
            return BadFile(source, "a NUL byte: not text", line=line, field=_column(header, index))
    return None


def read_csv(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int = MAX_CSV_BYTES,
    max_field: int = MAX_FIELD,
    max_columns: int = MAX_COLUMNS,
) -> CsvTable:
    """The header row and the records after it. The whole file is refused (``BadFile``) when it
    is too big, not UTF-8, empty or its header is bad; a bad record is refused alone, as a row
    with a ``problem`` naming its line and field, and the good ones are kept. A UTF-8 byte order
    mark is skipped."""
    _, text = _checked(data, source, max_bytes, strip_bom=True, allow_nul=True)
    if not text.strip():
        raise BadFile(source, "empty: a CSV report starts with its header row", line=1)
    lines = text.splitlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    header: tuple[str, ...] | None = None
    rows: list[CsvRow] = []
    last = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = max(reader.line_num, last + 1)
            field = None
            if "field larger than field limit" in str(exc):
                if 0 < line <= len(lines) and '"' not in lines[line - 1]:
                    pieces = lines[line - 1].split(",")
                    index = next((i for i, p in enumerate(pieces) if len(p) > max_field), None)
                    if index is not None:
                        field = _column(header or (), index)
                reason = f"a field over {max_field:,} characters"
            else:
                reason = f"not CSV: {exc}"
            refused = BadFile(source, reason, line=line, field=field)
            if header is None:
                raise refused from None
            rows.append(CsvRow(line, (), refused))
            last = line
            continue
        last = line = reader.line_num
        if header is None:
            if not values:
                continue  # blank lines before the header
            problem = _row_problem(values, (), source, line, max_field, max_columns)
            if problem is not None:
                raise problem
            header = tuple(v.strip() for v in values)
            continue
        if not values:
            continue  # a blank line
        problem = _row_problem(values, header, source, line, max_field, max_columns)
        rows.append(CsvRow(line, () if problem else tuple(values), problem))
    return CsvTable(header or (), tuple(rows))
