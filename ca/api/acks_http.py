"""POST /acks: operators' signed load acknowledgments (issue #16, point 2)."""

from __future__ import annotations

from fastapi import FastAPI

from ca.clock import Clock
from ca.service.runtime import Runtime


def register(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """Add this module's routes to ``app``."""
