"""ca/core/vocabulary.py: the words the console and the command line share (issue #17)."""

from __future__ import annotations

from typing import Any

import pytest

from ca.citykeys.workflow import STAGES
from ca.cli.main import main
from ca.core.vocabulary import (
    ISSUER_ID_DIGITS,
    ISSUER_ID_RULE,
    STAGE_WORDS,
    article,
    item_ref,
    mmyy,
    number_ref,
    plural,
    request_ref,
    stage_name,
    stage_word,
    subject_words,
)
from ca.lists.der import ListType
from ca.lists.verify import ListRefused, VerifiedList
from ca.qr.codec import FIELDS
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from ca.registry.divisions import InvalidIssuerId, validate_issuer_id
from hsm.signer import SoftwareSigner

NOW = 1_790_000_000  # 2026-09-21T14:13:20Z


def test_every_stage_has_a_short_word_and_both_spellings_are_read() -> None:
    assert set(STAGE_WORDS) == set(STAGES)
    assert stage_word("held-by-province") == "at-province"
    for name, word in STAGE_WORDS.items():
        assert len(word) <= 11
        assert stage_name(name) == name
        assert stage_name(word) == name
        assert stage_name(f" {word.upper()} ") == name
    assert stage_name("at-city") is None


def test_counts_read_as_english() -> None:
    assert plural(1, "checkpoint") == "1 checkpoint"
    assert plural(2, "checkpoint") == "2 checkpoints"
    assert plural(1, "entry") == "1 entry"
    assert plural(0, "entry") == "0 entries"
    assert plural(3, "key") == "3 keys"  # a vowel before the y: keys, not keies
    assert plural(2, "more approver") == "2 more approvers"
    assert plural(2, "copy", "copies") == "2 copies"


def test_articles_and_numbered_things() -> None:
    assert article("issuer-whitelist") == "an issuer-whitelist"
    assert article("city-list") == "a city-list"
    assert article("ca-key-list") == "a ca-key-list"
    assert request_ref(3) == "request #3"
    assert number_ref("application", 7) == "application #7"
    assert subject_words("action 3") == "action 3 (request #3)"  # as signed, and as named
    assert subject_words("application 7") == "application 7"
    # the console's Approvals screen: a key action and an emergency publication are requests
    assert item_ref("action", 3) == "request #3"
    assert item_ref("emergency", 4) == "request #4"
    assert item_ref("application", 7) == "application #7"
    assert item_ref("enrolment", 2) == "enrolment #2"


def test_mmyy_is_a_month_and_a_year() -> None:
    assert mmyy("1230") == "12/2030"
    assert mmyy("0127") == "01/2027"
    assert mmyy("1330") == "1330"  # not a month: as it is
    assert mmyy("123") == "123"


def test_the_issuer_id_rule_is_the_annex_field_and_the_refusal_says_it() -> None:
    assert 2 * FIELDS["interop_cert.issuer_id"].length == ISSUER_ID_DIGITS  # cn8: 4 BCD bytes
    assert ISSUER_ID_RULE == "1-8 decimal digits"
    for good in ("1", "0211345", "02113450"):
        assert validate_issuer_id(good) == good
    for bad in ("", "021134501", "0211345X"):
        with pytest.raises(InvalidIssuerId) as refused:
            validate_issuer_id(bad)
        assert ISSUER_ID_RULE in refused.value.message
        assert repr(bad) in refused.value.message


def test_qr_inspect_shows_the_mmyy_expiry_as_a_date(capsys: pytest.CaptureFixture[str]) -> None:
    ca, issuer, user = (SoftwareSigner.generate() for _ in range(3))
    interop = issue_interop_certificate(
        ca, ca_index=3, issuer_id="02113450", expiry="1230", serial=7,
        issuer_public_key=issuer.public_key,
    )  # fmt: skip
    user_cert = issue_user_certificate(
        issuer, interop, issuer_data="JTCA-VOCAB-TEST1", account_number="31040000000000000042",
        account_type=2, single_ride_limit=30000, user_public_key=user.public_key,
        expires_at=NOW + 3600, qr_validity=60,
    )  # fmt: skip
    payload = sign_ride(user, interop, user_cert, generated_at=NOW - 10).encode()
    status = main(["qr", "inspect", "--hex", payload.hex(), "--now", "2026-09-21T14:13:20Z"])
    out = capsys.readouterr().out
    assert status != 2, out  # judged (the CA key is unknown here), not a usage error
    (row,) = [line for line in out.splitlines() if line.split()[2:3] == ["expiry"]]
    assert row.endswith("1230 (12/2030)")


def test_a_list_of_the_wrong_type_is_named_with_its_article() -> None:
    signer: Any = None  # not read by the type check
    listing = VerifiedList(
        ListType.ISSUERS, 1, 0, 1, (), signer=signer, signer_certificate_der=b"", sm3=""
    )
    with pytest.raises(ListRefused) as refused:
        listing.cities()
    assert refused.value.message == (
        "wrong-list-type: this is an issuer-whitelist, not a city-list"
    )
