"""Issue #11, point 5: key material held at a province's and a city's site is destroyed there,
never by the service, on SQLite and PostgreSQL.

The service (in-process, the real HTTP API) holds the ministry's token; Guangdong's and
Guangzhou's tokens are used by their sites' clients (``ca.site``). A city key goes the whole way
to installation at the city, is revoked under dual control, and after the grace period (the
service's clock moved) destroy-material is approved: the service destroys the ministry's copy
only and records the province's and the city's as awaiting destruction. Each site then destroys
its own copy in its own token and reports it; the service checks each report (the holder's
copy, awaiting destruction, an officer of that province) and records it, audited.

Officers sign in for real (``tests/officer_desk.DeskClient``) and sign each decision with their
own token; when the service's clock moves past the sessions' idle limit they sign in again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from guangzhou_world import CITY_TOKEN, MINISTRY_TOKEN, PROVINCE_TOKEN, guangzhou_generated
from log_intact import log_intact
from officer_desk import DeskClient
from sqlmodel import col, select

from ca.client.http import ServiceError
from ca.core.clock import FixedClock, iso_utc
from ca.ops import city
from ca.ops import packages as ops
from ca.service.runtime import Runtime
from ca.site import destruction
from ca.site import packages as site
from ca.store.db import transaction
from ca.store.models import AuditEvent, CityKey, KeyCopy
from ca.vault.site import SiteVault
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.uri import Pkcs11Uri

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
DAY = 86400
GRACE_PASSED = T0 + 31 * DAY  # the policy's grace period is 30 days
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("mot-root-2", "ministry-root-officer", None),
    ("mot-root-3", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
    ("fj-1", "provincial-officer", "350000"),
)


@dataclass
class World:
    client: DeskClient
    runtime: Runtime
    clock: FixedClock
    province_site: SiteVault  # Guangdong's token, at the province
    city_site: SiteVault  # Guangzhou's token, at the city
    inspector: SiteVault  # reads any token of the state folder, for the test's own checks
    keys: list[int]
    labels: set[str]
    uris: dict[tuple[int, str], str]  # (key, holder) → the copy's URI, as imported

    def as_(self, officer: str) -> DeskClient:
        return self.client.as_officer(officer)

    def later(self, seconds: int) -> None:
        """The service's clock moves on; the officers' sessions have gone idle."""
        self.clock.advance(seconds)
        signed_out(self.client)

    def copies(self) -> dict[tuple[int, str], KeyCopy]:
        with transaction(self.runtime.engine) as session:
            rows = {(c.city_key_id, c.holder): c for c in session.exec(select(KeyCopy))}
            session.expunge_all()
            return rows

    def audit(self) -> list[AuditEvent]:
        with transaction(self.runtime.engine) as session:
            assert log_intact(session)
            rows = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
            session.expunge_all()
            return rows


def _labels(store: KeyStore) -> set[str]:
    return {k.label for k in store.list_keys()}


def signed_out(client: DeskClient) -> None:
    """Forget every officer's session (they sign in again on their next request)."""
    for officer_id, _, _ in OFFICERS:
        client.forget(officer_id)


def signed_decision(officer: DeskClient, action: int) -> city.DecideRequest:
    """``officer``'s approval of key action ``action``, signed with their own token."""
    at, signature = officer.decision(f"action {action}")
    return city.DecideRequest(kind="action", id=action, approve=True, at=at, signature=signature)


@pytest.fixture
def world(database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Guangzhou's key set installed at the city (ministry → province → city, every site step
    with its own token), revoked under dual control, and the grace period over."""
    url, engine = database
    monkeypatch.setenv(CONF_ENV, "")  # the state folder's SoftHSM2; restored afterwards
    state = tmp_path / "state"
    clock = FixedClock(T0)
    with (
        guangzhou_generated(engine, url, state, clock, OFFICERS) as made,
        SiteVault(state=state) as inspector,
    ):
        client, runtime = made.client, made.runtime
        province_site, city_site, keys = made.province_site, made.city_site, made.keys
        gd1, gd2 = client.as_officer("gd-1"), client.as_officer("gd-2")
        ids = [k.id or 0 for k in keys]
        uris: dict[tuple[int, str], str] = {}
        # ministry → province (the service seals), imported at the province with its token
        sent = site.deliver(client.as_officer("mot-root-1"), province_site,
                            keys=ids, out_dir=tmp_path / "to-gd", now=T0)  # fmt: skip
        for d in sent:
            done = site.import_package(gd1, province_site, d.path.read_bytes())
            uris[(done.key, done.holder)] = done.uri
        # province → city (the province's site seals), installed at the city with its token
        onward = site.deliver(gd1, province_site, keys=ids, out_dir=tmp_path / "to-gz", now=T0)
        for d in onward:
            done = site.import_package(gd2, city_site, d.path.read_bytes())
            assert done.stage == "installed"
            uris[(done.key, done.holder)] = done.uri

        # revoked (two approvers), then the grace period passes on the service's clock
        revoke = client.as_officer("mot-root-1").call(
            city.REVOKE, city.KeyActionRequest(keys=ids, reason="token lost at the city")
        )
        assert revoke.action_id is not None
        for approver in ("mot-root-2", "mot-root-3"):
            signed = client.as_officer(approver)
            signed.call(city.DECIDE, signed_decision(signed, revoke.action_id))
        clock.set(GRACE_PASSED)
        signed_out(client)
        yield World(
            client,
            runtime,
            clock,
            province_site,
            city_site,
            inspector,
            ids,
            {k.label for k in keys},
            uris,
        )


def _refused(call: Callable[[], Any], status: int, exit_code: int) -> str:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert (error.status, error.exit_code) == (status, exit_code), error
    assert error.problem["title"]
    assert "Traceback" not in error.message
    return error.message


def destroy_material(world: World) -> None:
    """destroy-material asked by one root officer, approved by a second: carried out."""
    asked = world.as_("mot-root-1").call(city.DESTROY_MATERIAL, city.DestroyRequest())
    assert (asked.state, sorted(asked.keys)) == ("pending", sorted(world.labels))
    assert asked.action_id is not None
    approver = world.as_("mot-root-2")
    done = approver.call(city.DECIDE, signed_decision(approver, asked.action_id))
    assert done.state == "done"


def _awaiting(world: World, officer: str = "mot-root-1") -> dict[int, list[str]]:
    shown = world.as_(officer).call(city.KEYS, city.KeysRequest()).keys
    return {k.id: k.copies_awaiting_destruction for k in shown}


# -- the whole path -----------------------------------------------------------------------------
def test_sites_destroy_their_own_copies(world: World) -> None:
    ministry = world.inspector.store(MINISTRY_TOKEN)
    province = world.province_site.store(PROVINCE_TOKEN)
    town = world.city_site.store(CITY_TOKEN)
    for store in (ministry, province, town):
        assert world.labels <= _labels(store)
    assert _awaiting(world) == {k: [] for k in world.keys}

    destroy_material(world)

    # the service destroyed the ministry's copy only; it never opened a site's token
    opened = world.runtime._vault._open if world.runtime._vault is not None else {}
    assert set(opened) <= {MINISTRY_TOKEN}
    assert not world.labels & _labels(ministry)
    assert world.labels <= _labels(province)
    assert world.labels <= _labels(town)
    for key in world.keys:
        shown = world.as_("gd-2").call(city.SHOW, city.KeyRequest(key=key))
        assert (shown.state, shown.destroyed_at) == ("destroyed", GRACE_PASSED)
        assert shown.copies_awaiting_destruction == ["440000", "440100"]
    assert _awaiting(world, "gd-1") == {k: ["440000", "440100"] for k in world.keys}
    page = world.as_("gd-1").call(city.PAGE, city.PageRequest()).keys
    assert {tuple(k.copies_awaiting_destruction) for k in page} == {("440000", "440100")}
    copies = world.copies()
    for key in world.keys:
        assert copies[(key, "ministry")].destroyed_at == GRACE_PASSED
        assert copies[(key, "ministry")].destroy_requested_at is None
        for holder in ("440000", "440100"):
            assert copies[(key, holder)].destroy_requested_at == GRACE_PASSED
            assert copies[(key, holder)].destroyed_at is None
    awaits = [e for e in world.audit() if e.action == "city-key.material-awaits-destruction"]
    assert len(awaits) == 4
    assert {(e.actor, e.subject) for e in awaits} == {("jtca", label) for label in world.labels}
    assert all(PROVINCE_TOKEN in e.details or CITY_TOKEN in e.details for e in awaits)

    # what the province's site is asked to destroy, and by whom
    listed = destruction.awaiting(world.as_("gd-1"), "440000")
    assert sorted(c.key for c in listed) == sorted(world.keys)
    assert {(c.holder, c.token, c.requested_at) for c in listed} == {
        ("440000", PROVINCE_TOKEN, GRACE_PASSED)
    }
    assert {(c.key, c.uri) for c in listed} == {(k, world.uris[(k, "440000")]) for k in world.keys}
    assert len(world.as_("mot-root-1").call(ops.AWAITING_DESTRUCTION,
                                            ops.Holder(holder="440100")).copies) == 2  # fmt: skip

    # the province destroys its copies in its own token and reports each
    world.later(3600)
    done = destruction.destroy_copies(world.as_("gd-1"), world.province_site, "440000")
    assert sorted(c.key for c in done) == sorted(world.keys)
    assert {(c.holder, c.destroyed_at) for c in done} == {("440000", GRACE_PASSED + 3600)}
    assert not world.labels & _labels(province)
    assert world.labels <= _labels(town)  # the city's copies are the city's to destroy
    assert _awaiting(world) == {k: ["440100"] for k in world.keys}
    copies = world.copies()
    assert {copies[(k, "440000")].destroyed_at for k in world.keys} == {GRACE_PASSED + 3600}
    assert destruction.awaiting(world.as_("gd-1"), "440000") == []
    assert destruction.destroy_copies(world.as_("gd-1"), world.province_site, "440000") == []

    # a copy already gone from the city's token counts as destroyed
    first = world.keys[0]
    town.destroy(Pkcs11Uri.parse(world.uris[(first, "440100")]))
    done = destruction.destroy_copies(world.as_("gd-2"), world.city_site, "440100")
    assert sorted(c.key for c in done) == sorted(world.keys)
    assert not world.labels & _labels(town)
    assert _awaiting(world) == {k: [] for k in world.keys}
    shown = world.as_("gd-1").call(city.SHOW, city.KeyRequest(key=first))
    assert (shown.state, shown.copies_awaiting_destruction) == ("destroyed", [])

    # every copy's destruction in the audit log, the site's under its officer's name
    destroyed = [e for e in world.audit() if e.action == "city-key.material-destroyed"]
    assert sorted(e.actor for e in destroyed) == ["gd-1", "gd-1", "gd-2", "gd-2", "jtca", "jtca"]
    opened = world.runtime._vault._open if world.runtime._vault is not None else {}
    assert set(opened) <= {MINISTRY_TOKEN}


# -- refusals -------------------------------------------------------------------------------------
def test_reports_and_lists_are_checked(world: World) -> None:
    gd1, fj1 = world.as_("gd-1"), world.as_("fj-1")
    key = world.keys[0]
    report = ops.DestroyedReport(key=key, holder="440000", uri=world.uris[(key, "440000")])
    # before destroy-material is carried out, no copy awaits destruction
    message = _refused(lambda: gd1.call(ops.REPORT_DESTROYED, report), 409, 6)
    assert "does not await destruction" in message
    assert destruction.awaiting(gd1, "440000") == []

    destroy_material(world)
    province = world.province_site.store(PROVINCE_TOKEN)
    town = world.city_site.store(CITY_TOKEN)

    # another province's officer may neither list nor report nor destroy Guangdong's copies
    for holder in ("440000", "440100"):
        message = _refused(partial(destruction.awaiting, fj1, holder), 403, 6)
        assert "deny/other-province" in message
    message = _refused(lambda: fj1.call(ops.REPORT_DESTROYED, report), 403, 6)
    assert "deny/other-province" in message
    _refused(lambda: destruction.destroy_copies(fj1, world.city_site, "440100"), 403, 6)
    assert world.labels <= _labels(town)
    # an officer whose roles handle no site copies; the ministry's copies; an unknown holder
    message = _refused(lambda: destruction.awaiting(world.as_("ca-op-1"), "440000"), 403, 6)
    assert "deny/no-role" in message
    message = _refused(lambda: destruction.awaiting(gd1, "ministry"), 422, 3)
    assert "destroyed by the service" in message
    _refused(lambda: destruction.awaiting(gd1, "449999"), 422, 3)

    # a report of another URI than the copy's, or of a holder with no copy, is refused
    astray = report.model_copy(update={"uri": world.uris[(key, "440100")]})
    assert "not " in _refused(lambda: gd1.call(ops.REPORT_DESTROYED, astray), 409, 6)
    nowhere = report.model_copy(update={"holder": "440300"})
    assert "holds no copy" in _refused(lambda: gd1.call(ops.REPORT_DESTROYED, nowhere), 409, 6)
    assert world.labels <= _labels(province)
    assert _awaiting(world) == {k: ["440000", "440100"] for k in world.keys}

    # the genuine report goes through once; again, it is refused
    destruction.destroy_copies(gd1, world.province_site, "440000")
    message = _refused(lambda: gd1.call(ops.REPORT_DESTROYED, report), 409, 6)
    assert "recorded destroyed" in message
    assert not world.labels & _labels(province)
    actions = [e.action for e in world.audit()]
    assert actions.count("city-key.material-destroyed") == 2 + 2  # the ministry's, the province's


def test_a_key_not_destroyed_keeps_every_copy(world: World) -> None:
    """destroy-material of one key: the other key's copies stay where they are, unlisted."""
    one = world.keys[0]
    asked = world.as_("mot-root-1").call(city.DESTROY_MATERIAL, city.DestroyRequest(keys=[one]))
    assert asked.action_id is not None
    approver = world.as_("mot-root-3")
    approver.call(city.DECIDE, signed_decision(approver, asked.action_id))
    listed = destruction.awaiting(world.as_("gd-1"), "440100")
    assert [c.key for c in listed] == [one]
    other = world.keys[1]
    report = ops.DestroyedReport(key=other, holder="440100", uri=world.uris[(other, "440100")])
    _refused(lambda: world.as_("gd-2").call(ops.REPORT_DESTROYED, report), 409, 6)
    with transaction(world.runtime.engine) as session:
        states = {k.id: k.state for k in session.exec(select(CityKey))}
    assert states == {one: "destroyed", other: "revoked"}


def test_jtca_city_destroy_copies(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's parser, output and the site's token (the embedded default of the state
    folder), over the in-process service: only the client's connection is swapped."""
    import ca.client.http
    from ca.cli.main import main

    monkeypatch.setenv("JTCA_STATE", str(world.runtime.state))
    desk = ["gd-1"]  # whose session this machine holds

    def connect(*, target: object = None, anonymous: bool = False) -> DeskClient:
        return world.as_(desk[0])

    monkeypatch.setattr(ca.client.http, "connect", connect)
    argv = ["city", "destroy-copies", "--holder", "440000"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "no copy of 440000 awaits destruction"
    destroy_material(world)
    desk[0] = "fj-1"  # another province's officer, signed in at this machine
    assert main(argv) == 6
    assert "deny/other-province" in capsys.readouterr().err
    desk[0] = "gd-1"
    assert main([*argv, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert sorted(d["key"] for d in done) == sorted(world.keys)
    assert {(d["holder"], d["token"], d["destroyed_at"]) for d in done} == {
        ("440000", PROVINCE_TOKEN, iso_utc(GRACE_PASSED))
    }
    assert not world.labels & _labels(world.province_site.store(PROVINCE_TOKEN))
    assert main(["city", "show", str(world.keys[0])]) == 0
    assert "copies_awaiting_destruction 440100\n" in capsys.readouterr().out
