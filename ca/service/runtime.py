"""What the service holds: the database engine, the ministry's tokens, the state folder.

One ``Runtime`` per service process. The tokens are opened once and shared; calls into them are
serialised by ``tokens()`` (a PKCS#11 session is not shared between threads, and SoftHSM2
re-initialises on a new token). The database URL lives here and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from sqlalchemy.engine import Engine

from ca.errors import JtcaError
from ca.store.db import database_url, make_engine
from ca.store.schema import SchemaState, check_schema, upgrade
from ca.tokens import EmbeddedVault

Migrate = Literal["check", "upgrade"]
PUBLISHED: Final = "published"  # the service's publication folder under the state folder


class SchemaBehind(JtcaError):
    title = "Database schema is behind"
    exit_code = 7


@dataclass
class Runtime:
    state: Path
    url: str
    engine: Engine
    embedded: bool = False
    published: Path = field(default=Path())
    _vault: EmbeddedVault | None = field(default=None, repr=False)
    _token_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if self.published == Path():
            self.published = self.state / PUBLISHED

    @property
    def database(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    @contextmanager
    def tokens(self, *, create: bool = False) -> Iterator[EmbeddedVault]:
        """The ministry's tokens, one caller at a time. ``create`` lets a missing token be made
        (a holder's first transport key, a ceremony's token)."""
        with self._token_lock:
            if create:
                vault = EmbeddedVault(self.state, create=True)
                try:
                    yield vault
                finally:
                    vault.close()
                return
            if self._vault is None:
                self._vault = EmbeddedVault(self.state)
            yield self._vault

    def schema(self) -> SchemaState:
        return check_schema(self.engine)

    def close(self) -> None:
        with self._token_lock:
            if self._vault is not None:
                self._vault.close()
                self._vault = None
        self.engine.dispose()


def open_runtime(
    state: Path, *, url: str | None = None, migrate: Migrate = "check", embedded: bool = False
) -> Runtime:
    """The runtime of a service on ``state`` (and ``url``, else $JTCA_DATABASE_URL, else the
    state folder's SQLite file). ``migrate='upgrade'`` brings the schema to the newest revision
    (the embedded default); ``'check'`` refuses a schema that is behind or ahead of the code."""
    state.mkdir(parents=True, exist_ok=True)
    chosen = url or database_url(state)
    engine = make_engine(chosen)
    if migrate == "upgrade":
        upgrade(engine)
    found = check_schema(engine)
    if found.ahead:
        raise SchemaBehind(
            f"the database is at revision {found.current}, newer than this jtca "
            f"(knows {found.head}): upgrade jtca",
            title="Database schema is ahead",
        )
    if not found.current_is_head:
        raise SchemaBehind(
            f"the database is at revision {found.current or '(empty)'}, this jtca needs "
            f"{found.head}: run `jtca db upgrade` first"
        )
    return Runtime(state=state, url=chosen, engine=engine, embedded=embedded)
