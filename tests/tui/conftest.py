"""The console's tests run on a demo state folder made once per session as ``jtca demo`` makes it:
the service seeds the history (``demo.seed`` through the in-process HTTP API: SoftHSM2 tokens,
SQLite, policy, audit), then the demo's client (``ca.demo.officer_work.complete``) gives every demo
officer a personal SoftHSM2 token with an SM2 key made inside it, enrols it (``officer.enrol``,
certificates from the officer CA) and does the day's work as signed requests. The folder is
copied for each test, with the service's clock frozen at the seed's moment. The console talks to
that service only through its HTTP API (``tests.service_fixtures.in_process``) and signs in with
the officers' own tokens (labels and PINs in ``demo-credentials.json``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_world import NOW, Demo
from service_fixtures import in_process

from ca.client.embedded import mark_state
from ca.core.clock import FixedClock
from ca.demo.credentials import load_credentials
from ca.demo.officer_work import complete
from ca.ops import demo as demo_ops
from ca.ops.base import Empty
from hsm.pkcs11.token import find_module, rescan


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("demo-seed") / "state"
    mark_state(state, "demo")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("JTCA_DATABASE_URL", raising=False)
        env.setenv("JTCA_STATE", str(state))
        env.delenv("SOFTHSM2_CONF", raising=False)
        clock = FixedClock(NOW)
        with in_process(state, clock=clock) as (client, _runtime):
            client.call(demo_ops.SEED, Empty())
            complete(client, state, clock=clock.now)
    assert load_credentials(state).stage == "complete"
    return state


@pytest.fixture
def demo(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """A private copy of the seeded demo state, as the current state folder, and the service
    on it (in-process, its clock frozen at ``NOW``)."""
    state = tmp_path / "state"
    shutil.copytree(seeded, state, symlinks=True, ignore=shutil.ignore_patterns("*.sock"))
    conf = state / "softhsm2" / "softhsm2.conf"
    text = conf.read_text().replace(str(seeded), str(state))
    conf.write_text(text)
    monkeypatch.setenv("JTCA_STATE", str(state))
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    # SoftHSM2 reads its token folder at C_Initialize, and ``use_softhsm`` re-initialises only
    # when SOFTHSM2_CONF changes — which it no longer does: without this the module would keep
    # the tokens of the folder it first saw (the seed's), shared by every test.
    rescan(find_module())
    monkeypatch.delenv("JTCA_DATABASE_URL", raising=False)
    clock = FixedClock(NOW)
    with in_process(state, clock=clock) as (client, runtime):
        yield Demo(state, load_credentials(state), clock, client, runtime)
