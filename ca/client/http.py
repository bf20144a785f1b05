"""``Client.call(op, request) -> result``: one typed round trip to the service.

Problem details from the service become a ``ServiceError`` with the same title, message and
exit status, so the command line shows exactly what it showed when it ran the use case itself.
"""

from __future__ import annotations

import ssl
import uuid
from typing import Any, Final, TypeVar

import httpx
from pydantic import ValidationError

from ca.client.config import NoService, Target, has_state, resolve
from ca.client.session import RequestSigner
from ca.core.errors import JtcaError
from ca.core.vocabulary import plural
from ca.ops.base import Model, Operation
from ca.ops.system import PROGRESS_HEADER, PROGRESS_PREFIX, ProgressView

TIMEOUT: Final = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)

Req = TypeVar("Req", bound=Model)
Res = TypeVar("Res", bound=Model)


class ServiceError(JtcaError):
    """An error the service answered with (problem details)."""

    def __init__(
        self,
        message: str,
        title: str,
        exit_code: int,
        *,
        status: int = 0,
        field: str | None = None,
        reason: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, title)
        self.exit_code = exit_code
        self.status = status
        self.field = field
        self.reason = reason
        self.problem = problem or {}


class ServiceUnavailable(JtcaError):
    title = "Service unavailable"
    exit_code = 69


def tls_context(server_cert: str | None) -> ssl.SSLContext:
    """TLS 1.3 only; with ``server_cert`` the service must present exactly that certificate's
    chain (pinning a self-made server certificate), else the system's trust store."""
    context = ssl.create_default_context(cafile=server_cert)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


class Client:
    def __init__(
        self,
        http: httpx.Client,
        *,
        signer: RequestSigner | None = None,
        target: Target | None = None,
    ) -> None:
        self.http = http
        self.signer = signer  # the signed-in officer's session, if any
        self.target = target

    @property
    def officer(self) -> str | None:
        return self.signer.data.officer if self.signer else None

    def signed_in(self, signer: RequestSigner | None) -> Client:
        """The same connection, signing as ``signer``'s session (or anonymous)."""
        return Client(self.http, signer=signer, target=self.target)

    def call(self, op: Operation[Req, Res], request: Req, *, progress_token: str = "") -> Res:
        """``op`` with ``request``; with ``progress_token`` the service reports where the work
        has got to under that token (``progress``)."""
        headers = {"X-Request-Id": uuid.uuid4().hex}
        if progress_token:
            headers[PROGRESS_HEADER] = progress_token
        body = request.model_dump_json().encode()
        if self.signer is not None:
            headers.update(self.signer.headers("POST", op.path, body))
        try:
            response = self.http.post(
                op.path, content=body, headers={**headers, "Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the authority service at {self._where()}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _problem(response)
        try:
            return op.result.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServiceError(
                f"{op.name}: the service answered with a result this client does not understand "
                f"({plural(exc.error_count(), 'problem')}); are client and service the same "
                "version?",
                "Version mismatch",
                1,
            ) from None

    def progress(self, token: str) -> ProgressView | None:
        """Where the operation sent with ``progress_token=token`` has got to; None when the
        service knows nothing under it (yet) or cannot be asked (a progress bar waits)."""
        try:
            response = self.http.get(PROGRESS_PREFIX + token)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        try:
            return ProgressView.model_validate_json(response.content)
        except ValidationError:
            return None

    def get(self, path: str) -> httpx.Response:
        try:
            return self.http.get(path)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the authority service at {self._where()}: {exc}"
            ) from None

    def read(self, path: str, params: dict[str, int | str] | None = None) -> httpx.Response:
        """A plain ``GET`` of a public read (the audit log's checkpoint and proofs, issue #13):
        the response when it succeeded, its problem details as a ``ServiceError`` otherwise."""
        try:
            response = self.http.get(
                path, params=params, headers={"X-Request-Id": uuid.uuid4().hex}
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the authority service at {self._where()}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _problem(response)
        return response

    def _where(self) -> str:
        return self.target.url if self.target else str(self.http.base_url)

    def close(self) -> None:
        self.http.close()


def _problem(response: httpx.Response) -> ServiceError:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ServiceError(
            f"the service answered HTTP {response.status_code} without problem details",
            "Service error",
            1,
            status=response.status_code,
        )
    exit_code = data.get("exit_code")
    return ServiceError(
        str(data.get("detail", "")),
        str(data.get("title", "Service error")),
        exit_code if isinstance(exit_code, int) else 1,
        status=response.status_code,
        field=data.get("field") if isinstance(data.get("field"), str) else None,
        reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
        problem=data,
    )


def http_for(target: Target) -> httpx.Client:
    if target.uds is not None:
        # Plain HTTP on a socket of mode 0600: no TLS, so no context loading the system's CA
        # store (70 ms of every command, issue #17)
        transport = httpx.HTTPTransport(uds=target.uds, verify=False)
        return httpx.Client(transport=transport, base_url="http://jtca", timeout=TIMEOUT)
    verify: ssl.SSLContext | bool = True
    if target.url.startswith("https://"):
        verify = tls_context(str(target.server_cert) if target.server_cert else None)
    return httpx.Client(base_url=target.url, verify=verify, timeout=TIMEOUT)


def connect(*, target: Target | None = None, anonymous: bool = False) -> Client:
    """A client of the configured service; the embedded default is started (or reused) on its
    state folder. With nothing configured and no state folder, ``NoService``."""
    chosen = target or resolve()
    if chosen.source == "embedded":
        if chosen.state is None or not has_state(chosen.state):
            raise NoService(
                f"no authority service is configured (JTCA_URL, {chosen.source}) and "
                f"{chosen.state} holds no jtca state: create one with `jtca init` (or `jtca demo` "
                "for demo data), set JTCA_STATE to an existing state folder, or point JTCA_URL "
                "at a service; `jtca config show` says what is in use"
            )
        from ca.client.embedded import ensure_running

        ensure_running(chosen.state)
    signer = None if anonymous else session_signer(chosen.url)
    return Client(http_for(chosen), signer=signer, target=chosen)


def session_signer(url: str) -> RequestSigner | None:
    """The signer of this machine's session with ``url`` (``jtca login``), if any."""
    from ca.client.session import load, session_path

    data = load(session_path(url))
    if data is None or data.url != url:
        return None
    return RequestSigner(data)
