"""The crash harness (issue #14, point 2): kill -9 at every token and file boundary and at
random moments, for every multi-step operation, and prove the invariants after each trial.

A trial runs the real ``jtca`` on a private copy of a state folder that ``jtca demo --no-console``
seeded (SoftHSM2 tokens, SQLite, officers with personal tokens, credentials in
``demo-credentials.json``), its embedded service a process of its own:

1. the operation runs with ``JTCA_CRASH_AT=<point>`` (``hsm/crashpoints.py``) in the environment
   of the command and of the embedded service it starts — whichever process reaches the point
   dies by SIGKILL there — or, for a random-moment trial, the service is SIGKILLed after a delay
   drawn from the operation's clean duration;
2. the service is started again (recovery runs at its start) and a ministry root officer runs
   ``jtca recover`` (the service's intents and this site's journal);
3. the invariants hold (``check_invariants``): no key without its record and no record without
   its key, no serial reused, no stray temporary file and no served file without its record,
   the audit log verifies, no intent left open by a dead process;
4. the interrupted operation is run again and completes; the invariants hold again.

``JTCA_CRASH_TRIALS`` sets the trials per operation: 5 in ``.ci/run`` (the default), 100 in
``make crash``. Each operation prints ``crash <name>: trials T, kills K, failures F``; a failure
keeps its state folder (its path is in the message) and fails the test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JTCA = str(Path(sys.executable).with_name("jtca"))
TRIALS = int(os.environ.get("JTCA_CRASH_TRIALS", "5"))
PROBE = Path(__file__).with_name("probe.py")
ROOT_OFFICER = "mot-root-1"  # a ministry root officer: allowed system.recover
TEMP_SUFFIX = ".tmp"
SERVED = ("published", "packages", "ceremonies", "log")  # folders whose files are served


class TrialFailed(AssertionError):
    pass


def _clean_environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JTCA_", "SOFTHSM2_CONF", "PYTEST_"))
    }
    env["JTCA_IDLE_EXIT"] = "120"
    return env


@dataclass
class Trial:
    """A private state folder, its officers' desks (session files, PINs) and the real ``jtca``."""

    state: Path
    home: Path
    log: list[str] = field(default_factory=list)

    @property
    def credentials(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "demo-credentials.json").read_text())
        return data

    def pin(self, officer: str) -> str:
        for item in self.credentials["officers"]:
            if item["id"] == officer:
                return str(item["pin"])
        raise KeyError(officer)

    def env(self, officer: str | None = None, **extra: str) -> dict[str, str]:
        env = _clean_environment()
        env.update(
            JTCA_STATE=str(self.state),
            SOFTHSM2_CONF=str(self.state / "softhsm2" / "softhsm2.conf"),
            XDG_STATE_HOME=str(self.home / "xdg"),
            JTCA_SESSION=str(self.home / "sessions" / f"{officer or 'nobody'}.json"),
        )
        if officer is not None:
            env["OFFICER_PIN"] = self.pin(officer)
        env.update(extra)
        return env

    # -- the real jtca ---------------------------------------------------------------------------
    def jtca(
        self,
        *args: str,
        officer: str | None = None,
        crash: str | None = None,
        trace: Path | None = None,
        ok: bool | None = True,
        timeout: float = 240,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``jtca *args`` as ``officer``. With ``crash`` (or ``trace``) the embedded service is
        stopped first, so the one this command starts carries the same environment."""
        extra: dict[str, str] = {}
        if crash is not None or trace is not None:
            self.stop_service()
        if crash is not None:
            extra["JTCA_CRASH_AT"] = crash
        if trace is not None:
            extra["JTCA_CRASH_TRACE"] = str(trace)
        result = subprocess.run(
            [JTCA, *args],
            env=self.env(officer, **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            check=False,
            cwd=self.home,
        )
        self.log.append(f"$ jtca {' '.join(args)} -> {result.returncode}\n{result.stderr[-2000:]}")
        if "Traceback" in result.stderr:
            raise TrialFailed(f"a traceback from jtca {' '.join(args)}:\n{result.stderr}")
        if ok is True and result.returncode != 0:
            raise TrialFailed(
                f"jtca {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def data(self, *args: str, officer: str | None = None) -> Any:
        return json.loads(self.jtca(*args, "--json", officer=officer).stdout)

    def login(self, *officers: str) -> None:
        for officer in officers:
            self.jtca("login", "--officer", officer, "--pin-source", "env:OFFICER_PIN",
                      officer=officer)  # fmt: skip

    # -- the embedded service --------------------------------------------------------------------
    def service_pid(self) -> int | None:
        try:
            pid = int((self.state / "jtca-service.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _running(pid) else None

    def stop_service(self) -> None:
        from ca.client.embedded import stop

        stop(self.state, timeout=30.0)
        self._wait_gone()

    def kill_service(self) -> bool:
        pid = self.service_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid)
        return True

    def _wait_gone(self, pid: int | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pid is None:
                pid = self.service_pid()
                if pid is None:
                    return
            if not _running(pid):
                return
            time.sleep(0.05)

    # -- reading what is there -----------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        # closed at once: a sqlite3 connection sits in a reference cycle (its statement cache) and
        # a close left to the garbage collector deletes the WAL under a template being copied
        with closing(sqlite3.connect(f"file:{self.state / 'jtca.db'}?mode=ro", uri=True)) as db:
            return list(db.execute(sql, params).fetchall())

    def application_of(self, city: str) -> str:
        """The id of the demo's one application naming ``city`` alone (read from the state, not
        assumed: the demo's history decides the numbering)."""
        rows = self.query("select id from key_application where cities = ?", city)
        if len(rows) != 1:
            raise TrialFailed(f"expected one application for {city} in the seed, found {rows}")
        return str(rows[0][0])

    def keys_of(self, city: str) -> list[str]:
        """The ids of ``city``'s keys, whatever their stage (from the state: a rerun after a
        crash names the same keys as the first run)."""
        rows = self.query(
            "select id from city_key where label like ? order by id", f"city-%-{city}-%"
        )
        if not rows:
            raise TrialFailed(f"no key of {city} in the seed")
        return [str(r[0]) for r in rows]

    def token_objects(self) -> dict[str, set[tuple[str, str]]]:
        """{token: {(label, id hex)}} of every private and secret key object (a child process)."""
        done = subprocess.run(
            [sys.executable, str(PROBE), str(self.state)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise TrialFailed(f"the token probe failed: {done.stderr[-2000:]}")
        raw: dict[str, list[list[str]]] = json.loads(done.stdout)
        return {token: {(r[0], r[1]) for r in rows} for token, rows in raw.items()}

    def recorded_keys(self) -> set[tuple[str, str, str]]:
        """{(token, label, id hex)} named by every ``*uri`` column of every table."""
        from hsm.pkcs11.uri import Pkcs11Uri

        found: set[tuple[str, str, str]] = set()
        tables = [r[0] for r in self.query("select name from sqlite_master where type='table'")]
        for table in tables:
            columns = [r[1] for r in self.query(f"pragma table_info({table})")]
            for column in columns:
                if "uri" not in column:
                    continue
                for (value,) in self.query(f"select {column} from {table}"):
                    if not value:
                        continue
                    uri = Pkcs11Uri.parse(value)
                    found.add((uri.token or "", uri.object or "", (uri.id or b"").hex()))
        return found


def _running(pid: int) -> bool:
    """Alive and not a zombie: a service killed by SIGKILL whose parent (this container's first
    process) has not reaped it still answers ``kill(pid, 0)``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] not in ("Z", "X", "x")


# -- the invariants -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """What the template held before any trial: keys without records and records without keys
    that the demo itself leaves (none expected, but the comparison is against this)."""

    unrecorded: frozenset[tuple[str, str, str]]
    missing: frozenset[tuple[str, str, str]]
    serials: int


def key_gaps(trial: Trial) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(token objects no record names, recorded keys no token holds), over the ministry's tokens
    and every token a record names, whose PIN files lie in the state folder."""
    recorded = trial.recorded_keys()
    named = {t for t, _, _ in recorded}
    # the ministry's tokens and every token a record names (an issuer's own token, DEMO-ISSUER,
    # holds the issuer's key, which the authority records by its public part only)
    objects = {
        t: rows for t, rows in trial.token_objects().items() if t.startswith("MOT-") or t in named
    }
    present = {(t, label, key_id) for t, rows in objects.items() for label, key_id in rows}
    by_label = {(t, label) for t, label, _ in recorded}
    unrecorded = {
        (t, label, key_id)
        for t, label, key_id in present
        if (t, label, key_id) not in recorded and (t, label) not in by_label
    }
    present_labels = {(t, label) for t, label, _ in present}
    missing = {
        (t, label, key_id)
        for t, label, key_id in recorded
        if t in objects and (t, label) not in present_labels
    }
    return unrecorded, missing


def baseline(trial: Trial) -> Baseline:
    trial.stop_service()
    unrecorded, missing = key_gaps(trial)
    serials = len(trial.query("select 1 from interop_certificate"))
    return Baseline(frozenset(unrecorded), frozenset(missing), serials)


def stray_files(trial: Trial, extra: Iterable[Path] = ()) -> list[Path]:
    """Temporary files left in any folder jtca writes (the state's and ``extra``)."""
    roots = [trial.state, trial.home, *extra]
    found: list[Path] = []
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob(f"*{TEMP_SUFFIX}"):
            if path.name.startswith(".") and "softhsm2" not in path.parts:
                found.append(path)
    return sorted(set(found))


def served_without_record(trial: Trial) -> list[str]:
    """Every list file in the publication folder is byte for byte a recorded version."""
    recorded = {r[0] for r in trial.query("select sha256 from list_version")}
    problems = []
    published = trial.state / "published"
    if not published.exists():
        return problems
    import hashlib

    for path in published.rglob("*.der"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in recorded:
            problems.append(f"{path.relative_to(trial.state)}: served, recorded nowhere")
    return problems


def reused_serials(trial: Trial) -> list[str]:
    rows = trial.query(
        "select ca_key, serial, count(*) from interop_certificate group by ca_key, serial "
        "having count(*) > 1"
    )
    problems = [
        f"serial {serial} of CA key {key[:16]}… issued {n} times" for key, serial, n in rows
    ]
    for key, next_serial in trial.query("select ca_key, next_serial from serial_counter"):
        top = trial.query("select max(serial) from interop_certificate where ca_key = ?", key)
        if top and top[0][0] is not None and top[0][0] >= next_serial:
            problems.append(f"CA key {key[:16]}…: next serial {next_serial} <= issued {top[0][0]}")
    return problems


def open_intents(trial: Trial) -> list[str]:
    from ca.core.owners import owner_alive

    now = int(time.time())
    problems = [
        f"intent {i} ({op} on {subject}) still open, its process gone"
        for i, op, subject, owner, began in trial.query(
            "select id, operation, subject, owner, began_at from intent where state = 'open'"
        )
        if not owner_alive(owner, began_at=began, now=now)
    ]
    journal = trial.state / "site-intents" / "open"
    if journal.is_dir():
        problems += [f"site intent {p.stem} still open" for p in journal.glob("*.json")]
    return problems


def audit_findings(trial: Trial) -> list[str]:
    result = trial.jtca("audit", "verify", "--json", ok=None)
    if result.returncode != 0:
        return [f"jtca audit verify exited {result.returncode}: {result.stderr.strip()[:500]}"]
    report = json.loads(result.stdout)
    findings = report.get("findings") or []
    return [f"audit log: {f}" for f in findings]


def check_invariants(
    trial: Trial, base: Baseline, *, extra_folders: Iterable[Path] = ()
) -> list[str]:
    """Every invariant of the issue, as a list of problems (empty: all hold)."""
    problems = open_intents(trial)
    problems += [f"stray temporary file {p}" for p in stray_files(trial, extra_folders)]
    problems += served_without_record(trial)
    problems += reused_serials(trial)
    problems += audit_findings(trial)
    trial.stop_service()  # the tokens are read with the service down
    unrecorded, missing = key_gaps(trial)
    new_orphans = sorted(unrecorded - base.unrecorded)
    problems += [f"key {k} in the token with no record" for k in new_orphans]
    problems += [f"record of key {k}, no key in the token" for k in sorted(missing - base.missing)]
    return problems


# -- templates and trials ---------------------------------------------------------------------
class Template:
    """A seeded state folder that trials copy; ``derive`` makes one with more done to it."""

    def __init__(self, root: Path) -> None:
        self.root = root  # holds state/ and home/
        self._derived: dict[str, Template] = {}
        self._baseline: Baseline | None = None

    @classmethod
    def seed(cls, where: Path) -> Template:
        where.mkdir(parents=True, exist_ok=True)
        (where / "home" / "sessions").mkdir(parents=True, mode=0o700)
        trial = Trial(where / "state", where / "home")
        subprocess.run(
            [JTCA, "demo", "--no-console"],
            env=trial.env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            cwd=where / "home",
            stdin=subprocess.DEVNULL,
        )
        trial.stop_service()
        return cls(where)

    def trial(self, where: Path) -> Trial:
        if where.exists():
            shutil.rmtree(where)
        shutil.copytree(
            self.root, where, symlinks=True, ignore=shutil.ignore_patterns("*.sock", "*.pid")
        )
        trial = Trial(where / "state", where / "home")
        conf = trial.state / "softhsm2" / "softhsm2.conf"
        conf.write_text(conf.read_text().replace(str(self.root / "state"), str(trial.state)))
        return trial

    def derive(self, name: str, setup: Callable[[Trial], None]) -> Template:
        """A template with ``setup`` done (once): the officers' logins, the preconditions."""
        if name not in self._derived:
            where = self.root.parent / f"{self.root.name}+{name}"
            trial = self.trial(where)
            setup(trial)
            trial.stop_service()
            self._derived[name] = Template(where)
        return self._derived[name]

    def baseline(self) -> Baseline:
        if self._baseline is None:
            probe = self.trial(self.root.parent / f"{self.root.name}.baseline")
            self._baseline = baseline(probe)
            shutil.rmtree(probe.home.parent, ignore_errors=True)
        return self._baseline


def boundaries(
    template: Template, run: Callable[[Trial, str | None], Any], where: Path
) -> list[str]:
    """The crash points ``run`` reaches, in order (a clean run with JTCA_CRASH_TRACE)."""
    trial = template.trial(where)
    trace = where / "trace.txt"
    trace.touch()
    os.environ.pop("JTCA_CRASH_TRACE", None)
    _traced[id(trial)] = trace
    try:
        run(trial, None)
    finally:
        _traced.pop(id(trial), None)
        trial.stop_service()
    points: list[str] = []
    for line in trace.read_text().splitlines():
        if line and line not in points:
            points.append(line)
    return points


_traced: dict[int, Path] = {}


def traced(trial: Trial) -> Path | None:
    """The trace file of a ``boundaries`` run (pass it as ``trace=`` to ``Trial.jtca``)."""
    return _traced.get(id(trial))


@dataclass
class Tally:
    name: str
    trials: int = 0
    kills: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        failures = len(self.failures)
        return f"crash {self.name}: trials {self.trials}, kills {self.kills}, failures {failures}"


def run_trials(
    name: str,
    template: Template,
    tmp: Path,
    *,
    run: Callable[[Trial, str | None], Any],
    complete: Callable[[Trial], Any],
    check: Callable[[Trial], list[str]] | None = None,
    extra_folders: Callable[[Trial], Sequence[Path]] = lambda _t: (),
    trials: int | None = None,
    seed: int = 14,
) -> Tally:
    """The trials of one operation. ``run(trial, crash)`` runs the operation once with
    ``trial.jtca(..., crash=crash, ok=None)`` (``crash`` None: a clean run; it may also receive
    ``trace=traced(trial)``); ``complete(trial)`` finishes it after recovery (the rerun, which must
    succeed); ``check(trial)`` adds the operation's own invariants.

    Trials cycle over every boundary (``boundaries``); every third trial instead SIGKILLs the
    service at a random moment of the operation's clean duration."""
    count = trials if trials is not None else TRIALS
    rng = random.Random(seed)  # noqa: S311 - when to kill, not a secret
    base = template.baseline()
    started = time.monotonic()
    points = boundaries(template, run, tmp / f"{name}-trace")
    clean = max(0.2, time.monotonic() - started)
    if not points:
        raise TrialFailed(f"{name}: the operation reached no crash point")
    tally = Tally(name)
    for index in range(count):
        where = tmp / f"{name}-{index}"
        trial = template.trial(where)
        killed = False
        what: str
        try:
            if index % 3 == 2:
                delay = rng.uniform(0.0, clean)
                what = f"a SIGKILL of the service after {delay:.2f} s"
                killed = _kill_during(trial, run, delay)
            else:
                point = points[(index - index // 3) % len(points)]
                what = f"JTCA_CRASH_AT={point}"
                run(trial, point)
                killed = _died(trial, point)
            # a service started with the crash point that did not reach it must not carry it
            # into the recovery and the rerun
            trial.stop_service()
            tally.kills += int(killed)
            trial.jtca("recover", "--json", officer=ROOT_OFFICER)
            problems = check_invariants(trial, base, extra_folders=extra_folders(trial))
            if check is not None:
                problems += check(trial)
            if problems:
                raise TrialFailed("after the crash: " + "; ".join(problems))
            complete(trial)
            problems = check_invariants(trial, base, extra_folders=extra_folders(trial))
            if check is not None:
                problems += check(trial)
            if problems:
                raise TrialFailed("after completing: " + "; ".join(problems))
        except (TrialFailed, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            tally.failures.append(f"trial {index} ({what}), state kept at {where}: {exc}")
        else:
            trial.stop_service()
            shutil.rmtree(where, ignore_errors=True)
        finally:
            trial.stop_service()
        tally.trials += 1
    print(tally.line())
    for failure in tally.failures:
        print("  " + failure[:3000])
    return tally


def _died(trial: Trial, point: str) -> bool:
    """Whether the command or the service it talked to died at ``point`` (SIGKILL)."""
    last = trial.log[-1].splitlines()[0] if trial.log else ""
    return last.endswith(f"-> {-signal.SIGKILL}") or trial.service_pid() is None


def _kill_during(trial: Trial, run: Callable[[Trial, str | None], Any], delay: float) -> bool:
    """Run the operation in a thread; SIGKILL the service after ``delay`` seconds."""
    import threading

    trial.stop_service()
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            run(trial, None)
        except BaseException as exc:  # the kill makes the command fail: expected
            outcome.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    deadline = time.monotonic() + delay
    killed = False
    while time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.01)
    if worker.is_alive():
        killed = trial.kill_service()
    worker.join(timeout=300)
    tracebacks = [e for e in outcome if isinstance(e, TrialFailed) and "traceback" in str(e)]
    if tracebacks:
        raise tracebacks[0]
    return killed
