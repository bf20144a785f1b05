"""Migration 0013 (issue #15, point 2): a holder's transport keys become two key pairs, on
SQLite and PostgreSQL. A database at revision 0012 whose rows each hold one key that signed and
decrypted upgrades with every row marked ``legacy`` (its one key in ``uri``/``public_key``, no
signing half): still read — its one key is the key its packages verify against — and refused
for a new package, naming the holder. A new row holds both halves, each unique; the downgrade
drops the signing half again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from db_fixtures import postgres_server_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca.citykeys.common import CityKeyError
from ca.citykeys.workflow import dual
from ca.store.db import alembic_config, make_engine, migrate
from ca.store.models import TransportKey
from ca.store.schema import check_schema
from hsm.signer import SoftwareSigner

T0 = 1_780_000_000


@contextmanager
def database_at_0012(kind: str, folder: Path) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{folder / 'jtca.db'}")
        migrate(engine, "0012")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    server = postgres_server_url()
    name = f"jtca_mig13_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.rsplit("/", 1)[0] + "/" + name)
    migrate(engine, "0012")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database_at_0012(request.param, tmp_path) as engine:
        assert check_schema(engine).current == "0012"
        yield engine


def point() -> str:
    return SoftwareSigner.generate().public_key.compressed.hex()


def columns(engine: Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("transport_key")}


def test_old_rows_become_legacy_and_new_rows_hold_both_halves(old_database: Engine) -> None:
    engine = old_database
    old = {"ministry": point(), "440000": point()}
    with engine.begin() as conn:  # the rows as the jtca before issue #15 wrote them
        for holder, public_key in old.items():
            conn.execute(
                sa.text(
                    "INSERT INTO transport_key (holder, token, uri, public_key, status, "
                    "created_at, created_by) VALUES (:h, :t, :u, :p, 'active', :at, 'mot-root-1')"
                ),
                {
                    "h": holder,
                    "t": f"T-{holder}",
                    "u": f"pkcs11:token=T-{holder};object=transport-{holder}-20260101000000",
                    "p": public_key,
                    "at": T0,
                },
            )
    assert not {"sign_uri", "sign_public_key", "legacy"} & columns(engine)
    migrate(engine)
    assert check_schema(engine).current_is_head
    assert {"sign_uri", "sign_public_key", "legacy"} <= columns(engine)
    with Session(engine) as session:
        rows = {r.holder: r for r in session.exec(select(TransportKey))}
    assert set(rows) == set(old)
    for holder, row in rows.items():
        # read as before: its one key is the key its packages verify against and open with
        assert (row.legacy, row.sign_uri, row.sign_public_key) == (True, None, None)
        assert row.public_key == old[holder]
        assert row.signing_public_key == old[holder]
        with pytest.raises(CityKeyError, match="legacy key that both signs") as refused:
            dual(row, role="sign")
        who = "the ministry" if holder == "ministry" else holder
        assert f"transport key of {who}" in refused.value.message
        assert f"--holder {holder} --token T-{holder}" in refused.value.message
    # a new row: both halves, apart, each unique
    sign, enc = point(), point()
    with Session(engine) as session:
        session.add(
            TransportKey(
                holder="440000",
                token="GD",  # noqa: S106 - a token label
                uri="pkcs11:token=GD;object=transport-440000-enc-1",
                public_key=enc,
                sign_uri="pkcs11:token=GD;object=transport-440000-sign-1",
                sign_public_key=sign,
                created_at=T0 + 1,
                created_by="gd-1",
            )
        )
        session.commit()
    with Session(engine) as session:
        new = session.exec(select(TransportKey).where(col(TransportKey.public_key) == enc)).one()
        assert (new.legacy, new.sign_public_key, dual(new, role="sign").signing_public_key) == (
            False,
            sign,
            sign,
        )
    with Session(engine) as session:
        session.add(
            TransportKey(
                holder="440100",
                token="GZ",  # noqa: S106 - a token label
                uri="pkcs11:token=GZ;object=transport-440100-enc-1",
                public_key=point(),
                sign_uri="pkcs11:token=GZ;object=transport-440100-sign-1",
                sign_public_key=sign,  # the province's signing key again
                created_at=T0 + 2,
                created_by="gd-1",
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()
    # and back: the signing half is dropped, the rows stay
    command.downgrade(alembic_config(engine), "0012")
    assert not {"sign_uri", "sign_public_key", "legacy"} & columns(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM transport_key")).scalar_one() == 3
    migrate(engine)
    with Session(engine) as session:
        assert {r.legacy for r in session.exec(select(TransportKey))} == {True}
