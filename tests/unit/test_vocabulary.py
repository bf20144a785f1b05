"""ca/vocabulary.py: the words the console and the command line share (issue #17)."""

from __future__ import annotations

from ca.citykeys.workflow import STAGES
from ca.vocabulary import (
    STAGE_WORDS,
    article,
    mmyy,
    number_ref,
    plural,
    request_ref,
    stage_name,
    stage_word,
)


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


def test_mmyy_is_a_month_and_a_year() -> None:
    assert mmyy("1230") == "12/2030"
    assert mmyy("0127") == "01/2027"
    assert mmyy("1330") == "1330"  # not a month: as it is
    assert mmyy("123") == "123"
