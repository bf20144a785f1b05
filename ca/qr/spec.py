"""The annex's contradictions, with figures (spec, "Contradictions in the annex").

The product reports them; it never silently "fixes" the payload to fit the annex's wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import segno

from ca.qr.codec import BASE_PAYLOAD_SIZE, GUIDE_SIZE

ANNEX_QR_VERSION: Final = 2  # 数据规格 "小于 25×25 字节, 保持在 Version 2 密度以下"
LEVELS: Final = ("L", "M")
EC_PERCENT: Final = {"L": 7, "M": 15, "Q": 25, "H": 30}  # ISO/IEC 18004 recovery capacity


def modules(version: int) -> int:
    """Modules per side of a QR symbol of this version (ISO/IEC 18004 §5.3.1)."""
    return 17 + 4 * version


def byte_capacity(version: int, level: str) -> int:
    """The most bytes a QR symbol of ``version`` holds in byte mode at ``level`` (asked of
    segno, not tabulated here)."""
    low, high = 0, 3000
    while low < high:  # largest n that fits
        mid = (low + high + 1) // 2
        try:
            segno.make(bytes(mid), version=version, error=level, mode="byte", boost_error=False)
            low = mid
        except segno.DataOverflowError:
            high = mid - 1
    return low


def smallest_version(size: int, level: str) -> int:
    symbol = segno.make(bytes(size), error=level, mode="byte", boost_error=False, micro=False)
    return int(symbol.version)


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    annex_says: str
    reality: str
    figures: dict[str, int | str]
    what_jtca_does: str


def spec_check() -> list[Finding]:
    sizes = {
        "without extension": BASE_PAYLOAD_SIZE,
        "with 32-byte extension": BASE_PAYLOAD_SIZE + 32,
    }
    cap_v2 = {level: byte_capacity(ANNEX_QR_VERSION, level) for level in LEVELS}
    needed = {
        (name, level): smallest_version(size, level)
        for name, size in sizes.items()
        for level in LEVELS
    }
    figures: dict[str, int | str] = {
        "payload_bytes": BASE_PAYLOAD_SIZE,
        "payload_bytes_with_extension": BASE_PAYLOAD_SIZE + 32,
        "annex_version": ANNEX_QR_VERSION,
        "annex_version_modules": modules(ANNEX_QR_VERSION),
        "annex_version_capacity_L": cap_v2["L"],
        "annex_version_capacity_M": cap_v2["M"],
    }
    for (name, level), version in needed.items():
        key = "with_extension" if "extension" in name and "without" not in name else "base"
        figures[f"needed_version_{key}_{level}"] = version
        figures[f"needed_modules_{key}_{level}"] = modules(version)
    base_l = needed[("without extension", "L")]
    return [
        Finding(
            code="data-size",
            annex_says="数据规格: 小于 25×25 字节, 保持在 Version 2 密度以下",
            reality=(
                f"QR version {ANNEX_QR_VERSION} is {modules(ANNEX_QR_VERSION)}×"
                f"{modules(ANNEX_QR_VERSION)} modules and holds at most {cap_v2['L']} bytes in "
                f"byte mode at level L ({cap_v2['M']} at M); the field table needs "
                f"{BASE_PAYLOAD_SIZE} bytes ({BASE_PAYLOAD_SIZE + 32} with the extension): "
                f"version {base_l} at L ({modules(base_l)}×{modules(base_l)} modules), "
                f"version {needed[('without extension', 'M')]} at M; with the extension "
                f"version {needed[('with 32-byte extension', 'L')]} at L, "
                f"{needed[('with 32-byte extension', 'M')]} at M"
            ),
            figures=figures,
            what_jtca_does=(
                "encodes the whole field table and draws the smallest version that holds it"
            ),
        ),
        Finding(
            code="length-field",
            annex_says="二维码数据长度: 本表序号第3～17字段的总长度",
            reality=(
                "deployed payloads put the length of everything after the length field there "
                f"(total − {GUIDE_SIZE}: {BASE_PAYLOAD_SIZE - GUIDE_SIZE} without the extension, "
                f"{BASE_PAYLOAD_SIZE + 32 - GUIDE_SIZE} with it)"
            ),
            figures={"declared_length": BASE_PAYLOAD_SIZE - GUIDE_SIZE},
            what_jtca_does="writes and requires total − 3",
        ),
        Finding(
            code="display-size",
            annex_says="展示规格: 25×25 二维码规格",
            reality=(
                f"a {BASE_PAYLOAD_SIZE}-byte payload needs {modules(base_l)}×{modules(base_l)} "
                "modules; at the annex's 20–40 mm a module is "
                f"{20 / (modules(base_l) + 8):.2f}–{40 / (modules(base_l) + 8):.2f} mm "
                "(quiet zone of 4 modules included)"
            ),
            figures={"modules": modules(base_l)},
            what_jtca_does="sizes the image to the requested 20–40 mm with whole pixels per module",
        ),
        Finding(
            code="error-correction",
            annex_says="容错率: 7% 以上",
            reality=(
                f"level L recovers exactly {EC_PERCENT['L']}%; M ({EC_PERCENT['M']}%) also meets "
                f"'以上' but needs version {needed[('without extension', 'M')]} instead of {base_l}"
            ),
            figures={"L_percent": EC_PERCENT["L"], "M_percent": EC_PERCENT["M"]},
            what_jtca_does="level L by default, M on request (--level M)",
        ),
        Finding(
            code="symbology",
            annex_says="鼓励使用汉信码 (GB/T 21049)",
            reality="Han Xin can be drawn (zint) but no open-source decoder exists to read it back",
            figures={},
            what_jtca_does="draws Han Xin on request (--symbology hanxin); tests read back QR only",
        ),
    ]
