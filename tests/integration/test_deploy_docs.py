"""docs/deploy.md run as far as a machine allows (issue #16, point 5): the blocks marked
``<!-- deploy-test: NAME -->`` run verbatim in bash — the host's folders under a --root prefix,
the TLS certificate with OpenSSL, the restore procedure (``sudo -u postgres`` dropped, psql and
pg_restore pointed at a PostgreSQL of the test's own) on a dump of a migrated jtca database;
every file the page links exists; the jtca commands it shows parse."""

from __future__ import annotations

import os
import re
import shlex
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from pg_cluster import ROOT, cluster, pg_bin

from ca.api.server import build_parser as build_server_parser
from ca.cli.main import build_parser

DOC = ROOT / "docs" / "deploy.md"
JTCA = str(Path(sys.executable).with_name("jtca"))


def block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- deploy-test: {name} -->\n```sh\n(.*?)```", text, re.S)
    assert found, f"docs/deploy.md has no block {name}"
    return found.group(1)


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_setup_host_makes_the_folders_with_their_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = dict(os.environ, ROOT=str(root))
    run(block("setup-host"), env)
    run(block("setup-host"), env)  # again: nothing changes, nothing fails
    recorded = {}
    for line in (root / ".jtca-owners").read_text(encoding="utf-8").splitlines():
        path, owner, group, mode = line.split()
        recorded[path] = (owner, group, mode)
        assert stat.S_IMODE((root / path.lstrip("/")).stat().st_mode) == int(mode, 8), path
    assert recorded["/var/lib/jtca/state"] == ("jtca", "jtca", "0700")
    assert recorded["/etc/jtca/jtca.env"] == ("root", "jtca", "0640")
    env_file = (root / "etc/jtca/jtca.env").read_text(encoding="utf-8")
    assert "JTCA_DATABASE_URL=postgresql+psycopg://jtca_service@" in env_file
    # every folder the table of the page lists is one the script makes, with that mode
    table = re.findall(r"^\| `(/[^`]+)` \| (\w+):(\w+) \| (0\d{3}) \|", DOC.read_text(), re.M)
    assert table
    for path, owner, group, mode in table:
        assert recorded[path] == (owner, group, mode), path


def test_tls_certificate_commands(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    run(block("tls"), dict(os.environ, TLS=str(tls)))
    assert stat.S_IMODE((tls / "server-key.pem").stat().st_mode) == 0o640
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tls / "server.pem", tls / "server-key.pem")  # a matching pair
    text = subprocess.run(
        ["openssl", "x509", "-in", str(tls / "server.pem"), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "prime256v1" in text or "P-256" in text
    assert "DNS:jtca.ministry.internal" in text


def test_restore_procedure_on_a_fresh_server(tmp_path: Path) -> None:
    with cluster() as pg:
        # a dump of a migrated jtca database (the drill makes one of a real service)
        pg.psql("-c", "create database source")
        migrated = subprocess.run(
            [JTCA, "db", "upgrade"],
            env=dict(
                os.environ,
                JTCA_STATE=str(tmp_path / "state"),
                JTCA_DATABASE_URL=pg.url("jtca", "source"),
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrated.returncode == 0, migrated.stderr
        dump = tmp_path / "jtca-DATE.dump"
        subprocess.run(
            [pg_bin("pg_dump"), "-Fc", "-f", str(dump), "-d", pg.dsn(database="source")],
            check=True,
            timeout=300,
        )
        script = block("restore").replace("sudo -u postgres ", "")
        script = script.replace("/opt/jtca/", f"{ROOT}/")
        env = dict(
            os.environ,
            PGHOST="127.0.0.1",
            PGPORT=str(pg.port),
            PGUSER="jtca",
            PGDATABASE="postgres",
            PATH=f"{Path(pg_bin('psql')).parent}:{os.environ['PATH']}",
        )
        run(f"cd {shlex.quote(str(tmp_path))}\n{script}", env)
        tables = pg.psql(
            "-Atc", "select tableowner from pg_tables where schemaname = 'public'", database="jtca"
        ).split()
        assert len(tables) > 10
        assert set(tables) == {"jtca_owner"}
        with psycopg.connect(pg.dsn("jtca_service", "jtca"), autocommit=True) as db:
            assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
            db.execute("update alembic_version set version_num = version_num")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("drop table alembic_version")


def test_links_and_commands_of_the_page() -> None:
    text = DOC.read_text(encoding="utf-8")
    for link in re.findall(r"\]\((deploy/[^)#]+)\)", text):
        assert (DOC.parent / link).is_file(), link
    for name in ("requirements.lock", "requirements-headless.lock"):
        assert name in text
        assert (ROOT / name).is_file()
    commands = re.findall(r"jtca ((?:db|audit) [a-z]+(?: --[a-z-]+ [^ `]+)*)", text)
    assert commands
    for words in commands:
        if "--" not in words and words != "db upgrade":
            continue  # named in passing; its arguments are on its own page
        argv = shlex.split(words)
        parser = build_server_parser() if argv[0] == "db" else build_parser()
        parser.parse_args(argv)
