"""Demo data for the officers' console (``jtca demo``; issues #7 and #12): a state folder where
the ministry's root ceremony has run and some months of city key work have happened, so every
screen has something to show. The same seed serves the console's tests.

The demo world is made in two halves, each where it belongs (docs/officers.md, "The demo"):

- **The history, here in the service** (``demo.seed``, ``ca.service.demo``), on the embedded
  default's empty database and tokens, through the real workflows with the clock set back: the
  root ceremony 400 days ago, the demo officers registered, transport keys, and Guangzhou's,
  Shenzhen's and Foshan's keys applied for, approved, generated, delivered and installed (those
  early decisions carry no officer signature: no officer held a token yet). The seed writes
  ``STATE/demo-credentials.json`` (mode 0600; ``ca.demo_credentials``) with the demo root
  ceremony's share quorum and the officers, without PINs.
- **Today, by the demo's client** (``ca.site.demo``): each officer's personal SoftHSM2 token
  with an SM2 key made inside it and a random PIN, enrolled through ``officer.enrol`` (the two
  first ministry root officers under the root share quorum, every other officer requested by one
  and approved by the other), then the day's work as signed requests of those officers: usage
  reports, Foshan's QR key suspended for use in Fujian (requested by gd-1, approved by ca-op-2
  with a signed decision), Zhuhai's application awaiting the ministry, an issuer's interop
  certificate, the lists published.

The service never sees an officer's PIN; the demo officers and their secrets never reach a real
authority (``demo.seed`` is refused anywhere but an empty embedded default).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy.engine import Engine

from ca.applications import apply, decide_application
from ca.ceremony import SealHook, Transcript, init_token_shares, read_ceremony, run
from ca.citykeys import workflow
from ca.demo_credentials import (
    DemoCredentials,
    DemoOfficer,
    load_credentials,
    token_label,
    write_credentials,
)
from ca.log.anchors import LOG_TOKEN
from ca.officers import actor_of, add_officer, officers
from ca.ops.demo import CREDENTIALS
from ca.tokens import EmbeddedVault
from hsm.softhsm import init_token, token_labels, use_softhsm

EXAMPLE: Final = (
    Path(__file__).resolve().parents[1] / "policies" / "ceremonies" / "root-example.toml"
)
DAY: Final = 86400
HISTORY_DAYS: Final = 400  # the root ceremony ran this long before the seed

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
    (``ca.site.demo``). The audit key goes to the service's log token (``MOT-LOG``, in
    ``vault``); ``on_audit_key`` starts sealing the log in the ceremony's transaction and
    ``on_ceremony`` gets the transcript once it is committed (the service writes the trust
    anchors and the closing checkpoint outside the database)."""
    if is_seeded(state):
        raise FileExistsError(f"{state} is seeded already")
    use_softhsm(state / "softhsm2")
    ceremony = read_ceremony(EXAMPLE)
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
    # Guangzhou and Foshan: installed (in use from the usage reports the client imports);
    # Shenzhen: delivered to the province long ago and never used (dormant)
    t = start + DAY
    application = apply(engine, gd1, ["440100", "440300", "440600"], t)
    decide_application(engine, op1, application.id or 0, approve=True, now=t + 3600)
    keys = workflow.generate(engine, vault, root, application.id or 0, now=t + 7200)
    ids = [k.id or 0 for k in keys]
    sent = workflow.deliver(
        engine, vault, root, ids, out_dir=state / "packages" / "to-gd", now=t + 3 * DAY
    )
    for delivery in sent:
        workflow.import_package(engine, vault, gd1, delivery.path.read_bytes(), now=t + 4 * DAY)
    onward = [k.id or 0 for k in keys if k.city != "440300"]
    for delivery in workflow.deliver(
        engine, vault, gd1, onward, out_dir=state / "packages" / "to-cities", now=t + 5 * DAY
    ):
        workflow.import_package(engine, vault, gd2, delivery.path.read_bytes(), now=t + 6 * DAY)
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


__all__ = [
    "CREDENTIALS",
    "DemoCredentials",
    "DemoOfficer",
    "is_seeded",
    "load_credentials",
    "seed",
]
