"""Lists distribution (issue #16, point 7): 10,000 operators polling with a conditional GET,
against ``jtca serve`` and against nginx serving the same published folder, in the same run.

A fresh state folder seeded by ``jtca demo --no-console`` (real SoftHSM2 tokens, the real
publisher), then, side by side:

- **service**: ``jtca serve --listen 127.0.0.1:PORT`` (HTTPS, TLS 1.3, its self-made
  certificate), ``GET /lists/<type>`` answered from the database's records;
- **nginx**: Debian's nginx with docs/deploy/nginx-jtca-lists.conf VERBATIM (only the folder
  and the port substituted), over TLS 1.3 with the service's own certificate and key (the
  ratio; plain HTTP is printed for reference), over the state's published folder.

The load generator is wrk (C, epoll) with bench/distribution.lua: the operators are split
between wrk's threads and each polls the three list types with ``If-None-Match`` = the ETag it
holds. In every round (each operator polls each type once) a share ``--new`` of the polls hold
the previous version's ETag (a new version came out since: 200 with the list), the others
the current one (304, no body). Both servers get the same wrk settings, one after the other.

Printed, for each server: 304s and 200s per second, total per second, p50 and p99 latency,
the CPU each process used; the ratio service / nginx (the issue's goal: >= 0.3) and what limits
each side (the CPU use of the server and of wrk: a load generator near its threads' cores means
the nginx figure is a lower bound). Numbers from a shared machine: only the ratio means much.

    python bench/distribution.py [--operators 10000] [--new 0.05] [--seconds 10]
                                 [--threads 2] [--connections 64] [--quick]

``--quick`` (a few seconds per server, under two minutes with the seeding) is what
tests/integration/test_bench_distribution.py runs. The state folder and both servers are
removed at the end (``--keep DIR`` seeds into DIR instead and leaves it, for profiling).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from hsm.sm.sm3 import sm3

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().with_name("distribution.lua")
DOCUMENTED = ROOT / "docs" / "deploy" / "nginx-jtca-lists.conf"
DOCUMENTED_FOLDER = "/var/lib/jtca/published"
DOCUMENTED_LISTEN = "127.0.0.1:8080"
TYPES = ("issuer-whitelist", "city-list", "ca-key-list")  # the Lua script's order
JTCA = str(Path(sys.executable).with_name("jtca"))
TICK = os.sysconf("SC_CLK_TCK")
GOAL = 0.3


def tool(name: str, fallback: str) -> str:
    found = shutil.which(name) or fallback
    if not Path(found).exists():
        raise SystemExit(f"{name} is not installed ({fallback}): scripts/bootstrap installs it")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quiet_env(state: Path) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")
    return env


def seed(state: Path) -> None:
    """``jtca demo --no-console`` into ``state``, its embedded service stopped after."""
    env = quiet_env(state)
    made = subprocess.run(
        [JTCA, "demo", "--no-console"], env=env, capture_output=True, text=True, timeout=600
    )
    subprocess.run([JTCA, "service", "stop"], env=env, capture_output=True, timeout=60)
    if made.returncode != 0:
        raise SystemExit(f"jtca demo --no-console failed:\n{made.stderr}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    pinned: Path | None = None  # the service's self-made certificate, as its clients pin it

    def http(self, timeout: float) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.pinned)) if self.pinned else True
        return httpx.Client(verify=verify, timeout=timeout)

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())


def wait_until_answers(server: Server, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with suppress(httpx.HTTPError, OSError), server.http(2) as http:
            http.get(server.url + "/lists/city-list")
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise SystemExit(f"{server.name} did not start:\n{tail}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def nginx(
    published: Path, folder: Path, workers: int, tls: tuple[Path, Path] | None = None
) -> Iterator[Server]:
    """Debian's nginx, the documented configuration verbatim but for folder and port; with
    ``tls`` (certificate, key) its ``listen`` gains ``ssl`` and TLS 1.3 only with that pair
    (the service's own, so both sides do the same handshake and record work)."""
    binary = tool("nginx", "/usr/sbin/nginx")
    prefix = folder / ("nginx-tls" if tls else "nginx")
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    documented = DOCUMENTED.read_text(encoding="utf-8")
    if documented.count(DOCUMENTED_LISTEN) != 1 or DOCUMENTED_FOLDER not in documented:
        raise SystemExit(f"{DOCUMENTED}: expected one 'listen {DOCUMENTED_LISTEN}' and the folder")
    site = documented.replace(DOCUMENTED_FOLDER, str(published))
    listen = f"127.0.0.1:{port}"
    if tls:
        listen += (
            f" ssl;\n    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n"
            "    ssl_protocols TLSv1.3"
        )
    (prefix / "jtca-lists.conf").write_text(
        site.replace(DOCUMENTED_LISTEN, listen), encoding="utf-8"
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the 0700 state folder
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes {workers};\nevents {{ worker_connections 1024; }}\nhttp {{\n"
        "    access_log off;\n"
        "    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;\n"
        "    fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n"
        "    include jtca-lists.conf;\n"
        "}\n",
        encoding="utf-8",
    )
    command = [
        binary, "-p", str(prefix), "-c", "nginx.conf",
        "-g", f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log;",
    ]  # fmt: skip
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    if checked.returncode != 0:
        raise SystemExit(f"nginx -t refused the configuration:\n{checked.stderr}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(
        f"nginx ({workers} worker, {'TLS 1.3' if tls else 'HTTP'})",
        f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        process,
        pinned=tls[0] if tls else None,
    )
    try:
        wait_until_answers(server, prefix / "error.log")
        yield server
    finally:
        stop(process)


@contextmanager
def service(state: Path, folder: Path) -> Iterator[Server]:
    """``jtca serve --listen 127.0.0.1:PORT`` (TLS 1.3) over the seeded state."""
    port = free_port()
    log = folder / "serve.log"
    env = quiet_env(state)
    env.pop("JTCA_IDLE_EXIT")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [JTCA, "serve", "--listen", f"127.0.0.1:{port}", "--state", str(state)],
            env=env, stdout=sink, stderr=sink,
        )  # fmt: skip
    server = Server(
        "service (jtca serve, TLS 1.3)",
        f"https://127.0.0.1:{port}",
        process,
        pinned=state / "tls" / "server.pem",  # made at its start
    )
    try:
        wait_until_answers(server, log)
        yield server
    finally:
        stop(process)


def etags(server: Server) -> tuple[list[str], list[str]]:
    """The current ETag of each list type, and the previous version's (the newest but one in
    index.json; a version the demo never published, if it published only one)."""
    current: list[str] = []
    previous: list[str] = []
    with server.http(10) as http:
        for name in TYPES:
            got = http.get(f"{server.url}/lists/{name}")
            if got.status_code != 200:
                raise SystemExit(f"{server.name}: GET /lists/{name}: {got.status_code} {got.text}")
            tag = got.headers["etag"]
            if tag != f'"{sm3(got.content).hex()}"':
                raise SystemExit(f"{server.name}: /lists/{name}: ETag {tag} is not the list's SM3")
            current.append(tag)
            versions = http.get(f"{server.url}/lists/{name}/index.json").json()["versions"]
            older = [v["sm3"] for v in versions if f'"{v["sm3"]}"' != tag]
            previous.append(
                f'"{older[-1]}"' if older else f'"{sm3(b"older " + got.content).hex()}"'
            )
    return current, previous


@dataclass
class Run:
    seconds: float
    requests: int
    n200: int
    n304: int
    other: int
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu: float
    wrk_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(
    server: Server,
    settings: argparse.Namespace,
    current: list[str],
    previous: list[str],
    seconds: float,
    folder: Path,
) -> Run:
    env = dict(
        os.environ,
        JTCA_BENCH_OPERATORS=str(settings.operators),
        JTCA_BENCH_NEW=str(settings.new),
        JTCA_BENCH_THREADS=str(settings.threads),
        JTCA_BENCH_HOST="127.0.0.1",
    )
    for n, (tag, old) in enumerate(zip(current, previous, strict=True), start=1):
        env[f"JTCA_BENCH_ETAG_{n}"] = tag
        env[f"JTCA_BENCH_OLD_{n}"] = old
    out = folder / "wrk.out"
    command = [
        tool("wrk", "/usr/bin/wrk"), "-t", str(settings.threads), "-c", str(settings.connections),
        "-d", f"{seconds:g}s", "--timeout", "10s", "-s", str(SCRIPT), server.url,
    ]  # fmt: skip
    before = server.cpu()
    with out.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    used = server.cpu() - before
    text = out.read_text(errors="replace")
    line = re.search(r"^JTCA-WRK (.*)$", text, re.MULTILINE)
    if process.returncode != 0 or line is None:
        raise SystemExit(f"wrk against {server.name} failed ({process.returncode}):\n{text}")
    values = {k: int(v) for k, v in (p.split("=") for p in line.group(1).split())}
    errors = sum(values[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return Run(
        seconds=values["duration_us"] / 1e6,
        requests=values["requests"],
        n200=values["n200"],
        n304=values["n304"],
        other=values["other"],
        errors=errors,
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        server_cpu=used,
        wrk_cpu=usage.ru_utime + usage.ru_stime,
    )


# where the service's CPU goes (--profile): each busy py-spy sample counts for the innermost
# frame of its stack that is in one of these files (first match from the leaf up)
BUCKETS = (
    ("TLS (asyncio sslproto, ssl)", ("asyncio/sslproto.py", "(ssl.py")),
    ("database session and query (SQLAlchemy, sqlite3)", ("sqlalchemy/", "sqlmodel/", "sqlite3")),
    ("logging (JSON access log line)", ("logging/__init__.py", "ca/obs/", "(json/")),
    ("metrics (prometheus-client)", ("prometheus_client/",)),
    ("request ids (uuid4)", ("(uuid.py",)),
    ("the GET /lists route itself", ("ca/api/lists_http.py", "ca/publish/http_layout.py")),
    ("jtca middleware (ca/api/app.py)", ("ca/api/app.py",)),
    ("Starlette BaseHTTPMiddleware (call_next)", ("starlette/middleware/base.py",)),
    ("thread-pool hop of the sync route", ("anyio/", "starlette/concurrency.py", "(threading.py",
                                           "(queue.py")),
    ("FastAPI/Starlette routing, other middleware", ("fastapi/", "starlette/")),
    ("HTTP/1.1 (uvicorn, h11)", ("uvicorn/", "h11/")),
    ("asyncio event loop", ("asyncio/", "(selectors.py")),
)  # fmt: skip
IDLE = ("Condition.wait", "EpollSelector.select", "Queue.get", "Event.wait")


def profile(server: Server, seconds: float, folder: Path) -> list[str] | str:
    """py-spy's samples of ``server`` for ``seconds``, summed into ``BUCKETS``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "py-spy is not installed (pip install py-spy): no profile"
    raw = folder / "profile.raw"
    done = subprocess.run(
        [spy, "record", "-p", str(server.process.pid), "-d", f"{max(1, round(seconds))}",
         "-r", "100", "-f", "raw", "-o", str(raw), "--nonblocking"],
        capture_output=True, text=True, timeout=seconds + 120,
    )  # fmt: skip
    if not raw.exists():
        return f"py-spy could not sample the service: {done.stderr.strip()[-300:]}"
    busy = 0
    counts = dict.fromkeys([*(label for label, _ in BUCKETS), "other"], 0)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit() or stack.split(";")[-1].split(" ")[0] in IDLE:
            continue
        busy += int(number)
        counts[next((label for frame in reversed(stack.split(";")) for label, files in BUCKETS
                     if any(f in frame for f in files)), "other")] += int(number)  # fmt: skip
    if not busy:
        return "py-spy took no busy samples"
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return [f"{n / busy:6.1%}  {label}" for label, n in ranked if n]


def plain_rate(server: Server, path: str, settings: argparse.Namespace, seconds: float) -> float:
    """Requests per second of a plain ``wrk`` GET of ``path`` (no script), same threads and
    connections."""
    command = [
        tool("wrk", "/usr/bin/wrk"), "-t", str(settings.threads), "-c", str(settings.connections),
        "-d", f"{seconds:g}s", "--timeout", "10s", server.url + path,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"^Requests/sec:\s+([0-9.]+)", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None or "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk GET {path} of {server.name} failed:\n{done.stdout}{done.stderr}")
    return float(found.group(1))


def row(name: str, run: Run) -> str:
    return (
        f"  {name:<34} {run.n304 / run.seconds:9.0f} {run.n200 / run.seconds:8.0f} "
        f"{run.rate:9.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f}   "
        f"{run.server_cpu / run.seconds:4.2f} {run.wrk_cpu / run.seconds:4.2f}"
    )


def limits(name: str, run: Run, threads: int, cores: int) -> str:
    server = run.server_cpu / run.seconds
    generator = run.wrk_cpu / run.seconds
    if generator >= 0.9 * min(threads, cores):
        verdict = "wrk's threads are busy: this figure is a lower bound (the load generator limits)"
    elif server >= 0.9:
        verdict = "the server is CPU-bound on a core"
    elif server + generator >= 0.8 * cores:
        verdict = f"server and wrk share the machine's {cores} cores: the CPU limits both"
    else:
        verdict = "neither the server nor wrk fills a core: waiting (I/O, locks) or others' load"
    return f"  {name}: server {server:.2f} cores, wrk {generator:.2f} cores: {verdict}"


def measure(settings: argparse.Namespace, state: Path, folder: Path) -> None:
    cores = os.cpu_count() or 1
    print(
        f"distribution: {settings.operators} operators x {len(TYPES)} list types polling with "
        f"If-None-Match; {settings.new:.0%} of each round's polls hold the previous version "
        "(200 with the list), the rest the current one (304)"
    )
    print(
        f"load generator: wrk ({tool('wrk', '/usr/bin/wrk')}, C/epoll), {settings.threads} "
        f"threads, {settings.connections} connections, keep-alive, bench/distribution.lua; "
        f"{settings.seconds:g} s per server after {settings.warmup:g} s of warm-up; "
        f"{cores} cores, load average {os.getloadavg()[0]:.2f} at the start"
    )
    tls = (state / "tls" / "server.pem", state / "tls" / "server-key.pem")  # the service's
    with (
        nginx(state / "published", folder, settings.nginx_workers) as plain,
        service(state, folder) as api,
        nginx(state / "published", folder, settings.nginx_workers, tls) as web,
    ):
        current, previous = etags(api)
        if etags(web)[0] != current or etags(plain)[0] != current:
            raise SystemExit("nginx and the service do not serve the same versions")
        runs: dict[str, Run] = {}
        for server in (plain, web, api):
            wrk(server, settings, current, previous, settings.warmup, folder)
            runs[server.name] = wrk(server, settings, current, previous, settings.seconds, folder)
        for name, run in runs.items():
            if run.other or run.errors or not run.n304 or not run.n200:
                raise SystemExit(
                    f"{name}: {run.n200} 200s, {run.n304} 304s, {run.other} other statuses, "
                    f"{run.errors} socket errors: not the expected answers"
                )
        served, reference = runs[api.name], runs[web.name]
        ceiling = plain_rate(api, "/healthz", settings, settings.seconds)
        profiled: list[str] | str = ""
        if settings.profile:
            loader = threading.Thread(
                target=wrk,
                args=(api, settings, current, previous, settings.seconds + 2, folder / "p"),
            )
            (folder / "p").mkdir()
            loader.start()
            time.sleep(1)
            profiled = profile(api, settings.seconds, folder)
            loader.join()
    print(
        f"  {'':<34} {'304/s':>9} {'200/s':>8} {'total/s':>9} {'p50 ms':>8} {'p99 ms':>8}   "
        "cpu: server wrk (cores)"
    )
    print(row(plain.name, runs[plain.name]))
    print(row(web.name, reference))
    print(row(api.name, served))
    ratio = served.rate / reference.rate
    verdict = "meets the goal" if ratio >= GOAL else "below the goal"
    print(
        f"ratio service / nginx {ratio:.3f}   (both TLS 1.3, same certificate; requests per "
        f"second; goal >= {GOAL}: {verdict})"
    )
    print(
        f"ratio service / nginx over plain HTTP {served.rate / runs[plain.name].rate:.3f}   "
        "(nginx without TLS: not like with like, for reference)"
    )
    print(
        f"ratio service / nginx per status: 304 {served.n304 / served.seconds / (reference.n304 / reference.seconds):.3f}, "  # noqa: E501
        f"200 {served.n200 / served.seconds / (reference.n200 / reference.seconds):.3f}; "
        f"p99 service / nginx {served.p99_ms / max(reference.p99_ms, 0.001):.1f}x"
    )
    print(
        f"what limits each side (load average {os.getloadavg()[0]:.2f} on {cores} cores at the "
        "end: other processes' share is not counted below):"
    )
    print(limits(plain.name, runs[plain.name], settings.threads, cores))
    print(limits(web.name, reference, settings.threads, cores))
    print(limits(api.name, served, settings.threads, cores))
    print(
        "  the service answers each GET /lists in its one Python process (uvicorn with "
        "httptools and uvloop when installed, TLS 1.3 in Python's ssl, the ca.api.lists_fast "
        "cache: no routing, no database query but once a second); nginx answers from a map in C "
        "with sendfile. For more, put nginx in front "
        "(docs/deploy/nginx-jtca-lists.conf) or run more service processes on the database."
    )
    print(
        f"  the routed path for comparison: GET /healthz (FastAPI routing, middleware, "
        f"thread-pool hop, the same TLS and HTTP) {ceiling:.0f}/s; the GET /lists fast path is "
        f"{served.rate / ceiling:.1f}x that"
    )
    if isinstance(profiled, str) and profiled:
        print(f"profile: {profiled}")
    elif profiled:
        print("profile of the service under the same load (py-spy, share of busy samples):")
        for line in profiled:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operators", type=int, default=10_000)
    parser.add_argument("--new", type=float, default=0.05, help="share of polls that get a 200")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 s per server (the test)")
    parser.add_argument(
        "--profile", action="store_true", help="then sample the service with py-spy under load"
    )
    parser.add_argument("--keep", metavar="DIR", help="seed into DIR (or reuse it) and keep it")
    settings = parser.parse_args()
    if not 0 < settings.new < 1:
        parser.error(f"--new {settings.new}: a share between 0 and 1 (exclusive)")
    if settings.operators < settings.threads:
        parser.error(f"--operators {settings.operators}: at least one per wrk thread")
    if settings.quick:
        settings.seconds, settings.warmup = 3.0, 1.0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jtca-bench-distribution-") as tmp:
        folder = Path(tmp)
        state = Path(settings.keep).resolve() / "state" if settings.keep else folder / "state"
        if not (state / "published").is_dir():
            seed(state)
            print(f"seeded {state} with jtca demo --no-console in "
                  f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        measure(settings, state, folder)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
