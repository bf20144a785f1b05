"""Issue #5 through the real console script on SQLite and PostgreSQL: officers registered by
the root ceremony or enrolled under its custodians' quorum, each with their own token and
signed in at their own desk (issue #12); a province applies, the ministry approves and
generates; packages go ministry → province → city into three SoftHSM2 tokens; a usage report
with a bad row and a scope violation; suspension under dual control; the report files; a
verified audit log. Errors are one line with a title, never a traceback. The commands are
clients of the embedded service that `jtca init` starts on the state folder (with the same
database URL); the test stops it at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_desks import PIN_SOURCE, Desks, share_args, write_shares
from PIL import Image

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")


def client_env(url: str, tmp_path: Path) -> dict[str, str]:
    """A client of the embedded service on ``tmp_path/state`` with the database ``url`` (no
    configured service, no user's configuration, no SoftHSM2 of the caller's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("JTCA_URL", "JTCA_SERVER_CERT")}
    env.update(
        JTCA_STATE=str(tmp_path / "state"),
        JTCA_DATABASE_URL=url,
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    env.pop("SOFTHSM2_CONF", None)
    return env


@contextmanager
def cli_service(kind: str, url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The commands' environment, on a fresh state folder and the database ``url``:

    - ``embedded``: `jtca init`, whose embedded service (Unix socket) is stopped afterwards;
    - ``tls``: a real `jtca serve` on loopback over TLS 1.3, the client pinning its self-made
      certificate with JTCA_URL and JTCA_SERVER_CERT and holding no database URL; the state
      folder is then only the sites' and the officers' tokens for the client.
    """
    env = client_env(url, tmp_path)
    if kind == "embedded":
        run = [JTCA, "init"], [JTCA, "service", "stop"]
        made = subprocess.run(run[0], capture_output=True, text=True, env=env, timeout=120)
        assert made.returncode == 0, made.stderr
        try:
            yield env
        finally:
            subprocess.run(run[1], capture_output=True, text=True, env=env, timeout=60, check=False)
        return
    from test_service import clean_env, start_serve, stop_serve

    state = tmp_path / "state"
    server_env = clean_env(JTCA_DATABASE_URL=url)
    upgraded = subprocess.run(
        [JTCA, "db", "upgrade", "--state", str(state)],
        capture_output=True, text=True, env=server_env, timeout=120, check=False,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    served = start_serve(state, server_env)
    try:
        client = served.client_env(JTCA_STATE=str(state), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        assert "JTCA_DATABASE_URL" not in client
        yield client
    finally:
        stop_serve(served)


@pytest.fixture(params=["embedded", "tls"])
def env(request: pytest.FixtureRequest, database: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The commands' environment (``cli_service``) on a database of each kind."""
    url, _ = database
    with cli_service(request.param, url, tmp_path) as made:
        yield made


def test_city_key_path_through_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    desks = Desks(env, tmp_path / "desks", cwd=tmp_path)  # files written by default stay here

    def jtca(*args: str, officer: str | None = None, ok: bool = True) -> Any:
        return desks.jtca(*args, officer=officer, ok=ok)

    def data(*args: str, officer: str | None = None) -> Any:
        return desks.data(*args, officer=officer)

    shares = data("ceremony", "init-token", EXAMPLE)["pin_shares"]
    custodians = write_shares(tmp_path / "custodians", [s["share"] for s in shares[:2]])
    jtca("ceremony", "run", EXAMPLE, *share_args(custodians), "--witness", "赵六 (公证员)")
    # every officer's own token, enrolled under the custodians' quorum, signed in at their desk
    desks.bootstrap(
        [
            ("mot-root-1", None, None),  # registered by the ceremony
            ("ca-op-1", None, None),
            ("gd-1", "provincial-officer", "440000"),
            ("gd-2", "provincial-officer", "440000"),
            ("fj-1", "provincial-officer", "350000"),
        ],
        custodians,
    )

    jtca("city", "transport-key", "--holder", "ministry", "--token", "MOT-KEYS",
         officer="mot-root-1")  # fmt: skip
    jtca("city", "transport-key", "--holder", "440000", "--token", "GD-KEYS", officer="gd-1")
    jtca("city", "transport-key", "--holder", "440100", "--token", "GZ-KEYS", officer="gd-1")
    other = jtca("city", "apply", "--city", "350100", officer="gd-1", ok=False)
    assert other.returncode == 6
    assert other.stderr.startswith("jtca: Not allowed by policy: deny/other-province")

    application = data("city", "apply", "--city", "440100", officer="gd-1")["application"]
    own = jtca("city", "approve", "--application", str(application), *PIN_SOURCE,
               officer="gd-1", ok=False)  # fmt: skip
    assert own.returncode == 6
    assert "dual control" in own.stderr
    approved = data("city", "approve", "--application", str(application), *PIN_SOURCE,
                    officer="ca-op-1")  # fmt: skip
    assert approved["state"] == "approved"
    keys = data("city", "generate", str(application), officer="mot-root-1")
    assert sorted(k["class"] for k in keys) == ["city-card", "city-qr"]

    sent = data("city", "deliver", "--application", str(application),
                "--out", str(tmp_path / "to-gd"), officer="mot-root-1")  # fmt: skip
    assert {d["to"] for d in sent} == {"440000"}
    for d in sent:
        assert Path(d["file"]).is_file()
    imported = data("city", "import", *[d["file"] for d in sent], officer="gd-1")
    assert {i["stage"] for i in imported} == {"held-by-province"}
    replay = jtca("city", "import", sent[0]["file"], officer="gd-1", ok=False)
    assert replay.returncode == 4
    assert "Key package refused" in replay.stderr
    onward = data("city", "deliver", "--application", str(application),
                  "--out", str(tmp_path / "to-gz"), officer="gd-1")  # fmt: skip
    installed = data("city", "import", *[d["file"] for d in onward], officer="gd-2")
    assert {i["stage"] for i in installed} == {"installed"}
    assert {i["token"] for i in installed} == {"GZ-KEYS"}

    nobody = jtca("city", "keys", "--city", "440100", ok=False)  # the keys are no one else's
    assert nobody.returncode == 6
    assert nobody.stderr.startswith("jtca: Not signed in: city.keys needs a signed-in officer")
    assert nobody.stdout == ""
    listing = data("city", "keys", "--city", "440100", officer="gd-1")
    assert {(k["state"], k["stage"]) for k in listing} == {("pre-active", "installed")}
    assert {k["city_name"] for k in listing} == {"广州市"}
    qr = next(k for k in listing if k["class"] == "city-qr")
    card = next(k for k in listing if k["class"] == "city-card")

    moment = datetime.now(UTC).replace(microsecond=0)  # uses after the keys were installed
    first = (moment + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    last = (moment + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = tmp_path / "usage.csv"
    report.write_text(
        "key,city,first_use,last_use,used_in\n"
        f"{qr['label']},440100,{first},{last},440106\n"
        f"{card['label']},440100,{first},yesterday,440106\n"
        f"{card['label']},440100,{first},{last},350102\n",
        encoding="utf-8",
    )
    imported_usage = jtca("city", "usage", str(report), "--json", officer="gd-1", ok=False)
    assert imported_usage.returncode == 3  # a refused row is reported; the good rows are kept
    result = json.loads(imported_usage.stdout)
    assert [(r["line"], r["field"]) for r in result["refused"]] == [(3, "last_use")]
    assert [(v["line"], v["reason"]) for v in result["violations"]] == [(4, "scope-violation")]
    assert sorted(result["activated"]) == sorted([qr["label"], card["label"]])
    flagged = data("city", "keys", "--violations", officer="gd-1")
    assert [k["label"] for k in flagged] == [card["label"]]
    assert "violation" in flagged[0]["flags"]

    pending = data(
        "city", "suspend", "--key", str(qr["id"]), "--reason", "used in Fujian", officer="gd-1"
    )
    assert pending["state"] == "pending"
    assert data("city", "actions", officer="gd-2")[0]["id"] == pending["action_id"]
    assert data("city", "actions", officer="fj-1") == []  # another province's officer
    done = data("city", "approve", "--action", str(pending["action_id"]), *PIN_SOURCE,
                officer="gd-2")  # fmt: skip
    assert done["state"] == "done"
    assert [k["label"] for k in data("city", "keys", "--suspended", officer="gd-1")] == [
        qr["label"]
    ]
    assert data("city", "summary", officer="gd-1")["suspended"] == 1
    assert data("city", "summary", officer="fj-1")["total"] == 0  # their province has none
    elsewhere = jtca("city", "summary", "--province", "440000", officer="fj-1", ok=False)
    assert elsewhere.returncode == 6
    assert "deny/other-province" in elsewhere.stderr

    written = data("city", "report", "--out", str(tmp_path / "report"), officer="mot-root-1")
    assert set(written) == {"csv", "markdown", "chart"}
    with Image.open(written["chart"]) as chart:
        assert chart.format == "PNG"
    assert qr["label"] in Path(written["markdown"]).read_text(encoding="utf-8")

    expiring = data("city", "keys", "--expiring", "1900", officer="gd-1")
    assert len(expiring) == 2
    assert data("city", "keys", "--expiring", "30", officer="gd-1") == []
    bad = jtca("city", "keys", "--expiring", "-1", officer="gd-1", ok=False)
    assert bad.returncode == 3
    assert bad.stderr.startswith("jtca: Bad input: --expiring -1")

    verified = json.loads(jtca("audit", "verify", "--json", officer="mot-root-1").stdout)
    assert verified["ok"] is True
    for officer, op in (("gd-1", "verify"), ("mot-root-1", "export")):  # not their role
        words = ["--out", str(tmp_path / "bundle.json")] if op == "export" else []
        denied = jtca("audit", op, *words, officer=officer, ok=False)
        assert denied.returncode == 6
        assert denied.stderr.startswith(
            f"jtca: Not allowed by policy: deny/no-role: {officer} may not audit.{op}"
        ), denied.stderr
    assert not (tmp_path / "bundle.json").exists()
