"""Demo data for the officers' console (``jtca demo``; issue #7): a state folder where the
ministry's root ceremony has run and some months of city key work have happened, so every
screen has something to show. The same function seeds the console's tests.

It runs inside the service (``demo.seed``, ``ca.service.demo``), on the embedded default's
empty database and tokens: the clients never touch either. Everything goes through the real
workflows (tokens, packages, policy, dual control, audit) with the clock set back in time, so
the history is what the system would have recorded: Guangzhou's keys installed and in use,
Shenzhen's delivered to the province long ago and never used (dormant), Zhuhai's applied for and
awaiting approval, Foshan's key suspended for misuse, an issuer with its interop certificate,
the lists published. The officers' sign-in secrets are written to
``STATE/demo-credentials.json`` (mode 0600): demo data only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy.engine import Engine

from ca.applications import apply, decide_application
from ca.ceremony import init_token_shares, read_ceremony, run
from ca.citykeys import misuse, usage, workflow
from ca.clock import iso_utc
from ca.officers import actor_of, add_officer
from ca.ops.demo import CREDENTIALS
from ca.tokens import EmbeddedVault, embedded_token
from hsm.softhsm import init_token, token_labels, use_softhsm
from policies.rules import Actor

EXAMPLE: Final = (
    Path(__file__).resolve().parents[1] / "policies" / "ceremonies" / "root-example.toml"
)
DAY: Final = 86400

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
TOKENS: Final = {
    "ministry": "MOT-KEYS",
    "440000": "GD-KEYS",
    "440100": "GZ-KEYS",
    "440300": "SZ-KEYS",
    "440600": "FS-KEYS",
}
SIGN_IN_TOKEN: Final = (  # officer -> the holder whose key token they sign in with
    ("gd-1", "440000"),
    ("gd-2", "440000"),
    ("mot-root-1", "ministry"),
    ("mot-root-2", "ministry"),
    ("mot-root-3", "ministry"),
    ("ca-op-1", "ministry"),
    ("ca-op-2", "ministry"),
    ("publisher-1", "ministry"),
    ("em-1", "ministry"),
    ("em-2", "ministry"),
    ("auditor-1", "ministry"),
)


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    shares: tuple[str, ...]  # two of the root token's PIN shares (quorum)
    pins: dict[str, str]  # officer id -> the PIN of the token they sign in with

    def as_json(self) -> str:
        return json.dumps(
            {"root_token_shares": list(self.shares), "officer_pins": self.pins},
            ensure_ascii=False,
            indent=2,
        )


def is_seeded(state: Path) -> bool:
    return (state / CREDENTIALS).is_file()


def seed(
    state: Path, engine: Engine, vault: EmbeddedVault, now: int, *, published: Path
) -> DemoCredentials:
    """Seed the empty database ``engine`` and the tokens of ``state`` with the demo world as of
    ``now`` (``vault`` may create tokens); the lists are published to ``published``."""
    if is_seeded(state):
        raise FileExistsError(f"{state} is seeded already")
    use_softhsm(state / "softhsm2")
    ceremony = read_ceremony(EXAMPLE)
    start = now - 400 * DAY
    if ceremony.token in token_labels():
        raise FileExistsError(f"token {ceremony.token} exists already in {state}")
    pin = secrets.token_urlsafe(12)
    init_token(ceremony.token, pin, secrets.token_urlsafe(12))
    shares = [s for _, s in init_token_shares(ceremony, pin)][:2]
    run(
        ceremony,
        engine,
        module=None,
        shares=shares,
        witnesses_present=[ceremony.witnesses[0]],
        now=datetime.fromtimestamp(start, UTC),
    )
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
    op1, op2 = actor_of(engine, "ca-op-1"), actor_of(engine, "ca-op-2")
    for holder, label in TOKENS.items():
        actor = root if holder == "ministry" else gd1
        workflow.register_transport_key(
            engine, vault, actor, holder=holder, token=label, now=start + 120
        )
    # Guangzhou and Foshan: installed and in use; Shenzhen: delivered, never used (dormant)
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
    used = "\n".join(
        f"{k.label},{k.city},{iso_utc(t + 20 * DAY)},{iso_utc(now - 4 * DAY)},{k.city[:4]}03"
        for k in keys
        if k.city != "440300"
    )
    usage.import_usage(
        engine,
        gd1,
        "key,city,first_use,last_use,used_in\n" + used,
        "csv",
        source="demo-usage.csv",
        now=now - 3 * DAY,
    )
    # Foshan's QR key used in Fujian: a scope violation, then suspended under dual control
    fs_qr = next(k for k in keys if k.city == "440600" and k.key_class == "city-qr")
    usage.import_usage(
        engine,
        gd1,
        "key,city,first_use,last_use,used_in\n"
        f"{fs_qr.label},440600,{iso_utc(now - 8 * DAY)},{iso_utc(now - 7 * DAY)},350102\n",
        "csv",
        source="demo-violation.csv",
        now=now - 2 * DAY,
    )
    asked = misuse.request(
        engine,
        vault,
        gd1,
        misuse.SUSPEND,
        [fs_qr.id or 0],
        reason="used in Fujian (第十条)",
        now=now - DAY,
    )
    misuse.decide(engine, vault, op2, asked.action_id or 0, approve=True, now=now - DAY + 600)
    # Zhuhai: applied for, awaiting the ministry's approval
    apply(engine, gd2, ["440400"], now - 3600)
    _issuer_and_lists(state, engine, shares, now, published)
    pins = {
        officer_id: embedded_token(TOKENS[holder], state, create=False).pin_file.read_text().strip()
        for officer_id, holder in SIGN_IN_TOKEN
    }
    credentials = DemoCredentials(tuple(shares), pins)
    path = state / CREDENTIALS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(credentials.as_json() + "\n")
    return credentials


def _issuer_and_lists(
    state: Path, engine: Engine, shares: list[str], now: int, published: Path
) -> None:
    """A QR issuer with its interop certificate (CA index 1), and the lists published."""
    from sqlmodel import Session, select

    from ca.authorization import interop_authorizer
    from ca.issuance import IssueContext, issue
    from ca.publish import publisher
    from ca.registry.issuers import register_issuer
    from ca.requests import make_request, read_request
    from ca.signing import token_signer
    from ca.store.models import CaKey
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.signer import TokenSigner
    from hsm.pkcs11.token import QuorumPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri

    issuer_token = embedded_token("DEMO-ISSUER", state)
    key = issuer_token.store.generate_sm2("demo-issuer")
    request = make_request(
        TokenSigner(issuer_token.store, key.uri, allow_host_assisted=True),
        issuer_id="02113450",
        issuer_name="示例发行机构",
        requested_expiry="1230",
        now=datetime.fromtimestamp(now - 10 * DAY, UTC),
    )
    issuer_token.token.close()
    register_issuer(
        engine, issuer_id="02113450", name="示例发行机构", actor="ca-op-1", now=now - 10 * DAY
    )
    with Session(engine) as session:
        ca_key = session.exec(select(CaKey).where(CaKey.ca_index == 1)).one()
    op = actor_of(engine, "ca-op-1")
    with Token(Pkcs11Uri.parse(ca_key.key_uri).token, QuorumPin(shares)) as token:
        store = KeyStore(token)
        ctx = IssueContext(
            actor=op.id,
            ca_signer=token_signer(store, Pkcs11Uri.parse(ca_key.key_uri), "central-qr-ca"),
            ca_index=1,
            now=now - 10 * DAY,
            authorize=interop_authorizer(op, 1, now - 10 * DAY),
        )
        issue(engine, read_request(request), ctx)
        signing = publisher.list_signing(engine, now - 3600, lambda _: store)
        publisher.publish(
            engine,
            signing,
            publisher.Settings(published),
            actor=actor_of(engine, "publisher-1"),
            now=now - 3600,
        )


def load_credentials(state: Path) -> DemoCredentials:
    data = json.loads((state / CREDENTIALS).read_text(encoding="utf-8"))
    return DemoCredentials(tuple(data["root_token_shares"]), dict(data["officer_pins"]))


__all__ = ["CREDENTIALS", "Actor", "DemoCredentials", "is_seeded", "load_credentials", "seed"]
