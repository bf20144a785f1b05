"""bench/distribution.py --quick runs whole (issue #16, point 7): a demo-seeded state, nginx with
the documented configuration and a real ``jtca serve`` over TLS, wrk polling both with
conditional GETs; the output has each server's 304s and 200s per second and p99, the ratio line
and what limits each side, and the bench leaves nothing behind. No speed threshold: the numbers
are only checked to be numbers, and both servers to have answered 304s and 200s."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "distribution.py"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"


def _row(output: str, name: str) -> list[float]:
    found = re.search(
        rf"^  {re.escape(name)}\s+((?:{NUMBER}\s+){{5}}){NUMBER} ({NUMBER})$", output, re.M
    )
    assert found is not None, f"no row for {name}:\n{output}"
    return [float(x) for x in re.findall(NUMBER, found.group(0)[len(name) + 2 :])]


def test_quick_run_prints_both_servers_and_the_ratio(tmp_path: Path) -> None:
    for binary in ("wrk", "nginx"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            pytest.fail(f"{binary} is not installed: scripts/bootstrap installs it")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--operators", "10000"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    assert "10000 operators x 3 list types" in output
    assert "load generator: wrk" in output
    for name in (
        "nginx (1 worker, HTTP)",
        "nginx (1 worker, TLS 1.3)",
        "service (jtca serve, TLS 1.3)",
    ):
        per_304, per_200, total, p50, p99, _server_cpu, _wrk_cpu = _row(output, name)
        assert per_200 > 0, name  # some polls find a new version
        assert per_304 > 0, name
        assert per_304 > per_200, name
        assert total >= per_304 + per_200 - 1, name
        assert 0 < p50 <= p99, name
    ratio = re.search(rf"^ratio service / nginx ({NUMBER})   \(both TLS 1\.3, same certificate; "
                      r"requests per second; goal >= 0\.3: "
                      r"(meets the goal|below the goal)\)$", output, re.M)  # fmt: skip
    assert ratio is not None, output
    assert float(ratio.group(1)) > 0
    assert re.search(rf"^ratio service / nginx over plain HTTP {NUMBER}   \(", output, re.M)
    assert re.search(r"^what limits each side \(load average [0-9.]+ on [0-9]+ cores", output, re.M)
    assert re.search(
        r"^  service \(jtca serve, TLS 1\.3\): server [0-9.]+ cores, wrk [0-9.]+ cores: \S",
        output,
        re.M,
    )
    assert re.search(
        r"^  nginx \(1 worker, HTTP\): server [0-9.]+ cores, wrk [0-9.]+ cores: \S", output, re.M
    )
    assert re.search(
        r"^  the routed path for comparison: GET /healthz .* [0-9]+/s; "
        r"the GET /lists fast path is [0-9.]+x that",
        output,
        re.M,
    )
    # cleaned up: its temporary folder (state, nginx prefix, logs) is gone
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
