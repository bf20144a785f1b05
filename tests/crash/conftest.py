"""The crash harness's fixtures: one seeded demo state per run, copied for every trial."""

from __future__ import annotations

import pytest
from harness import Template


@pytest.fixture(scope="session")
def crash_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return Template.seed(tmp_path_factory.mktemp("crash-seed") / "seed")
