"""M-of-N custody (hsm.custody): Shamir shares as printable text with a checksum."""

from __future__ import annotations

import base64
import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hsm.custody import ShareError, _check, combine_secret, parse_share, split_secret
from hsm.sm.sm3 import sm3

SHARE_FORMAT = re.compile(r"^JTCA1-(\d+)OF(\d+)-(\d+)-([0-9A-F]{8})-([A-Z2-7]+)-([0-9A-F]{8})$")
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _forge(share: str, *, payload: bytes | None = None, index: int | None = None) -> str:
    """A share as a dishonest custodian would write it: fields changed and the checksum
    recomputed, so that the checksum alone cannot catch it."""
    m = SHARE_FORMAT.match(share)
    assert m is not None
    raw = base64.b32decode(m[5] + "=" * (-len(m[5]) % 8))
    new_payload = base64.b32encode(payload if payload is not None else raw).decode().rstrip("=")
    body = f"JTCA1-{m[1]}OF{m[2]}-{index if index is not None else m[3]}-{m[4]}-{new_payload}"
    return f"{body}-{_check(body)}"


def _payload(share: str) -> bytes:
    m = SHARE_FORMAT.match(share)
    assert m is not None
    return base64.b32decode(m[5] + "=" * (-len(m[5]) % 8))


# -- the text form ------------------------------------------------------------------------
def test_share_text_format() -> None:
    secret = b"0123456789abcdef"
    shares = split_secret(secret, 2, 3)
    assert len(shares) == 3
    set_ids = set()
    for n, share in enumerate(shares, 1):
        m = SHARE_FORMAT.match(share)
        assert m is not None, share
        assert (m[1], m[2], m[3]) == ("2", "3", str(n))
        set_ids.add(m[4])
        body = share[: share.rfind("-")]
        assert m[6] == sm3(body.encode()).hex()[:8].upper()  # SM3 over everything before it
        raw = _payload(share)
        assert raw[:4] == sm3(secret)[:4]  # the digest of the secret
        assert (len(raw) - 4) % 16 == 0  # whole 16-byte Shamir blocks
        parsed = parse_share(share)
        assert (parsed.threshold, parsed.total, parsed.index) == (2, 3, n)
        assert parsed.text() == share
    assert len(set_ids) == 1  # one set per split
    assert len(set(shares)) == 3


def test_two_splits_of_the_same_secret_differ() -> None:
    a, b = split_secret(b"pin-1234", 2, 3), split_secret(b"pin-1234", 2, 3)
    assert parse_share(a[0]).set_id != parse_share(b[0]).set_id
    assert parse_share(a[0]).blocks != parse_share(b[0]).blocks  # fresh randomness per split


# -- splitting and combining -------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=255),
    shape=st.sampled_from([(2, 2), (2, 3), (3, 5), (4, 7), (5, 5)]),
    data=st.data(),
)
@example(secret=b"\x00", shape=(2, 3), data=None)
@example(secret=bytes(16), shape=(3, 5), data=None)
@example(secret=b"\xff" * 17, shape=(2, 3), data=None)
@example(secret=bytes(range(32)), shape=(3, 5), data=None)
@example(secret=bytes(range(255)), shape=(2, 3), data=None)
def test_any_threshold_subset_rebuilds_the_secret(
    secret: bytes, shape: tuple[int, int], data: st.DataObject | None
) -> None:
    threshold, total = shape
    shares = split_secret(secret, threshold, total)
    assert len(shares) == total
    if data is None:
        chosen = shares[-threshold:][::-1]
    else:
        size = data.draw(st.integers(threshold, total), label="size")
        chosen = data.draw(st.permutations(shares), label="order")[:size]
    assert combine_secret(chosen) == secret


@pytest.mark.parametrize(("threshold", "total"), [(2, 3), (3, 5)])
@pytest.mark.parametrize("length", [1, 16, 17, 32, 255])
def test_every_subset_of_at_least_m_works(threshold: int, total: int, length: int) -> None:
    secret = bytes((7 * i + length) % 256 for i in range(length))
    shares = split_secret(secret, threshold, total)
    tried = 0
    for size in range(threshold, total + 1):
        for subset in itertools.combinations(shares, size):
            assert combine_secret(list(subset)) == secret
            assert combine_secret(list(reversed(subset))) == secret
            tried += 1
    assert tried == sum(
        len(list(itertools.combinations(range(total), k))) for k in range(threshold, total + 1)
    )


@pytest.mark.parametrize(("threshold", "total"), [(2, 3), (3, 5)])
def test_fewer_than_m_shares_are_refused(threshold: int, total: int) -> None:
    shares = split_secret(b"backup wrapping key material 32b", threshold, total)
    for size in range(1, threshold):
        for subset in itertools.combinations(shares, size):
            with pytest.raises(ShareError, match=f"needs {threshold} of {total}"):
                combine_secret(list(subset))
    with pytest.raises(ShareError, match="no shares"):
        combine_secret([])


def test_a_duplicated_share_is_refused() -> None:
    shares = split_secret(b"123456", 2, 3)
    with pytest.raises(ShareError, match="twice"):
        combine_secret([shares[1], shares[1]])
    with pytest.raises(ShareError, match="twice"):
        combine_secret([shares[0], shares[2], shares[0]])
    # the same share typed differently is still the same custodian's share
    with pytest.raises(ShareError, match="twice"):
        combine_secret([shares[0], shares[0].lower()])


def test_shares_of_two_different_splits_are_refused() -> None:
    first = split_secret(b"123456", 2, 3)
    second = split_secret(b"123456", 2, 3)  # even of the same secret
    with pytest.raises(ShareError, match="share 2 belongs to another split"):
        combine_secret([first[0], second[1]])
    other_shape = split_secret(b"123456", 2, 4)
    with pytest.raises(ShareError, match="share 3 belongs to another split"):
        combine_secret([first[0], first[1], other_shape[2]])


# -- mistyped shares ---------------------------------------------------------------------
def _substitutes(char: str) -> list[str]:
    """Characters a hand-copy might put in place of ``char`` (never ``char`` in any case)."""
    pool = BASE32 + "0189ABCDEF-"
    return [c for c in pool if c != char.upper()][:3]


def test_every_single_character_mistype_is_caught_naming_the_share() -> None:
    shares = split_secret(b"token PIN 246810", 2, 3)
    target = shares[1]
    checked = 0
    for i, original in enumerate(target):
        for substitute in _substitutes(original):
            typo = target[:i] + substitute + target[i + 1 :]
            with pytest.raises(ShareError, match=r"^share 2\b"):
                combine_secret([shares[0], typo])
            with pytest.raises(ShareError, match=r"^share 2\b"):
                parse_share(typo, 2)
            checked += 1
    assert checked == 3 * len(target)


@pytest.mark.parametrize("where", ["payload", "header", "check"])
def test_a_mistype_is_reported_as_a_checksum_failure(where: str) -> None:
    shares = split_secret(b"token PIN 246810", 2, 3)
    share = shares[2]
    fields = share.split("-")
    if where == "payload":
        fields[4] = fields[4][:5] + ("A" if fields[4][5] != "A" else "B") + fields[4][6:]
    elif where == "header":
        fields[1] = "3OF3"
    else:
        fields[5] = fields[5][:-1] + ("0" if fields[5][-1] != "0" else "1")
    with pytest.raises(ShareError, match=r"share 3 \(custodian \d+\) fails its checksum"):
        combine_secret([shares[0], shares[1], "-".join(fields)])


def test_dropped_and_swapped_characters_are_caught() -> None:
    shares = split_secret(b"token PIN 246810", 2, 3)
    share = shares[0]
    for i in range(len(share)):
        dropped = share[:i] + share[i + 1 :]
        with pytest.raises(ShareError, match=r"^share 1"):
            combine_secret([dropped, shares[1]])
    for i in range(len(share) - 1):
        if share[i] == share[i + 1]:
            continue
        swapped = share[:i] + share[i + 1] + share[i] + share[i + 2 :]
        with pytest.raises(ShareError, match=r"^share 1"):
            combine_secret([swapped, shares[1]])


def test_case_and_whitespace_are_normalised_not_refused() -> None:
    secret = b"custodian-friendly"
    a, b, c = split_secret(secret, 2, 3)
    grouped = " ".join(b[i : i + 5] for i in range(0, len(b), 5))  # groups of five
    variants = [
        (a.lower(), b),
        (a, grouped),
        (f"  {a}\n", "\t" + b.lower() + "\r\n"),
        (a.swapcase(), "\n".join(c[i : i + 8] for i in range(0, len(c), 8))),
        (a[:10].lower() + a[10:], grouped.lower()),
    ]
    for first, second in variants:
        assert combine_secret([first, second]) == secret
    assert parse_share(grouped.lower()) == parse_share(b)


def test_not_a_share_at_all() -> None:
    good = split_secret(b"x", 2, 3)
    for junk in ["", "hello", "JTCA1", good[0].replace("JTCA1", "JTCA2"), good[0] + "-00"]:
        with pytest.raises(ShareError, match=r"^share 2 is not a jtca share"):
            combine_secret([good[0], junk])


# -- dishonest custodians (valid checksum, altered content) ------------------------------
def test_a_forged_share_with_a_valid_checksum_is_caught_at_combine() -> None:
    secret = b"ministry root PIN 0001"
    shares = split_secret(secret, 2, 3)
    assert _forge(shares[1]) == shares[1]  # the forger's tool reproduces a genuine share
    raw = bytearray(_payload(shares[1]))
    raw[4 + 3] ^= 0x40  # one byte of the first Shamir block, the digest left intact
    forged = _forge(shares[1], payload=bytes(raw))
    assert forged != shares[1]
    parse_share(forged)  # passes its checksum: the checksum is not what catches it
    with pytest.raises(ShareError, match="do not combine"):
        combine_secret([shares[0], forged])
    with pytest.raises(ShareError, match="do not combine"):
        combine_secret([forged, shares[2]])


def test_a_forged_index_or_digest_is_caught() -> None:
    shares = split_secret(b"ministry root PIN 0001", 3, 5)
    relabelled = _forge(shares[2], index=5)  # custodian 3 poses as custodian 5
    with pytest.raises(ShareError, match="do not combine"):
        combine_secret([shares[0], shares[1], relabelled])
    raw = bytearray(_payload(shares[2]))
    raw[0] ^= 0x01  # the secret's digest
    with pytest.raises(ShareError, match="does not match share 1"):
        combine_secret([shares[0], shares[1], _forge(shares[2], payload=bytes(raw))])
    short = _forge(shares[2], payload=_payload(shares[2])[:-16] or b"")
    with pytest.raises(ShareError, match=r"wrong length|does not match"):
        combine_secret([shares[0], shares[1], short])
    for bad_index in (0, 6):
        with pytest.raises(ShareError, match=f"names custodian {bad_index} of 5"):
            parse_share(_forge(shares[2], index=bad_index))


# -- parameters --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("secret", "threshold", "total", "complaint"),
    [
        pytest.param(b"pin", 1, 1, "threshold", id="fail/1-of-1"),
        pytest.param(b"pin", 1, 3, "threshold", id="fail/1-of-3"),
        pytest.param(b"pin", 4, 3, "threshold", id="fail/4-of-3"),
        pytest.param(b"pin", 0, 0, "threshold", id="fail/0-of-0"),
        pytest.param(b"pin", 2, 256, "threshold", id="fail/2-of-256"),
        pytest.param(b"", 2, 3, "1 to 255 bytes", id="fail/empty"),
        pytest.param(bytes(256), 2, 3, "1 to 255 bytes", id="fail/256-bytes"),
    ],
)
def test_bad_parameters_are_refused(
    secret: bytes, threshold: int, total: int, complaint: str
) -> None:
    with pytest.raises(ShareError, match=complaint) as caught:
        split_secret(secret, threshold, total)
    assert caught.value.title == "Bad share"


def test_the_limits_themselves_are_accepted() -> None:
    assert combine_secret(split_secret(bytes(255), 2, 2)) == bytes(255)
    assert combine_secret(split_secret(b"\x01", 2, 2)) == b"\x01"
