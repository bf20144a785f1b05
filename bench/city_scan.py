"""Scanning 100,000 city keys for what needs an officer, against a bare SQL count.

Fills a fresh database with N city keys (spread over the registry's cities, both classes,
every lifecycle state, delivery and expiry dates over ten years, some with open violations),
then times, in the same run and on the same table:

- bare: ``SELECT count(*) FROM city_key`` (baseline);
- the officers' queries, as ``ca.citykeys.queries`` runs them: expiring within 90 days,
  dormant, suspended, open violations — each a count, and each a full fetch of the rows;
- the dashboard: ``queries.summary`` (its counts and one count per state).

Prints each rate and its ratio against the bare count, on SQLite (the embedded default) and,
with --postgres URL, on PostgreSQL.

    python bench/city_scan.py [--keys 100000] [--seconds 2] [--postgres postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from timing import rate

from ca.citykeys import queries
from ca.citykeys.expiry import DAY
from ca.citykeys.lifecycle import KeyState
from ca.registry.divisions import default_divisions
from ca.store.db import make_engine, migrate
from ca.store.models import CityKey

NOW = 1_795_000_000  # 2026-11-18


def fill(engine: Engine, count: int) -> None:
    rng = random.Random(20261125)  # noqa: S311 - test data, the same table every run
    cities = [d for d in default_divisions().by_code.values() if d.is_city]
    states = [s.value for s in KeyState]
    weights = [10, 70, 3, 10, 4, 3]
    rows = []
    for i in range(count):
        city = cities[i % len(cities)]
        key_class = "city-card" if i % 2 else "city-qr"
        created = NOW - rng.randrange(0, 5 * 365) * DAY
        state = rng.choices(states, weights)[0]
        delivered = created + rng.randrange(0, 30) * DAY if rng.random() < 0.9 else None
        rows.append(
            {
                "label": f"{key_class}-{city.code}-g{i // (2 * len(cities)) + 1}-{i}",
                "city": city.code,
                "province": city.province,
                "key_class": key_class,
                "kind": "sm4" if key_class == "city-card" else "sm2",
                "generation": i // (2 * len(cities)) + 1,
                "ministry_uri": f"pkcs11:token=BENCH;object=k{i};type=secret-key",
                "state": state,
                "stage": "installed",
                "created_at": created,
                "created_by": "bench",
                "not_before": created,
                "not_after": created + 1825 * DAY,
                "delivered_at": delivered,
                "state_changed_at": created,
                "reason": "",
                "open_violations": 1 if rng.random() < 0.005 else 0,
            }
        )
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            table = CityKey.__table__  # type: ignore[attr-defined]
            conn.execute(sa.insert(table), rows[start : start + 5000])


def run(name: str, engine: Engine, count: int, seconds: float) -> None:
    migrate(engine)
    started = time.perf_counter()
    fill(engine, count)
    print(f"\n{name}: {count} keys loaded in {time.perf_counter() - started:.1f}s")
    with Session(engine) as session:

        def bare() -> int:
            return int(session.exec(select(func.count()).select_from(CityKey)).one())

        assert bare() == count
        baseline = rate(bare, seconds)
        print(f"  bare SELECT count(*)            {baseline:10.1f}/s  (baseline)")
        checks = {
            "expiring within 90 days": queries.KeyFilter(expiring_days=90),
            "dormant": queries.KeyFilter(dormant=True),
            "suspended": queries.KeyFilter(suspended=True),
            "open violations": queries.KeyFilter(violations=True),
        }
        for label, chosen in checks.items():
            found = queries.count_keys(session, chosen, now=NOW)
            counted = rate(lambda c=chosen: queries.count_keys(session, c, now=NOW), seconds)
            fetched = rate(lambda c=chosen: queries.find_keys(session, c, now=NOW), seconds)
            print(
                f"  {label:<30} {counted:10.1f}/s  ratio {counted / baseline:6.3f}   "
                f"fetch {found:>6} rows {fetched:8.1f}/s  ratio {fetched / baseline:6.3f}"
            )
        dashboard = rate(lambda: queries.summary(session, now=NOW), seconds)
        print(
            f"  dashboard summary              {dashboard:10.1f}/s  "
            f"ratio {dashboard / baseline:6.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a fresh database is made)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        run("SQLite", engine, args.keys, args.seconds)
        engine.dispose()
    if args.postgres:
        from issue_interop import fresh_postgres_database

        url = fresh_postgres_database(args.postgres)
        engine = make_engine(url)
        try:
            run("PostgreSQL", engine, args.keys, args.seconds)
        finally:
            engine.dispose()
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
            admin.dispose()


if __name__ == "__main__":
    main()
