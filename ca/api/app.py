"""The ASGI application of ``jtca serve`` (FastAPI; docs/deploy.md says why).

- one route per operation of ``ca.ops``: ``POST /v1/<area>/<name>`` with the operation's typed
  request as the JSON body and its typed result as the answer; the OpenAPI document at
  ``/openapi.json`` lists them all;
- the calling officer from a signed request (issue #12, ``ca.service.auth.authenticate``): the
  ``Jtca-Session`` of a challenge-and-response sign-in and the session key's
  ``Jtca-Signature`` over the method, path, time, nonce and the body's SM3; a refusal is
  audited and answered 401;
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (database reachable, schema
  current, token module loaded);
- the audit log's public reads for witnesses and auditors (issue #13, ``ca.service.log``):
  ``GET /log/checkpoint`` (the newest C2SP signed note with its cosignatures, text/plain),
  ``GET /log/proof/inclusion?index=…&size=…`` and ``GET /log/proof/consistency?from=…&to=…``
  (JSON, hashes in standard base64); no sign-in, a bad parameter is a 400 naming it;
- request bodies over ``max_body`` bytes refused with 413 before they are read whole;
- every error as problem details (``ca.api.problems``), never a stack trace.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ca.api.problems import field_path, from_error, problem, slug, status_of
from ca.core.clock import Clock, SystemClock
from ca.core.errors import JtcaError
from ca.obs import logs
from ca.obs.metrics import ServiceMetrics
from ca.officers.dual_control import SignedRequest, serving
from ca.officers.statements import SESSION_HEADER, SIGNATURE_HEADER, AuthError, body_digest
from ca.ops import log as log_ops
from ca.ops.base import OPERATIONS, Empty, Model, Operation
from ca.ops.system import PROGRESS_HEADER, PROGRESS_ID_PATTERN, PROGRESS_PREFIX, ProgressView
from ca.service import progress
from ca.service.auth import Authenticated, authenticate, refusal_audited, refuse
from ca.service.context import Context, NotSignedIn
from ca.service.log import ProofRequestError
from ca.service.registry import load_all
from ca.service.runtime import Runtime
from ca.service.system import jtca_version

REQUEST_ID_HEADER: Final = "X-Request-Id"
NOTE_TYPE: Final = "text/plain; charset=utf-8"  # C2SP signed notes are UTF-8 text
QUERY_INT: Final = re.compile(r"-?[0-9]{1,18}")  # fits the 64-bit columns, no '+', '_' or spaces
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024  # a 10,000-issuer usage report is ~1 MiB

log = logging.getLogger("jtca.api")
access_log = logging.getLogger("jtca.access")


@dataclass
class Activity:
    """When the last request ended and how many are running (idle exit, graceful shutdown)."""

    last: float = field(default_factory=time.monotonic)
    running: int = 0


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by Content-Length when it is given
    and by counting when it is not, before the application reads them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        # No (or a lying) Content-Length: read the body here, up to the limit, and hand the
        # application the bytes read; past the limit, answer 413 without calling it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Request too large",
            f"the request body is over the service's limit of {self.limit} bytes",
            exit_code=3,
        )
        await response(scope, receive, send)


def _context(op: Operation[Model, Model], runtime: Runtime, clock: Clock) -> Callable[..., Any]:
    """The calling officer and the context, as a dependency: it runs before the body is
    validated, so a caller who may not call learns nothing about the request's shape."""

    async def context(request: Request) -> Context:
        body = await request.body()
        session_id = request.headers.get(SESSION_HEADER, "").strip()
        authenticated: Authenticated | None = None
        if session_id:
            authenticated = await run_in_threadpool(
                _authenticate, runtime, clock, op, request, session_id, body
            )
        elif op.officer:
            message = f"{op.name} needs a signed-in officer: sign in first (jtca login)"
            await run_in_threadpool(
                functools.partial(
                    refuse,
                    runtime.engine,
                    officer="anonymous",
                    reason="no-session",
                    message=message,
                    where=op.name,
                    now=clock.now(),
                )
            )
            raise NotSignedIn(message)
        request.state.body = body
        if authenticated is not None:
            request.state.officer = authenticated.actor.id  # the access log line names them
            logs.bind_officer(authenticated.actor.id)  # and every line of the use case
        return Context(
            runtime=runtime,
            officer=authenticated.actor if authenticated else None,
            clock=clock,
            request_id=request.state.request_id,
            session_id=authenticated.session_id if authenticated else "",
            certificate_serial=authenticated.certificate_serial if authenticated else None,
            progress_token=progress.check_token(request.headers.get(PROGRESS_HEADER, "")),
        )

    return context


def _authenticate(
    runtime: Runtime,
    clock: Clock,
    op: Operation[Model, Model],
    request: Request,
    session_id: str,
    body: bytes,
) -> Authenticated:
    now = clock.now()
    try:
        return authenticate(
            runtime.engine,
            now=now,
            method=request.method,
            path=request.url.path,
            session_id=session_id[:64],
            signature_header=request.headers.get(SIGNATURE_HEADER),
            body=body,
            mutating=op.mutating,
        )
    except AuthError as exc:
        refuse(
            runtime.engine,
            officer=f"session {session_id[:8]}",
            reason=exc.reason,
            message=exc.message,
            where=op.name,
            now=now,
        )
        raise


SECRET_FIELDS: Final = frozenset({"shares", "pin", "pin_shares", "so_pin_shares"})


def without_secrets(body: bytes) -> bytes:
    """The request as it is kept for approvers (``ca.officers.dual_control.bind_request``): its JSON
    with the token-unlocking secrets (custodians' shares, a PIN) removed — they are never
    stored. A body without secrets is kept byte for byte as the officer signed it."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or not any(data.get(k) for k in SECRET_FIELDS):
        return body
    kept = {k: v for k, v in data.items() if k not in SECRET_FIELDS}
    return json.dumps(kept, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _audit_refusal(
    runtime: Runtime, ctx: Context, op: Operation[Model, Model], exc: JtcaError
) -> None:
    """A refusal (401, 403: no officer, policy, dual control) the use case did not audit
    itself is audited here as ``auth.refused``, with its reason (issue #12: refused and
    audited)."""
    if status_of(exc) not in (401, 403) or refusal_audited.get():
        return
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str):
        head = exc.message.split(":", 1)[0]
        reason = head if head.startswith("deny/") else slug(exc.title)
    refuse(
        runtime.engine,
        officer=ctx.officer.id if ctx.officer else "anonymous",
        reason=reason,
        message=exc.message,
        where=op.name,
        now=ctx.now(),
    )


def _endpoint(op: Operation[Model, Model], runtime: Runtime, clock: Clock) -> Callable[..., Any]:
    def endpoint(request: Request, body: Any, ctx: Context) -> Response:
        signed = None
        if ctx.officer is not None and op.mutating:
            raw = without_secrets(request.state.body)
            signed = SignedRequest(
                officer=ctx.officer.id,
                operation=op.name,
                body=raw,
                digest=body_digest(raw),
                session_id=ctx.session_id,
                signature=request.headers.get(SIGNATURE_HEADER, "")[:200],
                at=ctx.now(),
            )
        token = serving.set(signed)
        audited = refusal_audited.set(False)
        try:
            result = HANDLERS[op.name](ctx, body)
        except JtcaError as exc:
            _audit_refusal(runtime, ctx, op, exc)
            raise
        finally:
            refusal_audited.reset(audited)
            serving.reset(token)
            progress.BOARD.finish(ctx.progress_token)  # the client's bar ends with the answer
        if type(result) is not op.result:
            result = op.result.model_validate(result)
        # serialised once, by the model itself (FastAPI would validate it a second time)
        return Response(result.model_dump_json(), media_type="application/json")

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter(
                "body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=op.request
            ),
            inspect.Parameter(
                "ctx",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Context,
                default=Depends(_context(op, runtime, clock)),
            ),
        ]
    )
    endpoint.__name__ = op.name.replace(".", "_").replace("-", "_")
    return endpoint


HANDLERS = load_all()


def create_app(
    runtime: Runtime,
    *,
    clock: Clock | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    activity: Activity | None = None,
    metrics_token: str | None = None,
) -> ASGIApp:
    clock = clock or SystemClock()
    activity = activity or Activity()
    app = FastAPI(
        title="jtca authority service",
        version=jtca_version(),
        description="The key management system and certificate authority of the national "
        "transport card and QR code scheme (交通一卡（码）通). Every operation is a typed "
        "POST under /v1; errors are RFC 9457 problem details.",
    )
    app.state.runtime = runtime
    app.state.activity = activity
    app.state.metrics = ServiceMetrics(runtime, clock)  # issue #16: a registry per app
    app.state.metrics_token = metrics_token  # /metrics beyond loopback (ca.api.metrics_http)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if given and len(given) <= 64 and given.isascii() else uuid.uuid4().hex
        request.state.request_id = rid
        bound = logs.bind_request(rid)  # every line of this request names it
        activity.running += 1
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            activity.running -= 1
            activity.last = time.monotonic()
            _observe(app, request, rid, status, time.perf_counter() - started)
            logs.unbind_request(bound)
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.exception_handler(JtcaError)
    async def jtca_error(request: Request, exc: JtcaError) -> JSONResponse:
        response = from_error(exc, _rid(request))
        if isinstance(exc, NotSignedIn):
            response.status_code = 401
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(exc.errors(), _rid(request))

    @app.exception_handler(ValidationError)
    async def invalid_result(request: Request, exc: ValidationError) -> JSONResponse:
        log.error("result failed its model", extra={"request_id": _rid(request)})
        return problem(
            500,
            "Internal error",
            "the service produced an invalid result",
            request_id=_rid(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        refused = body_refusal(exc.__cause__) if exc.status_code == 400 else None
        if refused is not None:  # FastAPI's bare 400 for a JSON body it could not read
            return problem(
                422, "Bad request", refused, exit_code=3, field="(body)", request_id=_rid(request)
            )
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(exc.status_code, title, str(exc.detail), request_id=_rid(request))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"request_id": _rid(request)})
        return problem(
            500,
            "Internal error",
            f"the service failed unexpectedly ({type(exc).__name__}); its log has the details "
            f"under request id {_rid(request)}",
            request_id=_rid(request),
        )

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": jtca_version(), "database": runtime.database}

    @app.get("/readyz", tags=["service"])
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        ok = True
        try:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
            schema = runtime.schema()
            if schema.current_is_head:
                checks["schema"] = f"ok ({schema.current})"
            else:
                ok = False
                checks["schema"] = f"at {schema.current}, code needs {schema.head}"
        except Exception as exc:  # a readiness probe reports, it does not fail
            ok = False
            checks.setdefault("database", f"unreachable: {type(exc).__name__}")
        try:
            checks["tokens"] = _token_health(runtime)
        except JtcaError as exc:
            ok = False
            checks["tokens"] = f"unavailable: {exc.message}"
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    _log_routes(app, runtime, clock)

    @app.get(PROGRESS_PREFIX + "{token}", response_model=ProgressView, tags=["system"])
    async def progress_of(token: str) -> Response:
        """Where the operation sent with ``Jtca-Progress: <token>`` has got to. The token is
        the capability (32 random bytes only its client knows); no database is read."""
        found = progress.BOARD.read(token) if re.fullmatch(PROGRESS_ID_PATTERN, token) else None
        if found is None:
            return problem(
                404,
                "No such progress",
                "no operation reports under this token (never sent, or finished over "
                f"{progress.KEEP_SECONDS:.0f} s ago)",
            )
        return Response(found.model_dump_json(), media_type="application/json")

    from ca.api import acks_http, lists_http, metrics_http  # issue #16

    lists_http.register(app, runtime, clock)
    acks_http.register(app, runtime, clock)
    metrics_http.register(app, runtime, clock)
    for op in OPERATIONS.values():
        app.add_api_route(
            op.path,
            _endpoint(op, runtime, clock),
            methods=["POST"],
            response_model=op.result,
            summary=op.summary,
            tags=[op.area],
            name=op.name,
            operation_id=op.name,
        )
    from ca.api import lists_fast  # issue #16 point 7: GET /lists/... outermost, cached

    return lists_fast.wrap(BodyLimit(app, max_body), runtime, clock, app.state.metrics, activity)


def body_refusal(exc: BaseException | None) -> str | None:
    """What to tell a client whose JSON body the decoder could not read for a reason other than
    its syntax (FastAPI answers a ``JSONDecodeError`` itself, with a 422 naming the offset, and
    anything else with a bare 400 'There was an error parsing the body'): nested too deeply
    for the decoder, not UTF-8 (UTF-16/32 are detected by their zero bytes), an integer over
    the decoder's digit limit. ``None`` for anything else."""
    if isinstance(exc, RecursionError):
        return "the JSON body is nested too deeply to be a request"
    if isinstance(exc, UnicodeDecodeError):
        return f"the body is not UTF-8 JSON: {exc.reason} at byte offset {exc.start}"
    if isinstance(exc, ValueError):
        return f"the JSON body cannot be read: {str(exc)[:120]}"
    return None


def _public_call(
    runtime: Runtime, clock: Clock, request: Request, op: Operation[Any, Any], body: Model
) -> Any:
    """A public read (no officer) answered by the operation's own use case."""
    ctx = Context(runtime=runtime, officer=None, clock=clock, request_id=_rid(request))
    return HANDLERS[op.name](ctx, body)


def query_int(request: Request, name: str) -> int:
    """The query parameter ``name`` as a decimal integer; a 400 naming it otherwise."""
    values = request.query_params.getlist(name)
    if not values:
        raise ProofRequestError(name, f"the query parameter {name} is missing")
    if len(values) > 1:
        raise ProofRequestError(name, f"the query parameter {name} is given {len(values)} times")
    value = values[0]
    if not QUERY_INT.fullmatch(value):
        raise ProofRequestError(name, f"{name}={value[:40]!r} is not a decimal integer")
    return int(value)


def _log_routes(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """The audit log's public GET reads (issue #13): translation only, the rules are the use
    cases' (``ca.service.log``)."""

    @app.get(
        "/log/checkpoint",
        tags=["log"],
        summary="the newest checkpoint as a C2SP signed note with its cosignatures",
        response_class=Response,
        responses={200: {"content": {NOTE_TYPE: {}}}},
    )
    def log_checkpoint(request: Request) -> Response:
        found = _public_call(runtime, clock, request, log_ops.CHECKPOINT_GET, Empty())
        return Response(found.note, media_type=NOTE_TYPE, headers={"Cache-Control": "no-cache"})

    @app.get(
        "/log/proof/inclusion",
        tags=["log"],
        summary="an inclusion proof of entry index (seq − 1) in the tree of size entries",
        response_model=log_ops.InclusionProof,
    )
    def log_inclusion(request: Request) -> Response:
        asked = log_ops.InclusionRequest(
            index=query_int(request, "index"), size=query_int(request, "size")
        )
        found = _public_call(runtime, clock, request, log_ops.INCLUSION, asked)
        return Response(found.model_dump_json(), media_type="application/json")

    @app.get(
        "/log/proof/consistency",
        tags=["log"],
        summary="a consistency proof between the trees of from and to entries",
        response_model=log_ops.ConsistencyProof,
    )
    def log_consistency(request: Request) -> Response:
        first, second = query_int(request, "from"), query_int(request, "to")
        asked = log_ops.ConsistencyRequest.model_validate({"from": first, "to": second})
        found = _public_call(runtime, clock, request, log_ops.CONSISTENCY, asked)
        return Response(found.model_dump_json(), media_type="application/json")


def _token_health(runtime: Runtime) -> str:
    from hsm.pkcs11.softhsm2 import token_labels, use_softhsm

    with runtime.tokens():
        use_softhsm(runtime.state / "softhsm2")
        labels = token_labels()
    return f"ok ({len(labels)} token(s))"


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _observe(app: FastAPI, request: Request, rid: str, status: int, seconds: float) -> None:
    """The request's latency into the app's histogram (by route template) and its access line:
    request id, officer, method, path without the query, status, duration; never a header or
    the body (issue #16)."""
    route = request.scope.get("route")
    template = str(getattr(route, "path", "")) or "(unmatched)"
    metrics = getattr(app.state, "metrics", None)
    if isinstance(metrics, ServiceMetrics):
        metrics.observe(request.method, template, status, seconds)
    access_log.info(
        "%s %s %s",
        request.method,
        request.url.path,
        status,
        extra={
            "request_id": rid,
            "officer": str(getattr(request.state, "officer", "")) or None,
            "method": request.method,
            "path": request.url.path[:300],
            "route": template,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


def _validation_problem(errors: Any, request_id: str) -> JSONResponse:
    items = list(errors)
    first = items[0] if items else {"loc": (), "msg": "invalid request"}
    where = field_path(tuple(first.get("loc", ())))
    detail = f"{where}: {first.get('msg', 'invalid')}"
    if len(items) > 1:
        detail += f" (and {len(items) - 1} more problem(s))"
    return problem(
        422,
        "Bad request",
        detail,
        exit_code=3,
        field=where,
        request_id=request_id,
        extra={
            "errors": [
                {"field": field_path(tuple(e.get("loc", ()))), "problem": e.get("msg", "")}
                for e in items[:20]
            ]
        },
    )
