"""What the service holds: the database engine, the ministry's tokens, the state folder, the
audit log's checkpoint folder and its keeper.

One ``Runtime`` per service process. The tokens are opened once and shared; calls into them are
serialised by ``tokens()`` (a PKCS#11 session is not shared between threads, and SoftHSM2
re-initialises on a new token). The database URL lives here and nowhere else.

``start_log`` (``jtca serve``, the embedded service) seals every entry this process appends
with a fresh session key registered under the audit key, and runs the ``Checkpointer`` thread
that signs a checkpoint after every batch of changes into ``log_folder`` (``<state>/log``, or
``$JTCA_LOG_DIR``); ``close`` stops both (ca/service/logkeys.py, issue #13).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from sqlalchemy.engine import Engine

from ca.core.errors import JtcaError
from ca.store.db import database_url, make_engine
from ca.store.schema import SchemaState, check_schema, upgrade
from ca.vault.embedded import EmbeddedVault

if TYPE_CHECKING:
    from ca.service.logkeys import Checkpointer

Migrate = Literal["check", "upgrade"]
PUBLISHED: Final = "published"  # the service's publication folder under the state folder
LOG_FOLDER: Final = "log"  # the checkpoint folder under the state folder (ca.log.checkpoint_folder)
LOG_DIR_ENV: Final = "JTCA_LOG_DIR"  # or the checkpoint folder named here


class SchemaBehind(JtcaError):
    title = "Database schema is behind"
    exit_code = 7


class TokensBusy(JtcaError):
    """The ministry's tokens stayed in use by another operation for longer than the caller
    would wait (the checkpointer waits a little, then tries again at its next turn)."""

    title = "Tokens busy"
    exit_code = 5
    http_status = 503


def log_folder_for(state: Path) -> Path:
    """``$JTCA_LOG_DIR`` when set, else ``<state>/log``."""
    chosen = os.environ.get(LOG_DIR_ENV)
    return Path(chosen) if chosen else state / LOG_FOLDER


@dataclass
class Runtime:
    state: Path
    url: str
    engine: Engine
    embedded: bool = False
    published: Path = field(default=Path())
    log_folder: Path = field(default=Path())
    _vault: EmbeddedVault | None = field(default=None, repr=False)
    _token_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _checkpointer: Checkpointer | None = field(default=None, repr=False)
    policy_sm3: str = ""  # the policy this process runs under (ca.service.policy, issue #16)
    policy_checked: float = 0.0  # when the database's policy in force was last looked at

    def __post_init__(self) -> None:
        if self.published == Path():
            self.published = self.state / PUBLISHED
        if self.log_folder == Path():
            self.log_folder = log_folder_for(self.state)

    @property
    def database(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    @contextmanager
    def tokens(
        self, *, create: bool = False, timeout: float | None = None
    ) -> Iterator[EmbeddedVault]:
        """The ministry's tokens, one caller at a time. ``create`` lets a missing token be made
        (a holder's first transport key, a ceremony's token). With ``timeout``, TokensBusy when
        another caller holds them longer than that many seconds."""
        if not self._token_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TokensBusy(f"the ministry's tokens stayed busy for {timeout} s")
        try:
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
        finally:
            self._token_lock.release()

    def start_log(self, *, now: int | None = None, checkpointer: bool = True) -> None:
        """Seal the entries this process appends (when the root ceremony has made the audit
        key) and, with ``checkpointer``, sign checkpoints in a background thread. Safe to call
        again; never raises for the log's sake (the service serves without it, loudly)."""
        from ca.service.logkeys import Checkpointer, start_sealing_quietly

        start_sealing_quietly(self, now)
        if checkpointer and self._checkpointer is None:
            self._checkpointer = Checkpointer(self)
            self._checkpointer.start()

    def stop_log(self) -> None:
        """Stop the checkpointer thread and this runtime's sealing."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        from ca.service.logkeys import stop_sealing

        stop_sealing(self)

    def schema(self) -> SchemaState:
        return check_schema(self.engine)

    def close(self) -> None:
        self.stop_log()
        if self.policy_sm3:  # this process ran under the database's policy in force (#16)
            from ca.policy.in_force import set_policy_in_force, set_policy_refresher

            set_policy_refresher(None)
            set_policy_in_force(None)
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
