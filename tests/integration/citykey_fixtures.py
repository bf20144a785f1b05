"""A world for the city key tests: a ministry, Guangdong (440000) and Guangzhou (440100), each
with its own SoftHSM2 token and transport key, and the officers of the default policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from ca.citykeys import workflow
from ca.citykeys.applications import apply, decide_application
from ca.store.models import CityKey
from hsm.pkcs11.keys import KeyStore
from policies.rules import Actor

T0 = 1_790_000_000  # 2026-09-21T13:33:20Z
DAY = 86400

ROOT1 = Actor("mot-root-1", frozenset({"ministry-root-officer"}))
ROOT2 = Actor("mot-root-2", frozenset({"ministry-root-officer"}))
ROOT3 = Actor("mot-root-3", frozenset({"ministry-root-officer"}))
OP1 = Actor("ca-op-1", frozenset({"ministry-ca-operator"}))
OP2 = Actor("ca-op-2", frozenset({"ministry-ca-operator"}))
GD1 = Actor("gd-1", frozenset({"provincial-officer"}), "440000")
GD2 = Actor("gd-2", frozenset({"provincial-officer"}), "440000")
FJ1 = Actor("fj-1", frozenset({"provincial-officer"}), "350000")


@dataclass
class DictVault:
    stores: dict[str, KeyStore] = field(default_factory=dict)

    def store(self, token_label: str) -> KeyStore:
        return self.stores[token_label]


@dataclass
class World:
    engine: Engine
    vault: DictVault
    ministry: str
    province: str
    city: str

    def store(self, holder: str) -> KeyStore:
        return self.vault.store(
            {"ministry": self.ministry, "440000": self.province, "440100": self.city}[holder]
        )


def make_world(engine: Engine, new_token: Any) -> World:
    vault = DictVault()
    labels = []
    for prefix in ("MOT", "GD", "GZ"):
        token, store, _ = new_token(prefix)
        vault.stores[token.label] = store
        labels.append(token.label)
    world = World(engine, vault, *labels)
    workflow.register_transport_key(
        engine, vault, ROOT1, holder="ministry", token=labels[0], now=T0
    )
    workflow.register_transport_key(engine, vault, GD1, holder="440000", token=labels[1], now=T0)
    workflow.register_transport_key(engine, vault, GD1, holder="440100", token=labels[2], now=T0)
    return world


def generated(world: World, cities: list[str], now: int = T0) -> list[CityKey]:
    application = apply(world.engine, GD1, cities, now)
    assert application.id is not None
    decide_application(world.engine, OP1, application.id, approve=True, now=now)
    return workflow.generate(world.engine, world.vault, ROOT1, application.id, now=now)


def installed(world: World, tmp_path: Any, now: int = T0) -> list[CityKey]:
    """Guangzhou's key set, delivered to Guangdong, imported, handed on and installed."""
    keys = generated(world, ["440100"], now)
    ids = [k.id for k in keys if k.id is not None]
    for delivery in workflow.deliver(
        world.engine, world.vault, ROOT1, ids, out_dir=tmp_path / "p1", now=now
    ):
        workflow.import_package(world.engine, world.vault, GD1, delivery.path.read_bytes(), now=now)
    for delivery in workflow.deliver(
        world.engine, world.vault, GD1, ids, out_dir=tmp_path / "p2", now=now
    ):
        workflow.import_package(world.engine, world.vault, GD2, delivery.path.read_bytes(), now=now)
    return keys
