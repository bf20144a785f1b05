"""Issue #11's measurement, now through the service: two publishers with different ``--out``
folders on one database, 20 runs each at the same time, every run republishing (nextUpdate is
always due), the real ``jtca`` against real service processes.

- **PostgreSQL**: two ``jtca serve --uds`` processes on two state folders — each with its own
  publication folder — on one database and one token folder (the second state's ``softhsm2`` is
  a symlink to the first's), the deployment of several service processes on one PostgreSQL.
  Each publisher talks to its own service. The publisher's advisory lock serialises the two
  services; each repairs its own folder from the database's copy of what the other published.
- **SQLite**: one embedded service (an SQLite database is one machine's, so a second service
  process would add nothing a second client does not), the two publishers its parallel clients.

Before this, 10 of 20 runs of the second publisher failed with 'archive file is missing'. Now
every run exits 0 (a run that finds the lock held waits for it), the versions are numbered
without a gap, and each ``--out`` folder ends with every version archived as recorded and its
current lists whole and verifiable against the root.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from cli_desks import Desks, share_args
from test_service_lists import JTCA, PUBLISHERS, client_env, jtca, make_world

from ca.lists.asn1 import ListType
from ca.lists.verify import load_list

RUNS = 20
LISTS = [t.value for t in ListType]
# the publishers, and the auditor (registered by the root ceremony) who verifies the chain
OFFICERS = (*PUBLISHERS, ("auditor-1", ""))


@contextmanager
def service(state: Path, env: dict[str, str]) -> Iterator[Path]:
    """``jtca serve --uds`` on ``state``; its socket while it runs."""
    state.mkdir(parents=True, exist_ok=True)
    sock = state / "serve.sock"
    with open(state / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [JTCA, "serve", "--uds", str(sock), "--state", str(state)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (state / "serve.log").read_text()
            if sock.exists():
                try:
                    with httpx.Client(
                        transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://jtca"
                    ) as http:
                        if http.get("/healthz").status_code == 200:
                            break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, (state / "serve.log").read_text()
            time.sleep(0.1)
        yield sock
    finally:
        process.terminate()
        process.wait(timeout=90)


def publish_runs(
    env: dict[str, str], shares: list[Path], out: Path
) -> list[subprocess.CompletedProcess[str]]:
    """``RUNS`` runs as the officer signed in in ``env`` (their own session file)."""
    argv = [
        JTCA, "publish", *share_args(shares),
        "--out", str(out), "--validity-hours", "1", "--refresh-hours", "0.9999", "--json",
    ]  # fmt: skip
    return [
        subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)
        for _ in range(RUNS)
    ]


def test_two_publishers_with_their_own_folders(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = database
    first, second = tmp_path / "s1", tmp_path / "s2"
    outs = [tmp_path / "out-a", tmp_path / "out-b"]
    with ExitStack() as stack:
        if url.startswith("postgresql"):
            (first / "softhsm2").mkdir(parents=True)
            second.mkdir()
            (second / "softhsm2").symlink_to(first / "softhsm2", target_is_directory=True)
            socks = [stack.enter_context(service(s, client_env(s, url))) for s in (first, second)]
            envs = [
                client_env(s, url, JTCA_URL=f"unix://{sock}")
                for s, sock in zip((first, second), socks, strict=True)
            ]
            world = make_world(first, envs[0], init=False, officers=OFFICERS)
        else:
            envs = [client_env(first, url)] * 2
            world = make_world(first, envs[0], officers=OFFICERS)
        # each publisher signs in with their own token at the service they publish through
        desks = [Desks(e, tmp_path / f"desks-{i}") for i, e in enumerate(envs)]
        for index, desk in enumerate(desks):
            desk.login(f"publisher-{index + 1}")
        # the lists' first versions with the short validity the runs below keep renewing
        jtca(
            desks[0].env("publisher-1"), "publish", *share_args(world.share_files),
            "--out", str(outs[0]), "--validity-hours", "1", "--refresh-hours", "0.5",
        )  # fmt: skip

        results: dict[int, list[subprocess.CompletedProcess[str]]] = {}

        def run(index: int) -> None:
            env = desks[index].env(f"publisher-{index + 1}")
            results[index] = publish_runs(env, world.share_files, outs[index])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1200)
        assert sorted(results) == [0, 1]
        failed = [
            (r.returncode, r.stderr) for runs in results.values() for r in runs if r.returncode
        ]
        assert failed == []
        assert all("Traceback" not in r.stderr for runs in results.values() for r in runs)
        outcomes = [json.loads(r.stdout) for runs in results.values() for r in runs]
        signed = sum(1 for o in outcomes for d in o if d["action"] == "published")
        assert signed >= RUNS  # the runs did republish, and took turns doing it

        history = json.loads(jtca(envs[0], "lists", "history", "--json").stdout)
        recorded = {(h["list"], h["sequence"]): h["sha256"] for h in history}
        for name in LISTS:
            numbers = sorted(seq for kind, seq in recorded if kind == name)
            assert numbers == list(range(1, len(numbers) + 1))  # no gap, no duplicate
        root = tmp_path / "root.der"
        jtca(envs[1], "lists", "root", "--out", str(root))
        now = int(time.time())
        for index, out in enumerate(outs):
            last = {d["list"]: d["sequence"] for d in json.loads(results[index][-1].stdout)}
            for name in LISTS:
                data = (out / f"{name}.der").read_bytes()
                verified = load_list(
                    data,
                    trusted_root_der=root.read_bytes(),
                    expected_type=ListType(name),
                    now=now,
                    grace_seconds=0,
                )
                assert verified.sequence >= last[name]
                assert hashlib.sha256(data).hexdigest() == recorded[(name, verified.sequence)]
                shown = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
                assert (shown["sequence"], shown["sm3"]) == (verified.sequence, verified.sm3)
                for sequence in range(1, verified.sequence + 1):
                    archived = out / "archive" / name / f"{name}-{sequence:010d}.der"
                    digest = hashlib.sha256(archived.read_bytes()).hexdigest()
                    assert digest == recorded[(name, sequence)], archived
        desks[0].login("auditor-1")  # the chain is read by an officer allowed audit.verify
        checked = json.loads(jtca(desks[0].env("auditor-1"), "audit", "verify", "--json").stdout)
        assert checked["ok"] is True
