"""PostgreSQL with two roles (issue #16, point 5): docs/deploy/postgres-roles.sql run verbatim
on a server of the test's own; the owner runs jtca's migrations; the service's login reads and
writes the tables and opens the service's runtime, but cannot CREATE, ALTER or DROP anything,
nor run the migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from pg_cluster import ROOT, cluster

from ca.service.runtime import open_runtime

SQL = ROOT / "docs" / "deploy" / "postgres-roles.sql"
JTCA = str(Path(sys.executable).with_name("jtca"))


def test_the_service_login_has_no_ddl_and_the_owner_migrates(tmp_path: Path) -> None:
    with cluster() as pg:
        pg.psql("-f", str(SQL))
        owner, service = pg.url("jtca_owner", "jtca"), pg.url("jtca_service", "jtca")
        env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"), JTCA_DATABASE_URL=service)
        # the service's login cannot run the migrations (they create tables)
        refused = subprocess.run(
            [JTCA, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300
        )
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        # the owner can, as docs/deploy.md says
        upgraded = subprocess.run(
            [JTCA, "db", "upgrade"],
            env=dict(env, JTCA_DATABASE_URL=owner),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert upgraded.returncode == 0, upgraded.stderr
        tables = pg.psql(
            "-Atc",
            "select tablename, tableowner from pg_tables where schemaname = 'public'",
            database="jtca",
        ).split()
        assert len(tables) > 10
        assert all(t.endswith("|jtca_owner") for t in tables)

        # the service opens its runtime on the migrated schema (migrate="check", as jtca serve)
        runtime = open_runtime(tmp_path / "state", url=service, migrate="check")
        runtime.close()

        with psycopg.connect(pg.dsn("jtca_service", "jtca"), autocommit=True) as db:
            # reads and writes rows
            db.execute("select count(*) from alembic_version").fetchone()
            for ddl in (
                "create table intruder (x int)",
                "alter table alembic_version add column intruder int",
                "drop table alembic_version",
                "create index intruder on alembic_version (version_num)",
                "create schema intruder",
                "truncate alembic_version",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    db.execute(ddl)
            row = db.execute("select version_num from alembic_version").fetchone()
            assert row is not None
            db.execute("update alembic_version set version_num = version_num")
        with psycopg.connect(pg.dsn("jtca_owner", "jtca"), autocommit=True) as db:
            db.execute("create table owner_probe (x int)")  # the owner may
            db.execute("drop table owner_probe")
