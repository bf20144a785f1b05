"""A key's state and flags as the console shows them (issue #17): a glyph and a word in a colour,
so a state reads in monochrome too (the glyph and the word, not the colour alone), and one
legend line that says what each means. A key that is revoked or destroyed has no days left to
count: its days read ``—`` and its flag says why. Presentation only: no business rule."""

from __future__ import annotations

from typing import Final

from rich.text import Text

# state → (glyph, style). The glyphs are one cell wide.
STATE_LOOK: Final[dict[str, tuple[str, str]]] = {
    "pre-active": ("○", ""),
    "active": ("●", "green"),
    "suspended": ("‖", "bold yellow"),
    "revoked": ("✗", "bold red"),
    "deactivated": ("◌", "dim"),
    "destroyed": ("⊘", "dim"),
}
DEAD: Final = frozenset({"revoked", "destroyed", "deactivated"})  # no days left to count
EXPIRING_DAYS: Final = 90

# flag → (letter, style): the key's time flags (the service's) and what its state adds
FLAG_LOOK: Final[dict[str, tuple[str, str]]] = {
    "expiring": ("E", "yellow"),
    "renewal-due": ("R", "yellow"),
    "expired": ("X", "red"),
    "dormant": ("D", "magenta"),
    "violation": ("V", "bold red"),
    "suspended": ("S", "bold yellow"),
    "revoked": ("K", "bold red"),
    "destroyed": ("Ø", "dim"),
}
LEGEND_STATES: Final = "● active  ○ pre-active  ‖ suspended  ✗ revoked  ⊘ destroyed  ◌ deactivated"
LEGEND_FLAGS: Final = (  # E: a live key within 90 days of its end
    "E expiring R renewal due X expired D dormant V violation S suspended K revoked"
)
LEGEND: Final = f"{LEGEND_STATES} · {LEGEND_FLAGS}"  # one line, at 200 columns
LEGEND_NARROW: Final = f"{LEGEND_STATES}\n{LEGEND_FLAGS}"  # two lines, at 80 columns


def state_text(state: str, days_left: int | None = None) -> Text:
    """``● active`` in green, ``✗ revoked`` in red…; an active key expiring within 90 days is
    yellow."""
    glyph, style = STATE_LOOK.get(state, ("·", ""))
    if state == "active" and days_left is not None and days_left <= EXPIRING_DAYS:
        style = "yellow"
    return Text(f"{glyph} {state}", style=style)


def key_flags(state: str, flags: list[str], days_left: int | None) -> list[str]:
    """The flags a key shows: its state's (suspended, revoked, destroyed), ``expiring`` for a
    live key within 90 days of its end, then the service's time flags."""
    shown: list[str] = []
    if state in ("suspended", "revoked", "destroyed"):
        shown.append(state)
    if (
        state not in DEAD
        and days_left is not None
        and 0 <= days_left <= EXPIRING_DAYS
        and "expired" not in flags
    ):
        shown.append("expiring")
    return shown + [f for f in flags if f not in shown]


def flags_text(state: str, flags: list[str], days_left: int | None) -> Text:
    """The flags as letters, each in its colour (``—`` for none)."""
    found = key_flags(state, flags, days_left)
    if not found:
        return Text("—")
    text = Text()
    for flag in found:
        letter, style = FLAG_LOOK.get(flag, (flag[:1].upper(), ""))
        text.append(letter, style=style)
    return text


def days_text(state: str, days_left: int) -> Text:
    """Days left, or ``—`` for a key no longer alive (revoked, destroyed)."""
    if state in DEAD:
        return Text("—", style="dim")
    if days_left < 0:
        return Text(str(days_left), style="red")
    if days_left <= EXPIRING_DAYS:
        return Text(str(days_left), style="yellow")
    return Text(str(days_left))


def days_words(state: str, days_left: int) -> str:
    """For the detail line: ``123 days left``, or the state for a key no longer alive."""
    return state if state in DEAD else f"{days_left} days left"
