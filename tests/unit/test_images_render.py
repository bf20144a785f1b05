"""Images: QR and Han Xin with the 交通联合 caption; QR read back by zxing-cpp.

The read-back is the independent check: segno draws, zxing-cpp (a separate implementation)
reads, and the bytes must be identical.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import segno
from PIL import Image

from ca.qr.image import (
    QUIET_ZONE,
    ErrorLevel,
    ImageError,
    RenderOptions,
    Symbology,
    decode_image,
    looks_like_image,
    render_png,
    render_svg,
    symbol_info,
)
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from hsm.signer import SoftwareSigner

NOW = 1_790_000_000


def make_payload(extension: bytes = b"") -> bytes:
    ca, issuer, user = (SoftwareSigner.generate() for _ in range(3))
    interop = issue_interop_certificate(
        ca,
        ca_index=1,
        issuer_id="02113450",
        expiry="1230",
        serial=9,
        issuer_public_key=issuer.public_key,
    )
    cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="IMAGE-TEST-00001",
        account_number="31040000000000000009",
        account_type=1,
        single_ride_limit=500,
        user_public_key=user.public_key,
        expires_at=NOW + 60,
        qr_validity=30,
        extension=extension,
    )
    return sign_ride(user, interop, cert, generated_at=NOW).encode()


@pytest.fixture(scope="module")
def payloads() -> dict[int, bytes]:
    return {0: make_payload(), 32: make_payload(bytes(range(32)))}


@pytest.mark.parametrize("ext", [0, 32])
@pytest.mark.parametrize("level", [ErrorLevel.L, ErrorLevel.M])
def test_png_reads_back_identically(
    payloads: dict[int, bytes], ext: int, level: ErrorLevel
) -> None:
    payload = payloads[ext]
    png = render_png(payload, RenderOptions(level=level))
    assert looks_like_image(png)
    assert decode_image(png) == payload


@pytest.mark.parametrize(
    ("ext", "level", "version"), [(0, "L", 12), (32, "L", 12), (0, "M", 14), (32, "M", 15)]
)
def test_smallest_version_is_drawn(
    payloads: dict[int, bytes], ext: int, level: str, version: int
) -> None:
    info = symbol_info(payloads[ext], RenderOptions(level=ErrorLevel(level)))
    assert info.version == version
    assert info.modules == 17 + 4 * version
    # segno, asked independently, agrees
    assert segno.make(payloads[ext], error=level, mode="byte", boost_error=False).version == version


@pytest.mark.parametrize(
    ("size_mm", "dpi"), [(20, 300), (30, 300), (40, 300), (25, 600), (35, 203)]
)
def test_physical_size_within_annex_range(
    payloads: dict[int, bytes], size_mm: float, dpi: int
) -> None:
    options = RenderOptions(size_mm=size_mm, dpi=dpi)
    info = symbol_info(payloads[0], options)
    image = Image.open(io.BytesIO(render_png(payloads[0], options)))
    assert image.info["dpi"] == pytest.approx((dpi, dpi), abs=0.01)
    width_mm = image.width / dpi * 25.4
    assert width_mm == pytest.approx(info.width_mm)
    assert 20 <= width_mm <= 40
    # whole pixels per module, as close to the request as whole pixels allow
    assert abs(width_mm - size_mm) <= (info.modules + 2 * QUIET_ZONE) / dpi * 25.4
    assert image.width == (info.modules + 2 * QUIET_ZONE) * info.px_per_module


def test_caption_above_and_quiet_zone_clear(payloads: dict[int, bytes]) -> None:
    png = render_png(payloads[0])
    image = Image.open(io.BytesIO(png)).convert("L")
    info = symbol_info(payloads[0])
    band = image.height - image.width  # the caption band above the square symbol
    assert band > 0

    def dark(box: tuple[int, int, int, int]) -> int:
        return image.crop(box).point(lambda v: 255 if v < 128 else 0).histogram()[255]

    assert dark((0, 0, image.width, band)) > 50  # the caption is drawn
    quiet = QUIET_ZONE * info.px_per_module
    assert dark((0, band, image.width, band + quiet)) == 0  # quiet zone above the symbol
    assert dark((0, band, quiet, image.height)) == 0  # and on the left
    assert dark((0, image.height - quiet, image.width, image.height)) == 0  # and below


def test_svg_is_well_formed_and_sized_in_mm(payloads: dict[int, bytes]) -> None:
    svg = render_svg(payloads[32])
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    assert root.attrib["width"].endswith("mm")
    assert root.attrib["height"].endswith("mm")
    width_mm = float(root.attrib["width"][:-2])
    assert 20 <= width_mm <= 40
    text = root.find(f"{ns}text")
    assert text is not None
    assert text.text == "交通联合"
    path = root.find(f"{ns}path")
    assert path is not None
    modules_drawn = path.attrib["d"].count("M")
    matrix = segno.make(payloads[32], error="L", mode="byte", boost_error=False).matrix
    assert modules_drawn == sum(sum(row) for row in matrix)


@pytest.mark.parametrize("render", [render_png, render_svg])
def test_han_xin_renders(payloads: dict[int, bytes], render: object) -> None:
    options = RenderOptions(symbology=Symbology.HANXIN)
    info = symbol_info(payloads[0], options)
    assert info.symbology == Symbology.HANXIN
    assert info.modules == 21 + 2 * info.version  # GB/T 21049 version sizes
    assert 1 <= info.version <= 84
    assert callable(render)
    image = render(payloads[0], options)
    assert isinstance(image, bytes)
    assert len(image) > 500


def test_han_xin_level_m_is_larger(payloads: dict[int, bytes]) -> None:
    low = symbol_info(payloads[0], RenderOptions(symbology=Symbology.HANXIN))
    medium = symbol_info(payloads[0], RenderOptions(symbology=Symbology.HANXIN, level=ErrorLevel.M))
    assert medium.version > low.version


def test_han_xin_image_is_not_read_as_qr(payloads: dict[int, bytes]) -> None:
    png = render_png(payloads[0], RenderOptions(symbology=Symbology.HANXIN))
    with pytest.raises(ImageError, match="no QR code found") as info:
        decode_image(png)
    assert "Han Xin" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size_mm": 10}, "size_mm 10"),
        ({"size_mm": 50}, "size_mm 50"),
        ({"dpi": 10}, "dpi 10"),
        ({"dpi": 5000}, "dpi 5000"),
    ],
)
def test_bad_options(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(ImageError, match=needle):
        RenderOptions(**kwargs)  # type: ignore[arg-type]


def test_low_dpi_that_cannot_fit_40mm_is_refused(payloads: dict[int, bytes]) -> None:
    with pytest.raises(ImageError, match="over the annex"):
        symbol_info(payloads[0], RenderOptions(dpi=72, size_mm=20))


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n garbage"])
def test_unreadable_images(data: bytes) -> None:
    with pytest.raises(ImageError):
        decode_image(data)


def test_blank_image_has_no_code() -> None:
    out = io.BytesIO()
    Image.new("L", (200, 200), 255).save(out, format="PNG")
    with pytest.raises(ImageError, match="no QR code found"):
        decode_image(out.getvalue())


def test_font_without_glyphs_is_refused(
    payloads: dict[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Latin-only font from Debian's fonts-dejavu-core (installed by scripts/bootstrap)
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    assert font.is_file(), "scripts/bootstrap installs fonts-dejavu-core"
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(font))
    with pytest.raises(ImageError, match="no glyph"):
        render_png(payloads[0])


def test_missing_font_file_is_refused(
    payloads: dict[int, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(tmp_path / "none.ttf"))
    with pytest.raises(ImageError, match="no such font file"):
        render_png(payloads[0])
