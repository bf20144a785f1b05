"""One vocabulary and one shape for ids on the command line (issue #17, B), through the real
``jtca`` against the demo world (``jtca demo --no-console``: the embedded service seeds it;
the officers sign in with ``jtca login`` and the PINs the demo lists for them).

- a stage is shown as the console shows it (``at-province``), and typed either way;
- a key is named by its id or its label wherever an id is accepted, a label matching nothing
  or several keys is refused naming it;
- what awaits a second officer is a "request #N" everywhere, decided with
  ``jtca city approve request N`` (the old ``--action N`` still works);
- counts read as English.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ca.core.vocabulary import STAGE_WORDS, stage_word

JTCA = str(Path(sys.executable).with_name("jtca"))


@dataclass
class DemoWorld:
    state: Path
    sessions: Path
    pins: dict[str, str]

    def env(self, officer: str | None) -> dict[str, str]:
        env = dict(os.environ, JTCA_STATE=str(self.state), JTCA_IDLE_EXIT="120")
        for name in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_DATABASE_URL", "JTCA_SESSION"):
            env.pop(name, None)
        env["XDG_CONFIG_HOME"] = str(self.state.parent / "no-config")
        if officer is not None:
            env["JTCA_SESSION"] = str(self.sessions / f"{officer}.json")
            env["OFFICER_PIN"] = self.pins[officer]
        return env

    def run(self, *args: str, officer: str | None = "gd-1") -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=self.env(officer),
            check=False,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str, officer: str | None = "gd-1") -> str:
        result = self.run(*args, officer=officer)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    def data(self, *args: str, officer: str | None = "gd-1") -> Any:
        return json.loads(self.ok(*args, "--json", officer=officer))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    from ca.client.embedded import stop

    folder = tmp_path_factory.mktemp("vocabulary")
    made = DemoWorld(folder / "state", folder / "sessions", {})
    made.sessions.mkdir()
    try:
        made.ok("demo", "--no-console", officer=None)
        listed = json.loads((made.state / "demo-credentials.json").read_text(encoding="utf-8"))
        made.pins = {o["id"]: o["pin"] for o in listed["officers"]}
        for officer in ("gd-1", "gd-2"):
            made.ok(
                "login", "--officer", officer, "--pin-source", "env:OFFICER_PIN", officer=officer
            )
        yield made
    finally:
        stop(made.state)


def test_stages_are_shown_in_the_console_s_words_and_typed_either_way(world: DemoWorld) -> None:
    keys = world.data("city", "keys")
    assert keys, "the demo world has keys in Guangdong"
    assert {k["stage"] for k in keys} <= set(STAGE_WORDS)  # --json keeps the stored names
    held = [k for k in keys if k["stage"] == "held-by-province"]
    assert held, "the demo world has keys still at the province"

    text = world.ok("city", "keys").splitlines()
    assert len(text) == len(keys)
    assert "held-by-province" not in "\n".join(text)
    for key, line in zip(keys, text, strict=True):
        assert line.split()[0] == str(key["id"])
        assert f" {stage_word(key['stage'])} " in line
    assert {line.split()[0] for line in text if " at-province " in line} == {
        str(k["id"]) for k in held
    }

    for spelling in ("at-province", "held-by-province", "AT-PROVINCE"):
        assert world.data("city", "keys", "--stage", spelling) == held
    assert world.data("city", "keys", "--stage", "at-province", "--limit", "1") == held[:1]
    wrong = world.run("city", "keys", "--stage", "at-city")
    assert wrong.returncode == 3
    assert wrong.stderr.startswith("jtca: Bad input: --stage at-city: not a stage; one of ")
    assert "at-province" in wrong.stderr

    shown = world.ok("city", "show", held[0]["label"]).splitlines()
    assert "stage            at-province" in shown


def test_a_key_is_named_by_its_id_or_its_label(world: DemoWorld) -> None:
    keys = world.data("city", "keys")
    key = keys[0]
    by_id = world.data("city", "show", str(key["id"]))
    by_label = world.data("city", "show", key["label"])
    assert by_id == by_label
    assert by_label["id"] == key["id"]

    # a label's unique beginning names it too; one that begins several labels is refused
    generation = key["label"].rsplit("-g", 1)[0]
    same = [k for k in keys if k["label"].startswith(generation)]
    if len(same) == 1:
        assert world.data("city", "show", generation)["id"] == key["id"]
    cards = sorted((k["label"], k["id"]) for k in keys if k["label"].startswith("city-card-"))
    assert len(cards) >= 2
    several = world.run("city", "show", "city-card")
    assert several.returncode == 3
    assert several.stdout == ""
    assert several.stderr.startswith(
        f"jtca: Bad input: KEY city-card: {len(cards)} keys match it: "
    )
    for label, key_id in cards[:6]:
        assert f"{label} (key {key_id})" in several.stderr

    nothing = world.run("city", "show", "city-card-999999-g1")
    assert nothing.returncode == 3
    assert nothing.stderr.startswith(
        "jtca: Bad input: KEY city-card-999999-g1: no key has this label"
    )
    # wherever a key is named: renew, deliver, packages, cleanup …
    for command in (("renew",), ("packages", "--out", "x"), ("cleanup", "--reason", "x")):
        refused = world.run("city", *command[:1], "no-such-label", *command[1:])
        assert refused.returncode == 3, refused.stderr
        assert "KEY no-such-label: no key has this label" in refused.stderr


def test_what_awaits_a_second_officer_is_a_request_everywhere(world: DemoWorld) -> None:
    keys = world.data("city", "keys")
    active = [k for k in keys if k["state"] == "active"]
    assert len(active) >= 2
    first, second = active[0], active[1]

    # suspend by label, by position: "request #N awaits 1 more approver"
    asked = world.ok("city", "suspend", first["label"], "--reason", "lost terminal")
    found = re.fullmatch(
        rf"city-key\.suspend of {first['label']}: request #(\d+) awaits (\d+) more approvers?\n",
        asked,
    )
    assert found, asked
    number, more = found.groups()
    assert asked.endswith("approver\n" if more == "1" else "approvers\n")
    listed = world.ok("city", "actions", officer="gd-2")
    assert f"request #{number} " in listed
    assert "action " not in listed

    own = world.run("city", "approve", "request", number, "--pin-source", "env:OFFICER_PIN")
    assert own.returncode == 6  # dual control: not the requester
    done = world.ok(
        "city", "approve", "request", number, "--pin-source", "env:OFFICER_PIN", officer="gd-2"
    )
    assert done == f"city-key.suspend of {first['label']}: done\n"
    assert world.data("city", "show", first["label"])["state"] == "suspended"
    again = world.run(
        "city", "approve", "request", number, "--pin-source", "env:OFFICER_PIN", officer="gd-2"
    )
    assert again.returncode != 0
    assert f"request #{number} is already done" in again.stderr
    # the signed statement's subject stays the log's ("action N"), said with its one name
    assert f"You sign: APPROVE action {number} (request #{number})\n" in again.stderr

    # the old shape still works: --key ID and --action N (hidden, deprecated)
    old = world.data("city", "suspend", "--key", str(second["id"]), "--reason", "lost too")
    assert old["state"] == "pending"
    suspended = world.data(
        "city", "approve", "--action", str(old["action_id"]), "--pin-source",
        "env:OFFICER_PIN", officer="gd-2",
    )  # fmt: skip
    assert suspended["state"] == "done"
    assert world.data("city", "show", str(second["id"]))["state"] == "suspended"

    # one thing to decide, said the one way
    for args, code in (
        (("request",), 3),
        (("request", "1", "--action", "1"), 3),
        ((), 3),
        (("7",), 3),
        (("action", "x"), 2),  # N is a number
    ):
        refused = world.run("city", "approve", *args, "--pin-source", "env:OFFICER_PIN")
        assert refused.returncode == code, (args, refused.stderr)
        assert refused.stdout == ""
        if code == 3:
            assert "jtca city approve request N" in refused.stderr
    typed = world.run("city", "approve", "request", "1", "--actor", "gd-2")
    assert typed.returncode == 2
    assert "unrecognized arguments: --actor gd-2" in typed.stderr

    # keys by position and --city are one or the other
    both = world.run("city", "revoke", first["label"], "--city", first["city"], "--reason", "x")
    assert both.returncode == 3
    assert "not both" in both.stderr
    neither = world.run("city", "revoke", "--reason", "x")
    assert neither.returncode == 3
    # an officer by position too (--officer ID: deprecated, still works)
    assert world.data("officer", "certificate", "gd-2") == world.data(
        "officer", "certificate", "--officer", "gd-2"
    )
    assert world.run("officer", "certificate").returncode == 3
    nobody = world.run("officer", "approve", "--pin-source", "env:OFFICER_PIN")
    assert nobody.returncode == 3
    assert "jtca officer approve N" in nobody.stderr
    help_text = world.ok("city", "suspend", "--help", officer=None)
    assert "KEY" in help_text
    assert "--key" not in help_text  # the deprecated spelling is not offered


def test_counts_read_as_english(world: DemoWorld) -> None:
    """Each count with its noun in the number it takes (the log grows while the test runs: the
    numbers are read from the text itself)."""

    def agrees(count: str, noun: str, one: str, many: str) -> bool:
        return noun == (one if int(count) == 1 else many)

    text = world.ok("audit", "verify", officer=None).splitlines()
    head = re.fullmatch(r"audit log: (\d+) (entry|entries): intact", text[0])
    assert head, text[0]
    assert agrees(head[1], head[2], "entry", "entries")
    newest = next(line for line in text if line.startswith("  newest checkpoint: "))
    size = re.match(r"  newest checkpoint: (\d+) (entry|entries),", newest)
    assert size, newest
    assert agrees(size[1], size[2], "entry", "entries")
    found = next(line for line in text if line.endswith(" sealed"))
    counts = re.fullmatch(
        r"  (\d+) (signed checkpoints?) found; (\d+) (newer entry|newer entries) sealed", found
    )
    assert counts, found
    checkpoints, checkpoint_noun, sealed, sealed_noun = counts.groups()
    assert int(checkpoints) >= 1
    assert agrees(checkpoints, checkpoint_noun, "signed checkpoint", "signed checkpoints")
    assert agrees(sealed, sealed_noun, "newer entry", "newer entries")
