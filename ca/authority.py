"""The authority's working context: its database (migrated on open) and state folder."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy.engine import Engine

from ca.store.db import database_url, make_engine, migrate
from ca.tokens import state_dir


@dataclass(frozen=True, slots=True)
class Authority:
    state: Path
    url: str
    engine: Engine


@cache
def open_authority(state: Path | None = None) -> Authority:
    """The database of ``state`` (or $JTCA_DATABASE_URL), brought to the newest schema."""
    folder = state or state_dir()
    url = database_url(folder)
    engine = make_engine(url)
    migrate(engine)
    return Authority(folder, url, engine)
