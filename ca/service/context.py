"""The context a use case runs in: the runtime, the calling officer, the clock, a request id."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ca.core.clock import Clock
from ca.core.errors import JtcaError
from ca.service.runtime import Runtime
from policies.rules import Actor


class NotSignedIn(JtcaError):
    """The operation needs an officer and the request named none (HTTP 401)."""

    title = "Not signed in"
    exit_code = 6
    http_status = 401


@dataclass(frozen=True, slots=True)
class Context:
    runtime: Runtime
    officer: Actor | None
    clock: Clock
    request_id: str = ""
    session_id: str = ""  # the signed-in officer's session (issue #12)
    certificate_serial: int | None = None  # the officer certificate that session was opened with
    progress_token: str = ""  # the client's Jtca-Progress token, if it asked to follow progress

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def now(self) -> int:
        return self.clock.now()

    def progress(self, what: str, done: int, total: int | None) -> None:
        """Where long work has got to, for the client's progress bar (``ca.service.progress``);
        nothing when the request asked for no progress."""
        if self.progress_token:
            from ca.service.progress import BOARD

            BOARD.report(self.progress_token, what, done, total)

    def actor(self) -> Actor:
        """The calling officer; refused when the request came without one."""
        if self.officer is None:
            raise NotSignedIn("this operation needs an officer: sign in first")
        return self.officer
