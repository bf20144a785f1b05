"""Drawing a payload as a symbol with the 交通联合 caption, and reading QR images back.

- QR (ISO/IEC 18004) by segno, byte mode, level L by default (annex 容错率 "7% 以上"), M on
  request. The whole field table needs version 12 at L; see ``ca.qr.spec`` for the annex's
  contradictory "25×25" figure.
- Han Xin (GB/T 21049, encouraged by the annex) by zint (``zint-bindings``). No open-source
  Han Xin decoder exists, so jtca cannot read Han Xin images back (docs/images.md).
- Physical size: the symbol with its quiet zone measures ``size_mm`` (annex 展示规格: 20–40 mm)
  as closely as whole pixels per module allow at the given dpi; PNGs carry the dpi, SVGs are
  sized in millimetres. Dark modules on white; the caption is centred above the symbol.
- Reading back: zxing-cpp, QR only.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, cast
from xml.sax.saxutils import escape

import segno
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from ca.errors import JtcaError

CAPTION: Final = "交通联合"
QUIET_ZONE: Final = 4  # modules (ISO/IEC 18004 §6.3.8); Han Xin asks for 3, 4 does no harm
MIN_MM, MAX_MM = 20.0, 40.0  # annex 展示规格
MIN_PX_PER_MODULE: Final = 3
FONT_ENV: Final = "JTCA_CAPTION_FONT"
FONT_PATHS: Final = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)
SVG_FONTS: Final = (
    "'WenQuanYi Micro Hei','Noto Sans CJK SC','Source Han Sans SC','SimHei',sans-serif"
)


class ImageError(JtcaError):
    title = "Cannot render the code"
    exit_code = 3


class Symbology(StrEnum):
    QR = "qr"
    HANXIN = "hanxin"


class ErrorLevel(StrEnum):
    L = "L"  # 7 %
    M = "M"  # 15 %


@dataclass(frozen=True, slots=True)
class RenderOptions:
    level: ErrorLevel = ErrorLevel.L
    size_mm: float = 30.0
    dpi: int = 300
    caption: str = CAPTION
    symbology: Symbology = Symbology.QR

    def __post_init__(self) -> None:
        if not MIN_MM <= self.size_mm <= MAX_MM:
            raise ImageError(
                f"size_mm {self.size_mm}: the annex asks for {MIN_MM:g}-{MAX_MM:g} mm (展示规格)"
            )
        if not 72 <= self.dpi <= 1200:
            raise ImageError(f"dpi {self.dpi}: must be 72-1200")
        try:
            ErrorLevel(self.level)
            Symbology(self.symbology)
        except ValueError as exc:
            raise ImageError(f"{exc}") from None


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbology: Symbology
    version: int
    modules: int  # per side, without the quiet zone
    level: ErrorLevel
    px_per_module: int
    module_mm: float
    width_mm: float  # with the quiet zone


# -- the symbol as a matrix ----------------------------------------------------------------
def _qr_matrix(payload: bytes, level: ErrorLevel) -> tuple[list[list[bool]], int]:
    try:
        symbol = segno.make(payload, error=level.value, mode="byte", boost_error=False, micro=False)
    except segno.DataOverflowError:
        raise ImageError(
            f"{len(payload)} bytes do not fit any QR version at level {level}"
        ) from None
    matrix = [[bool(cell) for cell in row] for row in symbol.matrix]
    return matrix, int(symbol.version)


# Han Xin error correction levels 1-4 recover about 8, 15, 23 and 30 %.
_HANXIN_LEVEL: Final = {ErrorLevel.L: 1, ErrorLevel.M: 2}


def _hanxin_matrix(payload: bytes, level: ErrorLevel) -> tuple[list[list[bool]], int]:
    import zint

    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.HANXIN
    symbol.input_mode = zint.InputMode(0)  # DATA: bytes as they are, not text
    symbol.option_1 = _HANXIN_LEVEL[level]
    try:
        symbol.encode(payload)
    except (RuntimeError, ValueError) as exc:
        raise ImageError(f"Han Xin encoding failed: {exc}") from None
    rows, width = int(symbol.rows), int(symbol.width)
    packed = cast(list[list[int]], symbol.encoded_data.tolist())
    # zint packs each row's modules as bits, least significant first (module_is_set()).
    matrix = [[bool((packed[y][x >> 3] >> (x & 7)) & 1) for x in range(width)] for y in range(rows)]
    return matrix, (width - 21) // 2  # GB/T 21049: version v is (21 + 2v) modules per side


def _matrix(payload: bytes, options: RenderOptions) -> tuple[list[list[bool]], int]:
    if options.symbology == Symbology.HANXIN:
        return _hanxin_matrix(payload, options.level)
    return _qr_matrix(payload, options.level)


def _px_per_module(modules: int, options: RenderOptions) -> int:
    total = modules + 2 * QUIET_ZONE
    wanted_px = options.size_mm / 25.4 * options.dpi
    px = max(MIN_PX_PER_MODULE, round(wanted_px / total))
    while px > MIN_PX_PER_MODULE and total * px / options.dpi * 25.4 > MAX_MM:
        px -= 1
    while total * px / options.dpi * 25.4 < MIN_MM:
        px += 1
    width_mm = total * px / options.dpi * 25.4
    if width_mm > MAX_MM:
        raise ImageError(
            f"dpi {options.dpi}: {total} modules at {MIN_PX_PER_MODULE} px each measure "
            f"{width_mm:.1f} mm, over the annex's {MAX_MM:g} mm; use a higher dpi"
        )
    return px


def symbol_info(payload: bytes, options: RenderOptions | None = None) -> SymbolInfo:
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    return _info(matrix, version, opts)


def _info(matrix: list[list[bool]], version: int, options: RenderOptions) -> SymbolInfo:
    modules = len(matrix)
    px = _px_per_module(modules, options)
    module_mm = px / options.dpi * 25.4
    return SymbolInfo(
        symbology=options.symbology,
        version=version,
        modules=modules,
        level=options.level,
        px_per_module=px,
        module_mm=module_mm,
        width_mm=(modules + 2 * QUIET_ZONE) * module_mm,
    )


# -- the caption font ----------------------------------------------------------------------
def caption_font_path() -> Path:
    """A font that has the caption's glyphs: $JTCA_CAPTION_FONT, known CJK fonts, fc-match."""
    explicit = os.environ.get(FONT_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ImageError(f"{FONT_ENV}={explicit}: no such font file")
        return path
    for candidate in FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    fc_match = shutil.which("fc-match")
    if fc_match:
        found = subprocess.run(
            [fc_match, "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found and Path(found).is_file():
            return Path(found)
    raise ImageError(
        "no font with Chinese glyphs for the 交通联合 caption: install Debian's "
        f"fonts-wqy-microhei (scripts/bootstrap does) or set {FONT_ENV} to a CJK font file"
    )


def _load_caption_font(size_px: int, caption: str) -> ImageFont.FreeTypeFont:
    path = caption_font_path()
    try:
        font = ImageFont.truetype(str(path), size_px)
    except OSError as exc:
        raise ImageError(f"cannot load caption font {path}: {exc}") from None
    # A font without the glyphs draws every character as the same .notdef box: refuse tofu.
    missing = "\U0010fffd"
    notdef = font.getmask(missing).getbbox(), bytes(font.getmask(missing))
    for char in caption:
        if char.isspace():
            continue
        mask = font.getmask(char)
        if mask.getbbox() is None or (mask.getbbox(), bytes(mask)) == notdef:
            raise ImageError(
                f"caption font {path} has no glyph for {char!r}: set {FONT_ENV} to a CJK font"
            )
    return font


# -- PNG -----------------------------------------------------------------------------------
def render_png(payload: bytes, options: RenderOptions | None = None) -> bytes:
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    info = _info(matrix, version, opts)
    px = info.px_per_module
    side = (info.modules + 2 * QUIET_ZONE) * px
    caption_px = max(12, round(side * 0.09))
    font = _load_caption_font(caption_px, opts.caption)
    left, top, right, bottom = font.getbbox(opts.caption)
    band = int(bottom - top) + caption_px  # the caption plus half a line above and below
    image = Image.new("1", (side, side + band), 1)
    draw = ImageDraw.Draw(image)
    draw.text(
        ((side - (right - left)) // 2 - left, caption_px // 2 - top),
        opts.caption,
        font=font,
        fill=0,
    )
    origin_y = band + QUIET_ZONE * px
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                x0 = (QUIET_ZONE + x) * px
                y0 = origin_y + y * px
                draw.rectangle((x0, y0, x0 + px - 1, y0 + px - 1), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(opts.dpi, opts.dpi), optimize=True)
    return out.getvalue()


# -- SVG -----------------------------------------------------------------------------------
def render_svg(payload: bytes, options: RenderOptions | None = None) -> bytes:
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    info = _info(matrix, version, opts)
    side = info.modules + 2 * QUIET_ZONE  # user units = modules
    band = 4.0  # modules reserved above the symbol for the caption
    font_size = side * 0.09
    height = side + band
    path = "".join(
        f"M{QUIET_ZONE + x},{band + QUIET_ZONE + y}h1v1h-1z"
        for y, row in enumerate(matrix)
        for x, dark in enumerate(row)
        if dark
    )
    caption = escape(opts.caption)
    title = f"{caption} {opts.symbology.value} v{version}-{opts.level.value}"
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{info.width_mm:.2f}mm" '
        f'height="{height * info.module_mm:.2f}mm" viewBox="0 0 {side} {height:g}" '
        'shape-rendering="crispEdges">\n'
        f"<title>{title}</title>\n"
        f'<rect width="{side}" height="{height:g}" fill="#fff"/>\n'
        f'<text x="{side / 2:g}" y="{band * 0.75:g}" font-size="{font_size:.2f}" '
        f'text-anchor="middle" font-family="{SVG_FONTS}" fill="#000">{caption}</text>\n'
        f'<path fill="#000" d="{path}"/>\n'
        "</svg>\n"
    )
    return svg.encode("utf-8")


# -- reading back --------------------------------------------------------------------------
_MAGIC: Final = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)


def looks_like_image(data: bytes) -> bool:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return any(data.startswith(magic) for magic in _MAGIC)


def decode_image(image: bytes) -> bytes:
    """The bytes of the one QR code in ``image`` (zxing-cpp). Han Xin cannot be read back."""
    import zxingcpp

    try:
        picture = Image.open(io.BytesIO(image))
        picture.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"not a readable image: {exc}", title="Cannot read the image") from None
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    results = zxingcpp.read_barcodes(picture.convert("L"), formats=qr_only)
    if not results:
        raise ImageError(
            "no QR code found in the image (only QR can be read back: no open-source Han Xin "
            "decoder exists)",
            title="Cannot read the image",
        )
    if len(results) > 1:
        raise ImageError(
            f"{len(results)} QR codes in the image; give one", title="Cannot read the image"
        )
    return bytes(results[0].bytes)
