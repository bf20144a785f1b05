"""Provinces and prefecture-level divisions (地级及以上行政区划) with their GB/T 2260 codes.

The shipped file ``data/gbt2260_prefecture.csv`` names its source and date in its ``#`` header
(regenerate it with ``scripts/update_registry.py``; docs/registry.md). ``load_divisions`` is pure
— the caller reads the file — and checks every row, naming the line and column of a problem.

A city (``is_city``) is what gets its own keys (一城一密): every 地级市, and each of the four
直辖市, whose city is the municipality itself (they have no prefecture-level rows).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Final

from ca.core.errors import JtcaError
from ca.core.vocabulary import ISSUER_ID_RULE
from ca.qr.codec import FIELDS, decode_cn, encode_cn

DATA_FILE: Final = Path(__file__).parent / "data" / "gbt2260_prefecture.csv"
COLUMNS: Final = ("code", "name", "level", "kind", "province", "is_city")
LEVELS: Final = ("province", "prefecture")
# GB/T 2260: the kinds of provincial-level and of prefecture-level divisions.
PROVINCE_KINDS: Final = frozenset({"省", "自治区", "直辖市", "特别行政区"})
PREFECTURE_KINDS: Final = frozenset({"地级市", "地区", "自治州", "盟"})
CITY_KINDS: Final = frozenset({"地级市", "直辖市"})  # is_city is true exactly for these
REQUIRED_HEADER_KEYS: Final = ("source", "date")

_HEADER_KEY = re.compile(r"#\s?([a-z][a-z-]*):\s*(.*)")
_CONTINUATION = re.compile(r"#\s{2,}(\S.*)")


class RegistryError(JtcaError):
    """A registry data file that cannot be used: names the line (1-based) and the column."""

    title = "Bad registry data"
    exit_code = 3

    def __init__(self, line: int, column: str, problem: str) -> None:
        self.line = line
        self.column = column
        self.problem = problem
        super().__init__(f"line {line}, column {column}: {problem}")


@dataclass(frozen=True, slots=True)
class Division:
    code: str  # 6 digits, GB/T 2260
    name: str  # the full official name, e.g. 阿坝藏族羌族自治州
    level: str  # province | prefecture
    kind: str  # PROVINCE_KINDS for a province, PREFECTURE_KINDS for a prefecture
    province: str  # the code of its province (a province's is its own)
    is_city: bool  # 地级市 and the four 直辖市: one set of keys per city (一城一密)


@dataclass(frozen=True, slots=True)
class Divisions:
    """Every division of a file by code, in file order; its header's source and date."""

    by_code: Mapping[str, Division]
    source: str
    date: date

    def province(self, code: str) -> Division | None:
        division = self.by_code.get(code)
        return division if division is not None and division.level == "province" else None

    def city(self, code: str) -> Division | None:
        """The city with this code (a 地级市 or a 直辖市), or None."""
        division = self.by_code.get(code)
        return division if division is not None and division.is_city else None

    def cities_of(self, province_code: str) -> tuple[Division, ...]:
        """The cities of a province, by code; a municipality's one city is itself."""
        return tuple(d for d in self.by_code.values() if d.is_city and d.province == province_code)

    def province_of(self, code: str) -> Division | None:
        """The province of a city or prefecture (a province's is itself), or None if unknown."""
        division = self.by_code.get(code)
        return self.by_code[division.province] if division is not None else None

    @property
    def provinces(self) -> tuple[Division, ...]:
        return tuple(d for d in self.by_code.values() if d.level == "province")

    @property
    def prefectures(self) -> tuple[Division, ...]:
        return tuple(d for d in self.by_code.values() if d.level == "prefecture")


def load_divisions(text: str) -> Divisions:
    """Parse and check a registry file: ``#`` header lines, then CSV with ``COLUMNS``."""
    lines = text.removeprefix("\ufeff").splitlines()
    header, body_start = _read_header(lines)
    source = header["source"][1]
    date_line, date_text = header["date"]
    try:
        as_of = date.fromisoformat(date_text)
    except ValueError:
        raise RegistryError(date_line, "date", f"{date_text!r} is not YYYY-MM-DD") from None

    reader = csv.reader(lines[body_start:], strict=True)
    first = body_start + 1
    try:
        columns = next(reader, [])
    except csv.Error as exc:
        raise RegistryError(first, "(header)", f"not CSV: {exc}") from None
    if tuple(columns) != COLUMNS:
        raise RegistryError(first, "(header)", f"expected columns {','.join(COLUMNS)}")

    found: dict[str, Division] = {}
    lines_of: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RegistryError(body_start + reader.line_num, "(row)", f"not CSV: {exc}") from None
        line = body_start + reader.line_num
        if not row:
            continue  # a blank line
        division = _check_row(line, row, found)
        found[division.code] = division
        lines_of[division.code] = line
    for division in found.values():
        province = found.get(division.province)
        if province is None or province.level != "province":
            raise RegistryError(
                lines_of[division.code],
                "province",
                f"{division.province} is not a province of the file",
            )
    return Divisions(MappingProxyType(found), source, as_of)


def _read_header(lines: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """``# key: value`` lines (a line indented by two spaces continues the value) and the
    index of the first line after the header. Other ``#`` lines are free comments."""
    header: dict[str, tuple[int, str]] = {}
    last: str | None = None
    index = 0
    while index < len(lines) and lines[index].startswith("#"):
        line = lines[index]
        if (more := _CONTINUATION.fullmatch(line)) is not None and last is not None:
            number, value = header[last]
            header[last] = (number, f"{value} {more.group(1)}")
        elif (pair := _HEADER_KEY.fullmatch(line)) is not None:
            last = pair.group(1)
            header[last] = (index + 1, pair.group(2).strip())
        else:
            last = None
        index += 1
    for key in REQUIRED_HEADER_KEYS:
        if not header.get(key, (0, ""))[1]:
            raise RegistryError(index + 1, "(header)", f"no '# {key}: …' line before the columns")
    return header, index


def _check_row(line: int, row: list[str], found: Mapping[str, Division]) -> Division:
    if len(row) != len(COLUMNS):
        raise RegistryError(line, "(row)", f"{len(row)} columns, expected {len(COLUMNS)}")
    code, name, level, kind, province, is_city = row
    if not (len(code) == 6 and code.isdigit() and code.isascii()):
        raise RegistryError(line, "code", f"{code!r} is not 6 digits")
    if code in found:
        raise RegistryError(line, "code", f"{code} appears twice")
    if not name or name != name.strip():
        raise RegistryError(line, "name", f"{name!r} is empty or has surrounding spaces")
    if level == "province":
        if not code.endswith("0000"):
            raise RegistryError(line, "code", f"a province's code ends in 0000, not {code}")
        if kind not in PROVINCE_KINDS:
            raise RegistryError(line, "kind", f"{kind!r} is not a provincial-level kind")
        if province != code:
            raise RegistryError(line, "province", f"a province is its own province ({code})")
    elif level == "prefecture":
        if not code.endswith("00") or code.endswith("0000"):
            raise RegistryError(line, "code", f"{code} is not a prefecture-level code (xxxx00)")
        if kind not in PREFECTURE_KINDS:
            raise RegistryError(line, "kind", f"{kind!r} is not a prefecture-level kind")
        if province != code[:2] + "0000":
            raise RegistryError(line, "province", f"{province!r} is not {code[:2]}0000")
    else:
        raise RegistryError(line, "level", f"{level!r} is not one of {', '.join(LEVELS)}")
    if is_city not in ("true", "false"):
        raise RegistryError(line, "is_city", f"{is_city!r} is not true or false")
    if (is_city == "true") != (kind in CITY_KINDS):
        raise RegistryError(
            line, "is_city", f"is {is_city} for a {kind}; true exactly for 地级市 and 直辖市"
        )
    return Division(code, name, level, kind, province, is_city == "true")


@cache
def default_divisions() -> Divisions:
    """The shipped file, read and checked once."""
    return load_divisions(DATA_FILE.read_text(encoding="utf-8"))


# --- QR issuers (发行机构) --------------------------------------------------------------------

_ISSUER_ID: Final = FIELDS["interop_cert.issuer_id"]  # 发行机构标识, cn8: 4 bytes


class InvalidIssuerId(JtcaError):
    """Not a QR issuer id (发行机构标识): names the value."""

    title = "Bad issuer id"
    exit_code = 3

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(
            f"{value!r} is not an issuer id: {ISSUER_ID_RULE} (cn8, {_ISSUER_ID.annex_name})"
        )


def validate_issuer_id(text: str) -> str:
    """A QR issuer id as the payload carries it (cn8: BCD, left-justified, F-padded, 4 bytes).

    The rule is the codec's own: the id is valid exactly when ``encode_cn`` fits it in the field
    and ``decode_cn`` gives the same non-empty digits back.
    """
    try:
        raw = encode_cn(text, _ISSUER_ID.length)
        digits = decode_cn(raw)
    except (TypeError, ValueError):
        raise InvalidIssuerId(text) from None
    if len(raw) != _ISSUER_ID.length or not digits or digits != text:
        raise InvalidIssuerId(text)
    return text
