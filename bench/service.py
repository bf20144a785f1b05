"""The authority service under 32 concurrent clients, against the same use cases in-process.

A fresh database with N city keys (100,000 by default, ``bench/city_scan.py``'s table), two
ministry officers and two provincial officers of 440000. Two workloads, each run twice in the
same run with the same number of concurrent workers (threads):

- **page**: one page of 500 keys (``city.page``, the console's keys screen), as a ministry officer;
- **action round trip**: a provincial officer asks to suspend one active key of their province
  (``city.suspend``, dual control: pending) and a ministry officer approves it
  (``city.decide``), which suspends the key — every round trip on a key of its own.

*in-process* calls the use cases through ``ca.service.registry.call`` (no HTTP);
*service* sends the same requests to a real ``jtca serve --uds`` process, each worker with its own
HTTP client. Printed: operations per second, p50 and p99 latency, and the ratio service /
in-process (the issue's goal: ≥ 0.5, and a page's p99 ≤ 250 ms).

    python bench/service.py [--keys 100000] [--clients 32] [--seconds 5] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from city_scan import NOW, fill
from sqlmodel import Session, col, select

from ca.client.config import Target
from ca.client.embedded import answers
from ca.client.http import Client, http_for
from ca.core.clock import SystemClock
from ca.officers.certificates import OFFICER_CA_TOKEN, issue_officer_certificate, open_officer_ca
from ca.officers.dual_control import SignedRequest, serving
from ca.officers.roster import actor_of, add_officer_in
from ca.officers.statements import approval_statement, body_digest
from ca.ops import city
from ca.service.context import Context
from ca.service.registry import call
from ca.service.runtime import open_runtime
from ca.site.officer_token import (
    OfficerToken,
    create_embedded_token,
    default_label,
    sign_decision,
    sign_in,
    signed_client,
)
from ca.store.db import transaction
from ca.store.models import CityKey

PROVINCE = "440000"
BENCH_PIN = "bench-officer-pin"
OFFICERS = (
    ("bench-mot-1", ["ministry-ca-operator"], None),
    ("bench-gd-1", ["provincial-officer"], PROVINCE),
)


class _Pin:
    def pin(self) -> str:
        return BENCH_PIN

    def describe(self) -> str:
        return "the benchmark's PIN"


def officer_token(state: Path, officer_id: str) -> OfficerToken:
    return OfficerToken(default_label(officer_id), _Pin(), state=state)


@dataclass
class Result:
    ops: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self, name: str) -> str:
        return (
            f"{name:<34} {self.rate:9.1f}/s  p50 {self.pct(0.5):7.1f} ms  "
            f"p99 {self.pct(0.99):7.1f} ms  ({self.ops} ops)"
        )


def hammer(workers: int, seconds: float, work: Callable[[int, int], None]) -> Result:
    """``work(worker, i)`` from ``workers`` threads for ``seconds``; latencies of each call."""
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def loop(worker: int) -> None:
        i = 0
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                work(worker, i)
                latencies[worker].append(time.perf_counter() - started)
                i += 1
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    flat = [x for per in latencies for x in per]
    return Result(len(flat), elapsed, flat)


def setup(state: Path, url: str | None, keys: int) -> list[int]:
    runtime = open_runtime(state, url=url, migrate="upgrade", embedded=True)
    fill(runtime.engine, keys)
    with transaction(runtime.engine) as session:
        for officer_id, roles, province in OFFICERS:
            add_officer_in(
                session,
                officer_id=officer_id,
                name=officer_id,
                roles=roles,
                province=province,
                actor="bench",
                now=NOW,
            )
    for officer_id, _roles, _province in OFFICERS:
        # each officer's own token and key, certified as the root quorum's enrolment does
        create_embedded_token(state, default_label(officer_id), BENCH_PIN)
        token = officer_token(state, officer_id)
        token.generate_key()
        with transaction(runtime.engine) as session, runtime.tokens(create=True) as vault:
            ca = open_officer_ca(session, vault.store(OFFICER_CA_TOKEN), now=NOW, actor="bench")
            issue_officer_certificate(
                session, ca, officer_id=officer_id, name=officer_id, public_key=token.public_key,
                token_label=token.label, issued_by="bench", now=int(time.time()),
            )  # fmt: skip
        token.close()
    with Session(runtime.engine) as session:
        active = session.exec(
            select(CityKey.id)
            .where(CityKey.province == PROVINCE)
            .where(CityKey.state == "active")
            .order_by(col(CityKey.id))
        ).all()
    runtime.close()
    return [k for k in active if k is not None]


def run(name: str, url: str | None, keys: int, clients: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state"
        started = time.perf_counter()
        active = setup(state, url, keys)
        print(f"\n{name}: {keys} keys, {len(active)} active in {PROVINCE}, loaded in "
              f"{time.perf_counter() - started:.1f}s; {clients} concurrent clients")  # fmt: skip
        ministry, province = OFFICERS[0][0], OFFICERS[1][0]
        page = city.PageRequest(limit=500)
        # each round trip takes keys of its own: in-process from the front, service from the back
        pools = {
            "in-process": list(active[: len(active) // 2]),
            "service": active[len(active) // 2 :],
        }
        lock = threading.Lock()

        def take(pool: str) -> int:
            with lock:
                return pools[pool].pop()

        # -- in-process -------------------------------------------------------------------
        runtime = open_runtime(state, url=url, migrate="check")
        clock = SystemClock()  # as the service's
        contexts = {
            who: Context(runtime, actor_of(runtime.engine, who), clock)
            for who in (ministry, province)
        }

        def page_in_process(_w: int, _i: int) -> None:
            result = call(contexts[ministry], city.PAGE, page)
            assert len(result.keys) == 500

        approver_token = officer_token(state, ministry)
        with Session(runtime.engine) as session:
            from ca.officers.certificates import certificate_in_force

            serial = certificate_in_force(session, ministry, clock.now()).serial

        def action_in_process(_w: int, _i: int) -> None:
            # the same use cases, with what the HTTP adapter would hand them: the signed
            # request that opens the action, and the approver's token-signed decision
            key = take("in-process")
            ask = city.KeyActionRequest(keys=[key], reason="bench")
            body = ask.model_dump_json().encode()
            opened = serving.set(
                SignedRequest(province, city.SUSPEND.name, body, body_digest(body), "bench", "",
                              clock.now())
            )  # fmt: skip
            try:
                asked = call(contexts[province], city.SUSPEND, ask)
            finally:
                serving.reset(opened)
            assert asked.state == "pending"
            assert asked.action_id is not None
            at = clock.now()
            statement = approval_statement(
                subject=f"action {asked.action_id}", request_digest=body_digest(body),
                approve=True, officer=ministry, serial=serial, at=at,
            )  # fmt: skip
            with lock:  # one token session, one signature at a time
                signature = approver_token.sign(statement)
            done = call(
                contexts[ministry], city.DECIDE,
                city.DecideRequest(
                    kind="action", id=asked.action_id, approve=True, at=at, signature=signature
                ),
            )  # fmt: skip
            assert done.state == "done", done

        local_page = hammer(clients, seconds, page_in_process)
        local_action = hammer(clients, seconds, action_in_process)
        approver_token.close()
        runtime.close()

        # -- through a real jtca serve ------------------------------------------------------
        sock = Path(folder) / "bench.sock"
        env = dict(os.environ)
        if url:
            env["JTCA_DATABASE_URL"] = url
        server = subprocess.Popen(
            [sys.executable, "-m", "ca", "serve", "--uds", str(sock), "--state", str(state)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not answers(sock):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(
                        f"jtca serve did not start: {server.stderr.read() if server.stderr else ''}"
                    )
                time.sleep(0.1)
            target = Target("environment", f"unix://{sock}")
            tokens = {who: officer_token(state, who) for who in (ministry, province)}
            anonymous = Client(http_for(target), target=target)
            sessions = {who: sign_in(anonymous, tokens[who], who) for who in tokens}
            anonymous.close()

            def signed(who: str) -> Client:
                return signed_client(Client(http_for(target), target=target), sessions[who])

            ministry_clients = [signed(ministry) for _ in range(clients)]
            province_clients = [signed(province) for _ in range(clients)]

            def page_service(w: int, _i: int) -> None:
                result = ministry_clients[w].call(city.PAGE, page)
                assert len(result.keys) == 500

            def action_service(w: int, _i: int) -> None:
                key = take("service")
                asked = province_clients[w].call(
                    city.SUSPEND, city.KeyActionRequest(keys=[key], reason="bench")
                )
                assert asked.state == "pending"
                assert asked.action_id is not None
                with lock:  # one token session, one signature at a time
                    at, signature, _ = sign_decision(
                        ministry_clients[w], tokens[ministry], f"action {asked.action_id}",
                        approve=True,
                    )  # fmt: skip
                done = ministry_clients[w].call(
                    city.DECIDE,
                    city.DecideRequest(
                        kind="action", id=asked.action_id, approve=True, at=at, signature=signature
                    ),
                )
                assert done.state == "done", done

            remote_page = hammer(clients, seconds, page_service)
            remote_action = hammer(clients, seconds, action_service)
            for c in ministry_clients + province_clients:
                c.close()
            for t in tokens.values():
                t.close()
        finally:
            server.terminate()
            server.wait(timeout=90)

        print("  page of 500 keys (city.page)")
        print("    " + local_page.line("in-process (baseline)"))
        print("    " + remote_page.line("through the service"))
        print(f"    ratio service / in-process {remote_page.rate / local_page.rate:6.3f}   "
              f"(goal >= 0.5; p99 goal <= 250 ms: {remote_page.pct(0.99):.0f} ms)")  # fmt: skip
        print("  action round trip (city.suspend + city.decide by a second officer)")
        print("    " + local_action.line("in-process (baseline)"))
        print("    " + remote_action.line("through the service"))
        ratio = remote_action.rate / local_action.rate
        print(f"    ratio service / in-process {ratio:6.3f}   (goal >= 0.5)")
        added = statistics.median(remote_page.latencies) - statistics.median(local_page.latencies)
        print(f"  median latency HTTP adds to a page: {added * 1000:+.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a fresh database is made)")
    args = parser.parse_args()
    run("SQLite", None, args.keys, args.clients, args.seconds)
    if args.postgres:
        from issue_interop import fresh_postgres_database

        url = fresh_postgres_database(args.postgres)
        try:
            run("PostgreSQL", url, args.keys, args.clients, args.seconds)
        finally:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
            admin.dispose()


if __name__ == "__main__":
    main()
