"""One vocabulary for the console and the command line (issue #17, point 1): the words both
show for a key's stage, a request's name, counts and dates. Pure functions: no I/O, no import
of the console or the service. Owned by the vocabulary work of issue #17; the console imports
from here rather than keeping its own words."""

from __future__ import annotations

from typing import Final

# A key's delivery stage as both the console and the command line show it (the database keeps
# the long names of ca.citykeys.workflow; input accepts either).
STAGE_WORDS: Final[dict[str, str]] = {
    "generated": "generated",
    "delivered-to-province": "to-province",
    "held-by-province": "at-province",
    "delivered-to-city": "to-city",
    "installed": "installed",
}


def stage_word(stage: str) -> str:
    """``held-by-province`` as ``at-province`` (at most 11 characters: 80-column tables)."""
    return STAGE_WORDS.get(stage, stage)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 checkpoint``, ``2 checkpoints``, ``1 entry``/``2 entries`` (``many`` when irregular)."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        consonant_y = word.endswith("y") and word[-2:-1] not in "aeiou"
        many = word[:-1] + "ies" if consonant_y else word + "s"
    return f"{count} {many}"


def article(word: str) -> str:
    """``an issuer-whitelist``, ``a city-list``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def mmyy(text: str) -> str:
    """The annex's MMYY expiry (``1230``) as ``12/2030``; anything else as it is."""
    if len(text) == 4 and text.isdigit() and 1 <= int(text[:2]) <= 12:
        return f"{text[:2]}/20{text[2:]}"
    return text


# The long names the database keeps, from either spelling a person may type.
STAGE_NAMES: Final[dict[str, str]] = {
    **{name: name for name in STAGE_WORDS},
    **{word: name for name, word in STAGE_WORDS.items()},
}


def stage_name(text: str) -> str | None:
    """The stage ``text`` names, as the database keeps it: ``at-province`` and
    ``held-by-province`` both give ``held-by-province``; anything else ``None``."""
    return STAGE_NAMES.get(text.strip().lower())


# What one item awaiting a second officer is called (an emergency publication, a key action):
# the console says "request #3", and so does the command line.
REQUEST: Final = "request"


def number_ref(word: str, number: int) -> str:
    """``application #7``: a numbered thing, as the console names it."""
    return f"{word} #{number}"


def request_ref(number: int) -> str:
    """``request #3``: the one name of an item awaiting approvers (a key action, an emergency
    publication), in the console, on the command line and in the service's refusals."""
    return number_ref(REQUEST, number)


def item_ref(kind: str, number: int) -> str:
    """A pending item as the console and the command line name it: a key action or an
    emergency publication is ``request #N``; the others ``application #N``,
    ``enrolment #N``… (the signed subject stays ``action N``: ``subject_words``)."""
    if kind in ("action", "emergency"):
        return request_ref(number)
    return number_ref(kind, number)


# A QR issuer id (发行机构标识) as the annex defines it: cn8, 4 bytes of left-justified BCD with
# F padding, so one to eight decimal digits. Forms, help texts and the refusal all say this.
ISSUER_ID_DIGITS: Final = 8
ISSUER_ID_RULE: Final = f"1-{ISSUER_ID_DIGITS} decimal digits"


def subject_words(subject: str) -> str:
    """A dual-control subject as the log and the signed statement name it (``action 3``), with
    the one name people see for it: ``action 3 (request #3)``. Others as they are."""
    kind, _, number = subject.partition(" ")
    if kind == "action" and number.isdigit():
        return f"{subject} ({request_ref(int(number))})"
    return subject
