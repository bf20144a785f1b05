"""Snapshots of every screen of the console at 80×24 and 160×48 on the demo state, the clock
frozen at the demo's "now" (SVGs with their colours, as pytest-textual-snapshot stores them, so
a state's colour is part of the picture). Each screen is shown to an officer who sees it: a
provincial officer (gd-1) for the province's screens, a ministry officer for the ministry's.
Refresh with ``pytest tests/tui/test_snapshots.py --snapshot-update``, review the SVGs in
``__snapshots__``, then run again without it: every snapshot must pass twice.

What the demo makes at random each time it is seeded — key material, session ids, the hashes of
lists that carry public keys — is masked in the picture (``masked``: each hex digit of a run that
mixes digits and letters becomes ``░``, as does a session's id or a seal key cut short by its
column and an officer certificate's serial; widths kept), so a snapshot holds across seeds;
every other character is compared."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from demo_world import Demo
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion
from textual._doc import take_svg_screenshot
from textual.pilot import Pilot
from textual.widgets import Footer, Input

from ca.ops.demo import CREDENTIALS
from tui.app import HelpScreen, JtcaApp
from tui.screens import ceremony as ceremony_screen
from tui.screens.base import ConsoleScreen
from tui.screens.dashboard import DashboardScreen

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}

# screen → (the officer it is shown to, its navigation key); None: the sign-in form or help
SCREENS: dict[str, tuple[str, str | None]] = {
    "sign-in": ("gd-1", None),
    "dashboard": ("gd-1", "1"),
    "keys": ("gd-1", "2"),
    "cities": ("gd-1", "3"),
    "approvals": ("ca-op-1", "4"),
    "issuers": ("ca-op-1", "5"),
    "publication": ("ca-op-1", "6"),
    "cleanup": ("mot-root-1", "7"),
    "audit": ("gd-1", "8"),
    "ceremony": ("mot-root-1", "9"),
    "help": ("gd-1", None),
}
TITLES = {
    "dashboard": "Dashboard",
    "keys": "Keys",
    "cities": "Cities",
    "approvals": "Approvals",
    "issuers": "Issuers",
    "publication": "Publication",
    "cleanup": "Cleanup",
    "audit": "Audit",
    "ceremony": "Ceremony",
}


# a run of 6+ hex digits with at least one digit and one letter a-f (not a city code, a date,
# or a word), inside an SVG text node
RANDOM_HEX = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{6,}")
# what follows "session " or "seal key " is random however short a column cuts it; so is an
# officer certificate's serial (a decimal number) in an event's details
RANDOM_AFTER = re.compile(
    r"(?<=session&#160;)[0-9a-f]+|(?<=seal&#160;key&#160;)[0-9a-f]+"
    r"|(?<=&quot;certificate_serial&quot;:&#160;)[0-9]+"
)
TEXT_NODE = re.compile(r"(<text [^>]*>)([^<]*)(</text>)")
UNIQUE_ID = re.compile(r"terminal-\d+")  # rich's export names its CSS after the content


def masked(svg: str) -> str:
    """``svg`` with what the demo makes at random masked (see the module doc)."""

    def text(match: re.Match[str]) -> str:
        body = RANDOM_HEX.sub(lambda m: "░" * len(m.group()), match.group(2))
        body = RANDOM_AFTER.sub(lambda m: "░" * len(m.group()), body)
        return match.group(1) + body + match.group(3)

    return UNIQUE_ID.sub("terminal-jtca", TEXT_NODE.sub(text, svg))


@pytest.fixture
def compare(snapshot: SnapshotAssertion) -> Callable[..., bool]:
    """``snap_compare`` (pytest-textual-snapshot) with the random parts masked."""
    svg_snapshot = snapshot.use_extension(SVGImageExtension)

    def run(
        app: JtcaApp,
        terminal_size: tuple[int, int],
        run_before: Callable[[Pilot[None]], Any],
    ) -> bool:
        shot = take_svg_screenshot(app=app, terminal_size=terminal_size, run_before=run_before)
        assert svg_snapshot == masked(shot)  # syrupy shows the difference
        return True

    return run


def test_masking_keeps_codes_dates_and_words() -> None:
    node = (
        '<text class="r1" x="0" y="0">session&#160;5072ab9f0c city-qr-441300-g1 2026-11-18</text>'
    )
    shown = masked(node + '<g id="terminal-123"></g>')
    assert "session&#160;░░░░░░░░░░ city-qr-441300-g1 2026-11-18" in shown
    assert "terminal-jtca" in shown
    assert "terminal-123" not in shown
    sha = '<text class="r1" x="0" y="0">e7f04bcfc794f3a3…: added</text>'
    assert masked(sha).count("░") == 16
    cut = '<text class="r1" x="0" y="0">session&#160;eeff seal&#160;key&#160;039 issuer 02113'
    serial = '<text class="r1" x="0" y="0">&quot;certificate_serial&quot;:&#160;62675453,</text>'
    assert "&#160;░░░░░░░░," in masked(serial)
    assert masked(cut + "</text>").endswith(
        "session&#160;░░░░ seal&#160;key&#160;░░░ issuer 02113</text>"
    )


async def settle(pilot: Pilot[None]) -> None:
    """Workers done, their results shown, and the footer composed."""
    for _ in range(4):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    await pilot.pause(0.3)  # the footer fills in its keys on a bindings signal, a moment later
    for _ in range(100):  # …later still on a busy machine
        footers = list(pilot.app.screen.query(Footer))
        if all(footer.children for footer in footers):
            break
        await pilot.pause(0.05)
    await pilot.pause()


def still(app: JtcaApp) -> None:
    """No blinking cursor (a snapshot taken mid-blink would differ)."""
    for field in app.screen.query(Input):
        field.cursor_blink = False


async def signed_in(pilot: Pilot[None], demo: Demo, officer: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#officer", Input).value = officer
    screen.query_one("#pin", Input).value = demo.credentials.pins[officer]
    screen.query_one("#pin", Input).focus()
    await pilot.press("enter")
    for _ in range(200):  # the sign-in runs in a worker; the dashboard replaces the form
        if isinstance(pilot.app.screen, DashboardScreen):
            break
        await pilot.pause(0.02)
    assert isinstance(pilot.app.screen, DashboardScreen)
    await settle(pilot)


def console_app(demo: Demo, officer: str) -> JtcaApp:
    credentials = demo.state / CREDENTIALS
    return JtcaApp(demo.client, officer=officer, demo_credentials=credentials, clock=demo.clock)


@pytest.fixture
def in_state_parent(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> Demo:
    monkeypatch.chdir(demo.state.parent)  # the demo hint shows state/demo-credentials.json
    # The Ceremony screen offers the shipped example by a path relative to the working
    # directory when it lies below it, else absolute: a copy below this directory keeps the
    # picture the same in every checkout (the CI clone is not /work/main).
    example = demo.state.parent / "policies" / "ceremonies" / ceremony_screen.EXAMPLE.name
    example.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ceremony_screen.EXAMPLE, example)
    monkeypatch.setattr(ceremony_screen, "EXAMPLE", example)
    return demo


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(in_state_parent: Demo, compare: Callable[..., bool], name: str, size: str) -> None:
    demo = in_state_parent
    officer, key = SCREENS[name]
    app = console_app(demo, officer)

    async def before(pilot: Pilot[None]) -> None:
        if name == "sign-in":
            await settle(pilot)
            still(app)
            return
        await signed_in(pilot, demo, officer)
        if key is not None:
            assert key in [e.key for e in app.entries], f"{officer} does not see {name}"
            await pilot.press(key)
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, ConsoleScreen)
            assert TITLES[name] == screen.TITLE
        else:
            await pilot.press("question_mark")
            await settle(pilot)
            assert isinstance(app.screen, HelpScreen)
        still(app)

    assert compare(app, terminal_size=SIZES[size], run_before=before)
