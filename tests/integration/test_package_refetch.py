"""A key package whose file was lost is fetched again by its addressee, on SQLite and PostgreSQL.

The service records a ministry → province delivery and returns the package; the client writes
it. If that write never happens (a full disk, the process dies), the key stays
delivered-to-province: the service keeps every package's bytes with its record (signed, and
sealed to the recipient's transport key), so an officer of the addressed province — or of the
ministry — fetches it again under the same file name, and the import goes through. Another
province's officer is refused; so is a key whose package was imported already. The command
``jtca city packages`` is driven through the command line's own parser and output, over the
in-process service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from guangzhou_world import guangzhou_generated
from log_intact import log_intact
from officer_desk import DeskClient
from sqlmodel import col, select

from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.service.runtime import Runtime
from ca.site import packages as site
from ca.store.db import transaction
from ca.store.models import AuditEvent, KeyPackageRecord
from ca.vault.site import SiteVault
from hsm.pkcs11.softhsm2 import CONF_ENV

T0 = 1_790_000_000
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
    ("fj-1", "provincial-officer", "350000"),
)


@dataclass
class World:
    client: DeskClient
    runtime: Runtime
    state: Path
    province_site: SiteVault
    city_site: SiteVault
    keys: list[int]
    out: Path

    def as_(self, officer: str) -> DeskClient:
        return self.client.as_officer(officer)

    def actions(self) -> list[AuditEvent]:
        with transaction(self.runtime.engine) as session:
            assert log_intact(session)
            rows = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
            session.expunge_all()
            return rows


@pytest.fixture
def world(database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Officers, the three transport keys, Guangzhou's generated key set."""
    url, engine = database
    monkeypatch.setenv(CONF_ENV, "")
    state = tmp_path / "state"
    with guangzhou_generated(engine, url, state, FixedClock(T0), OFFICERS) as made:
        yield World(
            made.client,
            made.runtime,
            state,
            made.province_site,
            made.city_site,
            made.ids,
            tmp_path / "packages",
        )


def _refused(call: Callable[[], Any], status: int, exit_code: int) -> str:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert (error.status, error.exit_code) == (status, exit_code), error
    assert "Traceback" not in error.message
    return error.message


def test_a_lost_package_is_fetched_again_and_imported(world: World) -> None:
    sent = site.deliver(world.as_("mot-root-1"), world.province_site, keys=world.keys,
                        out_dir=world.out / "to-gd", now=T0)  # fmt: skip
    lost = sent[0]
    data = lost.path.read_bytes()
    lost.path.unlink()  # the file never reached the province
    with transaction(world.runtime.engine) as session:
        kept = session.get(KeyPackageRecord, lost.package)
        assert kept is not None
        assert kept.data == data

    # another province's officer, and a ministry officer whose roles deliver nothing: refused
    message = _refused(lambda: site.fetch_package(world.as_("fj-1"), key=lost.key,
                                                  out_dir=world.out / "fj"), 403, 6)  # fmt: skip
    assert "deny/other-province" in message
    message = _refused(lambda: site.fetch_package(world.as_("ca-op-1"), key=lost.key,
                                                  out_dir=world.out / "op"), 403, 6)  # fmt: skip
    assert "deny/no-role" in message
    assert not (world.out / "fj").exists() or list((world.out / "fj").iterdir()) == []

    # the addressed province's officer fetches it again: the same bytes, the same file name
    again = site.fetch_package(world.as_("gd-2"), key=lost.key, out_dir=world.out / "again")
    assert [(d.key, d.to, d.package, d.path.name) for d in again] == [
        (lost.key, "440000", lost.package, lost.path.name)
    ]
    assert again[0].path.read_bytes() == data
    # a ministry officer who delivers may fetch it too
    also = site.fetch_package(world.as_("mot-root-1"), key=lost.key, out_dir=world.out / "mot")
    assert also[0].path.read_bytes() == data

    done = site.import_package(world.as_("gd-1"), world.province_site, again[0].path.read_bytes())
    assert (done.key, done.stage) == (lost.key, "held-by-province")
    # imported: nothing awaits import any more
    message = _refused(lambda: site.fetch_package(world.as_("gd-1"), key=lost.key,
                                                  out_dir=world.out / "x"), 403, 6)  # fmt: skip
    assert "no package of it awaits import" in message

    # the province's hand-on package to the city is kept too: the city's officers fetch it
    other = site.import_package(world.as_("gd-1"), world.province_site, sent[1].path.read_bytes())
    assert other.stage == "held-by-province"
    onward = site.deliver(world.as_("gd-1"), world.province_site, keys=[lost.key],
                          out_dir=world.out / "to-gz", now=T0)  # fmt: skip
    onward[0].path.unlink()
    fj = world.as_("fj-1")
    _refused(lambda: site.fetch_package(fj, key=lost.key, out_dir=world.out / "fj"), 403, 6)
    refetched = site.fetch_package(world.as_("gd-2"), key=lost.key, out_dir=world.out / "gz")
    assert refetched[0].path.name == onward[0].path.name
    installed = site.import_package(
        world.as_("gd-2"), world.city_site, refetched[0].path.read_bytes()
    )
    assert installed.stage == "installed"

    fetched = [e for e in world.actions() if e.action == "city-key.package-fetched"]
    assert [e.actor for e in fetched] == ["gd-2", "mot-root-1", "gd-2"]
    assert all(lost.path.name in e.details or onward[0].path.name in e.details for e in fetched)


def test_jtca_city_packages(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's parser, output and file, over the in-process service (the client's
    connection is the only thing swapped: it reaches the same HTTP API)."""
    import ca.client.http
    from ca.cli.main import main

    monkeypatch.setenv("JTCA_STATE", str(world.state))
    desk = ["gd-1"]  # whose session this machine holds

    def connect(*, target: object = None, anonymous: bool = False) -> DeskClient:
        return world.as_(desk[0])

    monkeypatch.setattr(ca.client.http, "connect", connect)
    sent = site.deliver(world.as_("mot-root-1"), world.province_site, keys=world.keys[:1],
                        out_dir=world.out / "to-gd", now=T0)  # fmt: skip
    sent[0].path.unlink()
    out = world.out / "fetched"
    argv = ["city", "packages", "--key", str(sent[0].key), "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    (written,) = json.loads(capsys.readouterr().out)
    assert (written["to"], written["package"]) == ("440000", sent[0].package)
    assert Path(written["file"]) == out / sent[0].path.name
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == f"{sent[0].label} → 440000: {out / sent[0].path.name}"
    desk[0] = "fj-1"  # another province's officer, signed in at this machine
    assert main(argv) == 6
    assert "deny/other-province" in capsys.readouterr().err
    done = site.import_package(
        world.as_("gd-1"), world.province_site, Path(written["file"]).read_bytes()
    )
    assert done.stage == "held-by-province"
