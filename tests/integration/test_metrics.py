"""Observability of a real service (issue #16, point 3): ``jtca serve`` over a state folder the
demo seeded (real SoftHSM2 tokens, the real publisher, the real audit log), its ``GET /metrics``
read over its Unix socket and checked against the database; its log, JSON lines with the request
id and officer of each request; the demo's PINs and PIN shares nowhere in the log of the service
that seeded the demo nor in this one's; ``/metrics`` beyond loopback only with the bearer token
of ``--metrics-token-file``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_fixtures import in_process

from ca.api.app import create_app
from ca.api.metrics_http import MetricsTokenError, read_token_file
from ca.core.errors import JtcaError
from ca.lists.asn1 import ListType
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import Token

JTCA = str(Path(sys.executable).with_name("jtca"))
DOCS = Path(__file__).resolve().parents[2] / "docs"
OPERATIONS = DOCS / "operations.md"
ALERTS = DOCS / "deploy" / "jtca-alerts.yml"
NewToken = Callable[..., tuple[Token, KeyStore, str]]
TOKEN = "metrics-" + "7f" * 16


def demo_env(state: Path) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env.pop("JTCA_LOG_FORMAT", None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")
    return env


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``jtca demo --no-console`` (its embedded service stopped after)."""
    state = tmp_path_factory.mktemp("metrics") / "state"
    env = demo_env(state)
    made = subprocess.run(
        [JTCA, "demo", "--no-console"], env=env, capture_output=True, text=True, timeout=600
    )
    stop = subprocess.run(
        [JTCA, "service", "stop"], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert stop.returncode == 0, stop.stderr
    return state


def secrets_of(state: Path) -> list[str]:
    credentials = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
    found = [str(s) for s in credentials["root_token_shares"]]
    found += [str(o["pin"]) for o in credentials["officers"] if o.get("pin")]
    assert found
    assert all(len(s) >= 4 for s in found)
    return found


@contextlib.contextmanager
def serving(state: Path, log_path: Path) -> Iterator[httpx.Client]:
    sock = state.parent / "metrics.sock"
    env = demo_env(state)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [JTCA, "serve", "--uds", str(sock), "--state", str(state)],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://jtca", timeout=30
        )
        for _ in range(600):  # the process starting: wait for its socket, not a time
            assert process.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if http.get("/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        yield http
        http.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(http: httpx.Client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def one(
    found: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return found[name][tuple(sorted(labels.items()))]


def database(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{state / 'jtca.db'}?mode=ro", uri=True)


def test_a_real_service_reports_its_state_and_logs_json_lines(demo_state: Path) -> None:
    log_path = demo_state.parent / "serve.log"
    with serving(demo_state, log_path) as http:
        assert http.get("/healthz", headers={"X-Request-Id": "obs-test-1"}).status_code == 200
        assert http.get("/log/proof/inclusion?index=0&size=1").status_code == 200
        assert http.get("/no/such/route").status_code == 404
        found = scrape(http)
        # the checkpointer signs the seal entry the start appended: wait for its signature
        for _ in range(600):
            if found.get("jtca_token_signatures_total"):
                break
            time.sleep(0.1)
            found = scrape(http)
        with contextlib.closing(database(demo_state)) as db:
            lists = {
                t: db.execute(
                    "SELECT sequence, this_update, next_update FROM list_version "
                    "WHERE list_type = ? ORDER BY sequence DESC LIMIT 1",
                    (t,),
                ).fetchone()
                for t in (lt.value for lt in ListType)
            }
            pending_enrolments = db.execute(
                "SELECT count(*) FROM officer_enrolment WHERE state = 'pending'"
            ).fetchone()[0]
            pending_actions = dict(
                db.execute(
                    "SELECT action, count(*) FROM pending_action WHERE state = 'pending' "
                    "GROUP BY action"
                ).fetchall()
            )
            checkpoint = db.execute(
                "SELECT id, size FROM log_checkpoint ORDER BY id DESC LIMIT 1"
            ).fetchone()
            cosignatures = db.execute(
                "SELECT count(*) FROM log_cosignature WHERE checkpoint_id = ?", (checkpoint[0],)
            ).fetchone()[0]
            witnesses = db.execute(
                "SELECT count(*) FROM log_witness WHERE state = 'active'"
            ).fetchone()[0]

    # lists: the newest version of each type, its age and time left adding up to its validity
    for list_type, (sequence, this_update, next_update) in lists.items():
        assert one(found, "jtca_list_sequence", list_type=list_type) == sequence
        age = one(found, "jtca_list_age_seconds", list_type=list_type)
        left = one(found, "jtca_list_next_update_seconds", list_type=list_type)
        assert age + left == next_update - this_update
        assert age >= 0
        assert one(found, "jtca_overdue_operators", list_type=list_type) >= 0
    # dual control: what waits for a decision, by kind
    assert one(found, "jtca_pending_approvals", kind="enrolment") == pending_enrolments
    for action, count in pending_actions.items():
        assert one(found, "jtca_pending_approvals", kind=f"action:{action}") == count
    # the audit log: the newest checkpoint (or a newer one the service signed since)
    assert one(found, "jtca_log_checkpoint_size") >= checkpoint[1]
    assert one(found, "jtca_log_checkpoint_cosignatures") >= 0
    assert one(found, "jtca_log_witnesses") == witnesses
    assert cosignatures >= 0
    # tokens: up, and the signatures this process made, by key and path
    assert one(found, "jtca_token_up") == 1
    assert one(found, "jtca_tokens") >= 1
    signatures = found["jtca_token_signatures_total"]
    assert signatures, "the service signed no checkpoint"
    for labels, count in signatures.items():
        named = dict(labels)
        assert named["key"].startswith("pkcs11:")
        assert "pin" not in named["key"]
        assert named["path"] in ("native", "host-assisted")
        assert count >= 1
    # latency by route template, never the path with its values or query
    routes = {dict(k)["route"] for k in found["jtca_http_request_duration_seconds_count"]}
    assert {"/healthz", "/log/proof/inclusion", "(unmatched)"} <= routes
    assert one(
        found, "jtca_http_request_duration_seconds_count", method="GET", route="/healthz",
        status="200",
    ) >= 1  # fmt: skip
    assert not any("?" in r for r in routes)

    # the log: JSON lines (the start's own text lines aside), the access line of each request
    lines = log_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(line.startswith(("{", "jtca serve:")) for line in lines), lines[:5]
    access = [r for r in records if r["logger"] == "jtca.access"]
    (health,) = [r for r in access if r.get("request_id") == "obs-test-1"]
    assert health["path"] == "/healthz"
    assert health["status"] == 200
    assert health["method"] == "GET"
    assert health["duration_ms"] >= 0
    proof = next(r for r in access if r["route"] == "/log/proof/inclusion")
    assert proof["path"] == "/log/proof/inclusion"  # the query stays out
    assert len(proof["request_id"]) == 32

    # never a secret: the demo's PINs and PIN shares in neither service's log
    demo_log = demo_state / "logs" / "service.log"
    seeded = demo_log.read_text(encoding="utf-8", errors="replace")
    assert '"logger":"jtca.access"' in seeded  # the demo's requests were logged, as JSON
    published = [
        json.loads(line)
        for line in seeded.splitlines()
        if line.startswith("{") and '"logger":"jtca.publisher"' in line
    ]
    assert published  # the demo's publications, each line naming its request and officer
    # every line names its request and who published; the demo's backdated history is published
    # inside its seeding request (no officer signs in to seed), today's by publisher-1 signed in
    assert all(p["request_id"] and p["actor"] for p in published), published[:3]
    assert any(p.get("officer") == p["actor"] for p in published), published
    for secret in secrets_of(demo_state):
        assert secret not in seeded
        assert secret not in log_path.read_text(encoding="utf-8", errors="replace")


def test_metrics_beyond_loopback_need_the_token(demo_state: Path, tmp_path: Path) -> None:
    """Starlette's test client calls from the address 'testclient': not loopback."""
    from starlette.testclient import TestClient

    from ca.service.runtime import open_runtime

    runtime = open_runtime(demo_state, migrate="check", embedded=True)
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as closed:
            refused = closed.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert refused.status_code == 403
            assert "--metrics-token-file" in refused.json()["detail"]
        with TestClient(
            create_app(runtime, metrics_token=TOKEN), raise_server_exceptions=False
        ) as guarded:
            assert guarded.get("/metrics").status_code == 401
            wrong = guarded.get("/metrics", headers={"Authorization": "Bearer " + "0" * 40})
            assert wrong.status_code == 401
            assert wrong.headers["www-authenticate"].startswith("Bearer")
            right = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200
            assert "jtca_list_next_update_seconds" in right.text
            exposed = set(re.findall(r"^# HELP (jtca_\w+) ", right.text, re.MULTILINE))
    finally:
        runtime.close()
    # what the page for operators lists is what the service exposes (one family appears only
    # once a witness cosigned a checkpoint), and the example alerts use only those
    documented = set(re.findall(r"^\| `(jtca_\w+)`", OPERATIONS.read_text(), re.MULTILINE))
    assert exposed <= documented
    assert documented - exposed <= {"jtca_log_witnessed_checkpoint_age_seconds"}
    alerts = ALERTS.read_text(encoding="utf-8")
    used = set(re.findall(r"\b(jtca_[a-z_]+)\b", alerts))
    assert used
    assert used <= documented

    token_file = tmp_path / "metrics.token"
    token_file.write_text(f"{TOKEN}\n")
    assert read_token_file(token_file) == TOKEN
    for content, says in (
        (b"", "at least 16"),
        (b"short", "at least 16"),
        (b"\xff" * 20, "byte 0"),
    ):
        token_file.write_bytes(content)
        with pytest.raises(MetricsTokenError, match=says):
            read_token_file(token_file)
    with pytest.raises(MetricsTokenError, match="missing"):
        read_token_file(tmp_path / "missing")


def test_the_access_line_names_the_signed_in_officer(
    demo_state: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An officer signed in for real (challenge and response, signed requests): the access
    line of their request carries their id, and the request's id the answer carried."""
    from guangzhou_world import add_officers

    from ca.ops import console as console_ops
    from ca.ops.base import Empty
    from ca.service.runtime import open_runtime

    state = tmp_path / "state"
    shutil.copytree(demo_state, state, ignore=shutil.ignore_patterns("*.sock", "*.pid"))
    runtime = open_runtime(state, migrate="check", embedded=True)
    add_officers(runtime.engine, [("obs-auditor", "auditor", None)])
    runtime.close()
    caplog.set_level("INFO", logger="jtca.access")
    with in_process(state, officer="obs-auditor") as (client, _runtime):
        client.call(console_ops.PENDING, Empty())
    lines = [r for r in caplog.records if r.name == "jtca.access"]
    signed = [r for r in lines if getattr(r, "officer", None) == "obs-auditor"]
    assert signed, [(r.getMessage(), getattr(r, "officer", None)) for r in lines]
    assert all(len(str(getattr(r, "request_id", ""))) > 0 for r in signed)
    assert any(getattr(r, "route", "") == "/v1/console/pending" for r in signed)


def test_the_example_alert_rules_are_well_formed() -> None:
    """The rule file is YAML Prometheus reads: checked by promtool when it is installed, and
    always read with PyYAML (a development dependency) for the rules' shape and expressions."""
    import yaml

    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    found = [
        [r["alert"], r["expr"], r.get("for", ""), r["labels"]["severity"]]
        for g in data["groups"]
        for r in g["rules"]
    ]
    rules = {alert: (expr, wait, severity) for alert, expr, wait, severity in found}
    assert "jtca_list_next_update_seconds < 24 * 3600" in rules["JtcaListNextUpdateWithin24h"][0]
    assert rules["JtcaCheckpointNotWitnessed"][0] == (
        "jtca_log_checkpoint_cosignatures == 0 and jtca_log_checkpoint_age_seconds > 3600"
    )
    assert rules["JtcaTokenDown"][0] == "jtca_token_up == 0"
    assert all(severity in ("info", "warning", "critical") for _, _, severity in rules.values())


def test_every_part_reads_on_both_databases(database: tuple[str, object], tmp_path: Path) -> None:
    """On a fresh database of each kind (SQLite, PostgreSQL) every part of a scrape reads: no
    ``jtca_metrics_errors_total`` sample, the families of what exists, zeros where nothing
    waits, no list or checkpoint family before there is one."""
    url, _engine = database
    with in_process(tmp_path / "state", url=url, seal=False) as (_client, runtime):
        from starlette.testclient import TestClient

        with TestClient(create_app(runtime, metrics_token=TOKEN)) as http:
            answer = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    samples = {
        s.name: s.value for f in text_string_to_metric_families(answer.text) for s in f.samples
    }
    assert "jtca_metrics_errors_total" not in samples, answer.text
    assert samples["jtca_pending_approvals"] == 0
    assert samples["jtca_overdue_operators"] == 0
    assert samples["jtca_log_witnesses"] == 0
    assert samples["jtca_token_up"] == 1
    assert "jtca_list_sequence" not in samples
    assert "jtca_log_checkpoint_size" not in samples


def test_token_signatures_are_counted_per_key_and_path(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TokenSigner`` counts each signature under its key's URI and the path that made it: a
    real SoftHSM2 key host-assisted, and the same key through a vendor mechanism whose C_Sign a
    stand-in answers (SoftHSM2 has none); a failed signature is not counted."""
    from hsm.pkcs11.signer import (
        MechanismInput,
        TokenIdentity,
        TokenSigner,
        VendorMechanism,
        signature_counts,
    )

    _, store, _ = new_token("COUNTED")
    key = store.generate_sm2("counted-key")
    uri = str(key.uri.without_query())
    before = signature_counts()
    host = TokenSigner(store, key.uri)
    for _ in range(3):
        host.sign(b"counted")
    maker = TokenIdentity("TASS", "EVSM")
    vendor = VendorMechanism("TASS", 0x80008100, MechanismInput.DIGEST, manufacturer="TASS")
    native = TokenSigner(
        store,
        key.uri,
        advertised_mechanisms={0x80008100},
        identity=maker,
        vendor_mechanisms=[vendor],
    )
    answers = iter([b"\x01" * 64, b"\x02" * 63])  # the second: not a raw SM2 signature
    monkeypatch.setattr(store.token, "run", lambda operation: next(answers))
    assert native.sign(b"counted") == b"\x01" * 64
    with pytest.raises(JtcaError, match="63-byte signature"):
        native.sign(b"counted")
    after = signature_counts()
    assert after[(uri, "host-assisted")] - before.get((uri, "host-assisted"), 0) == 3
    assert after[(uri, "native")] - before.get((uri, "native"), 0) == 1
    assert "pin" not in uri
