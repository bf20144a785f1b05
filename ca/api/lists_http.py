"""GET /lists/{type}, /lists/{type}/{sequence}, /lists/{type}/index.json (issue #16, point 1).

Public reads, no sign-in (the lists are public, like the files terminals load). Each answers
from the database's records (``ListVersion``) and the bytes beside them (``ListVersionFile``),
so only recorded versions are served, by any service process on the database.

- ``/lists/{type}``: the newest version's DER; ``ETag: "<SM3 hex>"`` (strong),
  ``Last-Modified`` = thisUpdate, ``Expires`` = nextUpdate and ``Cache-Control: max-age=`` the
  seconds left until it (``no-cache`` once passed): the headers nginx sends with
  docs/deploy/nginx-jtca-lists.conf;
- ``/lists/{type}/{sequence}``: an archived version, immutable (a year's max-age);
- ``/lists/{type}/index.json``: every version (``ca.publish.http_layout.index_document``).

``If-None-Match`` (a list of ETags, ``*``, weak ones compared weakly) answers 304; without it,
``If-Modified-Since`` not before thisUpdate answers 304 (RFC 9110 §13.1.1-3, §13.2.2).
"""

from __future__ import annotations

import threading
from email.utils import parsedate_to_datetime

from fastapi import FastAPI, Request
from sqlmodel import Session, col, select
from starlette.responses import Response

from ca.api.problems import problem
from ca.core.clock import Clock
from ca.lists.asn1 import ListType
from ca.publish import http_layout
from ca.publish.publisher import version_bytes
from ca.service.runtime import Runtime
from ca.store.models import ListVersion
from hsm.sm.sm3 import sm3

_TYPES = ", ".join(t.value for t in ListType)


def _type_or_none(name: str) -> ListType | None:
    try:
        return ListType(name)
    except ValueError:
        return None


def etag_matches(header: str, tag: str) -> bool:
    """``If-None-Match`` against ``tag`` with the weak comparison (RFC 9110 §13.1.2)."""
    if header.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == opaque for part in header.split(","))


def not_modified(request: Request, tag: str, last_modified: int) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag_matches(inm, tag)
    ims = request.headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 §13.1.3)
    if since.tzinfo is None:
        return False
    return last_modified <= int(since.timestamp())


class _Bytes:
    """Recorded versions' bytes, kept once read (a version never changes)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, runtime: Runtime, row: ListVersion) -> bytes | None:
        key = (row.list_type, row.sequence)
        with self._lock:
            held = self._held.get(key)
        if held is not None:
            return held
        data = version_bytes(session, runtime.published, row)
        if data is not None:
            with self._lock:
                self._held[key] = data
        return data


def register(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """Add this module's routes to ``app``."""
    held = _Bytes()

    def unknown(name: str) -> Response:
        return problem(
            404, "Unknown list type", f"list type {name!r}: one of {_TYPES}", field="type"
        )

    def answer(request: Request, row: ListVersion, *, archived: bool, session: Session) -> Response:
        tag = http_layout.etag(row.sm3)
        headers = {"ETag": tag, "Last-Modified": http_layout.http_date(row.this_update)}
        if archived:
            headers["Cache-Control"] = http_layout.ARCHIVED_CACHE_CONTROL
        else:
            left = row.next_update - clock.now()
            headers["Expires"] = http_layout.http_date(row.next_update)
            headers["Cache-Control"] = f"max-age={left}" if left > 0 else "no-cache"
        if not_modified(request, tag, row.this_update):
            return Response(status_code=304, headers=headers)
        data = held.get(session, runtime, row)
        if data is None:
            return problem(
                404,
                "List version not held",
                f"version {row.sequence} of the {row.list_type} is recorded but its bytes are not "
                "held by this service",
            )
        return Response(data, media_type=http_layout.LIST_MEDIA_TYPE, headers=headers)

    @app.get("/lists/{list_type}", tags=["lists"], operation_id="current_list")
    @app.head("/lists/{list_type}", tags=["lists"], operation_id="current_list_head")
    def current_list(list_type: str, request: Request) -> Response:
        kind = _type_or_none(list_type)
        if kind is None:
            return unknown(list_type)
        with Session(runtime.engine) as session:
            row = session.exec(
                select(ListVersion)
                .where(ListVersion.list_type == kind.value)
                .order_by(col(ListVersion.sequence).desc())
            ).first()
            if row is None:
                return problem(404, "No list published", f"no {kind.value} is published yet")
            return answer(request, row, archived=False, session=session)

    @app.get("/lists/{list_type}/index.json", tags=["lists"], operation_id="list_index")
    @app.head("/lists/{list_type}/index.json", tags=["lists"], operation_id="list_index_head")
    def list_index(list_type: str, request: Request) -> Response:
        kind = _type_or_none(list_type)
        if kind is None:
            return unknown(list_type)
        with Session(runtime.engine) as session:
            rows = list(
                session.exec(
                    select(ListVersion)
                    .where(ListVersion.list_type == kind.value)
                    .order_by(col(ListVersion.sequence))
                )
            )
        data = http_layout.index_document(kind, rows)
        tag = http_layout.etag(sm3(data).hex())
        headers = {"ETag": tag, "Cache-Control": http_layout.INDEX_CACHE_CONTROL}
        inm = request.headers.get("if-none-match")
        if inm is not None and etag_matches(inm, tag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    @app.get("/lists/{list_type}/{sequence}", tags=["lists"], operation_id="archived_list")
    @app.head("/lists/{list_type}/{sequence}", tags=["lists"], operation_id="archived_list_head")
    def archived_list(list_type: str, sequence: str, request: Request) -> Response:
        kind = _type_or_none(list_type)
        if kind is None:
            return unknown(list_type)
        if not sequence.isascii() or not sequence.isdigit() or len(sequence) > 18:
            return problem(
                400,
                "Bad sequence",
                f"sequence {sequence[:40]!r}: a decimal number (no sign, at most 18 digits)",
                field="sequence",
            )
        with Session(runtime.engine) as session:
            row = session.exec(
                select(ListVersion)
                .where(ListVersion.list_type == kind.value)
                .where(ListVersion.sequence == int(sequence))
            ).first()
            if row is None:
                return problem(
                    404, "No such list version", f"no {kind.value} version {int(sequence)}"
                )
            return answer(request, row, archived=True, session=session)
