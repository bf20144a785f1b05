"""The lists area through the service's HTTP API, in-process (``tests/service_fixtures``), on
SQLite and PostgreSQL: the publisher into the service's own folder with its typed outcomes and
the DER of every version it published, versions and the root served from the database, the
views the console shows, operators and their acknowledgments, emergency publication under dual
control, each decision signed by the deciding officer's own token (issue #12) — and requests a
client got wrong refused as problem details naming the field. Officers sign in for real
(``tests/officer_desk.DeskClient``: their own SoftHSM2 token, challenge and response)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from officer_desk import DeskClient
from service_fixtures import in_process

from ca.client.http import ServiceError
from ca.lists.asn1 import ListType
from ca.lists.verify import load_list
from ca.ops import ceremony as ceremony_ops
from ca.ops import lists as ops
from ca.ops.base import Empty
from ca.service.runtime import Runtime
from ca.store.db import transaction
from hsm.custody import combine_secret

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")
WITNESS = "赵六 (公证员)"
PUBLISHERS = (
    ("publisher-1", "publisher"),
    ("publisher-2", "publisher"),
    ("em-1", "emergency-publisher"),
    ("em-2", "emergency-publisher"),
)


@dataclass(frozen=True)
class World:
    """A state folder after the root ceremony, with publishers registered."""

    state: Path
    env: dict[str, str]
    shares: list[str]  # two of the root token's three PIN shares: a quorum
    share_files: list[Path]  # the same two, each in its custodian's file (--share-file)


def jtca(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [JTCA, *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def client_env(state: Path, url: str, **extra: str) -> dict[str, str]:
    """A command line's environment on ``state`` and the database ``url``."""
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_DATABASE_URL=url)
    for name in ("SOFTHSM2_CONF", "JTCA_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


def make_world(
    state: Path,
    env: dict[str, str],
    *,
    init: bool = True,
    officers: Sequence[tuple[str, str]] = PUBLISHERS,
) -> World:
    """The root ceremony and the officers, through the command line as an operator would: each
    officer's own token and key (``jtca officer keygen``), enrolled under the custodians'
    quorum (``tests/cli_desks.py``). They sign in where they work (``Desks.login``)."""
    from cli_desks import Desks, share_args, write_shares

    if init:
        jtca(env, "init")
    made = json.loads(jtca(env, "ceremony", "init-token", EXAMPLE, "--json").stdout)
    shares = [s["share"] for s in made["pin_shares"]]
    quorum = [shares[0], shares[2]]
    files = write_shares(state.parent / f"{state.name}-custodians", quorum)
    jtca(
        env, "ceremony", "run", EXAMPLE, *share_args(files),
        "--witness", WITNESS, "--transcript", str(state.parent / f"{state.name}-transcript.json"),
    )  # fmt: skip
    desks = Desks(env, state.parent / f"{state.name}-desks")
    for officer, role in officers:
        desks.enrol_by_quorum((officer, role, None), files)
    return World(state, env, quorum, files)


def service_world(
    client: DeskClient, runtime: Runtime, officers: Sequence[tuple[str, str]] = PUBLISHERS
) -> list[str]:
    """The root ceremony at the in-process service (the custodians' quorum is its authority:
    no officer is enrolled yet) and ``officers`` registered; each is enrolled the first time
    they sign in. A quorum of the root token's PIN shares."""
    from ca.officers.roster import add_officer_in

    plan = Path(EXAMPLE).read_text(encoding="utf-8")
    made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
    shares = [s.share for s in made.pin_shares]
    quorum = [shares[0], shares[2]]
    client.call(
        ceremony_ops.RUN, ceremony_ops.RunRequest(plan=plan, shares=quorum, witnesses=[WITNESS])
    )
    with transaction(runtime.engine) as session:
        for officer, role in officers:
            add_officer_in(
                session,
                officer_id=officer,
                name=officer,
                roles=[role],
                province=None,
                actor="test",
                now=int(time.time()),
            )
    return quorum


def emergency_decision(
    officer: DeskClient, request: int, *, approve: bool = True, **fields: object
) -> ops.DecideRequest:
    """``officer``'s decision on emergency request ``request``, signed with their token."""
    at, signature = officer.decision(f"action {request}", approve=approve)
    return ops.DecideRequest(request=request, at=at, signature=signature, **fields)  # type: ignore[arg-type]


@pytest.fixture
def own_softhsm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process service points SoftHSM2 at its state folder; put the variable back."""
    previous = os.environ.get("SOFTHSM2_CONF")
    if previous is None:
        monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    else:
        monkeypatch.setenv("SOFTHSM2_CONF", previous)


def refused(call: Callable[[], object]) -> ServiceError:
    """The ServiceError a call raised (``refused(lambda: client.call(...))``)."""
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value


def assert_bad_requests(client: DeskClient, *cases: tuple[str, dict[str, object], str]) -> None:
    """Each (path, body, field), signed by ``client``'s session if it has one: refused with 422
    problem details naming the field."""
    for path, body, field in cases:
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if client.signer is not None:
            headers.update(client.signer.headers("POST", path, content))
        response = client.http.post(path, content=content, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert (problem["field"], problem["exit_code"], problem["title"]) == (
            field,
            3,
            "Bad request",
        )
        assert field in problem["detail"]
        assert "Traceback" not in response.text


def test_the_command_line_names_the_lists_the_service_knows() -> None:
    from ca.cli import publish

    assert publish.LIST_CHOICES == list(ops.LIST_NAMES) == [t.value for t in ListType]


def test_requests_a_client_got_wrong_name_the_field(tmp_path: Path) -> None:
    with in_process(tmp_path / "state") as (client, _):
        assert_bad_requests(
            client,
            ("/v1/lists/history", {"list_type": "crl"}, "list_type"),
            ("/v1/lists/version", {"list_type": "city-list", "sequence": 0}, "sequence"),
            ("/v1/lists/overdue", {"days": -1}, "days"),
        )
        # the typed client raises the same problem with its field
        error = refused(
            lambda: client.call(ops.VERSION, ops.VersionRequest.model_construct(list_type="crl"))
        )
        assert (error.status, error.field, error.exit_code) == (422, "list_type", 3)

        # an empty authority: nothing published, no root yet, every list stale
        missing = refused(
            lambda: client.call(ops.VERSION, ops.VersionRequest(list_type="city-list"))
        )
        assert (missing.status, missing.title, missing.exit_code) == (
            404,
            "No such list version",
            3,
        )
        assert "nothing of the city-list is published" in missing.message
        no_root = refused(lambda: client.call(ops.ROOT, Empty()))
        assert no_root.exit_code == 3
        assert "root ceremony" in no_root.message
        fresh = client.call(ops.FRESHNESS, Empty())
        assert [(f.list_type, f.sequence, f.stale) for f in fresh.lists] == [
            ("issuer-whitelist", None, True),
            ("city-list", None, True),
            ("ca-key-list", None, True),
        ]
        assert client.call(ops.HISTORY, ops.HistoryRequest()).versions == []
        nobody = refused(lambda: client.call(ops.PUBLISH, ops.PublishRequest(dry_run=True)))
        assert (nobody.status, nobody.exit_code) == (401, 6)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lists_through_the_service(database, tmp_path: Path, own_softhsm: None) -> None:  # type: ignore[no-untyped-def]
    url, _ = database
    state = tmp_path / "state"
    with in_process(state, url=url) as (client, runtime):
        shares = service_world(client, runtime)
        publisher = client.as_officer("publisher-1")
        assert_bad_requests(
            publisher,
            ("/v1/lists/publish", {"lists": ["city-list", "crl"]}, "lists[1]"),
            ("/v1/lists/publish", {"dry_run": True, "colour": "red"}, "colour"),
            ("/v1/lists/ack", {"text": "", "kind": "xml"}, "kind"),
            ("/v1/lists/emergency", {"reason": "x" * 401}, "reason"),
        )

        # a dry run signs, writes and records nothing, and needs no key
        plan = publisher.call(ops.PUBLISH, ops.PublishRequest(dry_run=True))
        assert [(o.list_type, o.action, o.why) for o in plan.outcomes] == [
            (name, "would-publish", "first version") for name in ops.LIST_NAMES
        ]
        assert (plan.published, plan.current, plan.dry_run) == ([], [], True)
        assert not (runtime.published / "city-list.der").exists()

        no_key = refused(lambda: publisher.call(ops.PUBLISH, ops.PublishRequest()))
        assert (no_key.exit_code, no_key.title) == (3, "Bad input")
        assert "--share-file" in no_key.message
        denied = refused(
            lambda: client.as_officer("ca-op-1").call(
                ops.PUBLISH, ops.PublishRequest(shares=shares)
            )
        )
        assert (denied.status, denied.exit_code) == (403, 6)
        assert "deny/no-role" in denied.message

        # the first run: every list, its DER in the result and in the service's folder
        done = publisher.call(ops.PUBLISH, ops.PublishRequest(shares=shares))
        assert [(o.action, o.sequence) for o in done.outcomes] == [("published", 1)] * 3
        assert done.outcomes[2].diff.added == ["1"]  # the central CA key of index 1
        root = client.call(ops.ROOT, Empty())
        assert root.pem.startswith("-----BEGIN CERTIFICATE-----")
        files = {f.list_type: f for f in done.published}
        assert sorted(files) == sorted(ops.LIST_NAMES)
        assert {c.list_type: c.sha256 for c in done.current} == {
            name: f.sha256 for name, f in files.items()
        }
        for name, made in files.items():
            assert _sha256(made.der) == made.sha256
            assert (runtime.published / f"{name}.der").read_bytes() == made.der
            verified = load_list(
                made.der,
                trusted_root_der=root.der,
                expected_type=ListType(name),
                now=int(time.time()),
                grace_seconds=0,
            )
            assert (verified.sequence, verified.sm3) == (1, made.sm3)
            assert client.call(ops.VERSION, ops.VersionRequest(list_type=name)) == made
            by_number = client.call(ops.VERSION, ops.VersionRequest(list_type=name, sequence=1))
            assert by_number == made

        # the service's folder losing its files loses no version: the database keeps the bytes,
        # and the next run puts the folder back
        shutil.rmtree(runtime.published / "archive")
        (runtime.published / "city-list.der").unlink()
        kept = client.call(ops.VERSION, ops.VersionRequest(list_type="city-list", sequence=1))
        assert kept.der == files["city-list"].der
        absent = refused(
            lambda: client.call(ops.VERSION, ops.VersionRequest(list_type="city-list", sequence=9))
        )
        assert (absent.status, absent.exit_code) == (404, 3)

        # the unattended publisher's way in: the PIN itself; nothing to do the second time
        pin = combine_secret(shares).decode("utf-8")
        again = publisher.call(ops.PUBLISH, ops.PublishRequest(pin=pin))
        assert {(o.action, o.why) for o in again.outcomes} == {("unchanged", "up to date")}
        assert again.published == []
        assert (runtime.published / "city-list.der").read_bytes() == files["city-list"].der
        assert (
            runtime.published / "archive" / "city-list" / "city-list-0000000001.der"
        ).read_bytes() == files["city-list"].der
        wrong = refused(lambda: publisher.call(ops.PUBLISH, ops.PublishRequest(pin="0000")))
        assert wrong.exit_code == 5

        # another service process publishing on the same PostgreSQL holds the advisory lock:
        # this one waits for it, then gives up with 75 (the timer's next tick tries again)
        if url.startswith("postgresql"):
            from sqlalchemy import create_engine, text

            other = create_engine(url)
            with other.connect() as holder:
                holder.execute(text("SELECT pg_advisory_lock(7670865335468515948)"))
                busy = refused(
                    lambda: publisher.call(
                        ops.PUBLISH, ops.PublishRequest(shares=shares, wait_seconds=0.3)
                    )
                )
                holder.execute(text("SELECT pg_advisory_unlock(7670865335468515948)"))
            other.dispose()
            assert (busy.exit_code, busy.status, busy.title) == (75, 409, "Publisher busy")

        # the console's views
        history = client.call(ops.HISTORY, ops.HistoryRequest())
        assert [(v.list_type, v.sequence, v.published_by) for v in history.versions] == sorted(
            (name, 1, "publisher-1") for name in ops.LIST_NAMES
        )
        only = client.call(ops.HISTORY, ops.HistoryRequest(list_type="ca-key-list"))
        assert [v.diff.added for v in only.versions] == [["1"]]
        fresh = client.call(ops.FRESHNESS, Empty())
        assert {(f.list_type, f.sequence, f.stale) for f in fresh.lists} == {
            (name, 1, False) for name in ops.LIST_NAMES
        }

        # operators and their load reports (第十二条)
        officer = client.as_officer("ca-op-1")
        operator = officer.call(
            ops.OPERATOR_ADD,
            ops.OperatorRequest(operator_id="gz-metro", name="广州地铁", province="440000"),
        )
        assert (operator.operator_id, operator.registered_by) == ("gz-metro", "ca-op-1")
        bad = refused(
            lambda: officer.call(
                ops.OPERATOR_ADD, ops.OperatorRequest(operator_id="x", province="44")
            )
        )
        assert bad.exit_code == 3
        assert "province" in bad.message
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report = (
            "operator,list,sequence,loaded_at\n"
            f"gz-metro,city-list,1,{now}\n"
            f"sz-bus,city-list,1,{now}\n"
        )
        acked = publisher.call(ops.ACK, ops.AckRequest(text=report, kind="csv", source="acks.csv"))
        assert [(a.operator, a.list_type, a.sequence) for a in acked.accepted] == [
            ("gz-metro", "city-list", 1)
        ]
        assert [(r.line, r.field) for r in acked.refused] == [(3, "operator")]
        assert acked.report == _sha256(report.encode("utf-8"))
        twice = refused(lambda: publisher.call(ops.ACK, ops.AckRequest(text=report, kind="csv")))
        assert twice.title == "Report already imported"
        assert client.call(ops.OVERDUE, ops.OverdueRequest()).operators == []
        owed = client.call(ops.OVERDUE, ops.OverdueRequest(days=0))
        assert sorted((o.operator_id, o.list_type, o.oldest_missing) for o in owed.operators) == [
            ("gz-metro", "ca-key-list", 1),
            ("gz-metro", "issuer-whitelist", 1),
        ]

        # emergency publication under dual control (第三十四条)
        em1, em2 = client.as_officer("em-1"), client.as_officer("em-2")
        asked = em1.call(ops.EMERGENCY, ops.EmergencyRequest(reason="issuer key leaked"))
        assert (asked.state, asked.required, asked.publication) == ("pending", 1, None)
        own = refused(  # em-1's own token signs it: still their own request
            lambda: em1.call(ops.APPROVE, emergency_decision(em1, asked.request, shares=shares))
        )
        assert (own.status, own.exit_code) == (403, 6)
        drill = em1.call(ops.EMERGENCY, ops.EmergencyRequest(reason="a drill"))
        signed_no = emergency_decision(em2, drill.request, approve=False, reason="drill")
        turned = refused(  # a signed rejection sent as an approval
            lambda: em2.call(ops.APPROVE, signed_no.model_copy(update={"shares": shares}))
        )
        assert (turned.status, turned.reason) == (401, "bad-signature")
        borrowed = refused(  # em-2's signature in em-1's session
            lambda: em1.call(ops.REJECT, signed_no)
        )
        assert (borrowed.status, borrowed.reason) == (401, "bad-signature")
        dropped = em2.call(ops.REJECT, signed_no)
        assert (dropped.state, dropped.publication) == ("rejected", None)
        urgent = em2.call(ops.APPROVE, emergency_decision(em2, asked.request, shares=shares))
        assert urgent.state == "done"
        assert urgent.publication is not None
        assert urgent.publication.emergency == asked.request
        assert {(o.action, o.why, o.sequence) for o in urgent.publication.outcomes} == {
            ("published", "emergency", 2)
        }
        assert len(urgent.publication.published) == 3
        latest = client.call(ops.HISTORY, ops.HistoryRequest(list_type="city-list")).versions
        assert [(v.sequence, v.emergency, v.published_by) for v in latest] == [
            (1, False, "publisher-1"),
            (2, True, "em-2"),
        ]
        after = refused(lambda: em2.call(ops.APPROVE, emergency_decision(em2, asked.request)))
        assert "already done" in after.message
