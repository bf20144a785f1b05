"""The console's tests run on a demo state folder seeded once per session through the real
workflows (``ca.demodata.seed``: SoftHSM2 tokens, SQLite, policy, audit) and copied for each
test that changes it, with the clock frozen at the seed's moment."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_world import NOW, Demo

from ca.clock import FixedClock
from ca.demodata import load_credentials, seed
from hsm.pkcs11.token import find_module, rescan


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("demo-seed") / "state"
    previous = os.environ.get("JTCA_STATE")
    seed(state, NOW)
    if previous is None:
        os.environ.pop("JTCA_STATE", None)
    else:
        os.environ["JTCA_STATE"] = previous
    return state


@pytest.fixture
def demo(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """A private copy of the seeded demo state, as the current state folder."""
    state = tmp_path / "state"
    shutil.copytree(seeded, state, symlinks=True)
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
    from ca.authority import open_authority

    open_authority.cache_clear()
    yield Demo(state, load_credentials(state), FixedClock(NOW))
    open_authority.cache_clear()
