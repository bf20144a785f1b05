"""GET /metrics in the Prometheus text format (issue #16, point 3).

The metrics themselves are read by ``ca.obs.metrics.ServiceMetrics`` (one registry per
application, kept in ``app.state.metrics``; the request middleware of ``ca.api.app`` times every
request into it). Who may read them:

- a request that came in on the Unix socket (``--uds``) or from a loopback address: always;
- from any other address: only with ``Authorization: Bearer <token>``, the token being the
  content of the file given to ``jtca serve --metrics-token-file`` (read once at start); without
  that option, never (403). A wrong or missing token is a 401. The comparison takes constant
  time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from prometheus_client import generate_latest
from starlette.responses import Response

from ca.api.problems import problem
from ca.core.clock import Clock
from ca.core.errors import JtcaError
from ca.obs.metrics import ServiceMetrics
from ca.service.runtime import Runtime

MAX_TOKEN_FILE: Final = 4096
# the text format every Prometheus reads (what generate_latest writes), whatever this
# prometheus-client's newest content type is
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class MetricsTokenError(JtcaError):
    title = "Cannot read the metrics token"
    exit_code = 2


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (surrounding white space removed); an error naming the file
    when it cannot be read, is empty or is too long to be a token."""
    try:
        raw = path.read_bytes()[: MAX_TOKEN_FILE + 1]
    except OSError as exc:
        raise MetricsTokenError(
            f"--metrics-token-file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(raw) > MAX_TOKEN_FILE:
        raise MetricsTokenError(f"--metrics-token-file {path}: over {MAX_TOKEN_FILE} bytes")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise MetricsTokenError(
            f"--metrics-token-file {path}: byte {exc.start} is not ASCII"
        ) from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise MetricsTokenError(
            f"--metrics-token-file {path}: the token must be one word of at least 16 "
            "characters (for example: openssl rand -hex 32)"
        )
    return token


def local_caller(request: Request) -> bool:
    """Whether the request came in on the Unix socket (no peer address) or from loopback."""
    client = request.scope.get("client")
    if not client:
        return True
    try:
        return ipaddress.ip_address(str(client[0]).strip("[]")).is_loopback
    except ValueError:
        return False


def register(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """Add this module's routes to ``app``."""
    metrics = getattr(app.state, "metrics", None)
    if not isinstance(metrics, ServiceMetrics):
        metrics = ServiceMetrics(runtime, clock)
        app.state.metrics = metrics
    token: str | None = getattr(app.state, "metrics_token", None)

    @app.get(
        "/metrics",
        tags=["service"],
        summary="the service's metrics in the Prometheus text format",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    def metrics_text(request: Request) -> Response:
        rid = str(getattr(request.state, "request_id", ""))
        if not local_caller(request):
            if token is None:
                return problem(
                    403,
                    "Forbidden",
                    "/metrics answers beyond loopback only when the service was started "
                    "with --metrics-token-file",
                    request_id=rid,
                )
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                response = problem(
                    401,
                    "Not authorized",
                    "/metrics from beyond loopback needs Authorization: Bearer <the token of "
                    "--metrics-token-file>",
                    request_id=rid,
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="jtca metrics"'
                return response
        return Response(
            generate_latest(metrics.registry),
            media_type=CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )
