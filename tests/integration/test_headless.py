"""A headless install (issue #16, point 6): ``jtca serve`` and ``jtca publish`` run for real —
over a state folder the demo seeded, the publisher signing every list again through the
service — in processes where importing textual, PIL (pillow), zxingcpp or zint fails and is
recorded; neither imports any of them. The package's metadata and the headless lock require
none of them outside the extras ``console`` and ``images``, and PostgreSQL's driver only with
``postgres``."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from hsm.custody import combine_secret

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("textual", "PIL", "zxingcpp", "zint")
OPTIONAL = {
    "textual": "console",
    "pillow": "images",
    "zxing-cpp": "images",
    "zint-bindings": "images",
    "psycopg": "postgres",
}

# Run jtca's console script with an import hook in front of every finder: a blocked top-level
# module raises ImportError and is written to the file named by JTCA_BLOCKED_LOG, so an import
# some code catches and survives is still seen by the test.
RUNNER = """
import importlib.abc, os, sys
BLOCKED = set(os.environ["JTCA_BLOCKED"].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["JTCA_BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"blocked in a headless install: {name}", name=name)
        return None
sys.meta_path.insert(0, Block())
from ca.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def env_for(state: Path, blocked_log: Path) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(state), JTCA_IDLE_EXIT="60")
    for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = str(state.parent / "no-config")
    env["JTCA_BLOCKED"] = ",".join(BLOCKED)
    env["JTCA_BLOCKED_LOG"] = str(blocked_log)
    return env


def headless(*args: str, python: str = sys.executable) -> list[str]:
    return [python, "-c", RUNNER, *args]


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``jtca demo --no-console`` (a full install makes it; its embedded service stopped)."""
    state = tmp_path_factory.mktemp("headless") / "state"
    env = env_for(state, state.parent / "unused.log")
    jtca = str(Path(sys.executable).with_name("jtca"))
    made = subprocess.run(
        [jtca, "demo", "--no-console"], env=env, capture_output=True, text=True, timeout=600
    )
    stop = subprocess.run(
        [jtca, "service", "stop"], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert stop.returncode == 0, stop.stderr
    return state


@contextlib.contextmanager
def serving(state: Path, env: dict[str, str], log_path: Path, python: str) -> Iterator[Path]:
    sock = state.parent / "headless.sock"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            headless("serve", "--uds", str(sock), "--state", str(state), python=python),
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://jtca", timeout=30
        ) as http:
            for _ in range(600):  # wait for its socket to answer, not for a time
                assert process.poll() is None, log_path.read_text(errors="replace")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        break
                time.sleep(0.1)
            else:
                pytest.fail("jtca serve did not become ready: " + log_path.read_text())
        yield sock
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_and_publish(
    state: Path, tmp_path: Path, env: dict[str, str], python: str, validity: int
) -> None:
    """``jtca serve`` on ``state`` and one ``jtca publish`` through it, both run by ``python``
    behind the import hook; every list signed again (its nextUpdate within the refresh margin)."""
    credentials = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
    publisher = next(o for o in credentials["officers"] if o["id"] == "publisher-1")
    officer_pin = tmp_path / "publisher-officer.pin"
    officer_pin.write_text(publisher["pin"], encoding="utf-8")
    list_pin = tmp_path / "publisher.pin"
    list_pin.write_bytes(combine_secret([str(s) for s in credentials["root_token_shares"]]))
    out = tmp_path / "lists"
    with serving(state, env, tmp_path / "serve.log", python) as sock:
        ran = subprocess.run(
            headless(
                "publish",
                "--officer",
                "publisher-1",
                "--officer-token",
                publisher["token_label"],
                "--officer-pin-source",
                f"file:{officer_pin}",
                "--pin-source",
                f"file:{list_pin}",
                "--validity-hours",
                str(validity),
                "--refresh-hours",
                str(validity - 1),  # every current nextUpdate is "near": all signed again
                "--out",
                str(out),
                "--json",
                python=python,
            ),
            env=dict(env, JTCA_URL=f"unix://{sock}"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert ran.returncode == 0, ran.stderr
        actions = {d["list"]: d["action"] for d in json.loads(ran.stdout)}
        assert actions == {
            "issuer-whitelist": "published",
            "city-list": "published",
            "ca-key-list": "published",
        }
        for name in actions:
            assert (out / f"{name}.der").read_bytes()[:1] == b"\x30"  # a DER SEQUENCE


def test_serve_and_publish_import_no_console_or_image_library(
    demo_state: Path, tmp_path: Path
) -> None:
    blocked_log = tmp_path / "blocked.log"
    env = env_for(demo_state, blocked_log)
    # the hook works: a blocked import fails in such a process, and is recorded
    probe = subprocess.run(
        [sys.executable, "-c", RUNNER.replace("from ca.__main__", "import PIL\nfrom ca.__main__")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0
    assert "blocked in a headless install: PIL" in probe.stderr
    blocked_log.unlink()
    # a command that needs an extra says which, and how to install it
    image = tmp_path / "ride.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    needs = subprocess.run(
        headless("qr", "inspect", str(image)), env=env, capture_output=True, text=True, timeout=60
    )
    assert needs.returncode == 69, needs.stderr
    assert "pip install 'jtca[images]'" in needs.stderr
    assert "Traceback" not in needs.stderr
    blocked_log.unlink()

    serve_and_publish(demo_state, tmp_path, env, sys.executable, validity=48)
    assert not blocked_log.exists(), blocked_log.read_text()


def test_a_headless_install_from_its_lock_serves_and_publishes(
    demo_state: Path, tmp_path: Path
) -> None:
    """A fresh virtual environment installed as docs/deploy.md says (requirements-headless.lock
    with --require-hashes, then jtca with --no-deps) has none of the optional libraries, and its
    own jtca serves and publishes (a network or a pip cache, as scripts/bootstrap needs)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    lock = str(ROOT / "requirements-headless.lock")
    source = tmp_path / "source"  # a copy: a build in the checkout would leave build/ there
    for part in ("ca", "hsm", "policies", "tui"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, source / part)
    for argv in ([*pip, "--require-hashes", "-r", lock], [*pip, "--no-deps", str(source)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr
    python = str(venv / "bin" / "python")
    found = subprocess.run(
        [python, "-c", "import importlib.util as u, sys; "
         "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *BLOCKED, "psycopg"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    ).stdout.split()  # fmt: skip
    assert found == ["psycopg"]  # the extra postgres, and nothing of console or images
    blocked_log = tmp_path / "blocked.log"
    env = env_for(demo_state, blocked_log)
    serve_and_publish(demo_state, tmp_path, env, python, validity=96)
    assert not blocked_log.exists(), blocked_log.read_text()


def project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        data: dict[str, object] = tomllib.load(f)["project"]
    return data


def test_the_base_install_requires_no_console_image_or_postgres_package() -> None:
    base = {Requirement(r).name for r in project()["dependencies"]}  # type: ignore[attr-defined]
    assert not base & set(OPTIONAL)
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    for package, extra in OPTIONAL.items():
        assert package in {Requirement(r).name for r in extras[extra]}
    # the dev extra (scripts/bootstrap, the tests) takes every part
    assert "jtca[postgres,console,images]" in extras["dev"]
    # the installed distribution says the same (pip reads these)
    for line in importlib.metadata.requires("jtca") or []:
        req = Requirement(line)
        if req.name in OPTIONAL:
            assert req.marker is not None
            assert f'extra == "{OPTIONAL[req.name]}"' in str(req.marker)


def locked(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            pin, version = line.split(" ")[0].split("==")
            pins[pin.lower()] = version
            assert "--hash=sha256:" in lines[i + 1], f"{name}: {pin} without a hash"
    return pins


def test_locks_pin_every_requirement_with_hashes_and_bounds_hold() -> None:
    full, slim = locked("requirements.lock"), locked("requirements-headless.lock")
    for extras_wanted, pins in (
        (("postgres", "console", "images", "dev"), full),
        (("postgres",), slim),
    ):
        requirements = list(project()["dependencies"])  # type: ignore[call-overload]
        extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
        for extra in extras_wanted:
            requirements += [r for r in extras[extra] if not r.startswith("jtca[")]
        for text in requirements:
            req = Requirement(text)
            assert req.name.lower() in pins, f"{req.name} is not locked"
            assert req.specifier.contains(pins[req.name.lower()]), (req, pins[req.name.lower()])
    # the headless lock has no console or image library
    assert not {"textual", "pillow", "zxing-cpp", "zint-bindings"} & set(slim)
    # pre-1.0 dependencies carry an upper bound
    for text in project()["dependencies"]:  # type: ignore[attr-defined]
        req = Requirement(text)
        if req.name.lower() in full and full[req.name.lower()].startswith("0."):
            assert any(s.operator in ("<", "==") for s in req.specifier), text
    # the development environment is the locked one
    for name, version in full.items():
        assert importlib.metadata.version(name) == version, name
