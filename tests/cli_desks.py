"""Officers at their desks, for the tests that run the real ``jtca`` (issue #12).

There is no ``--actor``: a command acts as the officer of the session file it finds. Each
officer here has a desk — the commands' environment with a session file of their own
(``JTCA_SESSION``) and their token's PIN in ``OFFICER_PIN``, named to jtca only as
``--pin-source env:OFFICER_PIN`` — and a SoftHSM2 token of their own, ``officer-<id>`` in the
state folder, whose key they generated with ``jtca officer keygen --create-token``.

Their certificate comes, as in production, from an enrolment: the root token's custodians'
quorum (``jtca officer enrol --quorum --share-file …``) where the world ran a root ceremony, a
ministry root officer's request and a second one's signed approval where a test is about that;
for worlds with no root ceremony, ``certify_directly`` does what the quorum's enrolment does,
with the embedded service stopped while it writes (the next command starts it again). Then
``jtca login --officer ID --pin-source env:OFFICER_PIN`` signs them in by challenge and
response, exactly as a person does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from officer_desk import enrol_directly, officer_pin, officer_token

JTCA = str(Path(sys.executable).with_name("jtca"))
PIN_VARIABLE = "OFFICER_PIN"
PIN_SOURCE = ("--pin-source", f"env:{PIN_VARIABLE}")

# (id, role, province); no role: the root ceremony registered them already
Officer = tuple[str, str | None, str | None]


def run(
    env: dict[str, str], *args: str, ok: bool = True, cwd: Path | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """``jtca *args`` in ``env``: no prompt can hang it (stdin is empty), never a traceback."""
    result = subprocess.run(
        [JTCA, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, (args, result.stderr)
    return result


def write_shares(folder: Path, shares: Iterable[str]) -> list[Path]:
    """Each custodian's share in a file of its own (mode 0600), for ``--share-file``."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = []
    for i, share in enumerate(shares, 1):
        path = folder / f"share-{i}.txt"
        path.write_text(share + "\n", encoding="utf-8")
        path.chmod(0o600)
        paths.append(path)
    return paths


def share_args(paths: Sequence[Path]) -> list[str]:
    return [word for path in paths for word in ("--share-file", str(path))]


class Desks:
    """The officers of one test, each at their own desk (see the module doc)."""

    def __init__(self, env: dict[str, str], folder: Path, cwd: Path | None = None) -> None:
        self.base = env
        self.folder = folder
        self.cwd = cwd
        (folder / "sessions").mkdir(parents=True, exist_ok=True, mode=0o700)

    def env(self, officer: str | None) -> dict[str, str]:
        """The environment of ``officer``'s desk (``None``: a desk where nobody signed in)."""
        who = officer or "nobody"
        return dict(
            self.base,
            JTCA_SESSION=str(self.session_file(who)),
            **{PIN_VARIABLE: officer_pin(who)},
        )

    def session_file(self, officer: str) -> Path:
        return self.folder / "sessions" / f"{officer}.json"

    def jtca(
        self, *args: str, officer: str | None = None, ok: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return run(dict(self.env(officer), **extra), *args, ok=ok, cwd=self.cwd)

    def data(self, *args: str, officer: str | None = None, **extra: str) -> Any:
        return json.loads(self.jtca(*args, "--json", officer=officer, **extra).stdout)

    # -- tokens, enrolment, sign-in ----------------------------------------------------------
    def keygen(self, officer: str) -> dict[str, Any]:
        """``officer``'s own SoftHSM2 token with their key (``jtca officer keygen``)."""
        made: dict[str, Any] = self.data(
            "officer", "keygen", "--officer", officer, "--create-token", *PIN_SOURCE,
            officer=officer,
        )  # fmt: skip
        return made

    def enrol_by_quorum(
        self, officer: Officer, shares: Sequence[Path], *, keygen: bool = True
    ) -> dict[str, Any]:
        officer_id, role, province = officer
        if keygen:
            self.keygen(officer_id)
        words = ["officer", "enrol", "--officer", officer_id, "--quorum", *share_args(shares)]
        words += ["--role", role] if role else []
        words += ["--province", province] if province else []
        enrolled: dict[str, Any] = self.data(*words, *PIN_SOURCE, officer=officer_id)
        assert enrolled["state"] == "approved", enrolled
        return enrolled

    def login(self, officer: str) -> dict[str, Any]:
        signed: dict[str, Any] = self.data(
            "login", "--officer", officer, *PIN_SOURCE, officer=officer
        )
        assert signed["officer"] == officer
        return signed

    def bootstrap(self, officers: Iterable[Officer], shares: Sequence[Path]) -> None:
        """Each officer's token and key, enrolled under the quorum, signed in."""
        for officer in officers:
            self.enrol_by_quorum(officer, shares)
            self.login(officer[0])

    def certify_directly(self, state: Path, url: str, officers: Iterable[str]) -> None:
        """For a world with no root ceremony: registered officers' tokens and certificates made
        as the quorum's enrolment makes them (``tests/officer_desk.py``), with the embedded
        service stopped; then each signs in with ``jtca login``."""
        from ca.service.runtime import open_runtime

        ids = list(officers)
        run(self.base, "service", "stop", ok=False)
        runtime = open_runtime(state, url=url, migrate="upgrade", embedded=True)
        try:
            for officer_id in ids:
                token = officer_token(state, officer_id)
                try:
                    enrol_directly(runtime, token, officer_id, int(time.time()))
                finally:
                    token.close()
        finally:
            runtime.close()
        for officer_id in ids:
            self.login(officer_id)
