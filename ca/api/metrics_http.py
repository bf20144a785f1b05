"""GET /metrics in the Prometheus text format (issue #16, point 3)."""

from __future__ import annotations

from fastapi import FastAPI

from ca.clock import Clock
from ca.service.runtime import Runtime


def register(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """Add this module's routes to ``app``."""
