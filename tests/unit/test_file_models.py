"""The ceremony and policy files read by declarative models (issue #17).

Both files go through pydantic v2 models built on ``policies.filemodel.FileModel``: every table
refuses keys it does not declare, every value is strictly typed, and an error names the file
(when the caller gives it) and the field's path as the file spells it. These tests walk every
table of the shipped files, every type, and the rules across fields the hand-written checks
enforced before.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import ca.ceremony.file as ceremony_file
import policies.rules as rules
from ca.ceremony.file import CeremonyError, KeySpec, load_ceremony, read_ceremony
from ca.policy.in_force import PolicyError, read_policy
from hsm.names import BadName
from policies.filemodel import FileModel, first_problem, path
from policies.rules import DEFAULT_POLICY_PATH, PolicyFileError, parse_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "ceremonies" / "root-example.toml"
CEREMONY = EXAMPLE.read_text(encoding="utf-8")
POLICY = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
NO_QR_CA = re.sub(r"^\[\[qr_ca\]\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "", CEREMONY, flags=re.M)
NO_ROOT_SUBJECT = re.sub(r'^subject = \{ CN = "交通运输部[^\n]*\n', "", CEREMONY, flags=re.M)


def ceremony_error(text: str) -> str:
    with pytest.raises(CeremonyError) as caught:
        load_ceremony(text)
    return caught.value.message


def policy_error(text: str) -> tuple[str, str]:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text)
    assert caught.value.message == f"{caught.value.key}: {caught.value.problem}"
    return caught.value.key, caught.value.problem


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# -- the models are declarative: every table strict, unknown keys refused -----------------------
def _models(module: object) -> list[type[BaseModel]]:
    return [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, FileModel) and v is not FileModel
    ]


@pytest.mark.parametrize("module", [ceremony_file, rules], ids=["ceremony", "policy"])
def test_every_table_is_a_strict_model_forbidding_extra_keys(module: object) -> None:
    models = _models(module)
    assert len(models) >= 7
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("strict") is True, model


# -- the shipped files --------------------------------------------------------------------------
def test_the_example_ceremony_reads_as_before() -> None:
    ceremony = load_ceremony(CEREMONY)
    assert (ceremony.name, ceremony.kind, ceremony.token) == (
        "MOT root key ceremony 2026-12",
        "root",
        "MOT-ROOT",
    )
    assert ceremony.custodians == ("张三 (部密码管理处)", "李四 (部科技司)", "王五 (部审计室)")
    assert (ceremony.threshold, ceremony.witnesses) == (2, ("赵六 (公证员)", "钱七 (内审)"))
    assert ceremony.root == KeySpec(
        "mot-root-2026",
        20,
        {"CN": "交通运输部 交通一卡通根CA 2026", "O": "中华人民共和国交通运输部", "C": "CN"},
    )
    assert ceremony.root is not None
    assert list(ceremony.root.subject) == ["CN", "O", "C"]  # the file's order, for the X.509 name
    assert [(c.index, c.label, c.validity_years) for c in ceremony.qr_cas] == [
        (1, "mot-qr-ca-1", 10)
    ]
    assert [(o.officer_id, o.roles, o.province) for o in ceremony.officers] == [
        ("mot-root-1", ("ministry-root-officer",), None),
        ("ca-op-1", ("ministry-ca-operator",), None),
        ("auditor-1", ("auditor",), None),
    ]
    assert len(ceremony.file_sha256) == 64


def test_the_shipped_policy_reads_as_before() -> None:
    policy = parse_policy(POLICY)
    assert next(iter(policy.key_classes)) == "ministry-root"  # file order kept
    assert policy.key_classes["city-card"].scope_level == "city"
    assert policy.roles["auditor"].scope == "national"
    assert policy.approvals_required("city-key.revoke") == 2
    assert policy.ca_indexes == frozenset({1, 2})
    assert len(policy.vendor_mechanisms) == 4
    assert policy.retention == rules.Retention(30, 10, 5)
    assert policy.log == rules.LogPolicy()
    assert policy.pkcs11_uri == rules.UriPolicy(False)


def test_optional_policy_tables_take_their_defaults() -> None:
    text = re.sub(r"\[(retention|log|officers|pkcs11_uri)\]\n(?:[^\[\n][^\n]*\n|\n)*", "", POLICY)
    assert "[retention]" not in text
    assert "[log]" not in text
    policy = parse_policy(text)
    assert policy.retention == rules.Retention()
    assert policy.officers == rules.OfficerPolicy()
    assert policy.log == rules.LogPolicy()
    assert policy.pkcs11_uri == rules.UriPolicy()


# -- unknown keys, in every table, named by their path -----------------------------------------
CEREMONY_TABLES = ["ceremony", "token", "witnesses", "root", "list_signing", "audit_key"]


@pytest.mark.parametrize("table", CEREMONY_TABLES)
def test_an_unknown_ceremony_key_is_named_with_its_table(table: str) -> None:
    text, found = re.subn(
        rf"^\[{table}\][^\n]*\n", r"\g<0>colour = 1\n", CEREMONY, count=1, flags=re.M
    )
    assert found == 1
    message = ceremony_error(text)
    assert message == f"{table}.colour: unknown key (a typo must not pass unnoticed)"


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("[[qr_ca]]", "[[qr_ca]]\ncolour = 1", "qr_ca[0].colour"),
        (
            '[[officer]]\nid = "ca-op-1"',
            '[[officer]]\ncolour = 1\nid = "ca-op-1"',
            "officer[1].colour",
        ),
        ('C = "CN" }', 'C = "CN", XX = "y" }', "root.subject.XX"),
        ("[ceremony]", "colour = 1\n[ceremony]", "(file).colour"),
        ("[ceremony]", "[ceremonies]\n[ceremony]", "(file).ceremonies"),
    ],
)
def test_unknown_keys_in_arrays_subjects_and_the_file(old: str, new: str, where: str) -> None:
    assert ceremony_error(edit(CEREMONY, old, new)).startswith(f"{where}: ")


def _policy_tables() -> list[tuple[str, str]]:
    """(header, the path an unknown key under it is reported at) for every table of the file."""
    found, arrays = [], 0
    for header in re.findall(r"^\[\[?[^\]]+\]\]?$", POLICY, re.M):
        if header == "[[vendor_mechanism]]":
            found.append((header, f"vendor_mechanism[{arrays}]"))
            arrays += 1
        elif header != "[dual_control]":  # its keys are actions (below)
            found.append((header, header.strip("[]")))
    return found


@pytest.mark.parametrize(("header", "where"), _policy_tables(), ids=lambda v: str(v))
def test_an_unknown_policy_key_is_named_with_its_table(header: str, where: str) -> None:
    # the n-th [[vendor_mechanism]] of the file: edit that one
    nth = int(where[-2]) if where.startswith("vendor_mechanism[") else 0
    head, *parts = POLICY.split(header + "\n")
    parts[nth] = "colour = 1\n" + parts[nth]
    text = head + "".join(header + "\n" + p for p in parts)
    assert policy_error(text) == (
        f"{where}.colour",
        "unknown key (a typo must not pass unnoticed)",
    )
    assert len(_policy_tables()) >= 20


def test_a_dual_control_key_must_be_an_action() -> None:
    key, problem = policy_error(edit(POLICY, "[dual_control]\n", "[dual_control]\ncolour = 1\n"))
    assert (key, problem) == ("dual_control.colour", "unknown action")


# -- strict types ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        ("threshold = 2", 'threshold = "2"', "token.threshold", "must be a whole number, got '2'"),
        (
            "threshold = 2",
            "threshold = true",
            "token.threshold",
            "must be a whole number, got True",
        ),
        ("threshold = 2", "threshold = 2.0", "token.threshold", "must be a whole number, got 2.0"),
        ("index = 1", "index = 1979-05-27", "qr_ca[0].index", "must be a whole number, got "),
        ('kind = "root"', "kind = 1", "ceremony.kind", "must be a string, got 1"),
        ('label = "MOT-ROOT"', 'label = ["MOT-ROOT"]', "token.label", "must be a string, got ["),
        ("names = [", "names = 3 #", "witnesses.names", "must be an array, got 3"),
        ('"李四 (部科技司)"', "4", "token.custodians[1]", "must be a string, got 4"),
    ],
)
def test_ceremony_types_are_strict(old: str, new: str, where: str, problem: str) -> None:
    message = ceremony_error(edit(CEREMONY, old, new))
    assert message.startswith(f"{where}: {problem}"), message


def test_a_table_given_as_a_value_is_refused() -> None:
    """``witnesses = 1`` (a value before the first table) where the file needs a table."""
    text = edit(CEREMONY, '[witnesses]\nnames = ["赵六 (公证员)", "钱七 (内审)"]\n', "")
    message = ceremony_error("witnesses = 1\n" + text)
    assert message.startswith("witnesses: must be a table, got 1"), message


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("validity_days = 7300", 'validity_days = "7300"', "validity_days", "whole number, got '"),
        ("host_assisted = true", "host_assisted = 1", "host_assisted", "true or false, got 1"),
        ('algorithm = "sm2"', "algorithm = 2", "algorithm", "must be a string, got 2"),
        ("overlap_days = 365", "overlap_days = 365.5", "overlap_days", "whole number, got 365.5"),
    ],
)
def test_policy_types_are_strict(old: str, new: str, key: str, problem: str) -> None:
    where, said = policy_error(edit(POLICY, old, new))
    assert where == f"key_classes.ministry-root.{key}"
    assert problem in said


# -- the rules the hand-written checks enforced, each kept --------------------------------------
ROLLOVER = """
[ceremony]
name = "t"
kind = "ca-rollover"
[token]
label = "MOT-ROOT"
custodians = ["a", "b", "c"]
threshold = 2
[witnesses]
names = ["w"]
[[qr_ca]]
index = 2
label = "k"
validity_years = 5
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (edit(CEREMONY, "threshold = 2", "threshold = 4"), "token.threshold: 4 must be 2..3"),
        (
            edit(ROLLOVER, '["a", "b", "c"]', '["a", "b", ""]'),
            "token.custodians[2]: must be a non-empty string, got ''",
        ),
        (
            edit(ROLLOVER, '["a", "b", "c"]', '["a"]'),
            "token.custodians: at least two named custodians",
        ),
        (
            edit(ROLLOVER, '["a", "b", "c"]', '["a", "b", "a"]'),
            "token.custodians: a custodian is named twice",
        ),
        (edit(ROLLOVER, '["w"]', "[]"), "witnesses.names: at least one witness must be named"),
        (
            edit(ROLLOVER, '[witnesses]\nnames = ["w"]\n', ""),
            "witnesses.names: at least one witness must be named",
        ),
        (
            ROLLOVER + "[[qr_ca]]\nindex = 2\nlabel = 'k2'\nvalidity_years = 5\n",
            "qr_ca: two CA keys with the same index",
        ),
        (edit(ROLLOVER, "validity_years = 5", "validity_years = 0"), "qr_ca[0].validity_years: 0"),
        (
            ROLLOVER + "[root]\nlabel = 'r'\nvalidity_years = 5\nsubject = { CN = 'x' }\n",
            "(file): a ca-rollover ceremony defines [[qr_ca]] and nothing else",
        ),
        (
            ROLLOVER + "[[officer]]\nid = 'o'\nroles = ['auditor']\n",
            "officer: a ca-rollover adds no officers (jtca officer add does)",
        ),
        (
            edit(ROLLOVER, 'kind = "ca-rollover"', 'kind = "root"'),
            "root: a root ceremony must define it",
        ),
        (
            NO_QR_CA,
            "qr_ca: a root ceremony makes at least one central QR CA key",
        ),
        (
            edit(CEREMONY, 'roles = ["ministry-root-officer"]', 'roles = ["auditor"]'),
            "officer: a root ceremony names at least one ministry-root-officer",
        ),
        (
            edit(CEREMONY, 'roles = ["auditor"]', 'roles = ["auditor", ""]'),
            "officer[2].roles[1]: must be a non-empty string, got ''",
        ),
        (
            edit(CEREMONY, 'roles = ["auditor"]', "roles = []"),
            "officer[2].roles: a non-empty list of role names",
        ),
        (
            edit(CEREMONY, 'roles = ["auditor"]', 'roles = ["auditor"]\nprovince = "4400000"'),
            "officer[2].province: 7 characters, at most 6",
        ),
        (
            edit(CEREMONY, 'id = "auditor-1"', 'id = ""'),
            "officer[2].id: must be a non-empty string, got ''",
        ),
        (
            edit(CEREMONY, 'name = "审计员 周九"', 'name = "a\\tb"'),
            "officer[2].name: 'a\\tb' contains a control character",
        ),
        (
            edit(CEREMONY, 'label = "mot-audit-2026"', 'label = "mot-root-2026"'),
            "labels: two keys share a label",
        ),
        (
            edit(CEREMONY, 'C = "CN" }', 'C = "C1" }'),
            "root.subject.C: 'C1' is not a two-letter country code",
        ),
        (edit(CEREMONY, 'C = "CN" }', 'C = "CHN" }'), "root.subject.C: 3 characters, at most 2"),
        (
            edit(CEREMONY, 'subject = { CN = "交通运输部 交通一卡通根CA 2026", ', "subject = { "),
            "root.subject.CN: missing",
        ),
        (
            NO_ROOT_SUBJECT,
            "root.subject: missing",
        ),
        (
            edit(CEREMONY, 'kind = "root"', 'kind = "party"'),
            "ceremony.kind: 'party' is not one of ['ca-rollover', 'root']",
        ),
    ],
)
def test_ceremony_rules_are_kept(text: str, message: str) -> None:
    said = ceremony_error(text)
    assert said.startswith(message), said


def test_an_audit_key_may_leave_its_subject_and_an_officer_its_name() -> None:
    head, audit = CEREMONY.split("[audit_key]")
    section, rest = audit.split("[[officer]]", 1)
    section = re.sub(r"^subject = [^\n]*\n", "", section, flags=re.M)
    assert "subject" not in section.replace("`subject`", "")
    text = head + "[audit_key]" + section + "[[officer]]" + rest
    text = edit(text, 'name = "审计员 周九"\n', "")
    ceremony = load_ceremony(text)
    assert ceremony.audit_key is not None
    assert ceremony.audit_key.subject == {}
    assert ceremony.officers[2].name == ""


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        (
            "renewal_window_days = 730",
            "renewal_window_days = 7300",
            "key_classes.ministry-root.renewal_window_days",
            "must be shorter than the validity (7300)",
        ),
        (
            "overlap_days = 365",
            "overlap_days = 731",
            "key_classes.ministry-root.overlap_days",
            "must not exceed the renewal window (730)",
        ),
        (
            "session_idle_seconds = 900",
            "session_idle_seconds = 86400",
            "officers.session_idle_seconds",
            "may not exceed officers.session_absolute_seconds",
        ),
        (
            "ca_indexes = [1, 2]",
            "ca_indexes = []",
            "qr_issuance.ca_indexes",
            "must be a non-empty list",
        ),
        (
            "ca_indexes = [1, 2]",
            f"ca_indexes = [{', '.join(['1'] * 257)}]",
            "qr_issuance.ca_indexes",
            "257 indexes: at most 256",
        ),
        (
            "[key_classes.ministry-root]",
            f"[key_classes.{'k' * 65}]",
            "key_classes.'kkkkkkkkkk",
            "a name is 1-64 printable characters",
        ),
        (
            '"city-key.revoke" = 2',
            '"city-key.revoke" = 11',
            "dual_control.city-key.revoke",
            "must be a whole number 1-10, got 11",
        ),
        (
            'origin = "jtca.mot.gov.cn/audit"',
            'origin = "jtca audit"',
            "log.origin",
            "'jtca audit' contains ' ': an origin has no spaces and no '+'",
        ),
        (
            'manufacturer = "TASS"',
            'manufacturer = "TA*S"',
            "vendor_mechanism[1].manufacturer",
            "a manufacturer is matched exactly, never as a pattern",
        ),
        (
            'manufacturer = "TASS"\n',
            "",
            "vendor_mechanism[1].manufacturer",
            "missing: a vendor mechanism names the token manufacturer and model",
        ),
        (
            'input = "digest"\noutput = "raw"',
            'input = "digest"\noutput = "pem"',
            "vendor_mechanism[1].output",
            "must be 'raw' or 'der', got 'pem'",
        ),
        (
            '"qr-ca.rollover"',
            '"no-such-action"',
            "roles.ministry-root-officer.actions[1]",
            "unknown action 'no-such-action'",
        ),
    ],
)
def test_policy_rules_are_kept(old: str, new: str, key: str, problem: str) -> None:
    where, said = policy_error(edit(POLICY, old, new))
    assert where.startswith(key), (where, said)
    assert problem in said, said


def test_an_empty_policy_names_its_first_missing_table_and_counts_the_rest() -> None:
    assert policy_error("") == ("key_classes", "at least one key class (and 2 more problems)")


# -- the file is named ---------------------------------------------------------------------------
def test_errors_name_the_file(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(edit(CEREMONY, "threshold = 2", "threshold = 9"), encoding="utf-8")
    with pytest.raises(CeremonyError) as caught:
        read_ceremony(plan)
    assert caught.value.message == f"{plan}: token.threshold: 9 must be 2..3"
    plan.write_text(edit(CEREMONY, 'label = "MOT-ROOT"', 'label = "MOT ROOT"'), encoding="utf-8")
    with pytest.raises(BadName) as named:
        read_ceremony(plan)
    assert named.value.message.startswith(f"{plan}: token.label 'MOT ROOT': ")
    policy = tmp_path / "policy.toml"
    policy.write_text(edit(POLICY, "witness_quorum = 1", "witness_quorum = 99"), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        read_policy(policy)
    assert refused.value.message == (
        f"{policy}: log.witness_quorum: must be a whole number 0-16, got 99"
    )


# -- the path of a field ----------------------------------------------------------------------
def test_paths_read_as_the_file_spells_them() -> None:
    assert path(("token", "custodians", 2)) == "token.custodians[2]"
    assert path(("officer", 0, "roles", 1)) == "officer[0].roles[1]"
    assert path(("dual_control", "city-key.x", "[key]")) == "dual_control.city-key.x"
    assert path((), "labels") == "labels"
    assert path(("token",), "threshold") == "token.threshold"
    assert path(("qr_ca",), "[1].index") == "qr_ca[1].index"
    assert path(()) == "(file)"
    assert path(("a\nb",)) == "'a\\nb'"


def test_first_problem_of_a_bare_model() -> None:
    class Table(FileModel):
        n: int

    with pytest.raises(ValidationError) as caught:
        Table.model_validate({"n": "1", "m": 2})
    assert first_problem(caught.value) == (
        "n",
        "must be a whole number, got '1' (and 1 more problem)",
    )


def test_ceremony_plan_names_the_file_and_the_field(tmp_path: Path) -> None:
    """The command line's ``jtca ceremony plan`` says which file and which field, no traceback."""
    plan = tmp_path / "plan.toml"
    plan.write_text(edit(CEREMONY, '"李四 (部科技司)"', '""'), encoding="utf-8")
    jtca = Path(sys.executable).with_name("jtca")
    done = subprocess.run(
        [str(jtca), "ceremony", "plan", str(plan)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3
    assert done.stdout == ""
    assert f"{plan}: token.custodians[1]: must be a non-empty string, got ''" in done.stderr
    assert "Traceback" not in done.stderr
