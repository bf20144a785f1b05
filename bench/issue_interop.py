"""Interop certificate issuance end to end against bare token signatures, in the same run.

Prints operations per second and ratios:
- bare: ``TokenSigner.sign`` of the 47 bytes a CA signs, on a SoftHSM2 key (baseline);
- issue: the whole issuance — proof of possession, policy, serial allocated and audited in its
  own transaction, token signature, certificate and audit event stored — on SQLite (the
  embedded default) and, with --postgres URL, on PostgreSQL;
- log verify: entries verified per second (each entry's leaf hash, the tree rebuilt and its
  root checked against a signed checkpoint), against bare SM3 of the same entries' encodings.

    python bench/issue_interop.py [--seconds 2] [--postgres postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

from sqlmodel import Session
from timing import rate_and_count as rate

from ca.log import audit
from ca.qr.cert_request import InteropCertRequest, make_request, read_request
from ca.qr.issuance import IssueContext, issue
from ca.registry.issuers import register_issuer
from ca.store.db import make_engine, migrate
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.softhsm2 import init_token, use_softhsm
from hsm.pkcs11.token import EnvPin, Token
from hsm.signer import SoftwareSigner
from hsm.sm.sm3 import sm3


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the server (the bench never writes into an existing one)."""
    import uuid

    import sqlalchemy as sa

    name = f"jtca_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--postgres", help="also measure on this (empty) PostgreSQL database")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jtca-bench-") as tmp:
        use_softhsm(Path(tmp) / "softhsm")
        os.environ["JTCA_BENCH_PIN"] = pin = secrets.token_hex(8)
        init_token("BENCH-CA", pin, secrets.token_hex(8))
        with Token("BENCH-CA", EnvPin("JTCA_BENCH_PIN")) as token:
            store = KeyStore(token)
            signer = TokenSigner(store, store.generate_sm2("bench-qr-ca").uri)
            requests = [
                make_request(
                    SoftwareSigner.generate(),
                    issuer_id=f"{i:08d}",
                    issuer_name="bench",
                    requested_expiry="1230",
                )
                for i in range(64)
            ]
            tbs = secrets.token_bytes(47)
            bare, _ = rate(lambda: signer.sign(tbs), args.seconds)
            print(f"{'bare token signature':<34} {bare:8.1f} /s   ratio 1.000   baseline")

            def allow(_action: str, _request: InteropCertRequest) -> None:
                return None

            targets = [("sqlite", f"sqlite:///{tmp}/bench.db")]
            if args.postgres:
                targets.append(("postgresql", fresh_postgres_database(args.postgres)))
            for name, url in targets:
                engine = make_engine(url)
                migrate(engine)
                for i in range(len(requests)):
                    register_issuer(
                        engine,
                        issuer_id=f"{i:08d}",
                        name="bench",
                        actor="bench",
                        now=int(time.time()),
                    )
                counter = iter(range(10**9))

                def one(engine=engine, counter=counter) -> None:  # type: ignore[no-untyped-def]
                    der = requests[next(counter) % len(requests)]
                    ctx = IssueContext(
                        actor="bench",
                        ca_signer=signer,
                        ca_index=1,
                        now=int(time.time()),
                        authorize=allow,
                    )
                    issue(engine, read_request(der), ctx)

                issued, _ = rate(one, args.seconds)
                print(
                    f"{'issue end to end (' + name + ')':<34} {issued:8.1f} /s   "
                    f"ratio {issued / bare:.3f}"
                )
                log_key = SoftwareSigner.generate()
                with Session(engine) as session:
                    made = audit.checkpoint(session, log_key, at=int(time.time()), origin="bench")
                    session.commit()
                    entries = [
                        audit.entry(session, seq).encode() for seq in range(1, made.size + 1)
                    ]
                    t0 = time.perf_counter()
                    report = audit.verify(
                        session,
                        checkpoints=[("bench", made.note.encode())],
                        audit_keys=[log_key.public_key],
                    )
                    verify_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                for encoded in entries:
                    sm3(encoded)
                bare_hash_s = time.perf_counter() - t0
                assert report.ok, report.findings
                print(
                    f"{'log entries verified (' + name + ')':<34} "
                    f"{report.entries / verify_s:8.0f} /s"
                    f"   ratio {bare_hash_s / verify_s:.3f} of bare SM3 over the same entries "
                    f"({report.entries} entries, tree rebuilt and checked against a checkpoint)"
                )
                engine.dispose()


if __name__ == "__main__":
    main()
