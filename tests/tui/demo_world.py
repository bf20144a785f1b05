"""The demo world the console's tests share (the fixtures are in conftest.py). A module of its
own, not conftest: ``from conftest import …`` would find whichever conftest.py pytest imported
last (tests/integration has one too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ca.clock import FixedClock
from ca.demodata import DemoCredentials

NOW = 1_795_000_000  # 2026-11-18T11:06:40Z: the demo world's "now"


@dataclass
class Demo:
    state: Path
    credentials: DemoCredentials
    clock: FixedClock
