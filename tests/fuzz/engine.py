"""A small mutation fuzzer of our own (no atheris, no coverage instrumentation).

Each input is a seed (or an input that earlier gave a new *outcome*) with one to four mutations:
bit flips, random and interesting bytes, byte runs inserted, deleted or duplicated, a splice
with another corpus entry, dictionary tokens, DER length octets tweaked (short, long, indefinite,
huge), interesting integers as text and as big-endian bytes, huge digit strings, deep nesting
(JSON, TOML, DER), non-UTF-8 sequences, truncation. Deterministic: the inputs of a chunk depend
only on (seed, target, chunk). The corpus grows, per chunk, with inputs whose outcome (the
exception type and the first words of its message, digits removed) is new — a cheap stand-in for
coverage that pushes the mutations past the first checks.

Every input is timed (process CPU time and wall time); one over ``SLOW`` seconds of CPU is
reported with the input saved, one that raises an untyped exception too (deduplicated by the
exception type and the line that raised it). A watchdog interrupts an input that runs past
``HANG`` seconds of wall time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.fuzz.targets import Target

SLOW: Final = 1.0  # seconds of CPU time for one input (issue #14: none over 1 s)
HANG: Final = 30  # seconds of wall time before the watchdog interrupts an input
MAX_SIZE: Final = 512 * 1024
CORPUS_CAP: Final = 256

INTERESTING_BYTES: Final = (
    0x00,
    0x01,
    0x7F,
    0x80,
    0x81,
    0x82,
    0x84,
    0x88,
    0xFF,
    0xFE,
    0x30,
    0x31,
    0xA0,
    0x02,
    0x04,
    0x05,
    0x0C,
    0x13,
    0x18,
    0x20,
    0x22,
    0x5B,
)
INTERESTING_INTS: Final = (
    0,
    1,
    -1,
    127,
    128,
    255,
    256,
    32767,
    32768,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**53,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**18,
    10**19,
    10**100,
)
NON_UTF8: Final = (
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\r",
    b"\r\n",
    "\u2028".encode(),
)
NESTING: Final = {
    "json": ((b"[", b"]"), (b'{"a":', b"}"), (b'{"report":[', b"]}")),
    "text": ((b"[", b"]"), (b"a=[", b"]"), (b"{a=", b"}"), (b'"', b'"'), (b"x = {y = ", b"}")),
    "der": ((b"\x30\x80", b"\x00\x00"), (b"\x30\x82\xff\xff", b""), (b"\xa0\x80", b"\x00\x00")),
    "bytes": ((b"\x30\x80", b"\x00\x00"), (b"[", b"]")),
}


@dataclass
class Finding:
    target: str
    kind: str  # untyped | slow | hang
    key: str
    summary: str
    path: str


@dataclass
class Stats:
    target: str
    inputs: int = 0
    accepted: int = 0
    typed: int = 0
    untyped: int = 0
    slow: int = 0
    max_cpu: float = 0.0
    max_wall: float = 0.0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        self.inputs += other.inputs
        self.accepted += other.accepted
        self.typed += other.typed
        self.untyped += other.untyped
        self.slow += other.slow
        self.max_cpu = max(self.max_cpu, other.max_cpu)
        self.max_wall = max(self.max_wall, other.max_wall)
        self.seconds += other.seconds
        known = {(f.kind, f.key) for f in self.findings}
        self.findings.extend(f for f in other.findings if (f.kind, f.key) not in known)


# -- mutations ------------------------------------------------------------------------------------
def _pos(rng: random.Random, data: bytes | bytearray) -> int:
    return rng.randrange(len(data) + 1)


def _digits(rng: random.Random) -> bytes:
    count = rng.choice((19, 20, 40, 309, 400, 4300, 4301, 5000, 20000, 100000))
    return (b"-" if rng.random() < 0.2 else b"") + b"9" * count


def mutate_once(rng: random.Random, data: bytearray, corpus: list[bytes], target: Target) -> None:
    op = rng.randrange(17)
    n = len(data)
    if op == 0 and n:  # bit flip
        i = rng.randrange(n)
        data[i] ^= 1 << rng.randrange(8)
    elif op == 1 and n:  # random byte
        data[rng.randrange(n)] = rng.randrange(256)
    elif op == 2 and n:  # interesting byte
        data[rng.randrange(n)] = rng.choice(INTERESTING_BYTES)
    elif op == 3:  # insert random bytes
        i = _pos(rng, data)
        data[i:i] = rng.randbytes(rng.choice((1, 1, 2, 4, 8, 32)))
    elif op == 4 and n:  # delete a run
        i = rng.randrange(n)
        del data[i : i + rng.choice((1, 1, 2, 4, 16, 64, n))]
    elif op == 5 and n:  # duplicate a run
        i = rng.randrange(n)
        run = data[i : i + rng.choice((1, 4, 16, 64, 256))]
        j = _pos(rng, data)
        data[j:j] = run * rng.choice((1, 2, 16, 256))
    elif op == 6 and corpus:  # splice with another corpus entry
        other = rng.choice(corpus)
        i, j = _pos(rng, data), rng.randrange(len(other) + 1)
        data[i:] = other[j:]
    elif op == 7 and target.tokens:  # dictionary token, inserted or replacing
        token = rng.choice(target.tokens)
        i = _pos(rng, data)
        if rng.random() < 0.5:
            data[i:i] = token
        else:
            data[i : i + len(token)] = token
    elif op == 8 and n:  # DER length octets
        i = rng.randrange(n)
        length = rng.choice(
            (
                b"\x80",
                b"\x81\x00",
                b"\x81\x7f",
                b"\x82\xff\xff",
                b"\x84\xff\xff\xff\xff",
                b"\x89\x01\x00\x00\x00\x00\x00\x00\x00\x00",
                b"\x00",
                b"\x7f",
                b"\x82\x00\x01",
            )
        )
        if rng.random() < 0.5:
            data[i : i + 1] = length
        else:
            data[i] = (data[i] + rng.choice((-2, -1, 1, 2))) % 256
    elif op == 9:  # interesting integer as text
        text = str(rng.choice(INTERESTING_INTS)).encode()
        i = _pos(rng, data)
        m = re.match(rb"-?[0-9]+", bytes(data[i:]))
        data[i : i + (len(m.group()) if m else 0)] = text
    elif op == 10:  # interesting integer as big-endian bytes
        value = rng.choice(INTERESTING_INTS) % 2**64
        size = rng.choice((1, 2, 4, 8))
        i = _pos(rng, data)
        data[i : i + size] = (value % 256**size).to_bytes(size, "big")
    elif op == 11:  # huge digit string, replacing a number where there is one
        digits = _digits(rng)
        found = [m.span() for m in re.finditer(rb"[0-9]+", bytes(data[:4096]))]
        if found and rng.random() < 0.7:
            a, b = rng.choice(found)
            data[a:b] = digits
        else:
            i = _pos(rng, data)
            data[i:i] = digits
    elif op == 12:  # deep nesting
        opening, closing = rng.choice(NESTING.get(target.kind, NESTING["bytes"]))
        depth = rng.choice((50, 100, 500, 1000, 3000, 20000))
        i = _pos(rng, data)
        data[i:i] = opening * depth + (closing * depth if rng.random() < 0.7 else b"")
    elif op == 13:  # non-UTF-8 (and BOM, NUL, line ends)
        i = _pos(rng, data)
        data[i:i] = rng.choice(NON_UTF8)
    elif op == 14 and n:  # truncate
        del data[rng.randrange(n) :]
    elif op == 15 and n:  # swap two bytes
        i, j = rng.randrange(n), rng.randrange(n)
        data[i], data[j] = data[j], data[i]
    else:  # a long run of one byte
        i = _pos(rng, data)
        data[i:i] = bytes([rng.choice(INTERESTING_BYTES)]) * rng.choice((64, 1024, 70000))


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes], target: Target) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        mutate_once(rng, data, corpus, target)
    if len(data) > MAX_SIZE:
        del data[MAX_SIZE:]
    return bytes(data)


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    words = re.sub(r"[0-9]+", "", str(exc))[:40]
    return f"{type(exc).__name__}:{words}"


PROJECT: Final = str(Path(__file__).resolve().parents[2]) + "/"


def _short(frame: traceback.FrameSummary) -> str:
    name = frame.filename
    name = name[len(PROJECT) :] if name.startswith(PROJECT) else Path(name).name
    return f"{name}:{frame.lineno}"


def _where(exc: BaseException) -> str:
    """The exception's type, the deepest frame of the project's own code (ca/, hsm/, policies/)
    and the frame that raised it: the key findings are deduplicated by."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    ours = [
        f for f in frames
        if f.filename.startswith(PROJECT)
        and not f.filename.startswith((PROJECT + "tests/", PROJECT + ".venv/"))
    ]  # fmt: skip
    parts = [type(exc).__name__]
    if ours:
        parts.append(_short(ours[-1]))
    if not ours or ours[-1] is not frames[-1]:
        parts.append(_short(frames[-1]))
    return "@".join(parts)


class _Hang(BaseException):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Hang()


# -- one chunk of inputs, in a worker -------------------------------------------------------------
_TARGETS: dict[str, Target] = {}


def init_targets(targets: dict[str, Target]) -> None:
    _TARGETS.clear()
    _TARGETS.update(targets)


def run_chunk(name: str, seed: int, chunk: int, count: int, out: str) -> Stats:
    target = _TARGETS[name]
    stats = Stats(name)
    rng = random.Random(f"{seed}:{name}:{chunk}")  # noqa: S311  (reproducible, not secret)
    corpus = list(target.seeds)
    outcomes: set[str] = set()
    keys: set[tuple[str, str]] = set()
    previous = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    try:
        for _ in range(count):
            data = mutate(rng, rng.choice(corpus), corpus, target)
            raised: BaseException | None = None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            signal.alarm(HANG)
            try:
                target.run(data)
            except _Hang as exc:
                raised = exc
            except target.typed as exc:
                raised = exc
                stats.typed += 1
            except Exception as exc:  # an untyped exception: the finding
                raised = exc
                stats.untyped += 1
                key = _where(exc)
                if ("untyped", key) not in keys:
                    keys.add(("untyped", key))
                    stats.findings.append(
                        _save(
                            out,
                            name,
                            "untyped",
                            key,
                            data,
                            "".join(traceback.format_exception(exc)),
                        )
                    )
            else:
                stats.accepted += 1
            finally:
                signal.alarm(0)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            stats.inputs += 1
            stats.max_cpu = max(stats.max_cpu, cpu)
            stats.max_wall = max(stats.max_wall, wall)
            if isinstance(raised, _Hang) or cpu > SLOW:
                stats.slow += 1
                kind = "hang" if isinstance(raised, _Hang) else "slow"
                key = f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}"
                if len([f for f in stats.findings if f.kind != "untyped"]) < 5:
                    stats.findings.append(
                        _save(
                            out,
                            name,
                            kind,
                            key,
                            data,
                            f"cpu {cpu:.3f} s, wall {wall:.3f} s, "
                            f"{len(data)} bytes, outcome {_outcome(raised)}",
                        )
                    )
            sign = _outcome(raised)
            if sign not in outcomes:
                outcomes.add(sign)
                if len(corpus) < CORPUS_CAP and len(data) < 64 * 1024:
                    corpus.append(data)
    finally:
        signal.signal(signal.SIGALRM, previous)
    stats.seconds = time.perf_counter() - started
    return stats


def _save(out: str, target: str, kind: str, key: str, data: bytes, text: str) -> Finding:
    folder = Path(out) / target
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}-{key}")[:120]
    (folder / f"{stem}.bin").write_bytes(data)
    (folder / f"{stem}.txt").write_text(f"{target}: {kind} {key}\n{text}\n")
    first = text.strip().splitlines()[-1] if text.strip() else ""
    return Finding(target, kind, key, first[:200], str(folder / f"{stem}.bin"))


# -- the run --------------------------------------------------------------------------------------
def _chunks(names: list[str], per_target: int, chunk_size: int) -> Iterator[tuple[str, int, int]]:
    """Chunks interleaved across targets, so a partial run covers every target evenly."""
    counts = dict.fromkeys(names, 0)
    index = 0
    while any(c < per_target for c in counts.values()):
        for name in names:
            left = per_target - counts[name]
            if left > 0:
                size = min(chunk_size, left)
                yield name, index, size
                counts[name] += size
        index += 1


def run(
    targets: dict[str, Target],
    *,
    per_target: int | dict[str, int],
    seed: int = 14,
    jobs: int | None = None,
    chunk_size: int = 2000,
    out: str | Path = "fuzz-findings",
    progress: Any = None,
) -> dict[str, Stats]:
    """Fuzz every target with ``per_target`` inputs over ``jobs`` processes (forked: the
    workers share the targets and their seeds made here)."""
    names = list(targets)
    budgets = per_target if isinstance(per_target, dict) else dict.fromkeys(names, per_target)
    init_targets(targets)
    totals = {name: Stats(name) for name in names}
    work: list[tuple[str, int, int, str]] = []
    for name in names:
        for _, index, size in _chunks([name], budgets.get(name, 0), chunk_size):
            work.append((name, seed, index, size, str(out)))  # type: ignore[arg-type]
    # interleave: chunk 0 of every target, then chunk 1 of every target, …
    work.sort(key=lambda w: (w[2], names.index(w[0])))
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        for item in work:
            stats = run_chunk(*item)  # type: ignore[arg-type]
            totals[stats.target].add(stats)
            if progress:
                progress(totals)
        return totals
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, maxtasksperchild=50) as pool:
        for stats in pool.imap_unordered(_run_item, work):
            totals[stats.target].add(stats)
            if progress:
                progress(totals)
    return totals


def _run_item(item: tuple[str, int, int, int, str]) -> Stats:
    return run_chunk(*item)


def table(totals: dict[str, Stats], file: Any = sys.stdout) -> None:
    width = max(len(n) for n in totals) if totals else 10
    head = f"{'parser':<{width}}  {'inputs':>9}  {'accepted':>8}  {'typed':>9}  {'untyped':>7}  " \
           f"{'>1s':>4}  {'max cpu s':>9}  {'max wall s':>10}  {'inputs/s':>8}"  # fmt: skip
    print(head, file=file)
    print("-" * len(head), file=file)
    for name, s in totals.items():
        rate = s.inputs / s.seconds if s.seconds else 0.0
        print(
            f"{name:<{width}}  {s.inputs:>9}  {s.accepted:>8}  {s.typed:>9}  {s.untyped:>7}  "
            f"{s.slow:>4}  {s.max_cpu:>9.3f}  {s.max_wall:>10.3f}  {rate:>8.0f}",
            file=file,
        )
    total = sum(s.inputs for s in totals.values())
    untyped = sum(s.untyped for s in totals.values())
    slow = sum(s.slow for s in totals.values())
    print("-" * len(head), file=file)
    print(f"{'total':<{width}}  {total:>9}  {'':>8}  {'':>9}  {untyped:>7}  {slow:>4}", file=file)
    for s in totals.values():
        for f in s.findings:
            print(f"  {f.target}: {f.kind} {f.key} — {f.summary} ({f.path})", file=file)
