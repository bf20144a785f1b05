"""Structured logs: one JSON object per line, for the service and the publisher.

Every line carries ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``, and whichever
of the context fields the call gave in ``extra`` (``request_id``, ``officer``, ``method``,
``path``, ``status``, ``duration_ms``, ``list_type``, ``sequence``…). Secrets never reach a line:
``extra`` fields whose name says PIN, share, key material, signature, session or body are
dropped (by name, whatever the caller passed), and the access line names the path without its
query and never the body or the request's headers.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys
from typing import IO, Any, Final

# The attributes every LogRecord has: what is not one of these came from ``extra``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Names of fields that could hold a secret: never written, whatever the value.
_SECRET_PARTS: Final = (
    "pin",
    "share",
    "secret",
    "password",
    "passphrase",
    "private",
    "session",
    "signature",
    "body",
    "token_key",
    "wrapping",
    "authorization",
)
# The request being answered, for every line written while it is (the publisher's, the use
# cases'): set by the service's request middleware and sign-in check (ca.api.app).
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jtca_request_id", default=None
)
_officer: contextvars.ContextVar[str | None] = contextvars.ContextVar("jtca_officer", default=None)
LEVEL_ENV: Final = "JTCA_LOG_LEVEL"
FORMAT_ENV: Final = "JTCA_LOG_FORMAT"  # json (the default) or text


def secret_name(name: str) -> bool:
    """Whether a field called ``name`` may hold a secret (and so is never logged)."""
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_PARTS) and lowered != "session_count"


def bind_request(request_id: str) -> contextvars.Token[str | None]:
    """Name ``request_id`` on every line written in this context (give the token back to
    ``unbind_request`` when the request ends)."""
    _officer.set(None)
    return _request_id.set(request_id)


def unbind_request(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def bind_officer(officer: str) -> None:
    """Name the signed-in officer on every line written in this context from now on."""
    _officer.set(officer)


class RequestContext(logging.Filter):
    """Adds ``request_id`` and ``officer`` of the request being answered to a line that does not
    name them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = _request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        officer = _officer.get()
        if officer is not None and not hasattr(record, "officer"):
            record.officer = officer
        return True


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not secret_name(str(k))}
    return str(value)


class JsonFormatter(logging.Formatter):
    """A record as one JSON line (no newline inside: ``json.dumps`` escapes them)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name in _STANDARD or name.startswith("_") or secret_name(name):
                continue
            line[name] = _plain(value)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def configure(stream: IO[str] | None = None, *, level: str | int | None = None) -> None:
    """Send the process's log (the root logger: jtca's own, uvicorn's) to ``stream`` (stderr:
    the journal under systemd) as JSON lines, or as plain text with ``JTCA_LOG_FORMAT=text``.
    The level: ``level``, else ``JTCA_LOG_LEVEL``, else INFO. Safe to call again."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get(FORMAT_ENV, "json").strip().lower() == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    chosen = level if level is not None else os.environ.get(LEVEL_ENV, "INFO").strip().upper()
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_jtca", False):
            root.removeHandler(old)
    handler.addFilter(RequestContext())
    handler._jtca = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    try:
        root.setLevel(chosen)
    except (ValueError, TypeError):
        root.setLevel(logging.INFO)
        logging.getLogger("jtca").warning("%s=%r is not a log level: using INFO", LEVEL_ENV, chosen)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
