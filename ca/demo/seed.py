"""Demo data for the officers' console (``jtca demo``; issues #7 and #12): a state folder where
the ministry's root ceremony has run and some months of city key work have happened, so every
screen has something to show. The same seed serves the console's tests.

The demo world is made in two halves, each where it belongs (docs/officers.md, "The demo"):

- **The history, here in the service** (``demo.seed``, ``ca.service.demo``), on the embedded
  default's empty database and tokens, through the real workflows with the clock set back: the
  root ceremony 1,900 days ago, the demo officers registered, transport keys (renewed 400 days
  ago), and what officers meet (issue #17): key sets made years ago that end within 30 days
  (Dongguan), within 90 days (Zhongshan), in the renewal window (Jiangmen) and later (Huizhou),
  Guangzhou's, Shenzhen's and Foshan's keys made 399 days ago, each applied for, approved,
  generated, delivered and installed — Shenzhen's never went on from the province (dormant);
  Huizhou's QR key revoked under dual control (its material due for destruction); an operator
  overdue with the lists published six weeks ago (those early decisions carry no officer
  signature: no officer held a token yet). The seed writes
  ``STATE/demo-credentials.json`` (mode 0600; ``ca.demo.credentials``) with the demo root
  ceremony's share quorum and the officers, without PINs.
- **Today, by the demo's client** (``ca.demo.officer_work``): each officer's personal SoftHSM2 token
  with an SM2 key made inside it and a random PIN, enrolled through ``officer.enrol`` (the two
  first ministry root officers under the root share quorum, every other officer requested by one
  and approved by the other), then the day's work as signed requests of those officers: usage
  reports, Foshan's QR key suspended for use in Fujian (requested by gd-1, approved by ca-op-2
  with a signed decision), an open violation (Zhongshan's card key used in Huizhou), Zhuhai's
  application awaiting the ministry, an issuer's interop certificate, the lists published
  again.

The service never sees an officer's PIN; the demo officers and their secrets never reach a real
authority (``demo.seed`` is refused anywhere but an empty embedded default).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import policies
from ca.ceremony.run import SealHook, Transcript, init_token_shares, read_ceremony, run
from ca.citykeys import misuse, workflow
from ca.citykeys.applications import apply, decide_application
from ca.demo.credentials import (
    DemoCredentials,
    DemoCredentialsError,
    DemoOfficer,
    load_credentials,
    token_label,
    write_credentials,
)
from ca.log.anchors import LOG_TOKEN
from ca.officers.roster import actor_of, add_officer, officers
from ca.ops.demo import CREDENTIALS
from ca.publish import publisher
from ca.publish.acks import register_operator
from ca.service.runtime import PUBLISHED
from ca.store.models import CityKey
from ca.vault.embedded import EmbeddedVault, open_token
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.softhsm2 import init_token, token_labels, use_softhsm
from hsm.pkcs11.token import QuorumPin, Token
from policies.rules import Actor

EXAMPLE: Final = Path(policies.__file__).resolve().parent / "ceremonies" / "root-example.toml"
DAY: Final = 86400
HISTORY_DAYS: Final = 1900  # the root ceremony ran this long before the seed
# The list-signing key lives as long as the audit key here: the demo's history is longer than
# the example ceremony's three years
LIST_SIGNING_YEARS: Final = 10

# Key sets generated years ago (days before now: a city key is valid 1825 days): their ends
# fall within 30 days (Dongguan), 90 days (Zhongshan), the 180-day renewal window (Jiangmen)
# and later (Huizhou), so the expiry counts and the timeline have something to show
ELDER_BATCHES: Final = (
    (1805, ("441900",)),
    (1765, ("442000",)),
    (1690, ("440700",)),
    (1500, ("441300",)),
)
RECENT_DAYS: Final = 399  # Guangzhou's, Shenzhen's and Foshan's keys
RECENT: Final = ("440100", "440300", "440600")
DORMANT: Final = ("440300",)  # delivered, never used: the client reports no use of them
REVOKED: Final = "city-qr-441300-g1"
REVOKED_DAYS: Final = 200
REVOKE_REASON: Final = "terminal stolen with the key loaded (第十一条)"
PUBLISHED_DAYS: Final = 42
OPERATOR: Final = ("gd-metro-ops", "广州地铁运营", "440000")  # never acknowledged a list
OPERATOR_DAYS: Final = 60

# The demo officers besides the ceremony's own (mot-root-1, ca-op-1, auditor-1)
OFFICERS: Final = (
    ("mot-root-2", "部根密钥管理员 李四", ["ministry-root-officer"], None),
    ("mot-root-3", "部根密钥管理员 王五", ["ministry-root-officer"], None),
    ("ca-op-2", "中心CA操作员 吴十", ["ministry-ca-operator"], None),
    ("gd-1", "广东省密钥管理员 陈一", ["provincial-officer"], "440000"),
    ("gd-2", "广东省密钥管理员 林二", ["provincial-officer"], "440000"),
    ("publisher-1", "名单发布服务", ["publisher"], None),
    ("em-1", "应急发布员 郑一", ["emergency-publisher"], None),
    ("em-2", "应急发布员 冯二", ["emergency-publisher"], None),
)
TOKENS: Final = {  # transport key tokens: the ministry's and the sites'
    "ministry": "MOT-KEYS",
    "440000": "GD-KEYS",
    "440100": "GZ-KEYS",
    "440300": "SZ-KEYS",
    "440600": "FS-KEYS",
    "441900": "DG-KEYS",
    "442000": "ZS-KEYS",
    "440700": "JM-KEYS",
    "441300": "HZ-KEYS",
}


def is_seeded(state: Path) -> bool:
    return (state / CREDENTIALS).is_file()


def seed(
    state: Path,
    engine: Engine,
    vault: EmbeddedVault,
    now: int,
    *,
    on_audit_key: SealHook | None = None,
    on_ceremony: Callable[[Transcript], None] | None = None,
) -> DemoCredentials:
    """Seed the empty database ``engine`` and the tokens of ``state`` with the demo world's
    history up to ``now`` (``vault`` may create tokens) and write the credentials file, stage
    ``seeded``: the demo's client makes the officers' tokens and the day's work
    (``ca.demo.officer_work``). The audit key goes to the service's log token (``MOT-LOG``, in
    ``vault``); ``on_audit_key`` starts sealing the log in the ceremony's transaction and
    ``on_ceremony`` gets the transcript once it is committed (the service writes the trust
    anchors and the closing checkpoint outside the database)."""
    if is_seeded(state):
        raise FileExistsError(f"{state} is seeded already")
    use_softhsm(state / "softhsm2")
    ceremony = read_ceremony(EXAMPLE)
    if ceremony.list_signing is not None:
        ceremony = replace(
            ceremony,
            list_signing=replace(ceremony.list_signing, validity_years=LIST_SIGNING_YEARS),
        )
    start = now - HISTORY_DAYS * DAY
    if ceremony.token in token_labels():
        raise FileExistsError(f"token {ceremony.token} exists already in {state}")
    pin = secrets.token_urlsafe(12)
    init_token(ceremony.token, pin, secrets.token_urlsafe(12))
    shares = [s for _, s in init_token_shares(ceremony, pin)][: ceremony.threshold]
    transcript = run(
        ceremony,
        engine,
        module=None,
        shares=shares,
        witnesses_present=[ceremony.witnesses[0]],
        now=datetime.fromtimestamp(start, UTC),
        log_store=vault.store(LOG_TOKEN),
        on_audit_key=on_audit_key,
    )
    if on_ceremony is not None:
        on_ceremony(transcript)
    root = actor_of(engine, "mot-root-1")
    for officer_id, name, roles, province in OFFICERS:
        add_officer(
            engine,
            by=root,
            officer_id=officer_id,
            name=name,
            roles=roles,
            province=province,
            now=start + 60,
        )
    gd1, gd2 = actor_of(engine, "gd-1"), actor_of(engine, "gd-2")
    op1 = actor_of(engine, "ca-op-1")
    for holder, label in TOKENS.items():
        actor = root if holder == "ministry" else gd1
        workflow.register_transport_key(
            engine, vault, actor, holder=holder, token=label, now=start + 120
        )
    # Cities whose keys were made years ago: their ends fall in the weeks and months ahead
    for age, cities in ELDER_BATCHES:
        _batch(engine, vault, state, (root, op1, gd1, gd2), cities, now - age * DAY)
    # The transport keys renewed before they ended (the first ones are retired)
    for holder, label in TOKENS.items():
        actor = root if holder == "ministry" else gd1
        workflow.register_transport_key(
            engine, vault, actor, holder=holder, token=label, now=now - RECENT_DAYS * DAY - DAY
        )
    # Guangzhou and Foshan: installed (in use from the usage reports the client imports);
    # Shenzhen: delivered to the province long ago and never used (dormant)
    _batch(engine, vault, state, (root, op1, gd1, gd2), RECENT, now - RECENT_DAYS * DAY)
    # Huizhou's QR key: revoked under dual control (its card key goes on)
    approvers = (actor_of(engine, "mot-root-2"), actor_of(engine, "mot-root-3"))
    _revoke(engine, vault, root, approvers, REVOKED, now - REVOKED_DAYS * DAY)
    # An operator registered two months ago that never reported loading the lists published
    # six weeks ago (第十二条: within 15 days): overdue; the client publishes again today
    operator_id, operator_name, province = OPERATOR
    register_operator(
        engine,
        op1,
        operator_id=operator_id,
        name=operator_name,
        province=province,
        now=now - OPERATOR_DAYS * DAY,
    )
    _publish(engine, state, shares, actor_of(engine, "publisher-1"), now - PUBLISHED_DAYS * DAY)
    credentials = DemoCredentials(
        shares=tuple(shares),
        officers=tuple(
            DemoOfficer(
                id=o.officer_id,
                name=o.name,
                roles=tuple(sorted(o.roles.split(","))),
                province=o.province,
                token_label=token_label(o.officer_id),
            )
            for o in officers(engine)
        ),
        stage="seeded",
        root_token=ceremony.token,
    )
    write_credentials(state, credentials, create=True)
    return credentials


def _batch(
    engine: Engine,
    vault: EmbeddedVault,
    state: Path,
    officers: tuple[Actor, Actor, Actor, Actor],
    cities: tuple[str, ...],
    t: int,
) -> None:
    """Guangdong's application for ``cities`` at ``t``, approved, generated, delivered to the
    province (3 days later) and on to the cities (5 days later) but for those in
    ``DORMANT``, each package imported the next day."""
    root, op1, gd1, gd2 = officers
    application = apply(engine, gd1, list(cities), t)
    decide_application(engine, op1, application.id or 0, approve=True, now=t + 3600)
    keys = workflow.generate(engine, vault, root, application.id or 0, now=t + 7200)
    ids = [k.id or 0 for k in keys]
    sent = workflow.deliver(
        engine, vault, root, ids, out_dir=state / "packages" / "to-gd", now=t + 3 * DAY
    )
    for delivery in sent:
        workflow.import_package(engine, vault, gd1, delivery.path.read_bytes(), now=t + 4 * DAY)
    onward = [k.id or 0 for k in keys if k.city not in DORMANT]
    for delivery in workflow.deliver(
        engine, vault, gd1, onward, out_dir=state / "packages" / "to-cities", now=t + 5 * DAY
    ):
        workflow.import_package(engine, vault, gd2, delivery.path.read_bytes(), now=t + 6 * DAY)


def _revoke(
    engine: Engine,
    vault: EmbeddedVault,
    requester: Actor,
    approvers: tuple[Actor, ...],
    label: str,
    t: int,
) -> None:
    """The key ``label`` revoked at ``t``: asked for by ``requester``, approved in turn by
    ``approvers`` until the policy's count is reached (the history's decisions are unsigned)."""
    with Session(engine) as session:
        key = session.exec(select(CityKey).where(CityKey.label == label)).one()
    outcome = misuse.request(
        engine,
        vault,
        requester,
        misuse.REVOKE,
        [key.id or 0],
        reason=REVOKE_REASON,
        now=t,
        destroy_site_copies=False,
    )
    for step, approver in enumerate(approvers, start=1):
        if outcome.action_id is None or outcome.state != "pending":
            break
        outcome = misuse.decide(
            engine,
            vault,
            approver,
            outcome.action_id,
            approve=True,
            now=t + step * 3600,
            destroy_site_copies=False,
        )
    if outcome.state != "done":
        raise DemoCredentialsError(f"the demo's revocation of {label} is {outcome.state}")


def _publish(engine: Engine, state: Path, shares: list[str], actor: Actor, t: int) -> None:
    """The lists published at ``t`` by ``actor`` into the service's folder, signed with the
    list-signing key in the root token (unlocked by the demo's share quorum)."""
    opened: list[Token] = []

    def store_of(label: str) -> KeyStore:
        opened.append(open_token(label, QuorumPin(list(shares))))
        return KeyStore(opened[-1])

    try:
        signing = publisher.list_signing(engine, t, store_of)
        publisher.publish(
            engine, signing, publisher.Settings(state / PUBLISHED), actor=actor, now=t
        )
    finally:
        for token in opened:
            token.close()


__all__ = [
    "CREDENTIALS",
    "DemoCredentials",
    "DemoOfficer",
    "is_seeded",
    "load_credentials",
    "seed",
]
