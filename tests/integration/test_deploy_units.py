"""The publisher's deployment files in docs/deploy/ (issue #6): the systemd service and timer
pass ``systemd-analyze verify`` (with ExecStart pointed at this checkout's jtca), and the
commands the service and the cron line run are accepted by jtca's own argument parser."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ca.cli.main import build_parser
from ca.cli.publish import cmd_publish

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
JTCA = str(Path(sys.executable).with_name("jtca"))


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
    assert args.actor == "publisher-1"


def test_service_and_timer() -> None:
    service, timer = unit("jtca-publish.service"), unit("jtca-publish.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["SuccessExitStatus"] == "75"  # the lock was busy: not a failure
    assert service["Service"]["LoadCredential"].startswith("pin:")
    argv = shlex.split(
        service["Service"]["ExecStart"].replace("${CREDENTIALS_DIRECTORY}", "/run/c")
    )
    check_publish_command(argv)
    assert timer["Timer"]["OnUnitActiveSec"] == "15min"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (scripts/bootstrap installs Debian's systemd)"
    for name in ("jtca-publish.service", "jtca-publish.timer"):
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/opt/jtca/.venv/bin/jtca", JTCA))
    result = subprocess.run(
        [
            analyze,
            "verify",
            str(tmp_path / "jtca-publish.timer"),
            str(tmp_path / "jtca-publish.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "jtca-publish" in line
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
    assert words[0].startswith("JTCA_STATE=")
    assert words[1:3] == ["flock", "-n"]
    check_publish_command(words[4:])
