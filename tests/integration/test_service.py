"""Issue #11: the authority as a service — the service itself, on SQLite and PostgreSQL.

In-process (the ASGI app through Starlette's TestClient): health, readiness, the OpenAPI
document, problem details for every kind of refusal, the body limit, no officer by naming one.
Against a real ``jtca serve`` process: TLS 1.3 only with a pinned self-made certificate,
refusals of an unpinned or TLS 1.2 client, an officer signing in with their own token and
signed requests over TLS (issue #12), a schema behind or ahead of the code, ``jtca db
upgrade``, the embedded default started once by concurrent clients, graceful shutdown, and no
silent empty world.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from officer_desk import enrol_directly, officer_token
from service_fixtures import in_process
from starlette.testclient import TestClient

from ca.api.app import create_app
from ca.client.config import Target
from ca.client.http import Client, ServiceError, http_for
from ca.client.session import RequestSigner, SessionData
from ca.ops import audit as audit_ops
from ca.ops import auth as auth_ops
from ca.ops import lists as lists_ops
from ca.ops.base import OPERATIONS, Empty
from ca.pki.x509 import LOG_SIGNING_EKU, issue_certificate, key_identifier, pem
from ca.service.runtime import open_runtime
from ca.site.officer_token import sign_in
from ca.store.db import transaction
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey

JTCA = str(Path(sys.executable).with_name("jtca"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JTCA_URL", "JTCA_SERVER_CERT", "JTCA_STATE", "JTCA_DATABASE_URL")
    }
    env.pop("SOFTHSM2_CONF", None)
    env.update(extra)
    return env


def run(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [JTCA, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=timeout,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- in-process ------------------------------------------------------------------------------
@pytest.fixture
def app(database, tmp_path: Path) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    url, _ = database
    with in_process(tmp_path / "state", url=url) as (client, _runtime):
        yield client.http


def test_health_and_readiness(app: httpx.Client) -> None:
    health = app.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = app.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["schema"].startswith("ok (")
    assert checks["tokens"].startswith("ok (")


def test_openapi_lists_every_operation(app: httpx.Client) -> None:
    document = app.get("/openapi.json").json()
    paths = document["paths"]
    for op in OPERATIONS.values():
        assert op.path in paths, op.name
        post = paths[op.path]["post"]
        assert post["operationId"] == op.name
        assert post["summary"] == op.summary
    assert "/healthz" in paths
    assert "/readyz" in paths


def test_only_public_reads_and_bootstrap_paths_need_no_officer(
    database: Any, tmp_path: Path
) -> None:
    """Everything else needs a signed-in officer (issue #12): a province's keys, applications
    and pending actions, and the audit log, are read by officers only (each refused without a
    session: tests/integration/test_service_city.py, test_service_authority.py). The log's
    checkpoints and proofs are public, and a witness's cosignature is its own credential (issue
    #13). ``audit.verify`` checks the caller itself: anyone on the embedded state (they own its
    folder already), a signed-in officer anywhere else."""
    public = sorted(name for name, op in OPERATIONS.items() if not op.officer)
    assert public == [
        "audit.verify",  # decides by itself: embedded, or an officer (below)
        "auth.challenge",  # sign-in itself
        "auth.sign-in",
        "ca.certificates",  # what terminals and issuers verify against
        "ca.keys",
        "ceremony.init-token",  # before any officer: the custodians' quorum is the authority
        "ceremony.run",
        "city.sweep",  # time-driven, chooses nothing
        "demo.seed",  # an empty demo state folder only
        "demo.status",
        "issuer.list",
        "lists.freshness",  # the published lists, as terminals see them
        "lists.history",
        "lists.overdue",
        "lists.proof",  # a published version's log proof, public like the version
        "lists.root",
        "lists.version",
        "log.checkpoint-get",  # what witnesses and auditors fetch (docs/witness.md)
        "log.consistency",
        "log.cosign",  # the cosignature is checked against a registered witness's key
        "log.inclusion",
        "officer.ca",  # what anyone needs to check an approval offline
        "officer.certificate",
        "officer.enrol",  # the root share quorum's bootstrap (with a session: a request)
        "officer.list",
        "system.info",
    ]

    # audit.verify with nobody signed in: the embedded service answers (here an empty log,
    # trusting the audit certificate given), the same database served otherwise refuses
    url, _ = database
    root, audit_key = SoftwareSigner.generate(), SoftwareSigner.generate()
    anchor = audit_ops.CertificateFile(
        source="audit-11.pem", data=audit_certificate(root, audit_key)
    )
    request = audit_ops.VerifyRequest(audit_certificates=[anchor]).model_dump_json()
    headers = {"Content-Type": "application/json"}
    state = tmp_path / "state"
    with in_process(state, url=url) as (client, runtime):
        assert client.http.get("/openapi.json").status_code == 200  # every operation registered
        assert runtime.embedded
        answered = client.http.post(audit_ops.VERIFY.path, content=request, headers=headers)
        assert answered.status_code == 200, answered.text
        report = audit_ops.VerifyResult.model_validate(answered.json())
        # an empty log and no checkpoint anywhere: answered, and nothing vouches for it
        assert (report.ok, report.events, report.checkpoints) == (False, 0, 0)
        assert [(f.seq, f.problem) for f in report.findings] == [(0, "unanchored")], report
        assert report.anchors == [
            f"audit-11.pem: audit key {audit_key.public_key.compressed.hex()[:16]}…"
        ]
    served = open_runtime(state, url=url, embedded=False)
    try:
        with TestClient(create_app(served), raise_server_exceptions=False) as http:
            refused = http.post(audit_ops.VERIFY.path, content=request, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["title"] == "Not signed in"
            assert "audit.verify needs a signed-in officer" in refused.json()["detail"]
            # the public reads stay public there
            info = http.post(lists_ops.HISTORY.path, json={})
            assert info.status_code == 200, info.text
    finally:
        served.close()


def audit_certificate(root: SoftwareSigner, key: SoftwareSigner) -> bytes:
    """An audit key certificate (log-signing EKU) made with software keys, as the root
    ceremony makes one with its tokens."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return pem(
        issue_certificate(
            root,
            subject={"C": "CN", "O": "中华人民共和国交通运输部", "CN": "审计日志签名"},
            subject_public_key=key.public_key,
            issuer_name={"C": "CN", "CN": "根CA"},
            serial=11,
            not_before=now,
            not_after=now + timedelta(days=365),
            ca=False,
            path_length=None,
            key_usage={"digital_signature"},
            extended_key_usage=[LOG_SIGNING_EKU],
            issuer_key_id=key_identifier(root.public_key),
        )
    )


def test_problem_details_name_the_field(app: httpx.Client) -> None:
    response = app.post("/v1/system/info", json={"surplus": 1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Bad request"
    assert body["field"] == "surplus"
    assert body["exit_code"] == 3
    assert "surplus" in body["detail"]
    assert "Traceback" not in response.text


def test_malformed_json_is_a_problem_not_a_crash(app: httpx.Client) -> None:
    response = app.post(
        "/v1/system/info", content=b'{"a": [[[', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Bad request"


def test_naming_an_officer_is_no_credential(app: httpx.Client) -> None:
    """The header the command line once sent names nobody now (issue #12): a read is served as
    anonymous, an operation that needs an officer is refused; an unknown session is refused
    and audited, whatever it signed."""
    named = {"Jtca-Officer": "mot-root-1"}
    response = app.post("/v1/system/info", json={}, headers=named)
    assert response.status_code == 200
    assert response.json()["officer"] is None
    needs_officer = next(op for op in OPERATIONS.values() if op.officer and op.mutating)
    response = app.post(needs_officer.path, json={}, headers=named)
    assert response.status_code == 401, response.text
    assert response.json()["title"] == "Not signed in"
    assert "sign in" in response.json()["detail"]

    made_up = SessionData(
        url="http://testserver",
        service="jtca-authority:unknown",
        session="0" * 32,
        officer="mot-root-1",
        roles=["ministry-root-officer"],
        province=None,
        certificate_serial=1,
        expires_at=2**40,
        session_key=SM2PrivateKey.generate().pkcs8_pem().decode(),
        token_label="officer-mot-root-1",  # noqa: S106 - a token label
        module=None,
    )
    body = b"{}"
    headers = {"Content-Type": "application/json"}
    headers.update(RequestSigner(made_up).headers("POST", needs_officer.path, body))
    response = app.post(needs_officer.path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert (response.json()["title"], response.json()["reason"]) == (
        "Not authenticated",
        "unknown-session",
    )


def test_unknown_path_and_method(app: httpx.Client) -> None:
    missing = app.get("/v1/no/such")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = app.get("/v1/system/info")
    assert wrong.status_code == 405
    assert wrong.json()["title"] == "Method not allowed"


def test_body_over_the_limit_is_refused_before_it_is_read(app: httpx.Client) -> None:
    declared = app.post("/v1/system/info", content=b"x" * (16 * 1024 * 1024 + 1))
    assert declared.status_code == 413
    assert declared.json()["title"] == "Request too large"

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b" " * (1024 * 1024)

    streamed = app.post(
        "/v1/system/info", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


def test_request_id_is_echoed(app: httpx.Client) -> None:
    response = app.post("/v1/system/info", json={}, headers={"X-Request-Id": "abc123"})
    assert response.headers["X-Request-Id"] == "abc123"
    fresh = app.post("/v1/system/info", json={})
    assert len(fresh.headers["X-Request-Id"]) == 32


# -- a real `jtca serve` process over TLS ---------------------------------------------------------
class Served:
    def __init__(self, process: subprocess.Popen[str], url: str, cert: Path, env: dict[str, str]):
        self.process = process
        self.url = url
        self.cert = cert
        self.env = env
        self.state: Path | None = None  # the service's state folder and database, if known
        self.database = ""

    def client_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env, JTCA_URL=self.url, JTCA_SERVER_CERT=str(self.cert))
        env.pop("JTCA_DATABASE_URL", None)  # the client never holds the database URL
        env.pop("JTCA_STATE", None)
        env.update(extra)
        return env


def start_serve(state: Path, env: dict[str, str], *extra: str) -> Served:
    port = free_port()
    process = subprocess.Popen(
        [JTCA, "serve", "--listen", f"127.0.0.1:{port}", "--state", str(state), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cert = state / "tls" / "server.pem"
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"jtca serve exited {process.returncode}: {err}")
        if cert.exists():
            try:
                with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as c:
                    if c.get(url + "/healthz").status_code == 200:
                        return Served(process, url, cert, env)
            except (httpx.HTTPError, ssl.SSLError):  # not up yet, or its PEM half-written
                pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("jtca serve did not answer within 60 s")


def stop_serve(served: Served) -> str:
    served.process.send_signal(signal.SIGTERM)
    _, err = served.process.communicate(timeout=90)
    assert served.process.returncode == 0, err
    return err


@pytest.fixture
def served(database, tmp_path: Path) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    url, _ = database
    env = clean_env(JTCA_DATABASE_URL=url)
    assert run("db", "upgrade", "--state", str(tmp_path / "state"), env=env).returncode == 0
    server = start_serve(tmp_path / "state", env)
    server.state, server.database = tmp_path / "state", url
    yield server
    if server.process.poll() is None:
        stop_serve(server)


def test_serve_over_tls13_with_a_pinned_certificate(served: Served) -> None:
    status = run("service", "status", "--json", env=served.client_env())
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["url"] == served.url
    assert info["embedded"] is False
    assert info["state"] is None  # a non-embedded service does not say where it keeps state
    context = ssl.create_default_context(cafile=str(served.cert))
    host, port = served.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port))) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() == "TLSv1.3"


def test_an_officer_signs_in_and_signs_requests_over_tls(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered officer with their own token and certificate signs in to the real service
    over TLS by challenge and response; their signed request is served once, its replay is
    refused, and a client of the same service without the session is not signed in."""
    assert served.state is not None
    monkeypatch.setenv(CONF_ENV, "")  # the token is in the service's SoftHSM2 folder here
    from ca.officers.roster import add_officer_in

    runtime = open_runtime(served.state, url=served.database)
    try:
        with transaction(runtime.engine) as session:
            add_officer_in(
                session,
                officer_id="ca-op-1",
                name="中心CA操作员",
                roles=["ministry-ca-operator"],
                province=None,
                actor="test",
                now=int(time.time()),
            )
        token = officer_token(served.state, "ca-op-1")
        enrol_directly(runtime, token, "ca-op-1", int(time.time()))
    finally:
        runtime.close()
    client = Client(http_for(Target("environment", served.url, server_cert=served.cert)))
    try:
        with token:
            session = sign_in(client, token, "ca-op-1")
        assert session.url == served.url
        officer = client.signed_in(RequestSigner(session))
        who = officer.call(auth_ops.WHOAMI, Empty())
        assert (who.officer.id, who.certificate_serial) == ("ca-op-1", session.certificate_serial)
        assert "list.register-operator" in who.actions

        body = lists_ops.OperatorRequest(operator_id="gz-metro").model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        headers.update(officer.signer.headers("POST", lists_ops.OPERATOR_ADD.path, body))  # type: ignore[union-attr]
        path = lists_ops.OPERATOR_ADD.path
        first = client.http.post(path, content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["registered_by"] == "ca-op-1"
        replayed = client.http.post(path, content=body, headers=headers)
        assert (replayed.status_code, replayed.json()["reason"]) == (401, "replay")
        with pytest.raises(ServiceError) as anonymous:
            client.call(auth_ops.WHOAMI, Empty())
        assert (anonymous.value.status, anonymous.value.title) == (401, "Not signed in")
    finally:
        client.close()


def test_tls12_client_is_refused(served: Served) -> None:
    context = ssl.create_default_context(cafile=str(served.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = served.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port))) as raw,
        pytest.raises(ssl.SSLError),
        context.wrap_socket(raw, server_hostname=host),
    ):
        pass


def test_unpinned_client_is_refused_with_a_clear_error(served: Served, tmp_path: Path) -> None:
    env = served.client_env()
    env.pop("JTCA_SERVER_CERT")
    env["SSL_CERT_FILE"] = str(tmp_path / "empty.pem")
    (tmp_path / "empty.pem").write_text("")
    result = run("service", "status", env=env)
    assert result.returncode == 69
    assert "Service unavailable" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate" in result.stderr


def test_graceful_shutdown_answers_requests_in_flight(served: Served) -> None:
    context = ssl.create_default_context(cafile=str(served.cert))

    def slow_readiness() -> int:
        with httpx.Client(verify=context, timeout=60) as c:
            return c.get(served.url + "/readyz").status_code

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(slow_readiness) for _ in range(8)]
        time.sleep(0.05)
        served.process.send_signal(signal.SIGTERM)
        statuses = [f.result() for f in futures]
    served.process.communicate(timeout=90)
    assert served.process.returncode == 0
    # every request that reached the server before SIGTERM got its whole answer
    assert all(s == 200 for s in statuses), statuses


def test_serve_refuses_a_schema_behind_and_db_upgrade_fixes_it(tmp_path: Path) -> None:
    env = clean_env()
    state = tmp_path / "state"
    refused = run("serve", "--listen", "127.0.0.1:1", "--state", str(state), env=env)
    assert refused.returncode == 7
    assert "jtca db upgrade" in refused.stderr
    status = run("db", "status", "--state", str(state), env=env)
    assert status.returncode == 1
    assert "behind" in status.stdout
    upgraded = run("db", "upgrade", "--state", str(state), env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from (empty)" in upgraded.stdout
    again = run("db", "upgrade", "--state", str(state), env=env)
    assert "already at the newest revision" in again.stdout
    assert run("db", "status", "--state", str(state), env=env).returncode == 0


def test_a_database_newer_than_the_code_is_refused(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, engine = database
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    env = clean_env(JTCA_DATABASE_URL=url)
    state = tmp_path / "state"
    served = run("serve", "--listen", "127.0.0.1:1", "--state", str(state), env=env)
    assert served.returncode == 7
    assert "newer than this jtca" in served.stderr
    upgraded = run("db", "upgrade", "--state", str(state), env=env)
    assert upgraded.returncode == 7
    assert "never downgrade" in upgraded.stderr


# -- the embedded default and the client's configuration ------------------------------------------
def test_no_silent_empty_world(tmp_path: Path) -> None:
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    for command in (["city", "keys"], ["service", "status"], ["officer", "list"]):
        result = run(*command, env=env, cwd=tmp_path)
        assert result.returncode == 69, (command, result.stderr)
        assert "jtca init" in result.stderr
        assert "jtca demo" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "xdg"] or not (tmp_path / "state").exists()
    assert not (tmp_path / "state").exists()
    assert not list(tmp_path.rglob("*.db"))


def test_embedded_default_starts_once_for_concurrent_clients(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(JTCA_STATE=str(state), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    from ca.client.embedded import mark_state

    mark_state(state)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run("service", "status", env=env), range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert all("embedded on" in r.stdout for r in results)
    log = (state / "logs" / "service.log").read_text()
    assert log.count("jtca serve: unix://") == 1, log
    assert (state / "jtca.sock").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    stopped = run("service", "stop", env=env)
    assert "stopped" in stopped.stdout
    assert not (state / "jtca-service.pid").exists()


def test_init_creates_the_state_and_the_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(JTCA_STATE=str(state), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    created = run("init", env=env)
    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout
    assert (state / "jtca.db").exists()
    assert (state / "jtca-state.toml").exists()
    again = run("init", env=env)
    assert "already a state folder" in again.stdout
    run("service", "stop", env=env)


def test_config_show_names_the_source(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    env = clean_env(XDG_CONFIG_HOME=str(xdg), JTCA_STATE=str(tmp_path / "state"))

    def shown(environment: dict[str, str]) -> dict[str, Any]:
        result = run("config", "show", "--json", env=environment)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    embedded = shown(env)
    assert embedded["source"] == "embedded"
    assert embedded["state_exists"] is False
    (xdg / "jtca").mkdir(parents=True)
    (xdg / "jtca" / "config.toml").write_text(
        '[service]\nurl = "https://ca.example.internal:8443"\nserver_cert = "/etc/jtca/s.pem"\n'
    )
    user = shown(env)
    assert user["source"] == "user config"
    assert user["url"] == "https://ca.example.internal:8443"
    assert user["server_cert"] == "/etc/jtca/s.pem"
    from_env = shown(dict(env, JTCA_URL="unix:///run/jtca/jtca.sock"))
    assert from_env["source"] == "environment"
    bad = run("config", "show", env=dict(env, JTCA_URL="http://ca.example.internal:80"))
    assert bad.returncode == 2
    assert "loopback only" in bad.stderr
    (xdg / "jtca" / "config.toml").write_text('[service]\nurl = "https://x:1"\nsurplus = 1\n')
    broken = run("config", "show", env=env)
    assert broken.returncode == 2
    assert "unknown keys ['surplus']" in broken.stderr
