"""``make fuzz``: every parser fuzzed with ≥ 1,000,000 inputs (issue #14, point 3), a table of
inputs, typed refusals, untyped exceptions and inputs over 1 s of CPU per parser.

    .venv/bin/python -m tests.fuzz.run [--inputs N] [--jobs J] [--only PREFIX ...] [--seed S]

Findings (untyped exceptions, slow inputs) are saved under ``--out`` (default fuzz-findings/),
one ``.bin`` input and one ``.txt`` traceback each. The exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.fuzz import engine
from tests.fuzz.targets import all_targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", nargs="*", default=[], help="parsers whose name starts so")
    parser.add_argument("--skip", nargs="*", default=[], help="parsers whose name starts so")
    parser.add_argument("--out", default="fuzz-findings")
    parser.add_argument("--chunk", type=int, default=5000, help="inputs per work unit")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between tables")
    args = parser.parse_args(argv)
    targets = all_targets()
    if args.only:
        targets = {n: t for n, t in targets.items() if n.startswith(tuple(args.only))}
    if args.skip:
        targets = {n: t for n, t in targets.items() if not n.startswith(tuple(args.skip))}
    started = time.monotonic()
    last = [started]

    def progress(totals: dict[str, engine.Stats]) -> None:
        if time.monotonic() - last[0] >= args.every:
            last[0] = time.monotonic()
            done = sum(s.inputs for s in totals.values())
            print(f"\n-- {time.monotonic() - started:.0f} s, {done} inputs", flush=True)
            engine.table(totals)
            sys.stdout.flush()

    totals = engine.run(
        targets,
        per_target=args.inputs,
        seed=args.seed,
        jobs=args.jobs,
        chunk_size=args.chunk,
        out=args.out,
        progress=progress,
    )
    print(f"\nfuzz: {len(totals)} parsers, {args.inputs} inputs each, seed {args.seed}, "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    engine.table(totals)
    bad = sum(s.untyped + s.slow for s in totals.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
