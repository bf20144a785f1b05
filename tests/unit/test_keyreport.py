"""The key report: CSV read back with the csv module, Markdown counts and sections, and the
timeline chart measured pixel by pixel from the geometry ca.citykeys.report_format exports."""

from __future__ import annotations

import calendar
import csv
import io
import struct
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from ca.citykeys.report_format import (
    CHART_NAME,
    CLASS_COLOURS,
    CSV_HEADER,
    CSV_NAME,
    DAY,
    HEIGHT,
    MARKDOWN_NAME,
    OVERDUE_LABEL,
    PLOT_BOTTOM,
    PLOT_TOP,
    WIDTH,
    ReportError,
    ReportKey,
    report_csv,
    report_markdown,
    slot_span,
    timeline_png,
    timeline_slots,
    write_report,
)
from ca.core.errors import BadInput

NOW = calendar.timegm((2026, 5, 10, 12, 0, 0))  # 2026-05-10T12:00:00Z
CARD = CLASS_COLOURS["city-card"]
QR = CLASS_COLOURS["city-qr"]


def at(year: int, month: int, day: int = 15) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0))


def key(
    key_id: int,
    *,
    not_after: int,
    key_class: str = "city-qr",
    state: str = "active",
    flags: tuple[str, ...] = (),
    label: str | None = None,
    city_name: str = "广州市",
    stage: str = "installed",
) -> ReportKey:
    return ReportKey(
        key_id=key_id,
        label=label or f"{key_class}-4401{key_id:02d}-g1",
        city=f"4401{key_id:02d}",
        city_name=city_name,
        province="440000",
        key_class=key_class,
        state=state,
        stage=stage,
        not_before=at(2021, 1),
        not_after=not_after,
        flags=flags,
    )


# -- CSV -----------------------------------------------------------------------------------
def parse_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_csv_rows_order_days_left_and_flags() -> None:
    keys = [
        key(1, not_after=NOW + 400 * DAY, label="b-late"),
        key(2, not_after=NOW + 10 * DAY + 3600, label="z-soon", flags=("renewal-due",)),
        key(3, not_after=NOW + 10 * DAY + 3600, label="a-soon", flags=("renewal-due", "dormant")),
        key(4, not_after=NOW - 3 * DAY, label="overdue", state="suspended"),
        key(5, not_after=NOW + DAY - 1, label="last-day", key_class="city-card"),
    ]
    rows = parse_csv(report_csv(keys, now=NOW))

    assert [r["label"] for r in rows] == ["overdue", "last-day", "a-soon", "z-soon", "b-late"]
    assert [int(r["key_id"]) for r in rows] == [4, 5, 3, 2, 1]
    assert [int(r["days_left"]) for r in rows] == [-3, 0, 10, 10, 400]
    assert rows[2]["flags"].split(";") == ["renewal-due", "dormant"]
    assert rows[0]["flags"] == ""
    assert rows[0]["state"] == "suspended"
    assert rows[1]["key_class"] == "city-card"
    assert rows[1]["not_after"] == "2026-05-11T11:59:59Z"
    assert rows[1]["not_before"] == "2021-01-15T00:00:00Z"
    assert rows[4]["city_name"] == "广州市"


def test_csv_order_is_stable_whatever_the_input_order() -> None:
    keys = [key(i, not_after=at(2027, 1 + i % 3), label=f"k{i % 4}") for i in range(12)]
    first = report_csv(keys, now=NOW)
    assert report_csv(list(reversed(keys)), now=NOW) == first
    rows = parse_csv(first)
    assert [(r["not_after"], r["label"]) for r in rows] == sorted(
        (r["not_after"], r["label"]) for r in rows
    )


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralises_formulas(start: str) -> None:
    payload = f'{start}HYPERLINK("http://x","y")'
    keys = [key(1, not_after=NOW + 5 * DAY, label=payload, city_name=payload, flags=(payload,))]
    row = parse_csv(report_csv(keys, now=NOW))[0]
    assert row["label"] == "'" + payload
    assert row["city_name"] == "'" + payload
    assert row["flags"] == "'" + payload
    assert row["stage"] == "installed"  # ordinary text untouched


def test_csv_negative_days_left_stays_a_number_and_quotes_round_trip() -> None:
    keys = [key(1, not_after=NOW - 40 * DAY, city_name='Guang, "zhou"\nCity')]
    row = parse_csv(report_csv(keys, now=NOW))[0]
    assert row["days_left"] == "-40"
    assert row["city_name"] == 'Guang, "zhou"\nCity'


# -- Markdown ------------------------------------------------------------------------------
def crafted() -> list[ReportKey]:
    """3 ending within 30 days, 2 more within 90, 1 within 180, 1 dormant, 2 suspended,
    1 violation, 1 overdue, 1 deactivated past its end, the rest far away."""
    return [
        key(1, not_after=NOW + 5 * DAY, flags=("renewal-due",)),
        key(2, not_after=NOW + 20 * DAY, state="suspended", flags=("renewal-due", "violation")),
        key(3, not_after=NOW + 30 * DAY, key_class="city-card", flags=("renewal-due",)),
        key(4, not_after=NOW + 60 * DAY, flags=("renewal-due",)),
        key(5, not_after=NOW + 89 * DAY, key_class="city-card"),
        key(6, not_after=NOW + 150 * DAY, state="suspended"),
        key(7, not_after=NOW + 900 * DAY, state="pre-active", flags=("dormant",)),
        key(8, not_after=NOW + 1000 * DAY, label="pipe|label", city_name="广|州"),
        key(9, not_after=NOW - 2 * DAY, label="overdue-key"),
        key(10, not_after=NOW - 5 * DAY, state="deactivated", label="retired"),
    ]


def summary_counts(text: str) -> dict[str, int]:
    block = text.split("## Summary\n\n", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in block.splitlines()[2:]:
        name, value = (cell.strip() for cell in line.strip("|").split("|"))
        counts[name] = int(value)
    return counts


def section(text: str, heading: str) -> list[str]:
    """The data rows' first cells (key ids) of the section whose heading starts so."""
    start = next(i for i, line in enumerate(text.splitlines()) if line.startswith(heading))
    ids = []
    for line in text.splitlines()[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| ID "):
            ids.append(line.split("|")[1].strip())
    return ids


def test_markdown_summary_counts() -> None:
    text = report_markdown(crafted(), now=NOW, title="广东省密钥报告", scope="province 440000")
    counts = summary_counts(text)
    assert counts["state active"] == 6
    assert counts["state suspended"] == 2
    assert counts["state pre-active"] == 1
    assert counts["state deactivated"] == 1
    assert counts["expiring within 30 days"] == 3
    assert counts["expiring within 90 days"] == 5
    assert counts["expiring within 180 days"] == 6
    assert counts["overdue (live, past not-after)"] == 1
    assert counts["dormant"] == 1
    assert counts["suspended"] == 2
    assert counts["violations"] == 1
    assert counts["renewal due"] == 4
    assert sum(v for k, v in counts.items() if k.startswith("state ")) == 10


def test_markdown_header_and_sections() -> None:
    text = report_markdown(
        crafted(), now=NOW, title="广东省密钥报告", scope="province 440000", chart="timeline.png"
    )
    lines = text.splitlines()
    assert lines[0] == "# 广东省密钥报告"
    assert "- Generated: 2026-05-10T12:00:00Z" in lines
    assert "- Scope: province 440000" in lines
    assert "![key expiry timeline](timeline.png)" in lines
    assert section(text, "## Expiring within 90 days or overdue (6)") == [
        "9",
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert section(text, "## Dormant (1)") == ["7"]
    assert section(text, "## Suspended (2)") == ["2", "6"]
    assert section(text, "## Violations (1)") == ["2"]
    assert section(text, "## All keys (10)") == ["10", "9", "1", "2", "3", "4", "5", "6", "7", "8"]


def test_markdown_escapes_pipes_and_reports_empty_sections() -> None:
    text = report_markdown(crafted(), now=NOW, title="t", scope="national")
    row = next(line for line in text.splitlines() if line.startswith("| 8 |"))
    assert "pipe\\|label" in row
    assert "广\\|州" in row
    # Unescaped pipes: the 11 borders of a 10-column row, no more.
    assert row.replace("\\|", "").count("|") == 11
    assert "![" not in text  # no chart named, none referred to

    quiet = report_markdown([key(1, not_after=NOW + 900 * DAY)], now=NOW, title="t", scope="x")
    assert section(quiet, "## Dormant (0)") == []
    assert "No dormant key." in quiet
    assert "No suspended key." in quiet
    assert "No violation." in quiet


# -- the chart -----------------------------------------------------------------------------
def chart(keys: Iterable[ReportKey], months: int = 24) -> Image.Image:
    image = Image.open(io.BytesIO(timeline_png(list(keys), now=NOW, months=months)))
    image.load()
    return image


def column_heights(image: Image.Image, slot: int, slots: int) -> dict[tuple[int, ...], int]:
    """Pixels of each class colour in the middle column of a slot's bar, within the plot."""
    x0, x1 = slot_span(slot, slots)
    middle = (x0 + x1) // 2
    found: dict[tuple[int, ...], int] = {}
    for y in range(PLOT_TOP - 5, PLOT_BOTTOM + 5):
        pixel = image.getpixel((middle, y))
        assert isinstance(pixel, tuple)
        if pixel in (CARD, QR):
            found[pixel] = found.get(pixel, 0) + 1
    return found


def bars_on_baseline(image: Image.Image) -> list[int]:
    """Left edges of the runs of class colour just above the baseline."""
    starts, inside = [], False
    for x in range(WIDTH):
        pixel = image.getpixel((x, PLOT_BOTTOM - 1))
        coloured = pixel in (CARD, QR)
        if coloured and not inside:
            starts.append(x)
        inside = coloured
    return starts


def reddish(image: Image.Image) -> int:
    raw = image.convert("RGB").tobytes()
    pixels = zip(raw[0::3], raw[1::3], raw[2::3], strict=True)
    return sum(1 for r, g, b in pixels if r > 150 and g < 90 and b < 90)


def test_png_size_mode_and_proportional_bars() -> None:
    keys = [key(i, not_after=at(2026, 8, 1 + i)) for i in range(4)]  # 2026-08: 4 keys
    keys += [key(10 + i, not_after=at(2027, 2, 1 + i), key_class="city-card") for i in range(2)]
    image = chart(keys)
    assert image.format == "PNG"
    assert image.size == (WIDTH, HEIGHT) == (1200, 600)
    assert image.mode == "RGB"

    slots = timeline_slots(keys, now=NOW)
    labels = [s.label for s in slots]
    assert len(slots) == 24
    assert labels[0] == "2026-05"
    assert labels[-1] == "2028-04"
    august, february = labels.index("2026-08"), labels.index("2027-02")
    assert (august, february) == (3, 9)

    four = column_heights(image, august, 24)
    two = column_heights(image, february, 24)
    assert set(four) == {QR}
    assert set(two) == {CARD}
    assert two[CARD] > 20
    assert four[QR] == 2 * two[CARD]
    # The tallest bar reaches the top of the plot; every other month stays empty.
    assert four[QR] == PLOT_BOTTOM - PLOT_TOP
    assert [column_heights(image, i, 24) for i in range(24) if i not in (3, 9)] == [{}] * 22
    assert bars_on_baseline(image) == [slot_span(3, 24)[0], slot_span(9, 24)[0]]


def test_png_stacks_by_class_bottom_up() -> None:
    keys = [key(i, not_after=at(2026, 6, 1 + i), key_class="city-card") for i in range(3)]
    keys += [key(10 + i, not_after=at(2026, 6, 10 + i)) for i in range(1)]
    keys += [key(20 + i, not_after=at(2026, 7, 1 + i)) for i in range(2)]
    image = chart(keys, months=6)
    june = column_heights(image, 1, 6)
    assert june[CARD] == 3 * june[QR]
    july = column_heights(image, 2, 6)
    assert july == {QR: 2 * june[QR]}
    x0, x1 = slot_span(1, 6)
    middle = (x0 + x1) // 2
    assert image.getpixel((middle, PLOT_BOTTOM - 1)) == CARD  # card at the bottom
    assert image.getpixel((middle, PLOT_BOTTOM - june[CARD] - 1)) == QR  # qr on top of it


def test_png_leaves_out_retired_keys_and_months_beyond_the_window() -> None:
    live = [key(1, not_after=at(2026, 9))]
    retired = [
        key(2, not_after=at(2026, 9), state="deactivated"),
        key(3, not_after=at(2026, 9), state="destroyed"),
        key(4, not_after=NOW - DAY, state="deactivated"),
    ]
    later = [key(5, not_after=at(2030, 1))]
    assert timeline_png(live + retired + later, now=NOW) != timeline_png(live, now=NOW)  # subtitle
    image = chart(live + retired + later)
    assert bars_on_baseline(image) == [slot_span(4, 24)[0]]
    assert column_heights(image, 4, 24) == {QR: PLOT_BOTTOM - PLOT_TOP}
    assert reddish(image) == 0  # the deactivated key past its end is not overdue


def test_overdue_bar_only_when_keys_are_overdue() -> None:
    this_month = [key(1, not_after=NOW + 5 * DAY), key(2, not_after=NOW + 6 * DAY)]
    without = chart(this_month, months=6)
    assert [s.label for s in timeline_slots(this_month, now=NOW, months=6)] == [
        "2026-05",
        "2026-06",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
    ]
    assert bars_on_baseline(without) == [slot_span(0, 6)[0]]
    assert reddish(without) == 0

    overdue = [key(3, not_after=NOW - 1, key_class="city-card", state="suspended")]
    with_overdue = chart(this_month + overdue, months=6)
    slots = timeline_slots(this_month + overdue, now=NOW, months=6)
    assert [s.label for s in slots][:2] == [OVERDUE_LABEL, "2026-05"]
    assert len(slots) == 7
    assert bars_on_baseline(with_overdue) == [slot_span(0, 7)[0], slot_span(1, 7)[0]]
    overdue_bar = column_heights(with_overdue, 0, 7)
    month_bar = column_heights(with_overdue, 1, 7)
    assert set(overdue_bar) == {CARD}
    assert month_bar[QR] == 2 * overdue_bar[CARD]
    assert reddish(with_overdue) > 20  # the overdue label and count are drawn in red


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return chunks


def test_png_is_deterministic_and_carries_no_metadata() -> None:
    keys = crafted()
    first = timeline_png(keys, now=NOW)
    assert timeline_png(list(reversed(keys)), now=NOW) == first
    assert timeline_png(keys, now=NOW + 30 * DAY) != first
    assert set(png_chunks(first)) <= {b"IHDR", b"IDAT", b"IEND"}


def test_png_empty_input_still_draws_an_axis() -> None:
    image = chart([])
    assert image.size == (WIDTH, HEIGHT)
    assert bars_on_baseline(image) == []


def test_png_needs_a_month() -> None:
    with pytest.raises(ReportError, match="at least one month"):
        timeline_png([], now=NOW, months=0)


def test_png_refuses_a_font_without_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    # Latin-only font from Debian's fonts-dejavu-core (installed by scripts/bootstrap)
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    assert font.is_file(), "scripts/bootstrap installs fonts-dejavu-core"
    monkeypatch.setenv("JTCA_CAPTION_FONT", str(font))
    with pytest.raises(ReportError, match="no glyph"):
        timeline_png(crafted(), now=NOW)


# -- writing -------------------------------------------------------------------------------
def test_write_report_writes_the_three_files(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "440000"
    keys = crafted()
    written = write_report(out, keys, now=NOW, title="广东省", scope="province 440000")
    assert written == {
        "csv": out / CSV_NAME,
        "markdown": out / MARKDOWN_NAME,
        "chart": out / CHART_NAME,
    }
    csv_bytes = written["csv"].read_bytes()
    assert csv_bytes.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read the Chinese right
    assert csv_bytes.decode("utf-8-sig") == report_csv(keys, now=NOW)
    assert "广州市" in csv_bytes.decode("utf-8-sig")
    markdown = written["markdown"].read_bytes().decode()
    assert markdown == report_markdown(
        keys, now=NOW, title="广东省", scope="province 440000", chart=CHART_NAME
    )
    assert f"]({CHART_NAME})" in markdown
    assert written["chart"].read_bytes() == timeline_png(keys, now=NOW)
    assert sorted(p.name for p in out.iterdir()) == sorted([CSV_NAME, MARKDOWN_NAME, CHART_NAME])


def test_write_report_replaces_old_files(tmp_path: Path) -> None:
    (tmp_path / CSV_NAME).write_text("stale")
    keys = [key(1, not_after=NOW + DAY)]
    write_report(tmp_path, keys, now=NOW, title="t", scope="national")
    later = [replace(keys[0], label="renewed")]
    write_report(tmp_path, later, now=NOW, title="t", scope="national")
    rows = parse_csv((tmp_path / CSV_NAME).read_text(encoding="utf-8-sig"))
    assert [r["label"] for r in rows] == ["renewed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CSV_NAME, MARKDOWN_NAME, CHART_NAME]
    )


def test_write_report_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(ReportError, match="cannot create"):
        write_report(blocker, [], now=NOW, title="t", scope="national")


def test_write_report_leaves_no_temporary_file_when_a_write_fails(tmp_path: Path) -> None:
    (tmp_path / CHART_NAME).mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(BadInput, match=CHART_NAME):
        write_report(tmp_path, [], now=NOW, title="t", scope="national")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CSV_NAME, MARKDOWN_NAME, CHART_NAME]
    )
    assert (tmp_path / CHART_NAME).is_dir()
