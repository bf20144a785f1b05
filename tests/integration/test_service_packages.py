"""Issue #11, point 5: key packages ministry → province → city with three tokens, the ministry's
at the service (in-process, the real HTTP API) and the province's and the city's at their sites
(``ca.site``), on SQLite and PostgreSQL.

The service makes the ministry's transport key and packages; each site makes its own transport
key, opens packages into its own token and hands keys on, and reports each step; the service
checks every report (unknown package, misaddressed, replayed, another province's officer, stage
order) and answers a refusal as problem details with the command line's exit status. A refused
report leaves nothing in the site's token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from guangzhou_world import CITY_TOKEN, MINISTRY_TOKEN, PROVINCE_TOKEN, guangzhou_generated
from officer_desk import DeskClient
from sqlmodel import Session, select

from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.log import audit
from ca.log.merkle import MemoryTree
from ca.ops import packages as ops
from ca.ops.base import Empty
from ca.service.runtime import Runtime
from ca.site import packages as site
from ca.store.db import transaction
from ca.store.models import CityKey
from ca.vault.site import SiteVault
from hsm.envelope import export_key, read_package
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

T0 = 1_790_000_000  # 2026-09-21T13:33:20Z
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
    ("fj-1", "provincial-officer", "350000"),
)
Snapshot = Callable[[KeyStore], list[Any]]


@dataclass
class World:
    client: DeskClient
    runtime: Runtime
    state: Path
    province_site: SiteVault  # Guangdong's token, at the province
    city_site: SiteVault  # Guangzhou's token, at the city
    keys: list[int]
    application: int
    out: Path
    clock: FixedClock

    def as_(self, officer: str) -> DeskClient:
        return self.client.as_officer(officer)

    def keys_by_id(self) -> dict[int, CityKey]:
        with transaction(self.runtime.engine) as session:
            rows = {k.id or 0: k for k in session.exec(select(CityKey))}
            session.expunge_all()
            return rows


@pytest.fixture
def world(database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Officers, the three transport keys (the ministry's made by the service, the province's
    and the city's at their sites), and Guangzhou's generated key set."""
    url, engine = database
    monkeypatch.setenv(CONF_ENV, "")  # the state folder's SoftHSM2; restored afterwards
    state = tmp_path / "state"
    clock = FixedClock(T0)
    with guangzhou_generated(engine, url, state, clock, OFFICERS) as made:
        yield World(
            made.client,
            made.runtime,
            state,
            made.province_site,
            made.city_site,
            made.ids,
            made.application,
            tmp_path / "packages",
            clock,
        )


def _refused(call: Callable[[], Any], status: int, exit_code: int, reason: str | None) -> str:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert (error.status, error.exit_code, error.reason) == (status, exit_code, reason), error
    assert error.problem["title"]
    assert error.problem["detail"] == error.message
    assert "Traceback" not in error.message
    return error.message


def to_province(world: World) -> list[site.DeliveredFile]:
    return site.deliver(
        world.as_("mot-root-1"),
        world.province_site,
        application=world.application,
        out_dir=world.out / "to-gd",
        now=T0,
    )


def at_province(world: World) -> list[ops.ImportedKey]:
    return [
        site.import_package(world.as_("gd-1"), world.province_site, d.path.read_bytes())
        for d in to_province(world)
    ]


def _labels(store: KeyStore) -> set[str]:
    return {k.label for k in store.list_keys()}


# -- the whole path --------------------------------------------------------------------------
def test_ministry_to_province_to_city(world: World) -> None:
    keys = world.keys_by_id()
    # what each side delivers next
    waiting = world.as_("mot-root-1").call(ops.AWAITING_DELIVERY, Empty()).keys
    assert sorted(k.id for k in waiting) == sorted(world.keys)
    assert {(k.to, k.stage, k.city_name) for k in waiting} == {("440000", "generated", "广州市")}
    assert world.as_("gd-1").call(ops.AWAITING_DELIVERY, Empty()).keys == []
    held = world.as_("gd-1").call(ops.TRANSPORT_KEY, ops.Holder(holder="440000")).active
    assert held is not None
    assert held.token == PROVINCE_TOKEN
    none = world.as_("gd-1").call(ops.TRANSPORT_KEY, ops.Holder(holder="440300"))
    assert none.active is None

    # ministry → province: the service seals, the client writes
    sent = to_province(world)
    assert sorted(d.key for d in sent) == sorted(world.keys)
    for d in sent:
        assert d.path.name == f"{keys[d.key].label}.to-440000.jkp"
        info, _ = read_package(d.path.read_bytes())
        assert (info.package_id.hex(), info.recipient_name) == (d.package, "440000")
    assert {k.stage for k in world.keys_by_id().values()} == {"delivered-to-province"}

    # the province opens them into its own token and reports
    imported = [
        site.import_package(world.as_("gd-1"), world.province_site, d.path.read_bytes())
        for d in sent
    ]
    assert {(i.holder, i.token, i.stage) for i in imported} == {
        ("440000", PROVINCE_TOKEN, "held-by-province")
    }
    province_store = world.province_site.store(PROVINCE_TOKEN)
    assert {keys[i].label for i in world.keys} <= _labels(province_store)
    status = world.as_("gd-2").call(ops.STATUS, ops.PackageId(package=sent[0].package))
    assert (status.imported_by, status.token, status.recipient) == (
        "gd-1",
        PROVINCE_TOKEN,
        "440000",
    )
    assert status.uri is not None
    assert status.uri.startswith(f"pkcs11:token={PROVINCE_TOKEN};")

    # province → city: the province's client seals from its own token and reports
    waiting = world.as_("gd-1").call(ops.AWAITING_DELIVERY, Empty()).keys
    assert {(k.to, k.stage) for k in waiting} == {("440100", "held-by-province")}
    assert world.as_("mot-root-1").call(ops.AWAITING_DELIVERY, Empty()).keys == []
    onward = site.deliver(
        world.as_("gd-1"),
        world.province_site,
        application=world.application,
        out_dir=world.out / "to-gz",
        now=T0,
    )
    assert {(d.to, d.path.name.endswith(".to-440100.jkp")) for d in onward} == {("440100", True)}
    assert {k.stage for k in world.keys_by_id().values()} == {"delivered-to-city"}

    # installed in the city's token by an officer of the province
    installed = [
        site.import_package(world.as_("gd-2"), world.city_site, d.path.read_bytes()) for d in onward
    ]
    assert {(i.holder, i.token, i.stage) for i in installed} == {
        ("440100", CITY_TOKEN, "installed")
    }
    city_store = world.city_site.store(CITY_TOKEN)
    for key in world.keys_by_id().values():
        copy = next(k for k in city_store.list_keys() if k.label == key.label)
        assert key.stage == "installed"
        if key.kind == KeyKind.SM4.value:
            kcv = city_store.with_key_material(copy.uri, _kcv)
            assert kcv.hex() == key.check_value
        else:
            assert copy.public_key is not None
            assert copy.public_key.compressed.hex() == key.public_key

    # every step audited by the service, each package made an entry of kind package with the
    # SM3 of the file delivered; the log intact: the database's tree is the one its entries hash
    # to, and it verifies against a checkpoint signed with an audit key from outside it; the
    # service opened only its token
    with Session(world.runtime.engine) as session:
        entries = [audit.entry(session, seq) for seq in range(1, audit.tree_size(session) + 1)]
        tree = MemoryTree()
        for entry in entries:
            tree.append(entry.encode())
        assert audit.root(session) == tree.root()
        audit_key = SoftwareSigner.generate()
        record = audit.checkpoint(session, audit_key, at=T0, origin="test")
        report = audit.verify(
            session, checkpoints=[("test", record.note.encode())], audit_keys=[audit_key.public_key]
        )
        assert (report.ok, report.entries, report.findings) == (True, tree.size, [])
        session.rollback()  # the test's checkpoint is no evidence of the world
    actions = [e.action for e in entries]
    assert actions.count("transport-key.register") == 3
    assert actions.count("city-key.import") == 4
    delivered = [(e.kind, e.object_sm3) for e in entries if e.action == "city-key.deliver"]
    assert sorted(delivered, key=str) == sorted(
        (("package", sm3(d.path.read_bytes()).hex()) for d in [*sent, *onward]), key=str
    )
    opened = world.runtime._vault._open if world.runtime._vault is not None else {}
    assert set(opened) <= {MINISTRY_TOKEN}


def _kcv(value: bytearray) -> bytes:
    from hsm.sm.sm4 import sm4_key_check_value

    return sm4_key_check_value(bytes(value))


# -- refusals of import reports ---------------------------------------------------------------
def test_replayed_import_is_refused(world: World) -> None:
    sent = to_province(world)
    data = sent[0].path.read_bytes()
    done = site.import_package(world.as_("gd-1"), world.province_site, data)
    gd2 = world.as_("gd-2")
    message = _refused(lambda: site.plan_import(gd2, data), 422, 4, "replayed")
    assert message.startswith("replayed: ")
    assert "imported before by gd-1" in message
    report = ops.ImportReport(data=data, token=done.token, uri=done.uri, public_key=None,
                              check_value=None)  # fmt: skip
    _refused(lambda: gd2.call(ops.REPORT_IMPORT, report), 422, 4, "replayed")


def test_misaddressed_import_report_is_refused(world: World, snapshot: Snapshot) -> None:
    sent = to_province(world)
    data = sent[0].path.read_bytes()
    gd1 = world.as_("gd-1")
    plan = site.plan_import(gd1, data)
    assert (plan.recipient, plan.transport.token) == ("440000", PROVINCE_TOKEN)
    key = world.keys_by_id()[plan.key]
    # a report of the key in another token than the one the package is sealed to
    report = ops.ImportReport(
        data=data,
        token=CITY_TOKEN,
        uri=f"pkcs11:token={CITY_TOKEN};object={key.label};type=secret-key",
        check_value=key.check_value,
        public_key=key.public_key,
    )
    message = _refused(lambda: gd1.call(ops.REPORT_IMPORT, report), 422, 4, "misaddressed")
    assert CITY_TOKEN in message
    # a key that is not the one recorded
    wrong = ops.ImportReport(
        data=data,
        token=PROVINCE_TOKEN,
        uri=f"pkcs11:token={PROVINCE_TOKEN};object={key.label}",
        check_value="000000",
        public_key="02" + "00" * 32,
    )
    _refused(lambda: gd1.call(ops.REPORT_IMPORT, wrong), 422, 4, "check-value-mismatch")
    # nothing was recorded: the package still goes in
    assert site.import_package(gd1, world.province_site, data).stage == "held-by-province"


def test_another_provinces_report_is_refused_and_the_token_object_destroyed(
    world: World, snapshot: Snapshot
) -> None:
    sent = to_province(world)
    data = sent[0].path.read_bytes()
    fj1, gd1 = world.as_("fj-1"), world.as_("gd-1")
    message = _refused(lambda: site.plan_import(fj1, data), 403, 6, None)
    assert "deny/other-province" in message
    # gd-1 plans and opens the package at the province; the report comes from Fujian's officer
    store = world.province_site.store(PROVINCE_TOKEN)
    before = snapshot(store)
    plan = site.plan_import(gd1, data)
    installed = site.open_package(world.province_site, plan, data)
    assert snapshot(store) != before  # the key and its replay marker are in the token
    message = _refused(
        lambda: site.report_import(fj1, world.province_site, plan, data, installed), 403, 6, None
    )
    assert "deny/other-province" in message
    assert snapshot(store) == before, "a refused report left objects in the token"
    assert world.keys_by_id()[plan.key].stage == "delivered-to-province"
    # the package was not spent: the province's own officer imports it afterwards
    assert site.import_package(gd1, world.province_site, data).stage == "held-by-province"


def test_a_package_that_was_never_made_here_is_refused(world: World) -> None:
    gd1 = world.as_("gd-1")
    # a package of a real key, properly signed with the ministry's transport key, not recorded
    key = world.keys_by_id()[world.keys[0]]
    ministry = world.as_("gd-1").call(ops.TRANSPORT_KEY, ops.Holder(holder="ministry")).active
    province = world.as_("gd-1").call(ops.TRANSPORT_KEY, ops.Holder(holder="440000")).active
    assert ministry is not None
    assert province is not None
    with world.runtime.tokens() as vault:
        from ca.vault.signers import token_signer

        store = vault.store(MINISTRY_TOKEN)
        uri = Pkcs11Uri.parse(key.ministry_uri)
        stray = export_key(
            store,
            TokenKey(
                uri,
                KeyKind(key.kind),
                key.label,
                uri.id or b"",
                SM2PublicKey.from_bytes(bytes.fromhex(key.public_key)) if key.public_key else None,
                bytes.fromhex(key.check_value) if key.check_value else None,
            ),
            sender=token_signer(store, Pkcs11Uri.parse(ministry.sign_uri or ""), "transport"),
            recipient_transport_key=SM2PublicKey.from_bytes(bytes.fromhex(province.public_key)),
            recipient_name="440000",
        )
    message = _refused(lambda: site.plan_import(gd1, stray), 422, 4, "unknown-package")
    assert "was not made here" in message
    report = ops.ImportReport(
        data=stray,
        token=PROVINCE_TOKEN,
        uri=f"pkcs11:token={PROVINCE_TOKEN};object={key.label}",
        check_value=key.check_value,
        public_key=key.public_key,
    )
    _refused(lambda: gd1.call(ops.REPORT_IMPORT, report), 422, 4, "unknown-package")
    unknown = ops.PackageId(package="00" * 16)
    _refused(lambda: gd1.call(ops.STATUS, unknown), 422, 4, "unknown-package")
    # junk and a tampered package
    _refused(lambda: gd1.call(ops.IMPORT_PLAN, ops.PackageBytes(data=b"junk")), 422, 4,
             "malformed")  # fmt: skip
    good = to_province(world)[0].path.read_bytes()
    tampered = bytearray(good)
    tampered[-5] ^= 1
    _refused(
        lambda: gd1.call(ops.IMPORT_PLAN, ops.PackageBytes(data=bytes(tampered))),
        422,
        4,
        "bad-signature",
    )
    assert {k.stage for k in world.keys_by_id().values()} == {"delivered-to-province"}


# -- refusals of hand-on reports and deliveries ----------------------------------------------
def test_hand_on_reports_are_checked(world: World) -> None:
    gd1, fj1 = world.as_("gd-1"), world.as_("fj-1")
    request = ops.DeliveryRequest(keys=world.keys)
    # stage order: the province hands on only what it holds
    message = _refused(lambda: gd1.call(ops.DELIVERY_PLAN, request), 403, 6, None)
    assert "the ministry delivers" in message
    at_province(world)
    plan = gd1.call(ops.DELIVERY_PLAN, request)
    assert {(h.sender, h.recipient, h.stage_after) for h in plan.hops} == {
        ("440000", "440100", "delivered-to-city")
    }
    # the province's packages are not the service's to make
    message = _refused(lambda: gd1.call(ops.DELIVER, request), 403, 6, None)
    assert "at its site" in message
    # Fujian's officer may neither plan nor report Guangdong's hand-on
    _refused(lambda: fj1.call(ops.DELIVERY_PLAN, request), 403, 6, None)
    made = [(hop, site.seal(world.province_site, hop, now=T0)) for hop in plan.hops]
    report = ops.HandedOn(
        packages=[
            ops.HandedOnPackage(
                key=hop.key, file=ops.package_file_name(hop.label, hop.recipient), data=data
            )
            for hop, data in made
        ]
    )
    _refused(lambda: fj1.call(ops.REPORT_HANDED_ON, report), 403, 6, None)
    # a package sealed to another transport key than the city's: misaddressed, files removed
    ministry = gd1.call(ops.TRANSPORT_KEY, ops.Holder(holder="ministry")).active
    assert ministry is not None
    astray = [hop.model_copy(update={"recipient_transport": ministry}) for hop in plan.hops]
    out = world.out / "astray"
    out.mkdir(parents=True)
    message = _refused(
        lambda: site.hand_on(gd1, world.province_site, astray, out_dir=out, now=T0),
        422,
        4,
        "misaddressed",
    )
    assert list(out.iterdir()) == []
    # a package signed by another key than the province's transport key
    forged = ops.HandedOn(
        packages=[
            p.model_copy(update={"data": made_by_ministry})
            for p, made_by_ministry in zip(report.packages, _ministry_packages(world), strict=True)
        ]
    )
    _refused(lambda: gd1.call(ops.REPORT_HANDED_ON, forged), 422, 4, "untrusted-sender")
    assert {k.stage for k in world.keys_by_id().values()} == {"held-by-province"}
    # the genuine report goes through once; the same packages again are refused
    recorded = gd1.call(ops.REPORT_HANDED_ON, report)
    assert {p.to for p in recorded.packages} == {"440100"}
    _refused(lambda: gd1.call(ops.REPORT_HANDED_ON, report), 403, 6, None)  # stage moved on
    assert {k.stage for k in world.keys_by_id().values()} == {"delivered-to-city"}


def _ministry_packages(world: World) -> list[bytes]:
    """Packages of Guangzhou's keys sealed to the city, but signed by the ministry's key."""
    plan = world.as_("gd-1").call(ops.DELIVERY_PLAN, ops.DeliveryRequest(keys=world.keys))
    ministry = world.as_("gd-1").call(ops.TRANSPORT_KEY, ops.Holder(holder="ministry")).active
    assert ministry is not None
    with world.runtime.tokens() as vault:
        hops = [
            hop.model_copy(
                update={
                    "sender_transport": ministry,
                    "source": ops.KeyCopyRef(
                        token=MINISTRY_TOKEN, uri=world.keys_by_id()[hop.key].ministry_uri
                    ),
                }
            )
            for hop in plan.hops
        ]
        return [site.seal(vault, hop, now=T0) for hop in hops]


def test_a_refused_transport_key_registration_leaves_no_key(
    world: World, snapshot: Snapshot
) -> None:
    store = world.province_site.store(PROVINCE_TOKEN)
    before = snapshot(store)
    gd1 = world.as_("gd-1")
    message = _refused(
        lambda: site.register_transport_key(
            gd1, world.province_site, holder="350000", token=PROVINCE_TOKEN, now=T0 + 1
        ),
        403,
        6,
        None,
    )
    assert "deny/other-province" in message
    assert snapshot(store) == before
    # a site may not report the ministry's key, nor report a key registered before
    held = gd1.call(ops.TRANSPORT_KEY, ops.Holder(holder="440000")).active
    assert held is not None
    again = _registration(world, held)
    assert "registered already" in _refused(
        lambda: gd1.call(ops.REGISTER_TRANSPORT_KEY, again), 403, 6, None
    )
    ministry = again.model_copy(update={"holder": "ministry"})
    _refused(
        lambda: world.as_("mot-root-1").call(ops.REGISTER_TRANSPORT_KEY, ministry), 403, 6, None
    )
    not_a_point = again.model_copy(update={"public_key": "02" + "ff" * 32})
    _refused(lambda: gd1.call(ops.REGISTER_TRANSPORT_KEY, not_a_point), 422, 3, None)


def _registration(world: World, held: ops.TransportKeyInfo, **changes: str) -> ops.SiteTransportKey:
    """A registration report of ``held``'s keys with ``changes``, its proof signed by the
    province's signing key over the report as changed."""
    from ca.vault.signers import token_signer

    assert held.sign_uri is not None
    assert held.sign_public_key is not None
    fields = {
        "holder": "440000",
        "token": held.token,
        "uri": held.uri,
        "public_key": held.public_key,
        "sign_uri": held.sign_uri,
        "sign_public_key": held.sign_public_key,
    } | changes
    store = world.province_site.store(PROVINCE_TOKEN)
    signer = token_signer(store, Pkcs11Uri.parse(held.sign_uri), "transport")
    proof = signer.sign(ops.registration_statement(**fields)).hex()
    return ops.SiteTransportKey(**fields, proof=proof)


def test_a_registration_proves_the_signing_key_and_keeps_the_halves_apart(
    world: World, snapshot: Snapshot
) -> None:
    """Issue #15: the site's report carries the new signing key's signature over both public
    keys; a proof by another key, over other keys, or one key for both halves is refused and
    nothing is recorded."""
    gd1 = world.as_("gd-1")
    held = gd1.call(ops.TRANSPORT_KEY, ops.Holder(holder="440000")).active
    assert held is not None
    assert held.sign_public_key is not None
    store = world.province_site.store(PROVINCE_TOKEN)
    fresh_sign = store.generate_sm2("fresh-sign")
    fresh_enc = store.generate_sm2("fresh-enc", decrypt=True, sign=False)
    assert fresh_sign.public_key is not None
    assert fresh_enc.public_key is not None
    new = {
        "uri": str(fresh_enc.uri),
        "public_key": fresh_enc.public_key.compressed.hex(),
        "sign_uri": str(fresh_sign.uri),
        "sign_public_key": fresh_sign.public_key.compressed.hex(),
    }
    # signed by the old signing key, not the new one: the registrant does not prove it holds it
    by_old = _registration(world, held, **new)
    assert "registrant must hold the signing key" in _refused(
        lambda: gd1.call(ops.REGISTER_TRANSPORT_KEY, by_old), 403, 6, None
    )
    fresh = held.model_copy(update={"sign_uri": new["sign_uri"]})
    genuine = _registration(world, fresh, **new)
    # the proof covers the encryption key: another one in its place is refused
    swapped = genuine.model_copy(update={"public_key": held.public_key})
    assert "registrant must hold the signing key" in _refused(
        lambda: gd1.call(ops.REGISTER_TRANSPORT_KEY, swapped), 403, 6, None
    )
    # one key for both halves
    one = _registration(
        world, fresh, **(new | {"uri": new["sign_uri"], "public_key": new["sign_public_key"]})
    )
    assert "are one key" in _refused(
        lambda: gd1.call(ops.REGISTER_TRANSPORT_KEY, one), 403, 6, None
    )
    still = gd1.call(ops.TRANSPORT_KEY, ops.Holder(holder="440000")).active
    assert still == held
    # the genuine report is recorded, the earlier keys retired
    made = gd1.call(ops.REGISTER_TRANSPORT_KEY, genuine)
    assert (made.uri, made.sign_uri, made.legacy) == (new["uri"], new["sign_uri"], False)
    assert (made.public_key, made.sign_public_key) == (
        new["public_key"],
        new["sign_public_key"],
    )


def test_a_legacy_transport_key_is_read_but_never_used_for_a_new_package(world: World) -> None:
    """Issue #15: a holder whose transport key is one key that signs and decrypts (a row of
    before migration 0013) still opens a package sealed to it, and a package its one key signed
    still verifies; but no new package is signed by it or sealed to it: the delivery is refused
    naming the holder and the command that rotates it."""
    from ca.citykeys.common import MINISTRY
    from ca.store.models import TransportKey

    engine = world.runtime.engine
    province_store = world.province_site.store(PROVINCE_TOKEN)
    legacy_keys: dict[str, TokenKey] = {}
    with world.runtime.tokens() as vault:
        ministry_store = vault.store(MINISTRY_TOKEN)
        legacy_keys[MINISTRY] = ministry_store.generate_sm2("transport-ministry-old", decrypt=True)
        legacy_keys["440000"] = province_store.generate_sm2("transport-440000-old", decrypt=True)
        with transaction(engine) as session:  # the rows as migration 0013 leaves them
            for row in session.exec(select(TransportKey)):
                row.status = "retired"
                session.add(row)
            for holder, token in ((MINISTRY, MINISTRY_TOKEN), ("440000", PROVINCE_TOKEN)):
                one = legacy_keys[holder]
                assert one.public_key is not None
                session.add(
                    TransportKey(
                        holder=holder,
                        token=token,
                        uri=str(one.uri),
                        public_key=one.public_key.compressed.hex(),
                        legacy=True,
                        created_at=T0 - 100,
                        created_by="mot-root-1",
                    )
                )
        gd1 = world.as_("gd-1")
        shown = gd1.call(ops.TRANSPORT_KEY, ops.Holder(holder="ministry")).active
        assert shown is not None
        assert (shown.legacy, shown.sign_uri, shown.sign_public_key) == (True, None, None)
        # a new package: refused, naming the legacy holder and how to rotate
        mot = world.as_("mot-root-1")
        request = ops.DeliveryRequest(keys=world.keys)
        message = _refused(lambda: mot.call(ops.DELIVERY_PLAN, request), 403, 6, None)
        assert "transport key of the ministry" in message
        assert "legacy" in message
        assert f"jtca city transport-key --holder ministry --token {MINISTRY_TOKEN}" in message
        # an old package, in the format before issue #15, made before the rotation (signed by
        # the ministry's one key, sealed to the province's one key) and recorded then
        with transaction(engine) as session:
            key = next(k for k in session.exec(select(CityKey)) if k.id == world.keys[0])
            session.expunge(key)
        old_package = _old_format_package(
            ministry_store, key, legacy_keys[MINISTRY], legacy_keys["440000"]
        )
        _recorded_as_of_old(engine, key, old_package)
    # refused unless the migration reader is asked for; then read: the province opens it with
    # its one key, the ministry's one key verifies it
    from hsm.envelope import PackageRefused

    with pytest.raises(PackageRefused) as refused:  # refused at the site, before the service
        site.import_package(gd1, world.province_site, old_package)
    assert refused.value.reason == "legacy-format"
    # and by the service, if a site skipped its own check
    _refused(
        lambda: gd1.call(ops.IMPORT_PLAN, ops.PackageBytes(data=old_package)),
        422,
        4,
        "legacy-format",
    )
    imported = site.import_package(gd1, world.province_site, old_package, accept_legacy=True)
    assert (imported.label, imported.stage) == (key.label, "held-by-province")
    # the ministry rotates; the province's legacy key is still refused as a recipient
    world.clock.advance(60)  # new labels (transport-HOLDER-sign-YYYYmmddHHMMSS)
    mot.call(ops.MINISTRY_TRANSPORT_KEY, ops.MinistryTransportKey(token=MINISTRY_TOKEN))
    message = _refused(
        lambda: mot.call(ops.DELIVERY_PLAN, ops.DeliveryRequest(keys=world.keys[1:])),
        403,
        6,
        None,
    )
    assert "transport key of 440000" in message
    assert "no new package is sealed to it" in message
    # once the province rotates too, the delivery goes through with the new pairs
    site.register_transport_key(gd1, world.province_site, holder="440000",
                                token=PROVINCE_TOKEN, now=T0 + 5)  # fmt: skip
    plan = mot.call(ops.DELIVERY_PLAN, ops.DeliveryRequest(keys=world.keys[1:]))
    assert {(h.sender_transport.legacy, h.recipient_transport.legacy) for h in plan.hops} == {
        (False, False)
    }


def _old_format_package(
    ministry: KeyStore, key: CityKey, sender: TokenKey, recipient: TokenKey
) -> bytes:
    """``key``'s package as the jtca before issue #15 made it (hsm.envelope_legacy's format:
    SM4-ECB under a key sealed with SM2 to the recipient's one key, signed by the sender's one
    key), from the ministry's copy."""
    from datetime import UTC, datetime

    from hsm import envelope_legacy as legacy
    from hsm.envelope import key_id_of
    from hsm.sm.sm2 import raw_to_der
    from hsm.sm.sm4 import sm4_encrypt_block

    assert sender.public_key is not None
    assert recipient.public_key is not None
    envelope_key = bytes(range(100, 116))

    def seal(material: bytearray) -> bytes:
        blocks = range(0, len(material), 16)
        return b"".join(
            sm4_encrypt_block(envelope_key, bytes(material[i : i + 16])) for i in blocks
        )

    check = bytes.fromhex(key.public_key if key.kind == "sm2" else key.check_value or "")
    if key.kind == "sm2":
        check = SM2PublicKey.from_bytes(check).compressed
    tbs = legacy.KeyPackage(
        {
            "version": 1,
            "package_id": sm3(key.label.encode())[:16],
            "created_at": datetime.fromtimestamp(T0 - 50, UTC),
            "sender_key_id": key_id_of(sender.public_key),
            "recipient_key_id": key_id_of(recipient.public_key),
            "recipient_name": "440000",
            "key_kind": 1 if key.kind == "sm2" else 2,
            "key_label": key.label,
            "check_value": check,
            "envelope": {
                "sym_alg_id": {"algorithm": legacy.OID_SM4_ECB},
                "sym_encrypted_key": recipient.public_key.encrypt(envelope_key),
                "encrypted_key": ministry.with_key_material(
                    Pkcs11Uri.parse(key.ministry_uri), seal
                ),
            },
        }
    )
    from ca.vault.signers import token_signer

    signature = raw_to_der(token_signer(ministry, sender.uri, "transport").sign(tbs.dump()))
    return legacy.SignedKeyPackage(
        {
            "tbs_package": tbs,
            "signature_algorithm": {"algorithm": legacy.OID_SM2_WITH_SM3},
            "signature": signature,
        }
    ).dump()


def _recorded_as_of_old(engine: Any, key: CityKey, package: bytes) -> None:
    """The old package's record, and its key delivered to the province, as the jtca before
    issue #15 left them."""
    import hashlib

    from ca.store.models import KeyPackageRecord

    with transaction(engine) as session:
        session.add(
            KeyPackageRecord(
                package_id=sm3(key.label.encode())[:16].hex(),
                city_key_id=key.id or 0,
                sender="ministry",
                recipient="440000",
                sha256=hashlib.sha256(package).hexdigest(),
                created_at=T0 - 50,
                created_by="mot-root-1",
                data=package,
            )
        )
        row = session.exec(select(CityKey).where(CityKey.id == key.id)).one()
        row.stage, row.delivered_at = "delivered-to-province", T0 - 50
        session.add(row)
