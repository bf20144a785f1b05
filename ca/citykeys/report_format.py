"""A key report an officer can hand on: CSV, Markdown and an expiry timeline chart (PNG).

The rows are city keys (一城一密) as the caller read them; this module only formats them.
Pure: no PKCS#11, no SQL, no UI; the one I/O is ``write_report``, which writes the three
files with ``ca.core.files.write_atomically`` (temporary file in the same directory, fsync,
``os.replace``, directory fsync).

- Times are ISO-8601 UTC with a Z (``ca.core.clock.iso_utc``); ``now`` is passed in.
- "Days left" is whole days until ``not_after``, rounded down: 0 ends within 24 hours, a
  negative number is overdue.
- "Live" keys are pre-active, active or suspended (as in ``ca.citykeys.expiry``); deactivated,
revoked
  and destroyed keys are listed but never counted as expiring, overdue or in the chart.
- CSV cells taken from the rows are neutralised against formula injection (OWASP "CSV
  Injection"): a cell starting with = + - @, a tab or a carriage return gets a leading '.
- The chart's geometry is exported (``WIDTH``, ``HEIGHT``, ``PLOT_*``, ``slot_span``,
  ``bar_scale``) so tests and callers can find a month's bar by its pixels.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ca.citykeys.lifecycle import KeyState
from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.core.files import write_atomically

if TYPE_CHECKING:  # pillow is the extra 'images': imported where a chart is drawn
    from PIL import Image, ImageDraw, ImageFont

DAY: Final = 86400
LIVE_STATES: Final = frozenset({KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.SUSPENDED})
EXPIRY_WINDOWS: Final = (30, 90, 180)  # days: the summary's "expiring within" counts
SOON_DAYS: Final = 90  # the "expiring soon" table
FLAG_RENEWAL_DUE: Final = "renewal-due"  # ca.citykeys.expiry.Flag.RENEWAL_DUE
FLAG_DORMANT: Final = "dormant"  # ca.citykeys.expiry.Flag.DORMANT (第十条: cleanup of unused keys)
FLAG_VIOLATION: Final = "violation"  # 第十一条: misuse reported against the key

CSV_NAME: Final = "report.csv"
MARKDOWN_NAME: Final = "report.md"
CHART_NAME: Final = "timeline.png"

CSV_HEADER: Final = (
    "key_id",
    "label",
    "city",
    "city_name",
    "province",
    "key_class",
    "state",
    "stage",
    "not_before",
    "not_after",
    "days_left",
    "flags",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

# -- chart geometry (pixels; origin top left) -------------------------------------------
WIDTH: Final = 1200
HEIGHT: Final = 600
PLOT_LEFT: Final = 70  # the count axis
PLOT_RIGHT: Final = 1180
PLOT_TOP: Final = 110  # the tallest possible bar reaches this row
PLOT_BOTTOM: Final = 510  # baseline: first row below the bars
BAR_FILL: Final = 0.7  # share of a slot's width the bar takes
OVERDUE_LABEL: Final = "overdue"
CHART_TITLE: Final = "密钥到期时间线 / key expiry timeline"

BACKGROUND: Final = (255, 255, 255)
INK: Final = (40, 40, 40)
GRID: Final = (225, 225, 225)
OVERDUE_INK: Final = (190, 30, 30)
CLASS_COLOURS: Final[dict[str, tuple[int, int, int]]] = {
    "city-card": (31, 119, 180),
    "city-qr": (255, 127, 14),
}
OTHER_COLOURS: Final = ((44, 160, 44), (148, 103, 189), (140, 86, 75), (127, 127, 127))


class ReportError(JtcaError):
    """A key report that cannot be drawn or written: names the file or the reason."""

    title = "Cannot write the key report"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class ReportKey:
    key_id: int
    label: str  # e.g. "city-qr-440100-g1"
    city: str  # 6-digit GB/T 2260 code
    city_name: str  # e.g. "广州市"
    province: str  # 6-digit province code
    key_class: str  # "city-card" | "city-qr"
    state: str  # ca.citykeys.lifecycle.KeyState value
    stage: str  # delivery stage: generated, delivered-to-province, …, installed
    not_before: int  # Unix seconds UTC
    not_after: int
    flags: tuple[str, ...]  # e.g. ("renewal-due",), ("dormant",), ("violation",)


# -- selections ----------------------------------------------------------------------------
def ordered(keys: Iterable[ReportKey]) -> list[ReportKey]:
    """By end of validity, then label (key id last, so equal rows keep one order)."""
    return sorted(keys, key=lambda k: (k.not_after, k.label, k.key_id))


def days_left(key: ReportKey, now: int) -> int:
    """Whole days until ``not_after``, rounded down; negative once it has passed."""
    return (key.not_after - now) // DAY


def is_live(key: ReportKey) -> bool:
    return key.state in LIVE_STATES


def is_overdue(key: ReportKey, now: int) -> bool:
    """Live but past its end (``ca.citykeys.expiry`` flags it ``expired``; the lifecycle
    deactivates it)."""
    return is_live(key) and now > key.not_after


def expiring_within(key: ReportKey, days: int, now: int) -> bool:
    """Live and ending within ``days`` days (as ``ca.citykeys.expiry.expiring_within``)."""
    return is_live(key) and now <= key.not_after <= now + days * DAY


# -- CSV -----------------------------------------------------------------------------------
def neutralise_formula(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading ' (OWASP CSV Injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def report_csv(keys: Iterable[ReportKey], *, now: int) -> str:
    """Header and one row per key, ordered by end of validity then label.

    Text cells from the rows are neutralised; ``key_id`` and ``days_left`` are integers this
    module writes itself, so a negative ``days_left`` stays a number.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for key in ordered(keys):
        text = (
            key.label,
            key.city,
            key.city_name,
            key.province,
            key.key_class,
            key.state,
            key.stage,
        )
        writer.writerow(
            [
                key.key_id,
                *(neutralise_formula(cell) for cell in text),
                iso_utc(key.not_before),
                iso_utc(key.not_after),
                days_left(key, now),
                neutralise_formula(";".join(key.flags)),
            ]
        )
    return out.getvalue()


# -- Markdown ------------------------------------------------------------------------------
def md_cell(value: object) -> str:
    """One table cell: backslash and | escaped, line breaks folded to spaces."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines()) if text else ""


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = [
        "| " + " | ".join(md_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines.extend("| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows)
    return lines


_KEY_HEADERS: Final = (
    "ID",
    "Label",
    "City",
    "Province",
    "Class",
    "State",
    "Stage",
    "Not after",
    "Days left",
    "Flags",
)


def _key_row(key: ReportKey, now: int) -> tuple[object, ...]:
    return (
        key.key_id,
        key.label,
        f"{key.city} {key.city_name}",
        key.province,
        key.key_class,
        key.state,
        key.stage,
        iso_utc(key.not_after),
        days_left(key, now),
        ", ".join(key.flags) or "—",
    )


def _section(heading: str, keys: Sequence[ReportKey], now: int, empty: str) -> list[str]:
    lines = [f"## {heading} ({len(keys)})", ""]
    if keys:
        lines.extend(_table(_KEY_HEADERS, (_key_row(k, now) for k in keys)))
    else:
        lines.append(empty)
    lines.append("")
    return lines


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    by_state: dict[str, int]  # lifecycle order, then any other state seen, by name
    expiring: dict[int, int]  # window in days → live keys ending within it
    overdue: int
    dormant: int
    suspended: int
    violations: int
    renewal_due: int


def summarise(keys: Sequence[ReportKey], *, now: int) -> Summary:
    seen = Counter(k.state for k in keys)
    by_state = {state.value: seen.pop(state.value, 0) for state in KeyState}
    by_state.update(sorted(seen.items()))
    return Summary(
        total=len(keys),
        by_state=by_state,
        expiring={d: sum(expiring_within(k, d, now) for k in keys) for d in EXPIRY_WINDOWS},
        overdue=sum(is_overdue(k, now) for k in keys),
        dormant=sum(FLAG_DORMANT in k.flags for k in keys),
        suspended=sum(k.state == KeyState.SUSPENDED for k in keys),
        violations=sum(FLAG_VIOLATION in k.flags for k in keys),
        renewal_due=sum(FLAG_RENEWAL_DUE in k.flags for k in keys),
    )


def report_markdown(
    keys: Iterable[ReportKey],
    *,
    now: int,
    title: str,
    scope: str,
    chart: str | None = None,
) -> str:
    """The report as Markdown: heading, generation time, scope, summary, then the tables
    (expiring within 90 days, dormant, suspended, violations, all keys)."""
    rows = ordered(keys)
    summary = summarise(rows, now=now)
    lines = [
        f"# {' '.join(title.splitlines())}",
        "",
        f"- Generated: {iso_utc(now)}",
        f"- Scope: {' '.join(scope.splitlines())}",
        f"- Keys: {summary.total}",
        "",
        "## Summary",
        "",
    ]
    counts: list[tuple[str, int]] = [
        (f"state {state}", count) for state, count in summary.by_state.items()
    ]
    counts += [(f"expiring within {d} days", n) for d, n in summary.expiring.items()]
    counts += [
        ("overdue (live, past not-after)", summary.overdue),
        ("dormant", summary.dormant),
        ("suspended", summary.suspended),
        ("violations", summary.violations),
        ("renewal due", summary.renewal_due),
    ]
    lines += _table(("Count", "Keys"), counts)
    lines.append("")
    if chart is not None:
        lines += ["## Expiry timeline", "", f"![key expiry timeline]({chart})", ""]
    soon = [k for k in rows if expiring_within(k, SOON_DAYS, now) or is_overdue(k, now)]
    lines += _section(
        f"Expiring within {SOON_DAYS} days or overdue", soon, now, "No key ends soon."
    )
    lines += _section(
        "Dormant", [k for k in rows if FLAG_DORMANT in k.flags], now, "No dormant key."
    )
    lines += _section(
        "Suspended",
        [k for k in rows if k.state == KeyState.SUSPENDED],
        now,
        "No suspended key.",
    )
    lines += _section(
        "Violations", [k for k in rows if FLAG_VIOLATION in k.flags], now, "No violation."
    )
    lines += _section("All keys", rows, now, "No keys in scope.")
    return "\n".join(lines).rstrip("\n") + "\n"


# -- the timeline chart --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Slot:
    label: str  # "overdue" or YYYY-MM
    counts: dict[str, int]  # key class → live keys ending in it

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _month_index(seconds: int) -> int:
    at = datetime.fromtimestamp(seconds, UTC)
    return at.year * 12 + at.month - 1


def timeline_slots(keys: Iterable[ReportKey], *, now: int, months: int = 24) -> list[Slot]:
    """The chart's columns: an "overdue" slot first when a live key is past its end, then
    ``months`` calendar months from the current one. Keys ending later are not in any slot."""
    if months < 1:
        raise ReportError(f"months {months}: the timeline needs at least one month")
    first = _month_index(now)
    overdue: Counter[str] = Counter()
    by_month: list[Counter[str]] = [Counter() for _ in range(months)]
    for key in keys:
        if not is_live(key):
            continue
        if is_overdue(key, now):
            overdue[key.key_class] += 1
            continue
        offset = _month_index(key.not_after) - first
        if 0 <= offset < months:
            by_month[offset][key.key_class] += 1
    slots = [Slot(OVERDUE_LABEL, dict(overdue))] if overdue else []
    for offset, counter in enumerate(by_month):
        year, month = divmod(first + offset, 12)
        slots.append(Slot(f"{year:04d}-{month + 1:02d}", dict(counter)))
    return slots


def slot_span(index: int, slot_count: int) -> tuple[int, int]:
    """The first and last pixel columns of slot ``index``'s bar (both inclusive)."""
    width = (PLOT_RIGHT - PLOT_LEFT) / slot_count
    bar = max(1, round(width * BAR_FILL))
    left = PLOT_LEFT + round(index * width + (width - bar) / 2)
    return left, left + bar - 1


def _nice_step(maximum: int) -> int:
    """1, 2, 5, 10, 20, 50 … : the smallest giving at most 8 ticks above zero."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(maximum / step) <= 8:
                return step
        magnitude *= 10


def bar_scale(tallest: int) -> tuple[int, float]:
    """The count axis: (top value, pixels per key). Pixels per key are whole while a key
    gets at least one pixel, so equal counts draw equal heights and 4 keys exactly twice 2."""
    step = _nice_step(max(tallest, 1))
    top = step * math.ceil(max(tallest, 1) / step)
    per_key = (PLOT_BOTTOM - PLOT_TOP) / top
    return top, float(math.floor(per_key)) if per_key >= 1 else per_key


def bar_height(count: int, per_key: float) -> int:
    return round(count * per_key)


def class_colours(classes: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """Known classes keep their colour; others take the spare colours in name order."""
    colours = dict(CLASS_COLOURS)
    spare = iter(OTHER_COLOURS)
    for name in sorted(set(classes) - colours.keys()):
        colours[name] = next(spare, OTHER_COLOURS[-1])
    return colours


_NOT_IN_ANY_FONT: Final = "\U0010fffd"  # private use: what a font draws for a missing glyph


def _chart_font(size: int) -> ImageFont.FreeTypeFont:
    """The caption font of ``ca.qr.image`` (its lookup and $JTCA_CAPTION_FONT), checked to
    draw the title's Chinese rather than boxes."""
    from PIL import ImageFont

    from ca.qr.image import ImageError, caption_font_path

    try:
        path = caption_font_path()
        font = ImageFont.truetype(str(path), size)
    except ImageError as exc:
        raise ReportError(exc.message) from None
    except OSError as exc:
        raise ReportError(f"cannot load chart font: {exc}") from None
    notdef = font.getmask(_NOT_IN_ANY_FONT)
    notdef_key = (notdef.getbbox(), bytes(notdef))
    for char in dict.fromkeys(CHART_TITLE):
        if char.isspace() or char.isascii():
            continue
        mask = font.getmask(char)
        if mask.getbbox() is None or (mask.getbbox(), bytes(mask)) == notdef_key:
            raise ReportError(f"chart font {path} has no glyph for {char!r}: install a CJK font")
    return font


def _centred_text(
    draw: ImageDraw.ImageDraw,
    centre_x: float,
    top: float,
    text: str,
    font: ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((centre_x - (right - left) / 2 - left, top), text, font=font, fill=fill)


def _rotated_label(
    image: Image.Image,
    centre_x: float,
    top: int,
    text: str,
    font: ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> None:
    """A month label read bottom to top, its end just under the axis."""
    from PIL import Image, ImageDraw

    left, upper, right, lower = (math.floor(v) for v in font.getbbox(text))
    strip = Image.new("RGBA", (right - left + 3, lower - upper + 3), (0, 0, 0, 0))
    ImageDraw.Draw(strip).text((1 - left, 1 - upper), text, font=font, fill=(*fill, 255))
    turned = strip.rotate(90, expand=True)
    image.paste(turned, (round(centre_x - turned.width / 2), top), turned)


def timeline_png(keys: Iterable[ReportKey], *, now: int, months: int = 24) -> bytes:
    """The expiry timeline: one stacked bar per calendar month (and one for overdue keys),
    coloured by key class, live keys only. ``WIDTH``×``HEIGHT`` RGB, no metadata."""
    from PIL import Image, ImageDraw

    rows = list(keys)
    slots = timeline_slots(rows, now=now, months=months)
    colours = class_colours(k.key_class for k in rows)
    shown = sorted({c for s in slots for c in s.counts}, key=list(colours).index)
    tallest = max((s.total for s in slots), default=0)
    top, per_key = bar_scale(tallest)
    step = _nice_step(max(tallest, 1))

    title_font = _chart_font(22)
    font = _chart_font(13)
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _centred_text(draw, WIDTH / 2, 14, CHART_TITLE, title_font, INK)
    total = sum(s.total for s in slots)
    later = sum(is_live(k) and not is_overdue(k, now) for k in rows) - sum(
        s.total for s in slots if s.label != OVERDUE_LABEL
    )
    subtitle = f"as of {iso_utc(now)}: {total} live keys ending by {slots[-1].label}"
    if later:
        subtitle += f", {later} later"
    _centred_text(draw, WIDTH / 2, 46, subtitle, font, INK)

    # Legend, top right: a swatch and a name per class drawn.
    x = PLOT_RIGHT
    for name in reversed(shown or list(CLASS_COLOURS)):
        width = round(draw.textlength(name, font=font))
        x -= width
        draw.text((x, 72), name, font=font, fill=INK)
        x -= 18
        draw.rectangle((x, 74, x + 11, 85), fill=colours[name])
        x -= 16

    # Count axis with grid lines at each tick.
    for value in range(0, top + 1, step):
        y = PLOT_BOTTOM - bar_height(value, per_key)
        if value:
            draw.line((PLOT_LEFT + 1, y, PLOT_RIGHT, y), fill=GRID)
        text = str(value)
        left, upper, right, lower = draw.textbbox((0, 0), text, font=font)
        draw.text(
            (PLOT_LEFT - 8 - (right - left) - left, y - (lower - upper) / 2 - upper),
            text,
            font=font,
            fill=INK,
        )
        draw.line((PLOT_LEFT - 4, y, PLOT_LEFT, y), fill=INK)
    draw.text((8, PLOT_TOP - 34), "keys", font=font, fill=INK)

    # Bars, stacked bottom up in class order, then each bar's count above it.
    for index, slot in enumerate(slots):
        x0, x1 = slot_span(index, len(slots))
        base = PLOT_BOTTOM
        stacked = 0
        for name in shown:
            count = slot.counts.get(name, 0)
            if not count:
                continue
            stacked += count
            top_y = PLOT_BOTTOM - bar_height(stacked, per_key)
            if top_y < base:
                draw.rectangle((x0, top_y, x1, base - 1), fill=colours[name])
            base = top_y
        ink = OVERDUE_INK if slot.label == OVERDUE_LABEL else INK
        if slot.total:
            _centred_text(draw, (x0 + x1) / 2, base - 17, str(slot.total), font, ink)
        _rotated_label(image, (x0 + x1) / 2, PLOT_BOTTOM + 6, slot.label, font, ink)

    draw.line((PLOT_LEFT, PLOT_TOP - 10, PLOT_LEFT, PLOT_BOTTOM), fill=INK)
    draw.line((PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT, PLOT_BOTTOM), fill=INK)

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)  # no tEXt/tIME chunks: same input, same bytes
    return out.getvalue()


# -- writing the three files ----------------------------------------------------------------
def write_report(
    directory: Path,
    keys: Iterable[ReportKey],
    *,
    now: int,
    title: str,
    scope: str,
    months: int = 24,
) -> dict[str, Path]:
    """report.csv (UTF-8 with a BOM), report.md (UTF-8, pointing at the chart) and
    timeline.png in ``directory`` (created if missing). Everything is built before the first
    file is written; a file that cannot be written raises ``BadInput`` naming it
    (``ca.core.files``).
    """
    rows = list(keys)
    contents = {
        # UTF-8 with a BOM, so that Excel and WPS read the city names as Chinese.
        "csv": (CSV_NAME, report_csv(rows, now=now).encode("utf-8-sig")),
        "markdown": (
            MARKDOWN_NAME,
            report_markdown(rows, now=now, title=title, scope=scope, chart=CHART_NAME).encode(),
        ),
        "chart": (CHART_NAME, timeline_png(rows, now=now, months=months)),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {directory}: {exc.strerror or exc}") from None
    written: dict[str, Path] = {}
    for kind, (name, data) in contents.items():
        path = directory / name
        write_atomically(path, data)
        written[kind] = path
    return written
