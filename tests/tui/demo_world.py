"""The demo world the console's tests share (the fixtures are in conftest.py). A module of its
own, not conftest: ``from conftest import …`` would find whichever conftest.py pytest imported
last (tests/integration has one too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ca.client.console import Console, open_token, sign_in
from ca.client.http import Client
from ca.core.clock import FixedClock
from ca.demo.credentials import DemoCredentials
from ca.service.runtime import Runtime

NOW = 1_795_000_000  # 2026-11-18T11:06:40Z: the demo world's "now"


@dataclass
class Demo:
    """A private copy of the seeded demo state and the service on it, in-process: ``client``
    speaks to it over its HTTP API (no officer signed in); ``clock`` is the service's clock
    (move it to stand later in time); ``runtime`` lets a test read back what the service
    recorded. Every demo officer holds a personal SoftHSM2 token in the state folder (label and
    PIN in ``credentials``) whose key the officer CA certified."""

    state: Path
    credentials: DemoCredentials
    clock: FixedClock
    client: Client
    runtime: Runtime

    def pin(self, officer: str) -> str:
        return self.credentials.pins[officer]

    def console(self, officer: str, *, pin: str | None = None) -> Console:
        """``officer`` signed in as the console does it: their own token opened with their PIN
        (``pin`` to try another), challenge and response with the service; the token stays
        open to sign decisions until ``Console.close``."""
        token = open_token(
            officer,
            self.pin(officer) if pin is None else pin,
            label=self.credentials.officer(officer).token_label,
            state=self.state,
        )
        try:
            return sign_in(self.client, token, officer, clock=self.clock)
        except BaseException:
            token.close()
            raise
