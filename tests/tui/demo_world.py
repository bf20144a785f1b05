"""The demo world the console's tests share (the fixtures are in conftest.py). A module of its
own, not conftest: ``from conftest import …`` would find whichever conftest.py pytest imported
last (tests/integration has one too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ca.client.console import Console, sign_in
from ca.client.http import Client
from ca.clock import FixedClock
from ca.demodata import DemoCredentials
from ca.service.runtime import Runtime

NOW = 1_795_000_000  # 2026-11-18T11:06:40Z: the demo world's "now"


@dataclass
class Demo:
    """A private copy of the seeded demo state and the service on it, in-process: ``client``
    speaks to it over its HTTP API (no officer named); ``clock`` is the service's clock (move it
    to stand later in time); ``runtime`` lets a test read back what the service recorded."""

    state: Path
    credentials: DemoCredentials
    clock: FixedClock
    client: Client
    runtime: Runtime

    def console(self, officer: str) -> Console:
        """``officer`` signed in through the service: with their token's PIN, or — for the
        root officers without one of their own — the root token's share quorum."""
        if officer in self.credentials.pins:
            return sign_in(
                self.client, officer, pin=self.credentials.pins[officer], clock=self.clock
            )
        return sign_in(self.client, officer, shares=self.credentials.shares, clock=self.clock)
