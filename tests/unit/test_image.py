"""Images, part two: layout geometry, sizing, option checks, Han Xin against zint's own raster,
reading back from every image format, and refusals.

``test_images_render.py`` holds the first part (read-back of PNGs at L and M, the versions, dpi
metadata, caption band, SVG module count, the DejaVu font refusal). These tests add what it
does not cover. Every check uses real payloads signed through ``ca.qr.issue`` and real
encoders and decoders: segno and zint draw, zxing-cpp (an independent implementation) reads.
"""

from __future__ import annotations

import io
import math
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
import segno
import zint
from PIL import Image, ImageFont, features

from ca.qr.codec import decode_payload
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
SVG = "{http://www.w3.org/2000/svg}"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "images.md"
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # scripts/bootstrap


@pytest.fixture
def cjk_font() -> Path:
    """The caption font scripts/bootstrap installs: missing it is a failure, never a skip."""
    assert CJK_FONT.is_file(), "install Debian's fonts-wqy-microhei (scripts/bootstrap does)"
    return CJK_FONT


def make_payload(extension: bytes = b"") -> bytes:
    ca, issuer, user = (SoftwareSigner.generate() for _ in range(3))
    interop = issue_interop_certificate(
        ca,
        ca_index=3,
        issuer_id="04403100",
        expiry="0631",
        serial=77,
        issuer_public_key=issuer.public_key,
    )
    cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="IMAGE-TEST-00002",
        account_number="44030000000000000077",
        account_type=1,
        single_ride_limit=1000,
        user_public_key=user.public_key,
        expires_at=NOW + 3600,
        qr_validity=60,
        extension=extension,
    )
    return sign_ride(user, interop, cert, generated_at=NOW).encode()


@pytest.fixture(scope="module")
def payloads() -> dict[int, bytes]:
    made = {0: make_payload(), 32: make_payload(bytes(range(0xC0, 0xE0)))}
    assert {ext: len(p) for ext, p in made.items()} == {0: 332, 32: 364}
    return made


def png_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    return image.convert("L").crop(box).point(lambda v: 255 if v < 128 else 0).histogram()[255]


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


# -- what is drawn ---------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [0, 32])
@pytest.mark.parametrize("level", ["L", "M"])
def test_png_read_back_is_a_valid_payload(payloads: dict[int, bytes], ext: int, level: str) -> None:
    png = render_png(payloads[ext], RenderOptions(level=ErrorLevel(level), dpi=600))
    read = decode_image(png)
    assert read == payloads[ext]
    assert decode_payload(read).encode() == payloads[ext]


def test_png_is_black_modules_on_white(payloads: dict[int, bytes]) -> None:
    image = png_image(render_png(payloads[0]))
    assert image.mode == "1"  # two colours, nothing in between
    colours = image.convert("L").getcolors()
    assert colours is not None
    assert {value for _, value in colours} == {0, 255}


@pytest.mark.parametrize("ext", [0, 32])
@pytest.mark.parametrize("level", [ErrorLevel.L, ErrorLevel.M])
def test_png_modules_are_the_segno_matrix(
    payloads: dict[int, bytes], ext: int, level: ErrorLevel
) -> None:
    """Sample the centre of every module: the drawing is the matrix, nothing more or less."""
    payload = payloads[ext]
    info = symbol_info(payload, RenderOptions(level=level))
    image = png_image(render_png(payload, RenderOptions(level=level))).convert("L")
    px = info.px_per_module
    band = image.height - image.width
    matrix = segno.make(payload, error=level.value, mode="byte", boost_error=False).matrix
    for y, row in enumerate(matrix):
        for x, cell in enumerate(row):
            centre = ((QUIET_ZONE + x) * px + px // 2, band + (QUIET_ZONE + y) * px + px // 2)
            assert (image.getpixel(centre) == 0) == bool(cell), (x, y)


def test_symbol_info_is_consistent(payloads: dict[int, bytes]) -> None:
    options = RenderOptions(size_mm=25, dpi=600)
    info = symbol_info(payloads[32], options)
    assert info.symbology is Symbology.QR
    assert info.level is ErrorLevel.L
    assert info.module_mm == pytest.approx(info.px_per_module / 600 * 25.4)
    assert info.width_mm == pytest.approx((info.modules + 2 * QUIET_ZONE) * info.module_mm)


def test_caption_is_centred_and_inside_the_image(payloads: dict[int, bytes]) -> None:
    image = png_image(render_png(payloads[0])).convert("L")
    band = image.height - image.width
    ink = image.crop((0, 0, image.width, band)).point(lambda v: 255 if v < 128 else 0).getbbox()
    assert ink is not None
    left, top, right, bottom = ink
    assert top > 0
    assert bottom < band  # white above and below the caption
    assert abs((left + right) / 2 - image.width / 2) <= 2  # centred
    assert (bottom + top) / 2 == pytest.approx(band / 2, abs=2)


def test_long_caption_is_set_smaller_not_clipped(payloads: dict[int, bytes]) -> None:
    caption = "交通联合 · Transport QR · 交通一卡通二维码"
    image = png_image(render_png(payloads[0], RenderOptions(caption=caption))).convert("L")
    band = image.height - image.width
    margin = image.width // 20
    assert dark_pixels(image, (0, 0, margin, band)) == 0
    assert dark_pixels(image, (image.width - margin, 0, image.width, band)) == 0
    assert dark_pixels(image, (margin, 0, image.width - margin, band)) > 100


# -- physical size ---------------------------------------------------------------------------
@pytest.mark.parametrize("size_mm", [20.0, 27.5, 40.0])
def test_pixels_per_module_are_the_closest_whole_number(
    payloads: dict[int, bytes], size_mm: float
) -> None:
    """For every dpi: either a clear refusal, or the whole px/module closest to the request
    among those that keep the symbol within the annex's 20–40 mm and at 3 px or more."""
    total = 65 + 2 * QUIET_ZONE  # version 12
    for dpi in range(72, 1201, 37):
        options = RenderOptions(size_mm=size_mm, dpi=dpi)
        if 3 * total / dpi * 25.4 > 40:
            with pytest.raises(ImageError, match="use at least"):
                symbol_info(payloads[0], options)
            continue
        info = symbol_info(payloads[0], options)
        width = info.width_mm
        assert info.px_per_module >= 3
        assert 20 - 1e-9 <= width <= 40 + 1e-9
        allowed = [px for px in range(3, 200) if 20 - 1e-9 <= total * px / dpi * 25.4 <= 40 + 1e-9]
        best = min(abs(total * px / dpi * 25.4 - size_mm) for px in allowed)
        assert abs(width - size_mm) == pytest.approx(best), dpi


@pytest.mark.parametrize(("ext", "level"), [(0, "L"), (32, "M")])
def test_lowest_dpi_named_in_the_refusal_works(
    payloads: dict[int, bytes], ext: int, level: str
) -> None:
    options = RenderOptions(level=ErrorLevel(level), dpi=72)
    with pytest.raises(ImageError, match=r"dpi 72: .* over the annex's 40 mm") as refused:
        symbol_info(payloads[ext], options)
    assert refused.value.title == "Cannot render the code"
    found = re.search(r"use at least (\d+) dpi", refused.value.message)
    assert found is not None
    least = int(found.group(1))
    info = symbol_info(payloads[ext], RenderOptions(level=ErrorLevel(level), dpi=least))
    assert info.px_per_module == 3
    assert info.width_mm <= 40
    with pytest.raises(ImageError):
        symbol_info(payloads[ext], RenderOptions(level=ErrorLevel(level), dpi=least - 1))


# -- SVG ---------------------------------------------------------------------------------------
def _svg(data: bytes) -> ET.Element:
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(data)  # noqa: S314 - our own output


def _modules(path_d: str) -> list[tuple[float, float]]:
    cells = re.findall(r"M([\d.]+),([\d.]+)h1v1h-1z", path_d)
    assert "".join(f"M{x},{y}h1v1h-1z" for x, y in cells) == path_d  # nothing else in the path
    return [(float(x), float(y)) for x, y in cells]


@pytest.mark.parametrize("symbology", [Symbology.QR, Symbology.HANXIN])
@pytest.mark.parametrize("level", [ErrorLevel.L, ErrorLevel.M])
def test_svg_geometry(payloads: dict[int, bytes], symbology: Symbology, level: ErrorLevel) -> None:
    options = RenderOptions(level=level, symbology=symbology, size_mm=35)
    info = symbol_info(payloads[0], options)
    root = _svg(render_svg(payloads[0], options))
    side = info.modules + 2 * QUIET_ZONE
    _, _, vb_width, vb_height = (float(v) for v in root.attrib["viewBox"].split())
    assert vb_width == side
    width_mm = float(root.attrib["width"].removesuffix("mm"))
    height_mm = float(root.attrib["height"].removesuffix("mm"))
    assert width_mm == pytest.approx(info.width_mm, abs=1e-3)
    assert height_mm / vb_height == pytest.approx(width_mm / vb_width, rel=1e-3)  # square modules
    band = vb_height - side
    assert band == int(band)  # whole modules: the symbol stays on the module grid
    path = root.find(f"{SVG}path")
    assert path is not None
    cells = _modules(path.attrib["d"])
    assert all(x == int(x) and y == int(y) for x, y in cells)
    xs, ys = [x for x, _ in cells], [y for _, y in cells]
    # the quiet zone stays clear on all four sides
    assert min(xs) >= QUIET_ZONE
    assert max(xs) <= QUIET_ZONE + info.modules - 1
    assert min(ys) >= band + QUIET_ZONE
    assert max(ys) <= band + QUIET_ZONE + info.modules - 1


@pytest.mark.parametrize("level", [ErrorLevel.L, ErrorLevel.M])
def test_svg_modules_are_the_segno_matrix(payloads: dict[int, bytes], level: ErrorLevel) -> None:
    root = _svg(render_svg(payloads[0], RenderOptions(level=level)))
    band = float(root.attrib["viewBox"].split()[3]) - float(root.attrib["viewBox"].split()[2])
    path = root.find(f"{SVG}path")
    assert path is not None
    drawn = {
        (int(x) - QUIET_ZONE, int(y - band) - QUIET_ZONE) for x, y in _modules(path.attrib["d"])
    }
    matrix = segno.make(payloads[0], error=level.value, mode="byte", boost_error=False).matrix
    expected = {(x, y) for y, row in enumerate(matrix) for x, cell in enumerate(row) if cell}
    assert drawn == expected


@pytest.mark.usefixtures("cjk_font")
def test_svg_caption_lies_inside_its_band(payloads: dict[int, bytes]) -> None:
    """Measured with a real CJK font's glyph boxes: the caption is neither cut off at the top
    of the viewBox nor drawn into the quiet zone (a regression: it once overflowed the top)."""
    root = _svg(render_svg(payloads[0]))
    side = float(root.attrib["viewBox"].split()[2])
    band = float(root.attrib["viewBox"].split()[3]) - side
    text = root.find(f"{SVG}text")
    assert text is not None
    assert text.text == "交通联合"
    assert text.attrib["text-anchor"] == "middle"
    assert float(text.attrib["x"]) == side / 2
    assert "WenQuanYi Micro Hei" in text.attrib["font-family"]
    size = float(text.attrib["font-size"])
    baseline = float(text.attrib["y"])
    font = ImageFont.truetype(str(CJK_FONT), 1000)
    left, top, right, bottom = font.getbbox("交通联合", anchor="ls")  # relative to the baseline
    assert baseline + top / 1000 * size > 0
    assert baseline + bottom / 1000 * size < band
    assert (right - left) / 1000 * size < side


def test_svg_escapes_the_caption(payloads: dict[int, bytes]) -> None:
    caption = "交通联合 <&> \"'"
    root = _svg(render_svg(payloads[0], RenderOptions(caption=caption)))
    text = root.find(f"{SVG}text")
    assert text is not None
    assert text.text == caption


# -- Han Xin ---------------------------------------------------------------------------------
def _zint_raster(payload: bytes, ecc: int) -> list[list[bool]]:
    """zint's own bitmap at one pixel per module: the independent view of the symbol."""
    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.HANXIN
    symbol.input_mode = zint.InputMode(0)  # DATA
    symbol.option_1 = ecc
    symbol.encode(payload)
    symbol.scale = 0.5  # zint's raster scale 0.5 is one pixel per module
    symbol.buffer()
    bitmap = symbol.bitmap
    assert bitmap is not None
    pixels = cast(list[list[list[int]]], bitmap.tolist())  # rows of (r, g, b)
    return [[rgb[0] < 128 for rgb in row] for row in pixels]


# Han Xin mixes modes (numeric, text, binary…), so its version depends a little on content: a
# 364-byte payload takes version 25 or 26 at level 2 depending on its extension bytes. The
# sets are what zint chose over hundreds of random payloads (docs/images.md).
@pytest.mark.parametrize(
    ("ext", "level", "ecc", "versions"),
    [(0, ErrorLevel.L, 1, {21}), (32, ErrorLevel.L, 1, {22, 23}), (0, ErrorLevel.M, 2, {24}),
     (32, ErrorLevel.M, 2, {25, 26})],
)  # fmt: skip
def test_han_xin_png_is_zints_symbol(
    payloads: dict[int, bytes], ext: int, level: ErrorLevel, ecc: int, versions: set[int]
) -> None:
    options = RenderOptions(symbology=Symbology.HANXIN, level=level)
    info = symbol_info(payloads[ext], options)
    assert info.version in versions
    version = info.version
    assert info.modules == 21 + 2 * version  # GB/T 21049
    raster = _zint_raster(payloads[ext], ecc)
    assert len(raster) == info.modules
    image = png_image(render_png(payloads[ext], options)).convert("L")
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert 20 <= image.width / 300 * 25.4 <= 40
    px = info.px_per_module
    band = image.height - image.width
    assert dark_pixels(image, (0, 0, image.width, band)) > 50  # the caption
    for y, row in enumerate(raster):
        for x, dark in enumerate(row):
            centre = ((QUIET_ZONE + x) * px + px // 2, band + (QUIET_ZONE + y) * px + px // 2)
            assert (image.getpixel(centre) == 0) == dark, (x, y)


def test_han_xin_encodes_bytes_not_text(payloads: dict[int, bytes]) -> None:
    """The payload is binary: in zint's UNICODE mode it would be rejected or transcoded; the
    symbol drawn is the DATA-mode one."""
    options = RenderOptions(symbology=Symbology.HANXIN)
    image = png_image(render_png(payloads[0], options)).convert("L")
    info = symbol_info(payloads[0], options)
    drawn = [
        [
            image.getpixel(
                (
                    (QUIET_ZONE + x) * info.px_per_module + 1,
                    image.height - image.width + (QUIET_ZONE + y) * info.px_per_module + 1,
                )
            )
            == 0
            for x in range(info.modules)
        ]
        for y in range(info.modules)
    ]
    assert drawn == _zint_raster(payloads[0], 1)


def test_han_xin_cannot_be_read_back_and_the_docs_say_so(payloads: dict[int, bytes]) -> None:
    png = render_png(payloads[0], RenderOptions(symbology=Symbology.HANXIN))
    with pytest.raises(ImageError, match="no open-source Han Xin decoder exists") as refused:
        decode_image(png)
    assert refused.value.title == "Cannot read the image"
    docs = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "No open-source Han Xin decoder exists" in docs
    assert "cannot read Han Xin images back" in docs


def test_too_much_data_is_refused() -> None:
    with pytest.raises(ImageError, match="do not fit any QR version at level M"):
        render_png(bytes(3000), RenderOptions(level=ErrorLevel.M))
    with pytest.raises(ImageError, match="Han Xin encoding failed"):
        render_svg(bytes(9000), RenderOptions(symbology=Symbology.HANXIN))


# -- options -----------------------------------------------------------------------------------
def test_options_accept_the_cli_strings() -> None:
    options = RenderOptions(level="M", symbology="hanxin")  # type: ignore[arg-type]
    assert options.level is ErrorLevel.M
    assert options.symbology is Symbology.HANXIN
    assert RenderOptions(size_mm=20).size_mm == 20
    assert RenderOptions(size_mm=40.0, dpi=72).dpi == 72
    assert RenderOptions(dpi=1200).dpi == 1200


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size_mm": 19.99}, "size_mm 19.99"),
        ({"size_mm": 40.01}, "size_mm 40.01"),
        ({"size_mm": math.nan}, "size_mm nan"),
        ({"size_mm": "30"}, "size_mm '30'"),
        ({"dpi": 71}, "dpi 71"),
        ({"dpi": 1201}, "dpi 1201"),
        ({"dpi": 300.5}, "dpi 300.5"),
        ({"level": "H"}, "level 'H'"),
        ({"level": "Q"}, "level 'Q'"),
        ({"symbology": "pdf417"}, "symbology 'pdf417'"),
        ({"caption": ""}, "caption ''"),
        ({"caption": "交通\n联合"}, "caption"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ImageError) as refused:
        RenderOptions(**kwargs)  # type: ignore[arg-type]
    assert refused.value.message.startswith(needle)
    assert refused.value.title == "Cannot render the code"


# -- the caption font --------------------------------------------------------------------------
def test_pillows_own_font_is_refused_not_drawn_as_tofu(
    payloads: dict[int, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pillow's bundled default font (a Latin font) has no 交通联合 glyphs."""
    bundled = ImageFont.load_default(20)
    assert isinstance(bundled, ImageFont.FreeTypeFont)
    assert isinstance(bundled.path, io.BytesIO)
    font_file = tmp_path / "pillow-default.ttf"
    font_file.write_bytes(bundled.path.getvalue())
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(font_file))
    with pytest.raises(ImageError, match="has no glyph for '交'") as refused:
        render_png(payloads[0])
    assert "fonts-wqy-microhei" in refused.value.message
    assert "JTCA_CAPTION_FONT" in refused.value.message
    # A Latin caption is fine in that font; the SVG needs no font file at all.
    assert looks_like_image(render_png(payloads[0], RenderOptions(caption="Transport QR")))
    assert b"\xe4\xba\xa4" in render_svg(payloads[0])  # 交 in UTF-8


def test_a_file_that_is_no_font_is_refused(
    payloads: dict[int, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("not a font")
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(not_a_font))
    with pytest.raises(ImageError, match="cannot load caption font"):
        render_png(payloads[0])


@pytest.mark.usefixtures("cjk_font")
def test_the_font_named_in_the_environment_is_used(
    payloads: dict[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(CJK_FONT))
    assert decode_image(render_png(payloads[32])) == payloads[32]


# -- reading back ------------------------------------------------------------------------------
def _rendered(payload: bytes) -> Image.Image:
    return png_image(render_png(payload, RenderOptions(dpi=600))).convert("RGB")


FORMATS: list[tuple[str, dict[str, object]]] = [
    ("PNG", {}),
    ("JPEG", {"quality": 75}),
    ("GIF", {}),
    ("BMP", {}),
    ("TIFF", {}),
    ("TIFF", {"compression": "tiff_lzw"}),
]
if features.check("webp"):
    FORMATS.append(("WEBP", {"quality": 80}))


@pytest.mark.parametrize(("fmt", "params"), FORMATS, ids=lambda v: str(v) if v else "")
def test_every_image_format_reads_back(
    payloads: dict[int, bytes], fmt: str, params: dict[str, object]
) -> None:
    data = encode(_rendered(payloads[32]), fmt, **params)
    assert looks_like_image(data)
    assert decode_image(data) == payloads[32]


def test_transparent_background_is_paper_not_black(payloads: dict[int, bytes]) -> None:
    """A code drawn as black modules on a transparent background (common from other tools):
    the transparent areas are white paper."""
    grey = _rendered(payloads[0]).convert("L")
    rgba = Image.new("RGBA", grey.size, (0, 0, 0, 0))
    rgba.putalpha(grey.point(lambda v: 255 - v))  # opaque black where dark, clear elsewhere
    assert decode_image(encode(rgba, "PNG")) == payloads[0]


def test_photo_like_image_reads_back(payloads: dict[int, bytes]) -> None:
    """Scaled, rotated a little, on a grey background, saved as JPEG."""
    code = _rendered(payloads[0]).resize((900, 1060), Image.Resampling.BILINEAR)
    code = code.rotate(4, expand=True, fillcolor=(255, 255, 255))
    photo = Image.new("RGB", (code.width + 300, code.height + 300), (150, 150, 150))
    photo.paste(code, (150, 150))
    assert decode_image(encode(photo, "JPEG", quality=85)) == payloads[0]


def test_two_codes_are_refused(payloads: dict[int, bytes]) -> None:
    first, second = _rendered(payloads[0]), _rendered(payloads[32])
    sheet = Image.new(
        "RGB", (first.width + second.width, max(first.height, second.height)), "white"
    )
    sheet.paste(first, (0, 0))
    sheet.paste(second, (first.width, 0))
    with pytest.raises(ImageError, match="2 QR codes in the image; give one"):
        decode_image(encode(sheet, "PNG"))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_decompression_bomb_is_refused() -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 grey pixels
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + _png_chunk(b"IEND", b"")
    )
    assert looks_like_image(bomb)
    with pytest.raises(ImageError, match="too large to read safely") as refused:
        decode_image(bomb)
    assert refused.value.title == "Cannot read the image"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 64, b"GIF89a truncated", b"\xff\xd8\xff\xe0 truncated jpeg"],
)
def test_unreadable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ImageError, match="not a readable image") as refused:
        decode_image(data)
    assert refused.value.title == "Cannot read the image"


def test_a_payload_is_not_an_image_for_the_reader(payloads: dict[int, bytes]) -> None:
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(payloads[0])


# -- telling an image from a payload ----------------------------------------------------------
def test_payloads_do_not_look_like_images(payloads: dict[int, bytes]) -> None:
    for payload in payloads.values():
        assert not looks_like_image(payload)


@pytest.mark.parametrize(
    "data",
    [b"", b"BM", b"BM" + bytes(30), b"RIFF\x00\x00\x00\x00WAVEfmt ", b"GIF8", b"\x89PNG", b"II*"],
)
def test_near_misses_are_not_images(data: bytes) -> None:
    assert not looks_like_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_every_supported_format_looks_like_an_image(fmt: str) -> None:
    if fmt == "WEBP":
        assert features.check("webp"), "Pillow's wheels include WebP; this build lacks it"
    assert looks_like_image(encode(Image.new("RGB", (8, 8), "white"), fmt))


def test_render_defaults_match_the_issue(payloads: dict[int, bytes]) -> None:
    """Level L, 30 mm, 300 dpi, the 交通联合 caption, QR: what the CLI draws without options."""
    default = RenderOptions()
    assert (default.level, default.size_mm, default.dpi, default.caption, default.symbology) == (
        ErrorLevel.L,
        30.0,
        300,
        "交通联合",
        Symbology.QR,
    )
    render: Callable[[bytes], bytes]
    for render in (render_png, render_svg):
        assert render(payloads[0]) == render(payloads[0], default)
