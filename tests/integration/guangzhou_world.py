"""The set-up the package and site tests share: officers, the three transport keys (the
ministry's made by the service, Guangdong's and Guangzhou's at their sites, each in a token of
its own) and Guangzhou's generated key set, on the in-process service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service_fixtures import in_process
from sqlalchemy.engine import Engine

from ca.applications import apply, decide_application
from ca.citykeys import workflow
from ca.client.http import Client
from ca.clock import FixedClock
from ca.ops import packages as ops
from ca.service.runtime import Runtime
from ca.site import packages as site
from ca.site.vault import SiteVault
from ca.store.db import transaction
from ca.store.models import CityKey
from policies.rules import Actor

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
MINISTRY_TOKEN = "MOT-KEYS"  # noqa: S105 - token labels, not secrets
PROVINCE_TOKEN = "GD-KEYS"  # noqa: S105
CITY_TOKEN = "GZ-KEYS"  # noqa: S105

Officers = Sequence[tuple[str, str, str | None]]


def add_officers(engine: Engine, officers: Officers, now: int = T0) -> None:
    from ca.officers import add_officer_in

    with transaction(engine) as session:
        for officer_id, role, province in officers:
            add_officer_in(
                session,
                officer_id=officer_id,
                name=officer_id,
                roles=[role],
                province=province,
                actor="test",
                now=now,
            )


@dataclass
class Generated:
    client: Client
    runtime: Runtime
    province_site: SiteVault  # Guangdong's token, at the province
    city_site: SiteVault  # Guangzhou's token, at the city
    keys: list[CityKey]
    application: int

    @property
    def ids(self) -> list[int]:
        return [k.id or 0 for k in self.keys]


@contextmanager
def guangzhou_generated(
    engine: Engine, url: str, state: Path, clock: FixedClock, officers: Officers
) -> Iterator[Generated]:
    """``officers`` registered, the transport keys made, Guangzhou's application approved and
    its keys generated in the ministry token."""
    add_officers(engine, officers, clock.now())
    now = clock.now()
    with (
        in_process(state, url=url, clock=clock) as (client, runtime),
        SiteVault(state=state, create=True) as province_site,
        SiteVault(state=state, create=True) as city_site,
    ):
        ministry = client.as_officer("mot-root-1").call(
            ops.MINISTRY_TRANSPORT_KEY, ops.MinistryTransportKey(token=MINISTRY_TOKEN)
        )
        assert (ministry.holder, ministry.token) == ("ministry", MINISTRY_TOKEN)
        gd1 = client.as_officer("gd-1")
        for holder, token, tokens in (
            ("440000", PROVINCE_TOKEN, province_site),
            ("440100", CITY_TOKEN, city_site),
        ):
            made = site.register_transport_key(gd1, tokens, holder=holder, token=token, now=now)
            assert (made.holder, made.token, made.status) == (holder, token, "active")
            assert made.uri.startswith(f"pkcs11:token={token};object=transport-{holder}-")
        application = apply(
            engine, Actor("gd-1", frozenset({"provincial-officer"}), "440000"), ["440100"], now
        )
        decide_application(
            engine,
            Actor("ca-op-1", frozenset({"ministry-ca-operator"})),
            application.id or 0,
            approve=True,
            now=now,
        )
        with runtime.tokens() as vault:
            keys = workflow.generate(
                runtime.engine,
                vault,
                Actor("mot-root-1", frozenset({"ministry-root-officer"})),
                application.id or 0,
                now=now,
            )
        yield Generated(client, runtime, province_site, city_site, keys, application.id or 0)
