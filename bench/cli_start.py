"""How fast the command line starts (issue #17), against a bare ``python -c pass`` in the same
run: ``jtca --help``, ``jtca --version`` (goal: at most 6× the bare start) and read commands
against a running service (goal: 0.5 s; printed in seconds and as a ratio): ``jtca service
status`` on an embedded state made for the run, then — on the demo world (``jtca demo
--no-console``, about half a minute) with gd-1 signed in by ``jtca login`` — ``jtca city keys``,
a read signed with the officer's session key. Each figure is the best of ``--rounds`` runs: the
machines here are shared and noisy, only ratios compare across runs.

    python bench/cli_start.py [--rounds 7] [--no-service] [--no-signed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
JTCA = str(Path(sys.executable).with_name("jtca"))
GOAL_RATIO = 6.0
GOAL_READ_SECONDS = 0.5


def best_of(argv: list[str], rounds: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-service", action="store_true", help="skip the read commands")
    parser.add_argument(
        "--no-signed", action="store_true", help="skip the signed read (no demo world)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jtca-bench-") as tmp:
        env = dict(
            os.environ,
            JTCA_STATE=str(Path(tmp) / "state"),
            XDG_CONFIG_HOME=str(Path(tmp) / "config"),
            XDG_STATE_HOME=str(Path(tmp) / "sessions"),  # the officer's session: not the user's
        )
        for variable in ("JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL", "SOFTHSM2_CONF"):
            env.pop(variable, None)
        bare = best_of([PYTHON, "-c", "pass"], args.rounds, env)
        print(f"python -c pass          {bare * 1000:7.1f} ms  (baseline)")
        worst = 0.0
        for words in (["--help"], ["--version"]):
            took = best_of([JTCA, *words], args.rounds, env)
            ratio = took / bare
            worst = max(worst, ratio)
            print(f"jtca {' '.join(words):<18} {took * 1000:7.1f} ms  {ratio:5.1f}× bare")
        print(f"goal: at most {GOAL_RATIO:.0f}× bare: {'met' if worst <= GOAL_RATIO else 'MISSED'}")
        if args.no_service:
            return 0
        subprocess.run([JTCA, "init", "--state", env["JTCA_STATE"]], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)  # fmt: skip
        try:
            read = best_of([JTCA, "service", "status"], args.rounds, env)
            say_read("jtca service status", read, bare)
            if not args.no_signed:
                signed_read(env, Path(tmp), args.rounds, bare)
        finally:
            subprocess.run([JTCA, "service", "stop"], env=env, check=False,
                           stdout=subprocess.DEVNULL, timeout=120)  # fmt: skip
    return 0


def say_read(command: str, took: float, bare: float) -> None:
    print(
        f"{command:<23} {took * 1000:7.1f} ms  {took / bare:5.1f}× bare "
        f"(a read against the running embedded service; goal {GOAL_READ_SECONDS} s: "
        f"{'met' if took <= GOAL_READ_SECONDS else 'MISSED'})"
    )


def signed_read(env: dict[str, str], tmp: Path, rounds: int, bare: float) -> None:
    """``jtca city keys`` as gd-1 of the demo world, signed in with their demo PIN."""
    subprocess.run([JTCA, "service", "stop"], env=env, check=False,
                   stdout=subprocess.DEVNULL, timeout=120)  # fmt: skip
    subprocess.run([JTCA, "demo", "--no-console"], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=600)  # fmt: skip
    credentials = json.loads((Path(env["JTCA_STATE"]) / "demo-credentials.json").read_text())
    pin = tmp / "gd-1.pin"
    pin.write_text(next(o["pin"] for o in credentials["officers"] if o["id"] == "gd-1"))
    pin.chmod(0o600)
    subprocess.run([JTCA, "login", "--officer", "gd-1", "--pin-source", f"file:{pin}"],
                   env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)  # fmt: skip
    say_read("jtca city keys (signed)", best_of([JTCA, "city", "keys"], rounds, env), bare)


if __name__ == "__main__":
    sys.exit(main())
