"""The restore drill of docs/deploy.md (issue #16, point 5): a real service's PostgreSQL
database (the demo seeded it: root ceremony, officers, city keys, an interop certificate,
published lists; a registered witness cosigned its newest checkpoint) dumped with pg_dump, its
tokens and checkpoints backed up; the server lost; the dump restored with pg_restore into a
FRESH PostgreSQL server and the tokens from their backup; then the audit log verifies against
the checkpoints kept outside the database and the witness's cosigned copy, issuing continues
(every list signed again) and no serial or sequence number is reused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from pg_cluster import cluster, pg_bin

from hsm.custody import combine_secret

JTCA = str(Path(sys.executable).with_name("jtca"))


def jtca(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JTCA, *args], env=env, capture_output=True, text=True, timeout=600)


def numbers(pg, query: str) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    out = pg.psql("-At", "-F", "|", "-c", query, database="jtca")
    return [tuple(line.split("|")) for line in out.splitlines() if line]


LISTS = "select list_type, max(sequence) from list_version group by list_type order by 1"
SERIALS = "select coalesce(max(serial), 0) from interop_certificate"
COUNTERS = "select ca_key, next_serial from serial_counter order by 1"


def witnessed(env: dict[str, str], state: Path, tmp_path: Path) -> Path:
    """A witness (its key in its own SoftHSM2 token, its folder outside the state), registered
    by the demo's root officer mot-root-1, cosigns the newest checkpoint: the folder it keeps is
    the witnessed checkpoint the restored log must verify against."""
    data = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
    root_officer = next(o for o in data["officers"] if o["id"] == "mot-root-1")
    env.update(OFFICER_PIN=root_officer["pin"], WITNESS_PIN="pin-of-the-drill-witness")
    signed = jtca(env, "login", "--officer", "mot-root-1", "--pin-source", "env:OFFICER_PIN")
    assert signed.returncode == 0, signed.stderr
    folder, name = tmp_path / "witness", "witness.drill.example/jtca"
    (audit_pem,) = (state / "ceremonies").glob("audit-*.pem")
    (root_pem,) = (state / "ceremonies").glob("root-*.pem")
    made = jtca(
        env, "witness", "init", "--name", name, "--dir", str(folder), "--audit-cert",
        str(audit_pem), "--root-cert", str(root_pem), "--create-token", "--pin-source",
        "env:WITNESS_PIN", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["public_key"]
    registered = jtca(env, "witness", "register", "--name", name, "--public-key", key)
    assert registered.returncode == 0, registered.stderr
    cosigned = jtca(
        env, "witness", "cosign", "--dir", str(folder), "--pin-source", "env:WITNESS_PIN", "--json"
    )
    assert cosigned.returncode == 0, cosigned.stderr
    assert json.loads(cosigned.stdout)["witnessed"] is True
    return folder


def test_restore_into_a_fresh_server(tmp_path: Path) -> None:
    state = tmp_path / "state"
    backups = tmp_path / "backups"
    backups.mkdir()
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    env["XDG_STATE_HOME"] = str(tmp_path / "desk")  # the officer's session file
    env["HOME"] = str(tmp_path / "home")

    with contextlib.ExitStack() as lost:
        old = lost.enter_context(cluster())
        old.psql("-c", "create database jtca")
        env["JTCA_DATABASE_URL"] = old.url("jtca", "jtca")
        made = jtca(env, "demo", "--no-console")
        assert made.returncode == 0, made.stderr
        witness = witnessed(env, state, tmp_path)
        stopped = jtca(env, "service", "stop")
        assert stopped.returncode == 0, stopped.stderr
        before_lists = numbers(old, LISTS)
        before_serial = int(numbers(old, SERIALS)[0][0])
        assert len(before_lists) == 3
        assert before_serial >= 1  # the demo's interop certificate

        # the backup (docs/deploy.md "Backup"): the database, the tokens, the checkpoints
        dump = backups / "jtca.dump"
        done = subprocess.run(
            [pg_bin("pg_dump"), "-Fc", "-f", str(dump), "-d", old.dsn(database="jtca")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        with tarfile.open(backups / "tokens.tar", "w") as tar:
            tar.add(state / "softhsm2", arcname="softhsm2")
        shutil.copytree(state / "log", backups / "log")
    # the old server is gone (stopped and its data folder removed); so are the token files
    shutil.rmtree(state / "softhsm2")

    with cluster() as fresh:
        fresh.psql("-c", "create database jtca")
        restored = subprocess.run(
            [
                pg_bin("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "-d",
                fresh.dsn(database="jtca"),
                str(dump),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert restored.returncode == 0, restored.stderr
        with tarfile.open(backups / "tokens.tar") as tar:
            tar.extractall(state, filter="data")
        env["JTCA_DATABASE_URL"] = fresh.url("jtca", "jtca")
        try:
            # the log verifies against the checkpoints kept outside the database
            verified = jtca(
                env, "audit", "verify", "--checkpoint", str(backups / "log"),
                "--witness-dir", str(witness),
            )  # fmt: skip
            assert verified.returncode == 0, verified.stderr + verified.stdout

            # issuing continues: the publisher signs every list again, with new numbers
            data = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
            pin = tmp_path / "list.pin"
            pin.write_bytes(combine_secret([str(s) for s in data["root_token_shares"]]))
            officer = next(o for o in data["officers"] if o["id"] == "publisher-1")
            officer_pin = tmp_path / "officer.pin"
            officer_pin.write_text(officer["pin"], encoding="utf-8")
            ran = jtca(
                env,
                "publish",
                "--officer",
                "publisher-1",
                "--officer-token",
                officer["token_label"],
                "--officer-pin-source",
                f"file:{officer_pin}",
                "--pin-source",
                f"file:{pin}",
                "--validity-hours",
                "48",
                "--refresh-hours",
                "47",
                "--json",
            )
            assert ran.returncode == 0, ran.stderr
            after_lists = numbers(fresh, LISTS)
            assert [t for t, _ in after_lists] == [t for t, _ in before_lists]
            for (_, was), (_, now) in zip(before_lists, after_lists, strict=True):
                assert int(now) == int(was) + 1  # the next number, none reused
            # the next interop serial is past every one issued before the loss
            for _, next_serial in numbers(fresh, COUNTERS):
                assert int(next_serial) > before_serial
            again = jtca(env, "audit", "verify", "--checkpoint", str(backups / "log"))
            assert again.returncode == 0, again.stderr + again.stdout
        finally:
            jtca(env, "service", "stop")
