"""A fast path for ``GET /lists/...`` (issue #16, point 7): a plain ASGI wrapper,
outermost around the service's app, answering the lists terminals' operators poll from an
in-memory cache per process, without routing, ``BaseHTTPMiddleware`` or a thread hop.

It answers only what it holds: the current version of a known list type, an archived version
it has read, ``index.json``; the headers and 304 rules are ``ca.api.lists_http``'s (same
functions). Everything else (unknown type or sequence, other methods, problems) goes to the
routed app, so those answers are the routed ones (``HEAD`` too: the routes are GET only).

Freshness: the database is re-read off the event loop at most once a second per list type (one
read in flight, the others wait for it), and at once after a commit in this process; a version
published by another service process on the database is served within about a second.
``Cache-Control: max-age`` is computed per request from nextUpdate. Each answer has its request
id and goes into the latency histogram; its access line is logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Final, Protocol

import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ca.api.lists_http import etag_matches, not_modified
from ca.core.clock import Clock
from ca.lists.asn1 import ListType
from ca.obs.metrics import ServiceMetrics
from ca.publish import http_layout
from ca.publish.publisher import version_bytes
from ca.service.runtime import Runtime
from ca.store.models import ListVersion
from hsm.sm.sm3 import sm3

REFRESH: Final = 1.0  # seconds between two reads of the database per list type
_RID: Final = b"x-request-id"
_TYPES: Final = {t.value: t for t in ListType}
access_log = logging.getLogger("jtca.access")

_commits = [0]  # bumped by every commit in this process: a publication here is seen at once


@event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:  # pragma: no branch - trivial
    _commits[0] += 1


class _Activity(Protocol):
    running: int
    last: float


@dataclass
class _Version:
    sequence: int
    tag: str
    this_update: int
    next_update: int
    data: bytes


@dataclass
class _Held:
    """One list type: its newest version, index.json and the archived versions read."""

    current: _Version | None = None
    index: bytes = b""
    index_tag: str = ""
    archived: dict[int, _Version] = field(default_factory=dict)
    newest: int = -1
    checked: float = -1e9
    seen_commits: int = -1
    reading: asyncio.Future[None] | None = None


class ListsFast:
    """The ASGI wrapper: ``inner`` is the whole service app (answers what this does not)."""

    def __init__(
        self,
        inner: ASGIApp,
        runtime: Runtime,
        clock: Clock,
        metrics: ServiceMetrics | None,
        activity: _Activity,
        refresh: float = REFRESH,
    ) -> None:
        self.inner = inner
        self.runtime = runtime
        self.clock = clock
        self.metrics = metrics
        self.activity = activity
        self.refresh = refresh
        self.held = {t: _Held() for t in ListType}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.inner(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/lists/"):
            await self.inner(scope, receive, send)
            return
        parts = path[7:].split("/")
        kind = _TYPES.get(parts[0])
        if kind is None or len(parts) > 2:
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        held = self.held[kind]
        await self._fresh(held, kind)
        request = Request(scope)
        if len(parts) == 1:
            route = "/lists/{list_type}"
            version = held.current
            if version is None:
                await self.inner(scope, receive, send)
                return
            status, headers, body = self._answer(request, version, archived=False)
        elif parts[1] == "index.json":
            route = "/lists/{list_type}/index.json"
            if held.current is None:
                await self.inner(scope, receive, send)
                return
            headers = [
                (b"etag", held.index_tag.encode()),
                (b"cache-control", http_layout.INDEX_CACHE_CONTROL.encode()),
            ]
            inm = request.headers.get("if-none-match")
            if inm is not None and etag_matches(inm, held.index_tag):
                status, body = 304, b""
            else:
                status, body = 200, held.index
                headers += [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ]
        else:
            route = "/lists/{list_type}/{sequence}"
            seq = parts[1]
            if not (seq.isascii() and seq.isdigit() and len(seq) <= 18):
                await self.inner(scope, receive, send)
                return
            version = held.archived.get(int(seq))
            if version is None:
                version = await anyio.to_thread.run_sync(self._read_archived, kind, int(seq))
                if version is None:
                    await self.inner(scope, receive, send)
                    return
                held.archived[version.sequence] = version
            status, headers, body = self._answer(request, version, archived=True)
        rid = _request_id(scope)
        headers.append((_RID, rid.encode()))
        self.activity.last = time.monotonic()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe(scope["method"], route, status, seconds)
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "request_id": rid,
                    "officer": None,
                    "method": scope["method"],
                    "path": path[:300],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

    def _answer(
        self, request: Request, version: _Version, *, archived: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = [
            (b"etag", version.tag.encode()),
            (b"last-modified", http_layout.http_date(version.this_update).encode()),
        ]
        if archived:
            headers.append((b"cache-control", http_layout.ARCHIVED_CACHE_CONTROL.encode()))
        else:
            left = version.next_update - self.clock.now()
            headers.append((b"expires", http_layout.http_date(version.next_update).encode()))
            headers.append(
                (b"cache-control", (f"max-age={left}" if left > 0 else "no-cache").encode())
            )
        if not_modified(request, version.tag, version.this_update):
            return 304, headers, b""
        headers.append((b"content-length", str(len(version.data)).encode()))
        headers.append((b"content-type", http_layout.LIST_MEDIA_TYPE.encode()))
        return 200, headers, version.data

    async def _fresh(self, held: _Held, kind: ListType) -> None:
        """Re-read ``kind`` if a second has passed or this process committed since."""
        now = time.monotonic()
        if now - held.checked < self.refresh and held.seen_commits == _commits[0]:
            return
        if held.reading is None:
            held.reading = asyncio.get_running_loop().create_future()
            reading = held.reading
            commits = _commits[0]
            try:
                await anyio.to_thread.run_sync(self._read, held, kind)
                held.seen_commits = commits
                held.checked = time.monotonic()
            finally:
                held.reading = None
                reading.set_result(None)
        elif held.current is None or held.seen_commits != _commits[0]:
            await asyncio.shield(held.reading)
        # else: the second's re-read is in flight; the others answer from what is held

    def _read(self, held: _Held, kind: ListType) -> None:
        """(In a worker thread.) The newest sequence; everything again if it changed."""
        with Session(self.runtime.engine) as session:
            newest = session.exec(
                select(ListVersion.sequence)
                .where(ListVersion.list_type == kind.value)
                .order_by(col(ListVersion.sequence).desc())
            ).first()
            if newest is None or newest == held.newest:
                return
            rows = list(
                session.exec(
                    select(ListVersion)
                    .where(ListVersion.list_type == kind.value)
                    .order_by(col(ListVersion.sequence))
                )
            )
            row = rows[-1]
            data = version_bytes(session, self.runtime.published, row)
            if data is None:
                return  # the routed app answers (its problem names the missing bytes)
            index = http_layout.index_document(kind, rows)
            held.index = index
            held.index_tag = http_layout.etag(sm3(index).hex())
            held.current = _version(row, data)
            held.newest = row.sequence

    def _read_archived(self, kind: ListType, sequence: int) -> _Version | None:
        with Session(self.runtime.engine) as session:
            row = session.exec(
                select(ListVersion)
                .where(ListVersion.list_type == kind.value)
                .where(ListVersion.sequence == sequence)
            ).first()
            if row is None:
                return None
            data = version_bytes(session, self.runtime.published, row)
            return None if data is None else _version(row, data)


def _version(row: ListVersion, data: bytes) -> _Version:
    return _Version(row.sequence, http_layout.etag(row.sm3), row.this_update, row.next_update, data)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _RID:
            given = str(value.decode("latin-1"))
            if given and len(given) <= 64 and given.isascii():
                return given
            break
    return os.urandom(16).hex()


def wrap(
    inner: ASGIApp,
    runtime: Runtime,
    clock: Clock,
    metrics: object,
    activity: _Activity,
) -> ListsFast:
    return ListsFast(
        inner, runtime, clock, metrics if isinstance(metrics, ServiceMetrics) else None, activity
    )
