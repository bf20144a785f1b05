"""The root ceremony cut by SIGKILL (issue #14), through the real console script: a state folder
made by ``jtca init``, the ceremony's token made (``jtca ceremony init-token``), then ``jtca
ceremony run`` with ``JTCA_CRASH_AT`` set, so the embedded service that runs it dies at one of
its crash points. The next command starts the service again, which recovers the ceremony:

- cut before its records committed, it is rolled back: no key of it is left in MOT-LOG (the
  service's log token) or in the root token — a root token the ceremony had started to fill is
  removed, and its custodians make it again — and the ceremony runs again from the start;
- cut after, it is rolled forward: the trust anchors and the transcript are written from the
  records, and a rerun is refused as 'already run'.

Either way the intent is settled and audited (``intent.recover``), the audit log verifies, and
every key in the tokens is a recorded one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cli_desks import share_args, write_shares

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")
PROBE = Path(__file__).resolve().parents[1] / "crash" / "probe.py"
WITNESS = "赵六 (公证员)"
ROOT_KEYS = ["mot-list-signing-2026", "mot-qr-ca-1", "mot-root-2026"]


class Authority:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.env = dict(os.environ, JTCA_STATE=str(self.state))
        for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
            self.env.pop(variable, None)
        for variable in ("JTCA_CRASH_AT", "JTCA_CRASH_TRACE"):
            self.env.pop(variable, None)
        self.env["XDG_CONFIG_HOME"] = str(tmp / "config")
        self.env["XDG_STATE_HOME"] = str(tmp / "xdg-state")
        self.shares: list[Path] = []
        self.rounds = 0

    def jtca(self, *args: str, crash: str | None = None, ok: bool = True) -> Any:
        env = dict(self.env)
        if crash is not None:
            self.stop()  # the service this command starts carries the crash point
            env["JTCA_CRASH_AT"] = crash
        result = subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, (args, result.stderr)
        return result

    def stop(self) -> None:
        self.jtca("service", "stop")

    def init_token(self) -> None:
        made = json.loads(self.jtca("ceremony", "init-token", EXAMPLE, "--json").stdout)
        self.rounds += 1
        shares = [s["share"] for s in made["pin_shares"]][:2]
        self.shares = write_shares(self.tmp / f"custodians-{self.rounds}", shares)

    def run(self, crash: str | None = None, ok: bool = True) -> Any:
        return self.jtca(
            "ceremony", "run", EXAMPLE, *share_args(self.shares), "--witness", WITNESS, "--json",
            crash=crash, ok=ok and crash is None,
        )  # fmt: skip

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(f"file:{self.state / 'jtca.db'}?mode=ro", uri=True)) as db:
            return list(db.execute(sql).fetchall())

    def tokens(self) -> list[str]:
        labels: list[str] = json.loads(self.jtca("token", "list", "--json").stdout)["tokens"]
        return labels

    def log_keys(self) -> set[tuple[str, str]]:
        """(label, id hex) of every key in MOT-LOG (the tokens with PIN files), service down."""
        self.stop()
        done = subprocess.run(
            [sys.executable, str(PROBE), str(self.state)],
            capture_output=True,
            text=True,
            env=dict(self.env, SOFTHSM2_CONF=str(self.state / "softhsm2" / "softhsm2.conf")),
            check=True,
            timeout=120,
        )
        rows = json.loads(done.stdout).get("MOT-LOG", [])
        return {(r[0], r[1]) for r in rows}

    def root_keys(self) -> list[tuple[str, str]]:
        """(label, id hex) of every key in MOT-ROOT, opened with the custodians' quorum."""
        self.stop()
        code = (
            "import json, sys\n"
            "from pathlib import Path\n"
            "from hsm.pkcs11.softhsm2 import use_softhsm\n"
            "from hsm.pkcs11.keys import KeyStore\n"
            "from hsm.pkcs11.token import QuorumPin, Token\n"
            "use_softhsm(Path(sys.argv[1]) / 'softhsm2')\n"
            "shares = [Path(p).read_text().strip() for p in sys.argv[2:]]\n"
            "with Token('MOT-ROOT', QuorumPin(shares)) as token:\n"
            "    keys = KeyStore(token).list_keys()\n"
            "print(json.dumps(sorted([k.label, k.key_id.hex()] for k in keys)))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(self.state), *map(str, self.shares)],
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=120,
        )
        return [tuple(r) for r in json.loads(done.stdout)]  # type: ignore[misc]

    def recorded(self, token: str) -> set[tuple[str, str]]:
        from hsm.pkcs11.uri import Pkcs11Uri

        found = set()
        for (uri,) in self.query("select uri from key_record"):
            parsed = Pkcs11Uri.parse(uri)
            if parsed.token == token:
                found.add((parsed.object or "", (parsed.id or b"").hex()))
        return found

    def intents(self) -> list[tuple[str, str, str]]:
        return [
            (str(r[0]), str(r[1]), str(r[2] or ""))
            for r in self.query(
                "select state, outcome, progress from intent where operation = 'ceremony.run' "
                "order by id"
            )
        ]


@pytest.fixture
def authority(tmp_path: Path) -> Any:
    made = Authority(tmp_path)
    made.jtca("init")
    made.init_token()
    try:
        yield made
    finally:
        made.jtca("service", "stop", ok=False)


def _the_keys_are_the_records(authority: Authority) -> None:
    assert authority.log_keys() == authority.recorded("MOT-LOG")
    if "MOT-ROOT" in authority.tokens():
        assert set(authority.root_keys()) == authority.recorded("MOT-ROOT")


def _audit_verifies(authority: Authority) -> None:
    report = json.loads(authority.jtca("audit", "verify", "--json").stdout)
    assert not report.get("findings"), report


BEFORE_RECORDS = [
    "ceremony.run:after-intent",
    "ceremony.run:before-key",
    "ceremony.run:after-key",
    "ceremony.run:after-key:3",
    "ceremony.run:after-key:4",  # the audit key in MOT-LOG
    "ceremony.run:before-record",
]
AFTER_RECORDS = [
    "ceremony.run:after-record",
    "ceremony.run:before-file",
    "ceremony.run:after-file:2",
    "ceremony.run:after-files",
]


@pytest.mark.parametrize("crash", BEFORE_RECORDS)
def test_a_ceremony_cut_before_its_records_is_rolled_back_and_runs_again(
    authority: Authority, crash: str
) -> None:
    cut = authority.run(crash=crash)
    assert cut.returncode != 0
    assert authority.query("select count(*) from intent where state = 'open'") == [(1,)]
    authority.jtca("service", "status")  # the service starts again: recovery at start
    (intent,) = authority.intents()
    state, outcome, progress = intent
    assert state == "rolled-back", outcome
    assert authority.query("select count(*) from ceremony_run") == [(0,)]
    assert authority.query("select count(*) from key_record") == [(0,)]
    assert authority.log_keys() == set()  # no audit key without its record
    touched = "MOT-ROOT" in json.loads(progress or "{}").get("tokens_touched", [])
    if touched:
        assert "MOT-ROOT" not in authority.tokens(), outcome  # removed: it held only this
        assert "jtca ceremony init-token" in outcome
        authority.init_token()
    else:
        assert "MOT-ROOT" in authority.tokens()
        assert authority.root_keys() == []
    recovered = authority.query("select details from audit_event where action = 'intent.recover'")
    assert len(recovered) == 1
    assert json.loads(recovered[0][0])["result"] == "rolled-back"

    done = json.loads(authority.run().stdout)  # from the start, no 'Duplicate key label'
    assert sorted(k["label"] for k in done["keys"] if k["class"] != "audit") == ROOT_KEYS
    _the_keys_are_the_records(authority)
    assert Path(done["transcript"]).is_file()
    assert authority.intents()[-1][0] == "completed"
    _audit_verifies(authority)


@pytest.mark.parametrize("crash", AFTER_RECORDS)
def test_a_ceremony_cut_after_its_records_is_rolled_forward(
    authority: Authority, crash: str
) -> None:
    cut = authority.run(crash=crash)
    assert cut.returncode != 0
    authority.jtca("service", "status")
    (intent,) = authority.intents()
    assert intent[0] == "rolled-forward", intent
    (serials,) = authority.query(
        "select group_concat(role || '-' || serial, ',') from certificate "
        "where role in ('root', 'audit')"
    )
    ceremonies = authority.state / "ceremonies"
    names = sorted(p.name for p in ceremonies.iterdir())
    expected = sorted(f"{s}.pem" for s in str(serials[0]).split(","))
    assert [n for n in names if n.startswith(("root-", "audit-"))] == expected
    (transcript,) = [n for n in names if n.endswith(".json")]
    stem = transcript.removesuffix(".json")
    assert f"{stem}-root.pem" in names  # the command line's copies
    assert f"{stem}-audit.pem" in names
    data = json.loads((ceremonies / transcript).read_text())
    (file_sha256,) = authority.query("select file_sha256 from ceremony_run")[0]
    assert data["transcript"]["file_sha256"] == file_sha256
    assert not [n for n in names if n.endswith(".tmp")]
    _the_keys_are_the_records(authority)
    again = authority.run(ok=False)
    assert again.returncode != 0
    assert "has already run" in again.stderr
    _audit_verifies(authority)
