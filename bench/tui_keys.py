"""The console's Keys screen with 100,000 keys: time to first paint and filter latency, against
the bare query measured in the same run.

Fills a fresh SQLite database with N keys (``city_scan.fill``), opens the Keys screen with
Pilot for a national officer (every key in scope) and times, as medians of several runs:

- bare: the page query itself (``tui.screens.keys.find_page``: a count and a sorted page of
  ``PAGE`` rows, in SQL) run outside the UI — the baseline;
- first paint: from opening the Keys screen until its table holds the first page and the
  screen has been refreshed;
- filter: from a changed filter (free text, a quick filter, a sort column) until the new page
  is shown; the typing debounce (``DEBOUNCE``) is reported apart and subtracted.

Prints each time and its ratio against the bare query.

    python bench/tui_keys.py [--keys 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from city_scan import NOW, fill
from textual.app import App
from textual.widgets import DataTable, Input

from ca.clock import FixedClock
from ca.console import Console
from ca.store.db import make_engine, migrate
from policies.rules import Actor
from tui.screens.keys import DEBOUNCE, PAGE, KeyQuery, KeysScreen, find_page

SIZE = (120, 40)


class Bench(App[None]):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console_under_test = console


async def shown(screen: KeysScreen, loads: int, pause: Callable[[], object]) -> None:
    while screen.loads <= loads:
        await asyncio.sleep(0.001)
    await pause()  # type: ignore[misc]


async def measure(console: Console, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    app = Bench(console)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(runs):
            screen = KeysScreen(console)
            started = time.perf_counter()
            await app.push_screen(screen)
            await shown(screen, 0, pilot.pause)
            times.setdefault("first paint", []).append(time.perf_counter() - started)
            assert screen.query_one("#keys", DataTable).row_count == PAGE
            for label, change in (
                (
                    "filter text '4401'",
                    lambda s: setattr(s.query_one("#filter", Input), "value", "4401"),
                ),
                (
                    "filter text '广州'",
                    lambda s: setattr(s.query_one("#filter", Input), "value", "广州"),
                ),
            ):
                before = screen.loads
                started = time.perf_counter()
                change(screen)
                await shown(screen, before, pilot.pause)
                times.setdefault(label, []).append(time.perf_counter() - started - DEBOUNCE)
                screen.query_one("#filter", Input).value = ""
                await shown(screen, screen.loads, pilot.pause)
            for label, key in (("quick filter e (expiring)", "e"), ("sort o (next column)", "o")):
                screen.query_one("#keys", DataTable).focus()
                before = screen.loads
                started = time.perf_counter()
                await pilot.press(key)
                await shown(screen, before, pilot.pause)
                times.setdefault(label, []).append(time.perf_counter() - started)
            await app.pop_screen()
            await pilot.pause()
    return times


def bare(console: Console, asked: KeyQuery, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        find_page(console, asked)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        migrate(engine)
        started = time.perf_counter()
        fill(engine, args.keys)
        print(f"SQLite: {args.keys} keys loaded in {time.perf_counter() - started:.1f}s")
        actor = Actor("bench", frozenset({"ministry-root-officer"}))
        console = Console(engine, actor, FixedClock(NOW))
        base = KeyQuery()
        baselines = {
            "first paint": bare(console, base, args.runs),
            "filter text '4401'": bare(console, replace(base, text="4401"), args.runs),
            "filter text '广州'": bare(console, replace(base, text="广州"), args.runs),
            "quick filter e (expiring)": bare(console, replace(base, quick="e"), args.runs),
            "sort o (next column)": bare(console, replace(base, sort="days_left"), args.runs),
        }
        times = asyncio.run(measure(console, args.runs))
        print(f"  page of {PAGE} rows; filter times exclude the {DEBOUNCE * 1000:.0f} ms debounce")
        print(f"  {'':<28}{'bare query':>12}{'in the console':>16}{'ratio':>8}")
        for label, samples in times.items():
            took, baseline = statistics.median(samples), baselines[label]
            print(
                f"  {label:<28}{baseline * 1000:>9.1f} ms{took * 1000:>13.1f} ms"
                f"{took / baseline:>8.2f}"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
