"""The audit log as a Merkle log (issue #13): what appending and proving cost, against bare SM3
measured in the same run.

Appending (the log's own work per entry):

- **memory**: 100,000 entries appended to a ``MemoryTree`` — the entry encoded (``LogEntry``),
  its leaf hash, the perfect subtrees it completes — with a checkpoint signed every 1,000
  entries (``sign_checkpoint``, a ``SoftwareSigner``), against one bare SM3 of each entry's
  bytes; the same without checkpoints; and with each leaf sealed (one SM2 signature per entry,
  as the service seals them) on the first 10,000;
- **database**: 10,000 entries through ``ca.log.audit.append`` into a temporary SQLite database, one
  transaction each (as every state change writes its entry), sealed by a session key, with a
  checkpoint (``ca.log.audit.checkpoint``) every 1,000: against bare SM3, and against a bare
  one-row commit of the same bytes in the same database (what any logged change pays anyway).

Proving, in a ``MemoryTree`` of 1,000,000 entries (built once; its build time is printed):
inclusion proofs (random entry, the whole tree) and consistency proofs (random earlier size to
the whole tree), generated and verified, as operations per second against single SM3 hashes
per second (a node hash's 65 bytes); ``SM3s/op`` is how many bare hashes one operation costs.

Machines here are shared and noisy: only the ratios mean anything. ``--quick`` runs a tenth.

    python bench/log.py [--quick] [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from timing import rate

from ca.log import audit
from ca.log.entry import LogEntry, canonical
from ca.log.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from ca.log.note import Checkpoint, sign_checkpoint
from ca.store.db import make_engine, migrate, transaction
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der
from hsm.sm.sm3 import sm3

ORIGIN = "bench.jtca.example/audit"
T0 = 1767225600
EVERY = 1_000  # a checkpoint every this many entries


def make_entry(seq: int) -> LogEntry:
    """An entry shaped like the log's own: every fifth a certificate, Chinese text, JSON."""
    certificate = seq % 5 == 0
    return LogEntry(
        seq=seq,
        at=T0 + seq,
        kind="certificate" if certificate else "event",
        actor=f"gd-{seq % 7}",
        action="certificate.issue" if certificate else "city-key.apply",
        subject=f"application {seq}",
        object_sm3=sm3(b"%d" % seq).hex() if certificate else None,
        details=canonical({"cities": ["440100"], "province": "广东省", "n": seq}),
    )


def make_entries(n: int) -> list[LogEntry]:
    return [make_entry(seq) for seq in range(1, n + 1)]


def timed(fn: Callable[[], object], rounds: int = 1) -> float:
    """The best wall time of ``rounds`` runs of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def row(label: str, per_second: float, baseline: float, note: str = "") -> None:
    print(f"  {label:<50}{per_second:12,.0f}/s   ratio {per_second / baseline:7.4f}  {note}")


def base(label: str, per_second: float) -> None:
    print(f"  {label:<50}{per_second:12,.0f}/s   (baseline)")


# -- appending ---------------------------------------------------------------------------------
def memory_appends(n: int, sealed_n: int, rounds: int) -> None:
    entries = make_entries(n)
    encoded = [e.encode() for e in entries]
    signer = SoftwareSigner.generate()
    seal = SoftwareSigner.generate()

    def sign_der(message: bytes) -> bytes:
        return raw_to_der(signer.sign(message))

    def bare() -> None:
        for data in encoded:
            sm3(data)

    def append(checkpoints: bool, seal_each: bool, some: Sequence[LogEntry]) -> Callable[[], None]:
        def run() -> None:
            tree = MemoryTree()
            for entry in some:
                leaf = entry.leaf_hash()  # encode + SM3(0x00 ‖ entry)
                tree.append_leaf_hash(leaf)  # + the perfect subtrees it completes
                if seal_each:
                    seal.sign(b"jtca-log-seal/1\n" + leaf)
                if checkpoints and tree.size % EVERY == 0:
                    head = Checkpoint(ORIGIN, tree.size, tree.root())
                    sign_checkpoint(head, ORIGIN, signer.public_key, sign_der)

        return run

    bare_rate = n / timed(bare, rounds)
    print(f"\nAppending {n:,} entries to a MemoryTree (mean entry {sum(map(len, encoded)) // n} B)")
    base("bare SM3 of each entry", bare_rate)
    plain_s = full_s = float("inf")
    for _ in range(rounds):  # alternated, so drift on a shared machine hits both alike
        plain_s = min(plain_s, timed(append(False, False, entries)))
        full_s = min(full_s, timed(append(True, False, entries)))
    plain, full = n / plain_s, n / full_s
    row("encode + leaf hash + subtrees", plain, bare_rate)
    row(f"… + a signed checkpoint every {EVERY:,}", full, bare_rate, f"({n // EVERY} checkpoints)")
    sealed = sealed_n / timed(append(True, True, entries[:sealed_n]))
    row(f"… + each leaf sealed (SM2), first {sealed_n:,}", sealed, bare_rate)


def database_appends(n: int, folder: Path) -> None:
    engine = make_engine(f"sqlite:///{folder}/bench-log.db")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, data BLOB)"))
    entries = make_entries(n)
    encoded = [e.encode() for e in entries]
    audit_key = SoftwareSigner.generate()
    # the service's sealing: a session key registered by the audit key, every entry sealed
    with transaction(engine) as session:
        key_seq = audit.register_seal_key(session, audit_key, SoftwareSigner.generate().public_key,
                                          T0)  # fmt: skip
    previous = audit.current_sealer()
    audit.install_sealer(audit.SessionSealer(key_seq, SoftwareSigner.generate()))
    try:
        start = time.perf_counter()
        for entry in entries:
            with transaction(engine) as session:
                made = audit.append(
                    session, actor=entry.actor, action=entry.action, subject=entry.subject,
                    details={"n": entry.seq, "province": "广东省"}, at=entry.at, kind=entry.kind,
                    object_sm3=entry.object_sm3,
                )  # fmt: skip
                if made.seq % EVERY == 0:
                    audit.checkpoint(session, audit_key, at=entry.at, origin=ORIGIN)
        logged = n / (time.perf_counter() - start)
    finally:
        audit.install_sealer(previous)
    bare_sm3 = n / timed(lambda: [sm3(data) for data in encoded], 3)
    insert = sa.text("INSERT INTO bench_bare (data) VALUES (:data)")
    some = encoded[: max(n // 5, 200)]

    def bare_commits() -> None:
        for data in some:
            with transaction(engine) as session:
                session.connection().execute(insert, {"data": data})

    bare_commit = len(some) / timed(bare_commits)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT seq FROM audit_head WHERE id = 1")).scalar_one()
    assert size == n + 1, size  # the seal key's entry and ours
    engine.dispose()
    print(f"\nAppending {n:,} entries through ca.log.audit.append (SQLite, one transaction each)")
    base("bare SM3 of each entry", bare_sm3)
    base("bare commit of one row with the entry's bytes", bare_commit)
    print(
        f"  {'append, sealed, a checkpoint every ' + format(EVERY, ','):<50}{logged:12,.0f}/s   "
        f"ratio {logged / bare_sm3:7.4f} of bare SM3, {logged / bare_commit:6.3f} of a bare commit"
    )


# -- proving -----------------------------------------------------------------------------------
def proofs(n: int, seconds: float) -> None:
    # the entries' exact bytes from a template (an event entry, checked once), so building a
    # million-entry tree takes seconds, not the time of making a million LogEntry objects
    template = (
        'jtca-log-entry/1\nseq %d\nat %d\nkind event\nactor "gd-1"\naction "city-key.apply"\n'
        'subject "application %d"\nobject -\ndetails {"n":%d,"province":"广东省"}\n'
    ).encode()
    assert LogEntry.parse(template % (n, T0 + n, n, n)).seq == n
    start = time.perf_counter()
    tree = MemoryTree()
    for seq in range(1, n + 1):
        tree.append(template % (seq, T0 + seq, seq, seq))
    build = time.perf_counter() - start
    root = tree.root()
    print(f"\nProofs in a MemoryTree of {n:,} entries (built in {build:.1f} s, "
          f"{n / build:,.0f} entries/s)")  # fmt: skip
    node_input = b"\x01" + bytes(64)
    single = rate(lambda: sm3(node_input), seconds)
    base("single SM3 (65 bytes: a node hash)", single)

    rng = random.Random(13)  # noqa: S311 - which entries to prove, not a secret
    indexes = [rng.randrange(n) for _ in range(4096)]
    firsts = [rng.randrange(1, n) for _ in range(4096)]
    made_inclusion = [(i, inclusion_proof(tree, i, n)) for i in indexes]
    made_consistency = [(m, tree.root(m), consistency_proof(tree, m, n)) for m in firsts]
    leaves = {i: tree.perfect(0, i) for i in indexes}

    def cycle(items: list) -> Callable[[], object]:  # type: ignore[type-arg]
        position = iter(range(10**12))
        return lambda: items[next(position) % len(items)]

    pick_index, pick_first = cycle(indexes), cycle(firsts)
    pick_inclusion, pick_consistency = cycle(made_inclusion), cycle(made_consistency)

    def generate_inclusion() -> None:
        inclusion_proof(tree, pick_index(), n)

    def check_inclusion() -> None:
        index, proof = pick_inclusion()
        verify_inclusion(index, n, leaves[index], proof, root)

    def generate_consistency() -> None:
        consistency_proof(tree, pick_first(), n)

    def check_consistency() -> None:
        first, first_root, proof = pick_consistency()
        verify_consistency(first, n, first_root, root, proof)

    mean_inclusion = sum(len(p) for _, p in made_inclusion) / len(made_inclusion)
    mean_consistency = sum(len(p) for _, _, p in made_consistency) / len(made_consistency)
    for label, fn, hashes in (
        ("inclusion proof, generate", generate_inclusion, mean_inclusion),
        ("inclusion proof, verify", check_inclusion, mean_inclusion),
        ("consistency proof, generate", generate_consistency, mean_consistency),
        ("consistency proof, verify", check_consistency, mean_consistency),
    ):
        ops = rate(fn, seconds)
        row(label, ops, single, f"{single / ops:5.1f} SM3s/op  ({hashes:.1f} hashes a proof)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the work")
    parser.add_argument("--seconds", type=float, default=2.0, help="per proof measurement")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    seconds = args.seconds / (4 if args.quick else 1)
    started = time.perf_counter()
    print("Audit log (issue #13): the Merkle log's costs against bare SM3, in the same run")
    memory_appends(100_000 // scale, 10_000 // scale, rounds=3)
    with tempfile.TemporaryDirectory(prefix="jtca-bench-log-") as folder:
        database_appends(10_000 // scale, Path(folder))
    proofs(1_000_000 // scale, seconds)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
