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

Both renderers draw the module matrix themselves (Pillow rectangles, one SVG subpath per dark
module), so QR and Han Xin share one layout: a caption band of twice the caption's font size,
then the square symbol with its quiet zone.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, cast
from xml.sax.saxutils import escape, quoteattr

import segno
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from ca.core.errors import JtcaError

CAPTION: Final = "交通联合"  # annex 展示规格: the caption shown with the code
QUIET_ZONE: Final = 4  # modules (ISO/IEC 18004 §6.3.8); Han Xin asks for 3, 4 does no harm
MIN_MM, MAX_MM = 20.0, 40.0  # annex 展示规格: 20–40 mm
MIN_DPI, MAX_DPI = 72, 1200
MIN_PX_PER_MODULE: Final = 3  # below this a printed or scanned module is no longer reliable
MM_PER_INCH: Final = 25.4
CAPTION_EM: Final = 0.09  # caption font size as a share of the symbol's width (quiet zone in)
CAPTION_MAX_WIDTH: Final = 0.9  # the caption never spans more than this share of the width
FONT_ENV: Final = "JTCA_CAPTION_FONT"
FONT_PATHS: Final = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian fonts-wqy-zenhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora, Arch
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
)
SVG_FONTS: Final = (
    "'WenQuanYi Micro Hei','Noto Sans CJK SC','Source Han Sans SC','PingFang SC',"
    "'Microsoft YaHei','SimHei',sans-serif"
)


class ImageError(JtcaError):
    """An image that cannot be drawn or read: names the option, the font or the reason."""

    title = "Cannot render the code"
    exit_code = 3


READ_TITLE: Final = "Cannot read the image"


class Symbology(StrEnum):
    QR = "qr"
    HANXIN = "hanxin"


class ErrorLevel(StrEnum):
    L = "L"  # 7 %: exactly the annex's 容错率 "7% 以上"
    M = "M"  # 15 %: also meets "以上", at the cost of a larger version


@dataclass(frozen=True, slots=True)
class RenderOptions:
    level: ErrorLevel = ErrorLevel.L
    size_mm: float = 30.0  # width of the symbol with its quiet zone
    dpi: int = 300
    caption: str = CAPTION
    symbology: Symbology = Symbology.QR

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "level", ErrorLevel(self.level))
        except ValueError:
            raise ImageError(f"level {self.level!r}: must be L or M") from None
        try:
            object.__setattr__(self, "symbology", Symbology(self.symbology))
        except ValueError:
            raise ImageError(f"symbology {self.symbology!r}: must be qr or hanxin") from None
        size = self.size_mm
        if isinstance(size, bool) or not isinstance(size, int | float):
            raise ImageError(f"size_mm {size!r}: must be a number of millimetres")
        if not MIN_MM <= size <= MAX_MM:  # annex 展示规格: 20–40 mm (NaN fails too)
            raise ImageError(
                f"size_mm {size:g}: the annex asks for {MIN_MM:g}-{MAX_MM:g} mm (展示规格)"
            )
        dpi = self.dpi
        if isinstance(dpi, bool) or not isinstance(dpi, int):
            raise ImageError(f"dpi {dpi!r}: must be a whole number")
        if not MIN_DPI <= dpi <= MAX_DPI:
            raise ImageError(f"dpi {dpi}: must be {MIN_DPI}-{MAX_DPI}")
        caption = self.caption
        if not isinstance(caption, str) or not caption.strip() or not caption.isprintable():
            raise ImageError(
                f"caption {caption!r}: must be one line of printable text (the annex's {CAPTION})"
            )


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """What was drawn, for the CLI to show."""

    symbology: Symbology
    version: int  # QR 1-40; Han Xin 1-84
    modules: int  # per side, without the quiet zone
    level: ErrorLevel
    px_per_module: int
    module_mm: float
    width_mm: float  # with the quiet zone


Matrix = list[list[bool]]


# -- the symbol as a matrix ----------------------------------------------------------------
def _qr_matrix(payload: bytes, level: ErrorLevel) -> tuple[Matrix, int]:
    try:
        # Byte mode, the requested level and nothing smarter: boost_error would silently raise
        # the level, and a Micro QR cannot hold a payload anyway.
        symbol = segno.make(payload, error=level.value, mode="byte", boost_error=False, micro=False)
    except segno.DataOverflowError:
        raise ImageError(
            f"{len(payload)} bytes do not fit any QR version at level {level}"
        ) from None
    matrix = [[bool(cell) for cell in row] for row in symbol.matrix]
    return matrix, int(symbol.version)


# Han Xin error correction levels 1-4 recover about 8, 15, 23 and 30 % (GB/T 21049).
_HANXIN_LEVEL: Final = {ErrorLevel.L: 1, ErrorLevel.M: 2}


def _hanxin_matrix(payload: bytes, level: ErrorLevel) -> tuple[Matrix, int]:
    import zint

    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.HANXIN
    # InputMode.DATA (0): the bytes as they are, not text to transcode (the stubs omit DATA).
    symbol.input_mode = zint.InputMode(0)
    symbol.option_1 = _HANXIN_LEVEL[level]
    try:
        symbol.encode(payload)
    except (RuntimeError, ValueError) as exc:
        raise ImageError(f"Han Xin encoding failed: {exc}") from None
    rows, width = int(symbol.rows), int(symbol.width)
    # GB/T 21049: version v is (21 + 2v) modules per side, v = 1-84.
    version, odd = divmod(width - 21, 2)
    if rows != width or odd or not 1 <= version <= 84:
        raise ImageError(f"zint drew a {rows}×{width} Han Xin symbol, which is no Han Xin size")
    packed = cast(list[list[int]], symbol.encoded_data.tolist())
    # zint packs each row's modules as bits, least significant first (module_is_set()).
    matrix = [[bool((packed[y][x >> 3] >> (x & 7)) & 1) for x in range(width)] for y in range(rows)]
    return matrix, version


def _matrix(payload: bytes, options: RenderOptions) -> tuple[Matrix, int]:
    if options.symbology == Symbology.HANXIN:
        return _hanxin_matrix(payload, options.level)
    return _qr_matrix(payload, options.level)


def _px_per_module(modules: int, options: RenderOptions) -> int:
    """Whole pixels per module putting the symbol with its quiet zone closest to size_mm,
    never under 3 px per module and never outside the annex's 20–40 mm."""
    total = modules + 2 * QUIET_ZONE
    px_per_mm = options.dpi / MM_PER_INCH
    lowest = max(MIN_PX_PER_MODULE, math.ceil(MIN_MM * px_per_mm / total - 1e-9))
    highest = math.floor(MAX_MM * px_per_mm / total + 1e-9)
    if highest < lowest:
        smallest_mm = total * MIN_PX_PER_MODULE / px_per_mm
        needed_dpi = math.ceil(total * MIN_PX_PER_MODULE * MM_PER_INCH / MAX_MM)
        raise ImageError(
            f"dpi {options.dpi}: {total} modules (quiet zone included) at {MIN_PX_PER_MODULE} px "
            f"each measure {smallest_mm:.1f} mm, over the annex's {MAX_MM:g} mm (展示规格); "
            f"use at least {needed_dpi} dpi"
        )
    wanted = round(options.size_mm * px_per_mm / total)
    return min(max(wanted, lowest), highest)


def symbol_info(payload: bytes, options: RenderOptions | None = None) -> SymbolInfo:
    """The symbol ``render_png``/``render_svg`` draw for these options (version, size…)."""
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    return _info(matrix, version, opts)


def _info(matrix: Matrix, version: int, options: RenderOptions) -> SymbolInfo:
    modules = len(matrix)
    px = _px_per_module(modules, options)
    module_mm = px / options.dpi * MM_PER_INCH
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
_INSTALL_HINT: Final = (
    f"install Debian's fonts-wqy-microhei (scripts/bootstrap does) or set {FONT_ENV} to a CJK "
    "font file"
)


def caption_font_path() -> Path:
    """A font for the caption: $JTCA_CAPTION_FONT, known CJK fonts, else ``fc-match :lang=zh``.

    The glyphs are checked when the font is loaded (``fc-match`` names its best match even
    when no Chinese font is installed).
    """
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
        try:
            found = subprocess.run(
                [fc_match, "-f", "%{file}", ":lang=zh"],
                capture_output=True,
                text=True,
                check=False,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            found = ""
        if found and Path(found).is_file():
            return Path(found)
    raise ImageError(f"no font with Chinese glyphs for the {CAPTION} caption: {_INSTALL_HINT}")


_NOT_IN_ANY_FONT: Final = "\U0010fffd"  # private use: what the font draws for a missing glyph


def _load_caption_font(size_px: int, caption: str) -> ImageFont.FreeTypeFont:
    path = caption_font_path()
    try:
        font = ImageFont.truetype(str(path), size_px)
    except OSError as exc:
        raise ImageError(f"cannot load caption font {path}: {exc}") from None
    # A font without the glyphs draws every character as the same .notdef box (or nothing):
    # refuse rather than print tofu.
    notdef = font.getmask(_NOT_IN_ANY_FONT)
    notdef_key = (notdef.getbbox(), bytes(notdef))
    for char in dict.fromkeys(caption):
        if char.isspace():
            continue
        mask = font.getmask(char)
        if mask.getbbox() is None or (mask.getbbox(), bytes(mask)) == notdef_key:
            raise ImageError(
                f"caption font {path} has no glyph for {char!r} ({unicodedata.name(char, '?')}): "
                f"{_INSTALL_HINT}"
            )
    return font


def _fitting_caption_font(side_px: int, caption: str) -> ImageFont.FreeTypeFont:
    size = max(12, round(side_px * CAPTION_EM))
    font = _load_caption_font(size, caption)
    width = font.getlength(caption)
    limit = side_px * CAPTION_MAX_WIDTH
    if width > limit:  # a long custom caption: smaller type rather than a clipped caption
        size = max(8, math.floor(size * limit / width))
        font = font.font_variant(size=size)
    return font


# -- PNG -----------------------------------------------------------------------------------
def render_png(payload: bytes, options: RenderOptions | None = None) -> bytes:
    """A 1-bit PNG: the caption band, then the square symbol with its quiet zone; dpi stored."""
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    info = _info(matrix, version, opts)
    px = info.px_per_module
    side = (info.modules + 2 * QUIET_ZONE) * px
    font = _fitting_caption_font(side, opts.caption)
    band = 2 * round(font.size)  # half a line of white above and below the caption
    image = Image.new("1", (side, side + band), 1)
    draw = ImageDraw.Draw(image)
    # Centred on the band by the ink itself, whatever the font's ascent and descent.
    left, top, right, bottom = draw.textbbox((0, 0), opts.caption, font=font)
    x = (side - (right - left)) / 2 - left
    y = (band - (bottom - top)) / 2 - top
    draw.text((x, y), opts.caption, font=font, fill=0)
    origin_y = band + QUIET_ZONE * px
    for row_index, row in enumerate(matrix):
        for col_index, dark in enumerate(row):
            if dark:
                x0 = (QUIET_ZONE + col_index) * px
                y0 = origin_y + row_index * px
                draw.rectangle((x0, y0, x0 + px - 1, y0 + px - 1), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(opts.dpi, opts.dpi), optimize=True)
    return out.getvalue()


# -- SVG -----------------------------------------------------------------------------------
def _em_width(caption: str) -> float:
    """The caption's width in em without the font: CJK and other wide characters 1 em."""
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in caption)


def render_svg(payload: bytes, options: RenderOptions | None = None) -> bytes:
    """UTF-8 SVG sized in millimetres; user units are modules. The viewer supplies the font."""
    opts = options or RenderOptions()
    matrix, version = _matrix(payload, opts)
    info = _info(matrix, version, opts)
    side = info.modules + 2 * QUIET_ZONE
    font_size = min(side * CAPTION_EM, side * CAPTION_MAX_WIDTH / _em_width(opts.caption))
    band = math.ceil(2 * font_size)  # the PNG's layout, in whole modules to keep them aligned
    # CJK glyphs sit from about 0.88 em above the baseline to 0.12 em below it: a baseline
    # 0.38 em under the band's middle centres the ink whatever dominant-baseline support the
    # viewer has.
    baseline = band / 2 + 0.38 * font_size
    height = side + band
    path = "".join(
        f"M{QUIET_ZONE + x},{band + QUIET_ZONE + y:g}h1v1h-1z"
        for y, row in enumerate(matrix)
        for x, dark in enumerate(row)
        if dark
    )
    caption = escape(opts.caption)
    title = f"{caption} {opts.symbology.value} version {version}, level {opts.level.value}"
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{info.width_mm:.3f}mm" '
        f'height="{height * info.module_mm:.3f}mm" viewBox="0 0 {side} {height:g}" '
        'shape-rendering="crispEdges">\n'
        f"<title>{title}</title>\n"
        f'<rect width="{side}" height="{height:g}" fill="#fff"/>\n'
        f'<text x="{side / 2:g}" y="{baseline:g}" font-size="{font_size:g}" '
        f'text-anchor="middle" font-family={quoteattr(SVG_FONTS)} fill="#000">{caption}</text>\n'
        f'<path fill="#000" d="{path}"/>\n'
        "</svg>\n"
    )
    return svg.encode("utf-8")


# -- reading back --------------------------------------------------------------------------
_BMP_HEADER_SIZES: Final = frozenset({12, 40, 52, 56, 64, 108, 124})


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like a PNG, JPEG, GIF, BMP, WebP or TIFF file (a payload starts
    with 0x80 or 0x81, so the two never meet)."""
    if data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")):
        return True
    if data.startswith((b"II*\x00", b"MM\x00*")):  # TIFF, little and big endian
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    # BMP: "BM", then the DIB header's size at offset 14 is one of the known header sizes.
    return data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES


def _flatten(picture: Image.Image) -> Image.Image:
    """Greyscale, transparent areas as white paper (not as the black of RGBA's zero)."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(paper, rgba)
    return picture.convert("L")


def decode_image(image: bytes) -> bytes:
    """The bytes of the one QR code in ``image`` (zxing-cpp). Han Xin cannot be read back."""
    import zxingcpp

    try:
        with Image.open(io.BytesIO(image)) as opened:
            opened.load()
            picture = _flatten(opened)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large to read safely: {exc}", title=READ_TITLE) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"not a readable image: {exc}", title=READ_TITLE) from None
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    results = zxingcpp.read_barcodes(picture, formats=qr_only)
    if not results:
        raise ImageError(
            "no QR code found in the image (only QR can be read back: no open-source Han Xin "
            "decoder exists)",
            title=READ_TITLE,
        )
    if len(results) > 1:
        raise ImageError(f"{len(results)} QR codes in the image; give one", title=READ_TITLE)
    return bytes(results[0].bytes)
