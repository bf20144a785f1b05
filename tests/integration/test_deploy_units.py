"""The deployment files in docs/deploy/ (issues #6, #11): the authority service's unit, the
publisher's service and timer pass ``systemd-analyze verify`` (with ExecStart pointed at this
checkout's jtca); the commands the units and the cron line run are accepted by jtca's own
argument parsers; the publisher is a client of the service — it names the service's socket and
holds neither a database URL nor a state folder."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ca.api.server import build_parser as build_server_parser
from ca.api.server import serve
from ca.cli.main import build_parser
from ca.cli.publish import cmd_publish

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
JTCA = str(Path(sys.executable).with_name("jtca"))
UNITS = ("jtca.service", "jtca-publish.service", "jtca-publish.timer")
SOCKET = "/run/jtca/jtca.sock"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


def check_publish_command(argv: list[str]) -> None:
    assert Path(argv[0]).name == "jtca"
    args = build_parser().parse_args(argv[1:])
    assert args.handler is cmd_publish
    assert args.pin_source.startswith("file:")  # unattended: no shares, no prompt
    # it signs in for the run as publisher-1 with its own token, the PIN from a file (#12)
    assert args.officer == "publisher-1"
    assert args.officer_pin_source.startswith("file:")
    assert "--actor" not in argv
    assert args.out == Path("/var/lib/jtca/lists")  # its own mirror, not the service's state


def test_service_and_timer() -> None:
    service, timer = unit("jtca-publish.service"), unit("jtca-publish.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["SuccessExitStatus"] == "75"  # the lock was busy: not a failure
    assert service["Service"]["LoadCredential"].startswith("pin:")
    argv = shlex.split(
        service["Service"]["ExecStart"].replace("${CREDENTIALS_DIRECTORY}", "/run/c")
    )
    check_publish_command(argv)
    # a client of the service: its socket, and nothing that opens the database or the tokens
    assert service["Service"]["Environment"] == f"JTCA_URL=unix://{SOCKET}"
    text = (DEPLOY / "jtca-publish.service").read_text(encoding="utf-8")
    assert "JTCA_DATABASE_URL" not in text
    assert "JTCA_STATE" not in text
    assert "EnvironmentFile" not in service["Service"]
    assert "jtca.service" in service["Unit"]["After"]
    assert service["Service"]["ReadWritePaths"] == "/var/lib/jtca/lists"
    assert timer["Timer"]["OnUnitActiveSec"] == "15min"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_authority_service_unit() -> None:
    service = unit("jtca.service")
    argv = shlex.split(service["Service"]["ExecStart"])
    assert Path(argv[0]).name == "jtca"
    args = build_server_parser().parse_args(argv[1:])
    assert args.handler is serve
    assert args.uds == SOCKET  # the publisher's JTCA_URL
    assert not args.embedded  # a real service: it refuses a schema that is behind
    assert service["Service"]["RuntimeDirectory"] == "jtca"  # /run/jtca
    assert service["Service"]["KillSignal"] == "SIGTERM"  # graceful: requests in flight finish
    assert service["Service"]["Environment"].startswith("JTCA_STATE=")
    assert service["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (scripts/bootstrap installs Debian's systemd)"
    for name in UNITS:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/opt/jtca/.venv/bin/jtca", JTCA))
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(name.split(".")[0] + "." in line for name in UNITS)
    ]
    assert complaints == []
    assert result.returncode == 0, result.stderr


def test_cron_line() -> None:
    lines = [
        line
        for line in (DEPLOY / "jtca-publish.cron").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert fields[:5] == ["*/15", "*", "*", "*", "*"]
    assert fields[5] == "jtca"  # /etc/cron.d lines name the user
    command = fields[6].split(">>")[0]
    words = shlex.split(command.split("&&", 1)[1])
    assert words[0] == f"JTCA_URL=unix://{SOCKET}"  # a client of the service
    assert words[1:3] == ["flock", "-n"]
    check_publish_command(words[4:])


def test_the_units_use_the_folders_setup_host_makes(tmp_path: Path) -> None:
    """docs/deploy/setup-host.sh (issue #16) makes every folder and file the units name."""
    root = tmp_path / "root"
    done = subprocess.run(
        [str(DEPLOY / "setup-host.sh"), "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = {
        line.split()[0]: line.split()[1:]
        for line in (root / ".jtca-owners").read_text(encoding="utf-8").splitlines()
    }
    service, publisher = unit("jtca.service")["Service"], unit("jtca-publish.service")["Service"]
    state = service["Environment"].removeprefix("JTCA_STATE=")
    assert made[state] == ["jtca", "jtca", "0700"]  # the tokens' files: the service's alone
    assert service["ReadWritePaths"] == state
    assert made[service["WorkingDirectory"]][:2] == ["jtca", "jtca"]
    assert made[service["EnvironmentFile"].lstrip("-")] == ["root", "jtca", "0640"]
    assert made[publisher["ReadWritePaths"]][:2] == ["jtca", "jtca"]  # the publisher's mirror
    assert made[publisher["WorkingDirectory"]][:2] == ["jtca", "jtca"]
    assert service["User"] == publisher["User"] == "jtca"
    assert service["ExecStart"].startswith("/opt/jtca/.venv/bin/jtca ")
    assert "/opt/jtca" in made
