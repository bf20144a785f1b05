"""Errors over the wire as RFC 9457 problem details (``application/problem+json``).

Every error has a ``title`` and a ``detail`` a person can read, the HTTP ``status``, and two
extensions of ours: ``exit_code`` (the command line's exit status, docs/cli.md) and, where the
error is about one field, ``field`` (its path, for example ``cities[2]``). A stack trace never
crosses the wire; an unexpected error is logged with its request id and answered as a 500.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.responses import JSONResponse

from ca.core.errors import JtcaError

PROBLEM: Final = "application/problem+json"
TYPE_BASE: Final = "https://jtca.invalid/problems/"  # a stable name, not a page to fetch

# exit status (docs/cli.md) → HTTP status
_STATUS: Final = {
    1: 400,
    3: 422,  # bad input
    4: 422,  # verification failed, package refused
    5: 503,  # token missing, locked or unavailable
    6: 403,  # refused by policy or dual control
    7: 503,  # database error
    8: 409,  # audit log tampered with
    75: 409,  # another run holds the lock
}


def status_of(error: JtcaError) -> int:
    explicit = getattr(error, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    return _STATUS.get(error.exit_code, 400)


def slug(title: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    exit_code: int = 1,
    field: str | None = None,
    request_id: str = "",
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug(title),
        "title": title,
        "status": status,
        "detail": detail,
        "exit_code": exit_code,
    }
    if field is not None:
        body["field"] = field
    if request_id:
        body["instance"] = f"urn:jtca:request:{request_id}"
    if extra:
        body.update(extra)
    headers = {"X-Request-Id": request_id} if request_id else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def from_error(error: JtcaError, request_id: str = "") -> JSONResponse:
    field = getattr(error, "field", None)
    extra: dict[str, Any] = {}
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        extra["reason"] = reason
    return problem(
        status_of(error),
        error.title,
        error.message,
        exit_code=error.exit_code,
        field=field if isinstance(field, str) else None,
        request_id=request_id,
        extra=extra,
    )


def field_path(location: tuple[int | str, ...] | list[int | str]) -> str:
    """``('body', 'cities', 2)`` → ``cities[2]``."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(body)"
