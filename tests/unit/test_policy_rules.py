"""The authority policy: the shipped file validates, decisions carry reason codes, and every
error in a policy file names its key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.rules import (
    ACTIONS,
    DEFAULT_POLICY_PATH,
    REASONS,
    Actor,
    LogPolicy,
    PolicyFileError,
    Subject,
    decide,
    parse_policy,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
POLICY = parse_policy(TEXT)

GD = Actor("gd-officer", frozenset({"provincial-officer"}), "440000")
UNBOUND = Actor("nobody", frozenset({"provincial-officer"}), None)
OPERATOR = Actor("ca-op", frozenset({"ministry-ca-operator"}))
ROOT_OFFICER = Actor("root-officer", frozenset({"ministry-root-officer"}))
AUDITOR = Actor("auditor", frozenset({"auditor"}))


@pytest.mark.parametrize(
    ("actor", "action", "subject", "reason", "approvals"),
    [
        (GD, "city-key.apply", Subject(city="440100", key_class="city-card"), "allow", 0),
        (
            GD,
            "city-key.apply",
            Subject(city="110100", key_class="city-card"),
            "deny/other-province",
            0,
        ),
        (GD, "city-key.apply", Subject(province="440000", key_class="city-qr"), "allow", 0),
        (GD, "city-key.apply", Subject(key_class="city-qr"), "deny/missing-subject", 0),
        (
            GD,
            "city-key.apply",
            Subject(city="440100", key_class="central-qr-ca"),
            "deny/national-scope",
            0,
        ),
        (
            GD,
            "city-key.apply",
            Subject(city="440100", key_class="no-such"),
            "deny/unknown-key-class",
            0,
        ),
        (UNBOUND, "city-key.apply", Subject(city="440100"), "deny/province-unbound", 0),
        (GD, "city-key.approve", Subject(city="440100"), "deny/no-role", 0),
        (OPERATOR, "city-key.approve", Subject(city="440100"), "allow", 1),
        (ROOT_OFFICER, "qr-ca.rollover", Subject(), "allow", 0),
        (
            OPERATOR,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=1, interop_lifetime_months=24),
            "allow",
            0,
        ),
        (
            OPERATOR,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=1, interop_lifetime_months=61),
            "deny/lifetime-too-long",
            0,
        ),
        (
            OPERATOR,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=9, interop_lifetime_months=12),
            "deny/unknown-ca-index",
            0,
        ),
        (OPERATOR, "qr-ca.issue-interop-cert", Subject(ca_index=1), "deny/missing-subject", 0),
        (
            GD,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=1, interop_lifetime_months=12),
            "deny/no-role",
            0,
        ),
        (GD, "city-key.apply", Subject(city="44xxxx"), "deny/bad-division-code", 0),
        (GD, "city-key.apply", Subject(city="44"), "deny/bad-division-code", 0),
        (
            GD,
            "city-key.apply",
            Subject(city="110100", province="440000"),
            "deny/other-province",
            0,
        ),
        (
            Actor("x", frozenset({"provincial-officer"}), "ab0000"),
            "city-key.apply",
            Subject(city="ab0100"),
            "deny/province-unbound",
            0,
        ),
        (
            OPERATOR,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=1, interop_lifetime_months=0),
            "deny/lifetime-not-positive",
            0,
        ),
        (
            OPERATOR,
            "qr-ca.issue-interop-cert",
            Subject(ca_index=True, interop_lifetime_months=12),
            "deny/unknown-ca-index",
            0,
        ),
        (AUDITOR, "audit.verify", Subject(), "allow", 0),
        (AUDITOR, "audit.delete", Subject(), "deny/unknown-action", 0),
        (OPERATOR, "qr-ca.revoke-interop-cert", Subject(issuer_id="02113450"), "allow", 0),
    ],
    ids=[
        "allow/provincial-officer-own-city",
        "deny/other-province",
        "allow/own-province",
        "deny/missing-subject",
        "deny/national-scope",
        "deny/unknown-key-class",
        "deny/province-unbound",
        "deny/no-role",
        "allow/operator-approves-with-dual-control",
        "allow/rollover",
        "allow/issue",
        "deny/lifetime-too-long",
        "deny/unknown-ca-index",
        "deny/issue-missing-subject",
        "deny/province-cannot-issue",
        "deny/bad-city-code",
        "deny/short-city-code",
        "deny/other-province-city-wins-not",
        "deny/province-unbound-not-digits",
        "deny/lifetime-not-positive",
        "deny/ca-index-bool",
        "allow/auditor-verifies",
        "deny/unknown-action",
        "allow/revoke",
    ],
)
def test_decisions(
    actor: Actor, action: str, subject: Subject, reason: str, approvals: int
) -> None:
    decision = decide(POLICY, actor, action, subject, NOW)
    assert decision.reason == reason
    assert decision.allowed is (reason == "allow")
    assert decision.approvals_required == approvals


def test_shipped_policy() -> None:
    assert {
        "ministry-root",
        "central-qr-ca",
        "list-signing",
        "audit",
        "city-card",
        "city-qr",
    } <= set(POLICY.key_classes)
    assert POLICY.key_classes["city-card"].algorithm == "sm4"
    assert POLICY.key_classes["city-card"].dormancy_days == 180
    assert POLICY.ca_indexes == {1, 2}
    assert POLICY.approvals_required("city-key.revoke") == 2
    assert [c.name for c in POLICY.city_key_classes] == ["city-card", "city-qr"]
    assert (POLICY.retention.record_years, POLICY.retention.transaction_years) == (10, 5)
    assert POLICY.retention.destroy_grace_days == 30
    raised = parse_policy(edit("record_years = 10", "record_years = 15"))
    assert raised.retention.record_years == 15


def test_log_section() -> None:
    """Issue #13: the shipped [log] section, its defaults when it is left out, and the action
    that registers witnesses."""
    assert POLICY.log == LogPolicy("jtca.mot.gov.cn/audit", 10, 1)
    assert "log.witness" in ACTIONS
    assert "log.witness" in POLICY.roles["ministry-root-officer"].actions
    assert decide(POLICY, ROOT_OFFICER, "log.witness", Subject(), NOW).allowed
    assert decide(POLICY, AUDITOR, "log.witness", Subject(), NOW).reason == "deny/no-role"
    assert "checkpoints" in POLICY.key_classes["audit"].purpose
    start, end = TEXT.index("[log]\n"), TEXT.index("witness_quorum = 1")
    without = TEXT[:start] + TEXT[TEXT.index("\n", end) + 1 :]
    assert "[log]" not in without
    assert parse_policy(without).log == LogPolicy()
    chosen = parse_policy(
        edit('origin = "jtca.mot.gov.cn/audit"', 'origin = "log.example/交通"')
        .replace("checkpoint_seconds = 10", "checkpoint_seconds = 3600")
        .replace("witness_quorum = 1", "witness_quorum = 0")
    )
    assert chosen.log == LogPolicy("log.example/交通", 3600, 0)
    assert parse_policy(edit("witness_quorum = 1", "witness_quorum = 16")).log.witness_quorum == 16
    assert parse_policy(edit("checkpoint_seconds = 10", "checkpoint_seconds = 1")).log == LogPolicy(
        checkpoint_seconds=1
    )


def edit(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (edit('algorithm = "sm4"', 'algorithm = "aes"'), "key_classes.city-card.algorithm"),
        (
            edit(
                "validity_days = 1825\nrenewal_window_days = 180",
                "validity_days = 100\nrenewal_window_days = 180",
            ),
            "key_classes.city-card.renewal_window_days",
        ),
        (
            edit("overlap_days = 90\ndormancy_days", "overlap_days = 900\ndormancy_days"),
            "key_classes.city-card.overlap_days",
        ),
        (edit("dormancy_days = 180", "dormancy_days = -1"), "key_classes.city-card.dormancy_days"),
        (edit('scope = "province"', 'scope = "city"'), "roles.provincial-officer.scope"),
        (
            edit(
                'actions = ["audit.verify", "audit.export"]',
                'actions = ["audit.verify", "audit.erase"]',
            ),
            "roles.auditor.actions[1]",
        ),
        (
            edit('"city-key.revoke" = 2', '"city-key.obliterate" = 2'),
            "dual_control.city-key.obliterate",
        ),
        (edit('"city-key.revoke" = 2', '"city-key.revoke" = 0'), "dual_control.city-key.revoke"),
        (edit("ca_indexes = [1, 2]", "ca_indexes = [1, 1]"), "qr_issuance.ca_indexes"),
        (edit("ca_indexes = [1, 2]", "ca_indexes = [1, 256]"), "qr_issuance.ca_indexes[1]"),
        (
            edit("max_interop_lifetime_months = 60", "max_interop_lifetime_months = 0"),
            "qr_issuance.max_interop_lifetime_months",
        ),
        (  # issue #15: a number is unique per maker and model (makers' numbers collide)
            edit(
                'manufacturer = "TASS"\nmodel = "*"\nmechanism = 0x80008100',
                'manufacturer = "Sansec"\nmodel = "*"\nmechanism = 0x80008102',
            ),
            "vendor_mechanism[1].mechanism",
        ),
        (edit('input = "digest"', 'input = "hash"'), "vendor_mechanism[1].input"),
        (TEXT + "\n[extras]\n", "(file).extras"),
        (
            edit("host_assisted = true", "host_assisted = 1"),
            "key_classes.ministry-root.host_assisted",
        ),
        (
            edit(
                "overlap_days = 365\nhost_assisted", "overlap_days = 365\ncolour = 1\nhost_assisted"
            ),
            "key_classes.ministry-root.colour",
        ),
        ("not toml [", "(file)"),
        # 第二十九条 sets floors a policy may raise but never lower
        (edit("record_years = 10", "record_years = 9"), "retention.record_years"),
        (edit("transaction_years = 5", "transaction_years = 4"), "retention.transaction_years"),
        (
            edit("destroy_grace_days = 30", "destroy_grace_days = -1"),
            "retention.destroy_grace_days",
        ),
        (edit("[retention]\n", "[retention]\npurge_now = true\n"), "retention.purge_now"),
        # issue #13: the log's section, validated like [officers]
        (edit("[log]\n", "[log]\nwitnesses = 3\n"), "log.witnesses"),
        (edit("checkpoint_seconds = 10", "checkpoint_seconds = 0"), "log.checkpoint_seconds"),
        (edit("checkpoint_seconds = 10", "checkpoint_seconds = 3601"), "log.checkpoint_seconds"),
        (edit("checkpoint_seconds = 10", 'checkpoint_seconds = "10"'), "log.checkpoint_seconds"),
        (edit("witness_quorum = 1", "witness_quorum = 17"), "log.witness_quorum"),
        (edit("witness_quorum = 1", "witness_quorum = -1"), "log.witness_quorum"),
        (edit("witness_quorum = 1", "witness_quorum = true"), "log.witness_quorum"),
        (edit('origin = "jtca.mot.gov.cn/audit"', 'origin = "jtca audit"'), "log.origin"),
        (edit('origin = "jtca.mot.gov.cn/audit"', 'origin = "jtca+audit"'), "log.origin"),
        (edit('origin = "jtca.mot.gov.cn/audit"', 'origin = ""'), "log.origin"),
        (edit('origin = "jtca.mot.gov.cn/audit"', "origin = 7"), "log.origin"),
        (edit('origin = "jtca.mot.gov.cn/audit"', f'origin = "{"a" * 201}"'), "log.origin"),
        (edit("[log]\n", "[logs]\n"), "(file).logs"),
    ],
    ids=[
        "fail/algorithm",
        "fail/window",
        "fail/overlap",
        "fail/dormancy",
        "fail/role-scope",
        "fail/action",
        "fail/dual-action",
        "fail/dual-count",
        "fail/ca-dup",
        "fail/ca-range",
        "fail/lifetime",
        "fail/mechanism-dup",
        "fail/mechanism-input",
        "fail/section",
        "fail/host-assisted",
        "fail/unknown-key",
        "fail/toml",
        "fail/record-years-below-10",
        "fail/transaction-years-below-5",
        "fail/grace-negative",
        "fail/retention-unknown-key",
        "fail/log-unknown-key",
        "fail/checkpoint-seconds-zero",
        "fail/checkpoint-seconds-above-3600",
        "fail/checkpoint-seconds-text",
        "fail/witness-quorum-above-16",
        "fail/witness-quorum-negative",
        "fail/witness-quorum-bool",
        "fail/origin-space",
        "fail/origin-plus",
        "fail/origin-empty",
        "fail/origin-number",
        "fail/origin-too-long",
        "fail/log-section-misspelt",
    ],
)
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text)
    assert info.value.key == key, info.value.message


codes = st.sampled_from(["440000", "440100", "110000", "110100", "540100", "12345", ""])


@settings(max_examples=300, deadline=None)
@given(
    roles=st.frozensets(st.sampled_from([*POLICY.roles, "stranger"])),
    province=st.one_of(st.none(), codes),
    action=st.one_of(st.sampled_from(sorted(ACTIONS)), st.text(max_size=12)),
    city=st.one_of(st.none(), codes),
    key_class=st.one_of(st.none(), st.sampled_from([*POLICY.key_classes, "x"])),
    ca_index=st.one_of(st.none(), st.integers(-1, 300)),
    months=st.one_of(st.none(), st.integers(-5, 200)),
)
def test_decide_is_total(roles, province, action, city, key_class, ca_index, months) -> None:  # type: ignore[no-untyped-def]
    decision = decide(
        POLICY,
        Actor("x", roles, province),
        action,
        Subject(city=city, key_class=key_class, ca_index=ca_index, interop_lifetime_months=months),
        NOW,
    )
    assert decision.reason in REASONS
    assert decision.allowed == (decision.reason == "allow")
