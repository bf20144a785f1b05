"""An interop certificate issuance killed mid-way (issue #14, points 1 and 2), on SQLite and
PostgreSQL, the central CA key in a real SoftHSM2 token.

A real child process runs ``ca.qr.issuance.issue`` and is killed by SIGKILL (``JTCA_CRASH_AT``)
after its serial was reserved, after the token signed, and after the certificate was stored.
The reservation and its ``qr.issue`` intent are one transaction, so every reserved serial has
an intent naming it. Recovery (``ca.service.recovery.recover``, as service start and ``jtca
recover`` run it) then voids a serial no certificate was stored under — an audit entry
``qr.serial-void`` naming the CA key and serial, the intent rolled back — and the next issuance
takes the serial after it: no serial reused, none unaccounted for (every serial the counter
handed out is either a stored certificate or a voided one). A clean failure after the
reservation voids its serial itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from test_issuance import NOW, register, request_for

from ca.qr import issuance
from ca.qr.cert_request import make_request, read_request
from ca.qr.issuance import IssueContext
from ca.service.recovery import recover
from ca.service.runtime import Runtime
from ca.store import intents
from ca.store.models import AuditEvent, InteropCertificateRecord, SerialCounter
from hsm.crashpoints import CRASH_ENV
from hsm.pkcs11.signer import TokenSigner
from hsm.signer import SoftwareSigner

ISSUER = "02113450"
POINTS = ("after-reserve", "after-sign", "after-record")

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from hsm import crashpoints

    # names hold a colon themselves ('qr.issue:after-sign'): read N at the last colon
    spec = os.environ.get(crashpoints.CRASH_ENV, "")
    if spec:
        name, _, nth = spec.rpartition(":")
        crashpoints._targets = {name: int(nth)} if nth.isdigit() else {spec: 1}
    from ca.qr import issuance
    from ca.qr.cert_request import read_request
    from ca.store.db import make_engine
    from hsm.pkcs11.keys import KeyStore
    from hsm.pkcs11.signer import TokenSigner
    from hsm.pkcs11.token import EnvPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri

    url, label, pin_variable, uri, request, now = sys.argv[1:]
    token = Token(label, EnvPin(pin_variable))
    signer = TokenSigner(KeyStore(token), Pkcs11Uri.parse(uri), allow_host_assisted=True)
    record = issuance.issue(
        make_engine(url),
        read_request(Path(request).read_bytes()),
        issuance.IssueContext(
            actor="ca-op-1", ca_signer=signer, ca_index=1, now=int(now),
            authorize=lambda action, request: None,
        ),
    )
    token.close()
    print("finished", record.serial)
    """
)


def _pin_variable(pin: str) -> str:
    for name, value in os.environ.items():
        if name.startswith("JTCA_TEST_PIN_") and value == pin:
            return name
    raise AssertionError("the new_token fixture put the PIN in the environment")


class Issuer:
    """The central CA key in a fresh token, and a child process issuing with it."""

    def __init__(self, url: str, new_token: Any, tmp_path: Path) -> None:
        token, store, pin = new_token("QRCA")
        self.url = url
        self.label = token.label
        self.pin_variable = _pin_variable(pin)
        self.store = store
        self.key = store.generate_sm2("qr-ca-1")
        self.signer = TokenSigner(store, self.key.uri, allow_host_assisted=True)
        self.ca_key = self.signer.public_key.compressed.hex()
        self.request = tmp_path / "request.der"
        self.request.write_bytes(
            make_request(
                SoftwareSigner.generate(),
                issuer_id=ISSUER,
                issuer_name="某某交通卡公司",
                requested_expiry="1230",
            )
        )

    def child(self, crash: str | None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)
        if crash is not None:
            env[CRASH_ENV] = crash
        argv = [
            sys.executable, "-c", CHILD, self.url, self.label, self.pin_variable,
            str(self.key.uri), str(self.request), str(NOW),
        ]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=180, check=False
        )


def accounted(engine: Any, ca_key: str) -> tuple[list[int], list[int], int]:
    """(serials stored, serials voided, the counter's next serial) of the CA key; every serial
    below the counter is exactly one of the first two."""
    with Session(engine) as session:
        stored = sorted(
            r.serial
            for r in session.exec(
                select(InteropCertificateRecord).where(InteropCertificateRecord.ca_key == ca_key)
            )
        )
        voided = sorted(
            json.loads(e.details)["serial"]
            for e in session.exec(
                select(AuditEvent).where(AuditEvent.action == issuance.ACTION_VOID)
            )
            if json.loads(e.details)["ca_key"] == ca_key
        )
        counter = session.get(SerialCounter, ca_key)
    following = counter.next_serial if counter is not None else 1
    assert sorted(stored + voided) == list(range(1, following)), (stored, voided, following)
    return stored, voided, following


@pytest.mark.parametrize("point", POINTS)
def test_an_issuance_killed_at_each_boundary_accounts_for_its_serial(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path, point: str
) -> None:
    url, engine = database
    register(engine, ISSUER)
    ca = Issuer(url, new_token, tmp_path)
    assert ca.child(None).returncode == 0  # serial 1, issued
    died = ca.child(f"{issuance.OPERATION}:{point}")
    assert died.returncode == -signal.SIGKILL, (died.returncode, died.stderr)
    with Session(engine) as session:
        left = intents.open_intents(session, operation=issuance.OPERATION)
        counter = session.get(SerialCounter, ca.ca_key)
        assert counter is not None
        assert counter.next_serial == 3
    if point == "after-record":
        assert left == []
        assert accounted(engine, ca.ca_key) == ([1, 2], [], 3)
    else:
        # the reservation is never without its intent, which names the serial
        assert [(i.subject, i.plan["serial"], i.plan["ca_key"]) for i in left] == [
            (issuance.intent_subject(ca.ca_key), 2, ca.ca_key)
        ]
        with pytest.raises(AssertionError):  # serial 2: neither stored nor voided, yet
            accounted(engine, ca.ca_key)

    runtime = Runtime(state=tmp_path, url=url, engine=engine)
    done = recover(runtime, now=NOW + 60, actor="mot-root-1")
    if point == "after-record":
        assert done == []
    else:
        assert [(r.operation, r.result) for r in done] == [(issuance.OPERATION, "rolled-back")]
        assert accounted(engine, ca.ca_key) == ([1], [2], 3)
        with Session(engine) as session:
            actions = [
                e.action for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))
            ]
        assert actions[-2:] == [issuance.ACTION_VOID, "intent.recover"]
    assert recover(runtime, now=NOW + 120) == []  # nothing twice
    with Session(engine) as session:
        assert intents.open_intents(session, operation=issuance.OPERATION) == []

    # the next issuance takes the serial after: never the voided one
    finished = ca.child(None)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split()[-1] == "3"
    stored, _voided, _ = accounted(engine, ca.ca_key)
    assert stored == ([1, 3] if point != "after-record" else [1, 2, 3])


def test_a_failed_issuance_voids_its_serial_itself(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A token refusal after the reservation (a clean failure, not a crash): the run voids its
    serial and rolls its intent back; nothing is left for recovery."""
    url, engine = database
    register(engine, ISSUER)
    ca = Issuer(url, new_token, tmp_path)
    request = read_request(ca.request.read_bytes())

    class Refusing(TokenSigner):
        def sign(self, message: bytes) -> bytes:  # type: ignore[override]
            raise RuntimeError("the token refused to sign")

    refusing = Refusing(ca.store, ca.key.uri, allow_host_assisted=True)
    context = IssueContext(
        actor="ca-op-1", ca_signer=refusing, ca_index=1, now=NOW, authorize=lambda _a, _r: None
    )
    with pytest.raises(RuntimeError, match="refused"):
        issuance.issue(engine, request, context)
    assert accounted(engine, ca.ca_key) == ([], [1], 2)
    with Session(engine) as session:
        assert intents.open_intents(session) == []
        row = session.exec(
            select(AuditEvent).where(AuditEvent.action == issuance.ACTION_VOID)
        ).one()
        assert json.loads(row.details)["why"].startswith("issuance failed")
    runtime = Runtime(state=tmp_path, url=url, engine=engine)
    assert recover(runtime, now=NOW + 60) == []
    good = issuance.issue(
        engine, request_for(SoftwareSigner.generate()), IssueContext(
            actor="ca-op-1", ca_signer=ca.signer, ca_index=1, now=NOW, authorize=lambda _a, _r: None
        ),
    )  # fmt: skip
    assert good.serial == 2
