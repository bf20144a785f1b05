"""The service in-process, for tests that drive the command line's or the console's adapters
through the real HTTP API without a server process: Starlette's TestClient is an httpx client
over the ASGI application, so ``ca.client.http.Client`` runs unchanged over it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from officer_desk import DeskClient
from starlette.testclient import TestClient

from ca.api.app import create_app
from ca.core.clock import Clock
from ca.service.runtime import Runtime, open_runtime


@contextmanager
def in_process(
    state: Path,
    *,
    url: str | None = None,
    clock: Clock | None = None,
    officer: str | None = None,
    seal: bool = True,
) -> Iterator[tuple[DeskClient, Runtime]]:
    """``(client, runtime)`` of a service on ``state`` (and ``url``), schema upgraded, sealing
    the log's entries as ``jtca serve`` does once the root ceremony has made the audit key (a
    test signs checkpoints itself: no checkpointer thread). ``seal=False``: a service that
    appends nothing of its own at start (no seal-key entry), for tests that count entries."""
    runtime = open_runtime(state, url=url, migrate="upgrade", embedded=True)
    if seal:
        runtime.start_log(now=clock.now() if clock is not None else None, checkpointer=False)
    http = TestClient(create_app(runtime, clock=clock), raise_server_exceptions=False)
    try:
        client = DeskClient(http, runtime, clock)
        yield (client.as_officer(officer) if officer else client), runtime
    finally:
        http.close()
        runtime.close()
