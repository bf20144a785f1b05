"""Provinces and prefecture-level divisions (地级及以上) with their GB/T 2260 codes.

The shipped file ``data/gbt2260_prefecture.csv`` names its source and date in its header
(regenerate it with ``scripts/update_registry.py``). ``load_divisions`` is pure and checks every
row, naming the line and column of any problem.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from ca.errors import CodecError, JtcaError
from ca.qr.codec import decode_cn, encode_cn

DATA_FILE: Final = Path(__file__).parent / "data" / "gbt2260_prefecture.csv"
COLUMNS: Final = ("code", "name", "level", "kind", "province", "is_city")
PROVINCE_KINDS: Final = frozenset({"省", "自治区", "直辖市", "特别行政区"})
PREFECTURE_KINDS: Final = frozenset({"地级市", "地区", "自治州", "盟"})


class RegistryError(JtcaError):
    title = "Bad registry data"
    exit_code = 3

    def __init__(self, line: int, column: str, problem: str) -> None:
        self.line, self.column = line, column
        super().__init__(f"line {line}, column {column}: {problem}")


@dataclass(frozen=True, slots=True)
class Division:
    code: str
    name: str
    level: str  # province | prefecture
    kind: str
    province: str
    is_city: bool  # 地级市 and the four 直辖市: one key per city (一城一密)


@dataclass(frozen=True, slots=True)
class Divisions:
    by_code: dict[str, Division]
    source: str

    def province(self, code: str) -> Division | None:
        d = self.by_code.get(code)
        return d if d is not None and d.level == "province" else None

    def city(self, code: str) -> Division | None:
        d = self.by_code.get(code)
        return d if d is not None and d.is_city else None

    def cities_of(self, province_code: str) -> list[Division]:
        return [d for d in self.by_code.values() if d.is_city and d.province == province_code]

    def province_of(self, code: str) -> Division | None:
        d = self.by_code.get(code)
        return self.by_code.get(d.province) if d is not None else None

    @property
    def provinces(self) -> list[Division]:
        return [d for d in self.by_code.values() if d.level == "province"]

    @property
    def prefectures(self) -> list[Division]:
        return [d for d in self.by_code.values() if d.level == "prefecture"]


def load_divisions(text: str) -> Divisions:
    lines = text.splitlines()
    header = [line[1:].strip() for line in lines if line.startswith("#")]
    body_start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    rows = list(csv.reader(io.StringIO("\n".join(lines[body_start:]))))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise RegistryError(body_start + 1, "(header)", f"expected columns {','.join(COLUMNS)}")
    found: dict[str, Division] = {}
    for offset, row in enumerate(rows[1:], start=body_start + 2):
        if len(row) != len(COLUMNS):
            raise RegistryError(offset, "(row)", f"{len(row)} columns, expected {len(COLUMNS)}")
        code, name, level, kind, province, is_city = row
        if len(code) != 6 or not code.isdigit():
            raise RegistryError(offset, "code", f"{code!r} is not 6 digits")
        if code in found:
            raise RegistryError(offset, "code", f"{code} appears twice")
        if not name.strip():
            raise RegistryError(offset, "name", "empty")
        if level == "province":
            if not code.endswith("0000") or province != code:
                raise RegistryError(
                    offset,
                    "province",
                    f"a province's code ends 0000 and is its own province ({code})",
                )
            if kind not in PROVINCE_KINDS:
                raise RegistryError(offset, "kind", f"{kind!r} is not a provincial kind")
        elif level == "prefecture":
            if not code.endswith("00") or code.endswith("0000"):
                raise RegistryError(
                    offset, "code", f"{code} is not a prefecture-level code (xxxx00)"
                )
            if province != code[:2] + "0000":
                raise RegistryError(offset, "province", f"{province} is not {code[:2]}0000")
            if province not in found:
                raise RegistryError(
                    offset, "province", f"province {province} is not listed before it"
                )
            if kind not in PREFECTURE_KINDS:
                raise RegistryError(offset, "kind", f"{kind!r} is not a prefecture-level kind")
        else:
            raise RegistryError(offset, "level", f"{level!r} is not province or prefecture")
        if is_city not in ("true", "false"):
            raise RegistryError(offset, "is_city", f"{is_city!r} is not true or false")
        found[code] = Division(code, name, level, kind, province, is_city == "true")
    return Divisions(found, "; ".join(header))


@cache
def default_divisions() -> Divisions:
    return load_divisions(DATA_FILE.read_text(encoding="utf-8"))


def validate_issuer_id(text: str) -> str:
    """A QR issuer id (发行机构标识, cn8): 1-8 digits, as the payload encodes it."""
    try:
        if not (1 <= len(text) <= 8 and text.isdigit() and text.isascii()):
            raise ValueError
        return decode_cn(encode_cn(text, 4))
    except (ValueError, CodecError):
        raise RegistryError(0, "issuer_id", f"{text!r} is not 1-8 digits (cn8)") from None
