"""The console's Keys screen with 100,000 keys: time to first paint and filter latency, against
the bare query measured in the same run.

Fills a fresh SQLite database with N keys (``city_scan.fill``), serves it in-process (the
service's ASGI application over Starlette's test client: the console is a client of the service,
as in ``jtca tui``), opens the Keys screen with Pilot for a national officer (every key in scope)
and times, as medians of several runs:

- bare: the page request itself (``tui.screens.keys.find_page``: ``city.page`` through the HTTP
  API — a count and a sorted page of ``PAGE`` rows, in SQL) run outside the UI — the baseline;
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
from starlette.testclient import TestClient
from textual.app import App
from textual.widgets import DataTable, Input

from ca.api.app import create_app
from ca.client.console import Console, open_token, sign_in
from ca.client.http import Client
from ca.core.clock import FixedClock
from ca.officers.certificates import OFFICER_CA_TOKEN, issue_officer_certificate, open_officer_ca
from ca.officers.roster import add_officer_in
from ca.service.runtime import open_runtime
from ca.site.officer_token import OfficerToken, create_embedded_token, default_label
from ca.store.db import transaction
from tui.screens.keys import DEBOUNCE, PAGE, KeyQuery, KeysScreen, find_page

SIZE = (120, 40)
BENCH_PIN = "bench-officer-pin"


class _Pin:
    def pin(self) -> str:
        return BENCH_PIN

    def describe(self) -> str:
        return "the bench's PIN"


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
            changes: list[tuple[str, Callable[[KeysScreen], None]]] = [
                (
                    "filter text '4401'",
                    lambda s: setattr(s.query_one("#filter", Input), "value", "4401"),
                ),
                (
                    "filter text '广州'",
                    lambda s: setattr(s.query_one("#filter", Input), "value", "广州"),
                ),
            ]
            for label, change in changes:
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
        state = Path(folder) / "state"
        runtime = open_runtime(
            state, url=f"sqlite:///{state / 'bench.db'}", migrate="upgrade", embedded=True
        )
        engine = runtime.engine
        started = time.perf_counter()
        fill(engine, args.keys)
        print(f"SQLite: {args.keys} keys loaded in {time.perf_counter() - started:.1f}s")
        roles = ["ministry-root-officer"]
        with transaction(engine) as session:
            add_officer_in(
                session, officer_id="bench", name="bench", roles=roles, province=None,
                actor="bench", now=NOW,
            )  # fmt: skip
        # the officer's own token and key, certified as the root quorum's enrolment does
        create_embedded_token(state, default_label("bench"), BENCH_PIN)
        with OfficerToken(default_label("bench"), _Pin(), state=state) as token:
            public_key = token.generate_key()
        with transaction(engine) as session, runtime.tokens(create=True) as vault:
            ca = open_officer_ca(session, vault.store(OFFICER_CA_TOKEN), now=NOW, actor="bench")
            issue_officer_certificate(
                session, ca, officer_id="bench", name="bench", public_key=public_key,
                token_label=default_label("bench"), issued_by="bench", now=NOW,
            )  # fmt: skip
        clock = FixedClock(NOW)
        http = TestClient(create_app(runtime, clock=clock), raise_server_exceptions=False)
        # signed in as the console does it: the officer's token, challenge and response
        console = sign_in(
            Client(http), open_token("bench", BENCH_PIN, state=state), "bench", clock=clock
        )
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
        console.close()
        http.close()
        runtime.close()


if __name__ == "__main__":
    main()
