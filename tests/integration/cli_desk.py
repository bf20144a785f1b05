"""Officers at the real command line (issue #12), for tests that run ``jtca`` as processes.

``CliDesk.env(officer)`` is the environment of that officer's command line: their own token
``officer-ID`` in the state folder's SoftHSM2 (made on first use, PIN ``officer_pin(ID)``), its
key certified when they have no certificate yet (``officer_desk.enrol_directly``, as the root
share quorum's enrolment does, for test worlds that run no root ceremony), and a session of
their own opened by ``jtca login --officer ID --pin-source env:OFFICER_PIN`` and kept in
``$JTCA_SESSION``. The PIN is in that environment as ``OFFICER_PIN``, so an approval is signed
with ``--pin-source env:OFFICER_PIN``. ``env(None)`` is a command line with no session.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from officer_desk import enrol_directly, has_certificate, officer_pin, officer_token

from ca.service.runtime import open_runtime

JTCA = str(Path(sys.executable).with_name("jtca"))
PIN_SOURCE = ("--pin-source", "env:OFFICER_PIN")


class CliDesk:
    def __init__(self, base: dict[str, str], state: Path, url: str, sessions: Path) -> None:
        self.base, self.state, self.url, self.sessions = base, state, url, sessions
        self._signed: dict[str, dict[str, str]] = {}

    def env(self, officer: str | None) -> dict[str, str]:
        if officer is None:
            return self.base
        if officer not in self._signed:
            self._signed[officer] = self._sign_in(officer)
        return self._signed[officer]

    def _sign_in(self, officer: str) -> dict[str, str]:
        runtime = open_runtime(self.state, url=self.url)
        try:
            with officer_token(self.state, officer) as token:
                if not has_certificate(runtime, officer):
                    enrol_directly(runtime, token, officer, int(time.time()))
        finally:
            runtime.close()
        own = dict(
            self.base,
            JTCA_SESSION=str(self.sessions / f"{officer}.json"),
            OFFICER_PIN=officer_pin(officer),
        )
        signed = subprocess.run(
            [JTCA, "login", "--officer", officer, *PIN_SOURCE],
            capture_output=True,
            text=True,
            env=own,
            check=False,
            timeout=120,
        )
        assert signed.returncode == 0, (officer, signed.stdout, signed.stderr)
        assert "Traceback" not in signed.stderr
        return own
