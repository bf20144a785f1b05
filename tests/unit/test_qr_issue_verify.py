"""Issuing (ca.qr.issue) and the acceptor's checks (ca.qr.verify), in the spec's order.

Spec "What an acceptor checks, in order": 1 structure, 2 CA index and CA signature, 3 issuer on
the whitelist, 4 interop cert expiry (MMYY, end of month), 5 issuer signature, 6 user cert
expiry, 7 generation time window, 8 user signature, 9 fare ≤ single-ride limit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import pytest

from ca.core.clock import FixedClock
from ca.core.errors import CodecError, JtcaError, PayloadRejected
from ca.qr.codec import decode_payload
from ca.qr.issue import SignerMismatch, issue_user_certificate, sign_ride
from ca.qr.verify import (
    DEFAULT_SKEW,
    PayloadVerifier,
    Reason,
    Rejected,
    VerifiedRide,
    verify_payload,
)
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey

try:  # tests/unit may become a package while others work in the tree
    from . import qr_fixtures as fx
except ImportError:
    import qr_fixtures as fx


@pytest.fixture(scope="module")
def chain() -> fx.Chain:
    return fx.make_chain()


@pytest.fixture(scope="module")
def chain32() -> fx.Chain:
    return fx.make_chain(extension=fx.EXTENSION_32, structure_version=1)


@pytest.fixture
def sm2_verifications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts the SM2 verifications actually run (whatever the verifier reports)."""
    calls: list[bytes] = []
    real = SM2PublicKey.verify

    def counting(self: SM2PublicKey, signature: bytes, message: bytes) -> None:
        calls.append(message)
        real(self, signature, message)

    monkeypatch.setattr(SM2PublicKey, "verify", counting)
    return calls


def rejected(verifier: PayloadVerifier, data: bytes, fare: int | None = None) -> Reason:
    with pytest.raises(Rejected) as info:
        verifier.verify(data, fare=fare)
    exc = info.value
    assert isinstance(exc, PayloadRejected)
    assert isinstance(exc, JtcaError)
    assert exc.reason == exc.reason_code.value
    assert str(exc).startswith(f"{exc.reason_code.value}: ")
    return exc.reason_code


# --- the happy path and the cache --------------------------------------------------------------
@pytest.mark.parametrize("which", ["chain", "chain32"])
def test_happy_path_cold_then_cached(
    which: str, request: pytest.FixtureRequest, sm2_verifications: list[bytes]
) -> None:
    c: fx.Chain = request.getfixturevalue(which)
    L = c.extension_length
    verifier = c.verifier(FixedClock(fx.NOW))
    first = verifier.verify(c.data, fare=200)
    assert isinstance(first, VerifiedRide)
    assert first.signatures_verified == 3
    assert first.verified_at == fx.NOW
    assert first.payload == decode_payload(c.data) == c.payload
    # the three verifications ran over exactly the spec's ranges
    assert sm2_verifications == [c.data[9:56], c.data[3 : 198 + L], c.data[: 267 + L]]

    # the same rider a few seconds later: only the ride signature is checked
    sm2_verifications.clear()
    verifier.clock = FixedClock(fx.NOW + 5)
    later = c.resign_ride(fx.NOW + 5)
    repeat = verifier.verify(later, fare=200)
    assert repeat.signatures_verified == 1
    assert sm2_verifications == [later[: 267 + L]]
    assert repeat.payload == decode_payload(later)
    assert repeat.payload.ride.generated_at == fx.NOW + 5
    assert repeat.verified_at == fx.NOW + 5

    verifier.clear_caches()
    sm2_verifications.clear()
    assert verifier.verify(later).signatures_verified == 3
    assert len(sm2_verifications) == 3


def test_verify_payload_has_no_cache(chain: fx.Chain, sm2_verifications: list[bytes]) -> None:
    for _ in range(2):
        ride = verify_payload(
            chain.data,
            ca_keys={fx.CA_INDEX: chain.ca.public_key},
            accepted_issuers={fx.ISSUER_ID},
            clock=FixedClock(fx.NOW),
            fare=fx.SINGLE_RIDE_LIMIT,
        )
        assert ride.signatures_verified == 3
        assert ride.payload == chain.payload
    assert len(sm2_verifications) == 6
    with pytest.raises(Rejected) as info:
        verify_payload(
            chain.data,
            ca_keys={fx.CA_INDEX: chain.ca.public_key},
            accepted_issuers={fx.ISSUER_ID},
            clock=FixedClock(fx.NOW),
            fare=fx.SINGLE_RIDE_LIMIT + 1,
        )
    assert info.value.reason_code is Reason.FARE_OVER_LIMIT


def test_second_user_of_a_known_issuer_costs_two(chain: fx.Chain) -> None:
    verifier = chain.verifier(FixedClock(fx.NOW))
    assert verifier.verify(chain.data).signatures_verified == 3
    other_user = SoftwareSigner.generate()
    user_cert = issue_user_certificate(
        chain.issuer,
        chain.interop,
        issuer_data=fx.ISSUER_DATA,
        account_number="31040000000000000002",
        account_type=1,
        single_ride_limit=fx.SINGLE_RIDE_LIMIT,
        user_public_key=other_user.public_key,
        expires_at=fx.NOW + 1000,
        qr_validity=60,
    )
    data = sign_ride(other_user, chain.interop, user_cert, generated_at=fx.NOW).encode()
    assert verifier.verify(data).signatures_verified == 2  # interop cert cached
    assert verifier.verify(data).signatures_verified == 1  # both cached


def test_cache_is_bounded(chain: fx.Chain) -> None:
    a = chain
    b = fx.make_chain(ca=chain.ca, issuer=chain.issuer)  # same CA, other issuer cert, other user
    verifier = PayloadVerifier(
        ca_keys={fx.CA_INDEX: chain.ca.public_key},
        accepted_issuers={fx.ISSUER_ID},
        clock=FixedClock(fx.NOW),
        cache_size=1,
    )
    assert [verifier.verify(x).signatures_verified for x in (a.data, a.data)] == [3, 1]
    assert verifier.verify(b.data).signatures_verified == 3  # different interop cert bytes
    assert verifier.verify(a.data).signatures_verified == 3  # a was evicted
    none = PayloadVerifier(
        ca_keys={fx.CA_INDEX: chain.ca.public_key},
        accepted_issuers={fx.ISSUER_ID},
        clock=FixedClock(fx.NOW),
        cache_size=0,
    )
    assert [none.verify(a.data).signatures_verified for _ in range(3)] == [3, 3, 3]


def test_verifier_accepts_bytearray_and_memoryview(chain: fx.Chain) -> None:
    verifier = chain.verifier(FixedClock(fx.NOW))
    assert verifier.verify(bytearray(chain.data)).signatures_verified == 3
    assert verifier.verify(memoryview(chain.data)).signatures_verified == 1


# --- one test per Reason, and the order of the checks -----------------------------------------
ORDER: list[Reason] = [
    Reason.MALFORMED,
    Reason.UNKNOWN_CA_KEY,
    Reason.BAD_CA_SIGNATURE,
    Reason.ISSUER_NOT_ACCEPTED,
    Reason.INTEROP_CERT_EXPIRED,
    Reason.BAD_ISSUER_SIGNATURE,
    Reason.USER_CERT_EXPIRED,
    Reason.QR_EXPIRED,
    Reason.QR_NOT_YET_VALID,
    Reason.BAD_USER_SIGNATURE,
    Reason.FARE_OVER_LIMIT,
]
EXCLUSIVE = {Reason.QR_EXPIRED, Reason.QR_NOT_YET_VALID}  # both step 7: one or the other


def test_order_lists_every_reason() -> None:
    assert set(ORDER) == set(Reason)
    assert len(ORDER) == len(Reason)


@dataclass(frozen=True)
class Case:
    data: bytes
    verifier: PayloadVerifier
    fare: int


CA = SoftwareSigner.generate()
ROGUE = SoftwareSigner.generate()


def build(defects: set[Reason]) -> Case:
    """A payload and an acceptor with exactly these defects, each made the way it happens:
    a cert signed by an untrusted CA key, a user cert signed by the wrong issuer key, a ride
    signed by the wrong wallet, clocks and limits on the wrong side."""
    assert not defects >= EXCLUSIVE
    now = fx.NOW
    c = fx.make_chain(
        ca=ROGUE if Reason.BAD_CA_SIGNATURE in defects else CA,
        expiry="0226" if Reason.INTEROP_CERT_EXPIRED in defects else "0326",  # now: 15 Mar 2026
        expires_at=now - 1 if Reason.USER_CERT_EXPIRED in defects else now + 86400,
        generated_at=(
            now - fx.QR_VALIDITY - DEFAULT_SKEW - 1
            if Reason.QR_EXPIRED in defects
            else now + DEFAULT_SKEW + 1
            if Reason.QR_NOT_YET_VALID in defects
            else now - 10
        ),
    )
    if Reason.BAD_ISSUER_SIGNATURE in defects:
        c = fx.forge_user_cert_signature(c, ROGUE)
    data = fx.forge_ride_signature(c, ROGUE) if Reason.BAD_USER_SIGNATURE in defects else c.data
    if Reason.MALFORMED in defects:
        data = fx.patch(data, 198, b"\x14")  # issuer signature format tag
    verifier = PayloadVerifier(
        ca_keys={2 if Reason.UNKNOWN_CA_KEY in defects else fx.CA_INDEX: CA.public_key},
        accepted_issuers=(
            {"99999999"} if Reason.ISSUER_NOT_ACCEPTED in defects else {fx.ISSUER_ID}
        ),
        clock=FixedClock(now),
    )
    fare = fx.SINGLE_RIDE_LIMIT + (1 if Reason.FARE_OVER_LIMIT in defects else 0)
    return Case(data, verifier, fare)


def later_than(reason: Reason) -> set[Reason]:
    """Every check after ``reason``'s, less qr-not-yet-valid wherever qr-expired is present
    (a code cannot be both too old and too new)."""
    later = set(ORDER[ORDER.index(reason) + 1 :])
    if Reason.QR_EXPIRED in later or reason is Reason.QR_EXPIRED:
        later.discard(Reason.QR_NOT_YET_VALID)
    return later


def test_no_defect_is_accepted() -> None:
    case = build(set())
    ride = case.verifier.verify(case.data, fare=case.fare)
    assert ride.signatures_verified == 3
    assert ride.payload.user_cert.single_ride_limit == case.fare


@pytest.mark.parametrize("reason", ORDER, ids=[r.value for r in ORDER])
def test_each_reason_alone(reason: Reason) -> None:
    case = build({reason})
    assert rejected(case.verifier, case.data, case.fare) is reason


@pytest.mark.parametrize("reason", ORDER, ids=[r.value for r in ORDER])
def test_each_reason_outranks_every_later_check(reason: Reason) -> None:
    defects = {reason} | later_than(reason)
    assert reason in defects
    assert len(defects) >= len(ORDER) - ORDER.index(reason) - 1
    case = build(defects)
    assert rejected(case.verifier, case.data, case.fare) is reason


PAIRS = [(a, b) for a, b in itertools.combinations(ORDER, 2) if {a, b} != EXCLUSIVE]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"order/{a}>{b}" for a, b in PAIRS])
def test_each_pair_in_spec_order(first: Reason, second: Reason) -> None:
    case = build({first, second})
    assert rejected(case.verifier, case.data, case.fare) is first


def test_named_orderings_from_the_spec() -> None:
    # an unknown CA index with an expired interop cert: unknown-ca-key
    case = build({Reason.UNKNOWN_CA_KEY, Reason.INTEROP_CERT_EXPIRED})
    assert rejected(case.verifier, case.data) is Reason.UNKNOWN_CA_KEY
    # a bad CA signature outranks an issuer off the whitelist
    case = build({Reason.BAD_CA_SIGNATURE, Reason.ISSUER_NOT_ACCEPTED})
    assert rejected(case.verifier, case.data) is Reason.BAD_CA_SIGNATURE
    # off the whitelist outranks an expired interop cert
    case = build({Reason.ISSUER_NOT_ACCEPTED, Reason.INTEROP_CERT_EXPIRED})
    assert rejected(case.verifier, case.data) is Reason.ISSUER_NOT_ACCEPTED
    # an expired interop cert outranks a bad issuer signature
    case = build({Reason.INTEROP_CERT_EXPIRED, Reason.BAD_ISSUER_SIGNATURE})
    assert rejected(case.verifier, case.data) is Reason.INTEROP_CERT_EXPIRED
    # a bad issuer signature outranks an expired user cert
    case = build({Reason.BAD_ISSUER_SIGNATURE, Reason.USER_CERT_EXPIRED})
    assert rejected(case.verifier, case.data) is Reason.BAD_ISSUER_SIGNATURE
    # an expired user cert outranks a stale code; a stale code outranks a bad user signature
    case = build({Reason.USER_CERT_EXPIRED, Reason.QR_EXPIRED, Reason.BAD_USER_SIGNATURE})
    assert rejected(case.verifier, case.data) is Reason.USER_CERT_EXPIRED
    case = build({Reason.QR_NOT_YET_VALID, Reason.BAD_USER_SIGNATURE})
    assert rejected(case.verifier, case.data) is Reason.QR_NOT_YET_VALID
    # a bad user signature outranks a fare over the limit
    case = build({Reason.BAD_USER_SIGNATURE, Reason.FARE_OVER_LIMIT})
    assert rejected(case.verifier, case.data, case.fare) is Reason.BAD_USER_SIGNATURE


def test_malformed_names_field_and_offset(chain32: fx.Chain) -> None:
    verifier = chain32.verifier(FixedClock(fx.NOW))
    bad = fx.patch(chain32.data, 267 + 32, b"\x16")
    with pytest.raises(Rejected) as info:
        verifier.verify(bad)
    err = info.value.codec_error
    assert info.value.reason_code is Reason.MALFORMED
    assert isinstance(err, CodecError)
    assert (err.field, err.offset) == ("ride.user_signature", 299)
    assert "ride.user_signature at offset 299" in str(info.value)
    # the same bytes after the certificates are cached: still malformed, same field
    verifier.verify(chain32.data)
    with pytest.raises(Rejected) as info:
        verifier.verify(bad)
    assert info.value.reason_code is Reason.MALFORMED
    assert info.value.codec_error is not None
    assert info.value.codec_error.offset == 299


def test_user_cert_signed_by_another_issuer_key(chain: fx.Chain) -> None:
    """Issuer B's user certificate (validly signed by B) shown under issuer A's interop cert."""
    other = fx.make_chain(ca=chain.ca, issuer_id="02113451")
    spliced = sign_ride(other.user, chain.interop, other.user_cert, generated_at=fx.NOW).encode()
    assert decode_payload(spliced).interop_cert == chain.interop
    verifier = chain.verifier(FixedClock(fx.NOW))
    assert rejected(verifier, spliced) is Reason.BAD_ISSUER_SIGNATURE
    # also after A's own rider warmed the cache
    assert verifier.verify(chain.data).signatures_verified == 2
    assert rejected(verifier, spliced) is Reason.BAD_ISSUER_SIGNATURE


# --- time boundaries (FixedClock) --------------------------------------------------------------
@pytest.fixture(params=["cold", "warm"])
def warmth(request: pytest.FixtureRequest) -> str:
    return request.param


def _verifier_for(c: fx.Chain, warmth: str, at: int, **kwargs: object) -> PayloadVerifier:
    clock = FixedClock(c.payload.ride.generated_at)
    verifier = c.verifier(clock, **kwargs)
    if warmth == "warm":
        assert verifier.verify(c.data).signatures_verified == 3
    clock.set(at)
    return verifier


@pytest.mark.parametrize(
    ("expiry", "last_second"),
    [
        ("0626", fx.utc(2026, 6, 30, 23, 59, 59)),
        ("0228", fx.utc(2028, 2, 29, 23, 59, 59)),
        ("1226", fx.utc(2026, 12, 31, 23, 59, 59)),
    ],
)
def test_interop_cert_valid_through_the_last_second_of_its_month(
    expiry: str, last_second: int, warmth: str
) -> None:
    c = fx.make_chain(expiry=expiry, generated_at=last_second, expires_at=last_second + 86400)
    ok = _verifier_for(c, warmth, last_second).verify(c.data)
    assert ok.verified_at == last_second
    verifier = _verifier_for(c, warmth, last_second + 1)
    assert rejected(verifier, c.data) is Reason.INTEROP_CERT_EXPIRED


def test_user_cert_expiry_boundary(warmth: str) -> None:
    expires = fx.NOW + 1000
    c = fx.make_chain(expires_at=expires, generated_at=expires)
    assert _verifier_for(c, warmth, expires).verify(c.data).verified_at == expires
    assert rejected(_verifier_for(c, warmth, expires + 1), c.data) is Reason.USER_CERT_EXPIRED


@pytest.mark.parametrize(("validity", "skew"), [(60, DEFAULT_SKEW), (0, 0), (300, 5)])
def test_generation_time_window_is_inclusive(validity: int, skew: int, warmth: str) -> None:
    g = fx.NOW
    c = fx.make_chain(qr_validity=validity, generated_at=g)
    oldest = g + validity + skew  # generated_at == now − validity − skew
    newest = g - skew  # generated_at == now + skew
    assert _verifier_for(c, warmth, oldest, skew=skew).verify(c.data).verified_at == oldest
    assert _verifier_for(c, warmth, newest, skew=skew).verify(c.data).verified_at == newest
    assert rejected(_verifier_for(c, warmth, oldest + 1, skew=skew), c.data) is Reason.QR_EXPIRED
    assert (
        rejected(_verifier_for(c, warmth, newest - 1, skew=skew), c.data) is Reason.QR_NOT_YET_VALID
    )


def test_default_skew_is_used(chain: fx.Chain) -> None:
    verifier = PayloadVerifier(
        ca_keys={1: chain.ca.public_key},
        accepted_issuers={fx.ISSUER_ID},
        clock=FixedClock(fx.NOW - DEFAULT_SKEW),
    )
    assert verifier.skew == DEFAULT_SKEW == 30
    assert verifier.verify(chain.data).verified_at == fx.NOW - 30
    with pytest.raises(ValueError, match="skew"):
        PayloadVerifier(ca_keys={}, accepted_issuers=(), clock=FixedClock(fx.NOW), skew=-1)


@pytest.mark.parametrize("limit", [0, 1, 20000, 2**24 - 1])
def test_fare_equal_to_limit_passes_one_more_fails(limit: int, warmth: str) -> None:
    c = fx.make_chain(single_ride_limit=limit)
    verifier = _verifier_for(c, warmth, fx.NOW)
    assert verifier.verify(c.data, fare=limit).payload.user_cert.single_ride_limit == limit
    assert verifier.verify(c.data).signatures_verified == 1  # unknown fare: not checked
    assert rejected(verifier, c.data, fare=limit + 1) is Reason.FARE_OVER_LIMIT


# --- the cache never outlives trust ------------------------------------------------------------
Warm = tuple[fx.Chain, PayloadVerifier, FixedClock]


@pytest.fixture
def warm(chain: fx.Chain) -> Warm:
    clock = FixedClock(fx.NOW)
    verifier = chain.verifier(clock)
    assert verifier.verify(chain.data).signatures_verified == 3
    assert verifier.verify(chain.data).signatures_verified == 1
    return chain, verifier, clock


def test_cached_rider_rejected_after_issuer_removed(warm: Warm) -> None:
    c, verifier, _ = warm
    verifier.update_trust(accepted_issuers={"02113451"})
    assert rejected(verifier, c.data) is Reason.ISSUER_NOT_ACCEPTED
    verifier.update_trust(accepted_issuers=set())
    assert rejected(verifier, c.data) is Reason.ISSUER_NOT_ACCEPTED
    verifier.update_trust(accepted_issuers={fx.ISSUER_ID})
    assert verifier.verify(c.data).signatures_verified == 1


def test_cached_rider_not_trusted_after_ca_key_replaced(
    warm: Warm, sm2_verifications: list[bytes]
) -> None:
    c, verifier, _ = warm
    other = SoftwareSigner.generate().public_key
    verifier.update_trust(ca_keys={fx.CA_INDEX: other})
    assert rejected(verifier, c.data) is Reason.BAD_CA_SIGNATURE
    # the CA signature was really verified again, under the new key
    assert sm2_verifications == [c.data[9:56]]
    # a new ride from the same rider is refused too
    assert rejected(verifier, c.resign_ride(fx.NOW + 1)) is Reason.BAD_CA_SIGNATURE
    # the index withdrawn altogether
    verifier.update_trust(ca_keys={})
    assert rejected(verifier, c.data) is Reason.UNKNOWN_CA_KEY
    verifier.update_trust(ca_keys={fx.CA_INDEX + 1: c.ca.public_key})
    assert rejected(verifier, c.data) is Reason.UNKNOWN_CA_KEY
    # the old key back at its index: trusted again
    verifier.update_trust(ca_keys={fx.CA_INDEX: c.ca.public_key})
    assert verifier.verify(c.data).signatures_verified == 1  # its entries are valid again
    verifier.clear_caches()
    assert verifier.verify(c.data).signatures_verified == 3


def test_forged_ride_for_cached_user_cert(warm: Warm, sm2_verifications: list[bytes]) -> None:
    c, verifier, _ = warm
    forged = fx.forge_ride_signature(c, SoftwareSigner.generate())
    assert forged[: 267 + 0] == c.data[:267]
    assert forged != c.data
    assert rejected(verifier, forged) is Reason.BAD_USER_SIGNATURE
    assert sm2_verifications == [forged[:267]]  # the cached path still checks the ride
    # the real user's signature, its generation time changed afterwards
    moved = fx.patch(c.data, 263, (fx.NOW + 1).to_bytes(4, "big"))
    assert rejected(verifier, moved) is Reason.BAD_USER_SIGNATURE
    # a signature replayed from another ride of the same user
    other_ride = c.resign_ride(fx.NOW + 2)
    replay = c.data[:268] + other_ride[268:]
    assert rejected(verifier, replay) is Reason.BAD_USER_SIGNATURE
    # the other structure version with the same signature
    assert rejected(verifier, fx.patch(c.data, 0, b"\x81")) is Reason.BAD_USER_SIGNATURE


def test_clock_past_expiry_rejects_cached_rider(warm: Warm) -> None:
    c, verifier, clock = warm
    # the code itself goes stale
    clock.set(fx.NOW + fx.QR_VALIDITY + DEFAULT_SKEW + 1)
    assert rejected(verifier, c.data) is Reason.QR_EXPIRED
    # the user certificate expires (a fresh code, so only the certificate is at fault)
    end = c.user_cert.expires_at
    clock.set(end + 1)
    assert rejected(verifier, c.resign_ride(end + 1)) is Reason.USER_CERT_EXPIRED
    clock.set(end)
    assert verifier.verify(c.resign_ride(end)).signatures_verified == 1
    # the interop certificate expires (2030-12-31T23:59:59Z is its last second)
    clock.set(fx.utc(2031, 1, 1))
    assert rejected(verifier, c.resign_ride(fx.utc(2031, 1, 1))) is Reason.INTEROP_CERT_EXPIRED


# --- issuing with the wrong signer -------------------------------------------------------------
def test_issuing_user_cert_with_wrong_issuer_signer(chain: fx.Chain) -> None:
    with pytest.raises(SignerMismatch) as info:
        issue_user_certificate(
            SoftwareSigner.generate(),
            chain.interop,
            issuer_data=fx.ISSUER_DATA,
            account_number=fx.ACCOUNT_NUMBER,
            account_type=1,
            single_ride_limit=1,
            user_public_key=chain.user.public_key,
            expires_at=fx.NOW,
            qr_validity=60,
        )
    assert isinstance(info.value, JtcaError)
    assert chain.interop.issuer_public_key.compressed.hex() in str(info.value)
    assert fx.ISSUER_ID in str(info.value)
    # the CA key or the user key is not the issuer key either
    for wrong in (chain.ca, chain.user):
        with pytest.raises(SignerMismatch):
            issue_user_certificate(
                wrong,
                chain.interop,
                issuer_data=fx.ISSUER_DATA,
                account_number=fx.ACCOUNT_NUMBER,
                account_type=1,
                single_ride_limit=1,
                user_public_key=chain.user.public_key,
                expires_at=fx.NOW,
                qr_validity=60,
            )


def test_signing_ride_with_wrong_user_signer(chain: fx.Chain) -> None:
    for wrong in (SoftwareSigner.generate(), chain.issuer):
        with pytest.raises(SignerMismatch) as info:
            sign_ride(wrong, chain.interop, chain.user_cert, generated_at=fx.NOW)
        assert chain.user.public_key.compressed.hex() in str(info.value)


def test_sign_ride_checks_fields(chain: fx.Chain) -> None:
    with pytest.raises(CodecError) as info:
        sign_ride(chain.user, chain.interop, chain.user_cert, generated_at=-1)
    assert (info.value.field, info.value.offset) == ("ride.generated_at", 263)
    with pytest.raises(CodecError) as info:
        sign_ride(
            chain.user, chain.interop, chain.user_cert, generated_at=fx.NOW, structure_version=2
        )
    assert (info.value.field, info.value.offset) == ("guide.type_version", 0)


def test_issued_parts_fit_together(chain32: fx.Chain) -> None:
    c = chain32
    data = c.data
    assert data[3:120] == c.interop.encode()
    assert replace(c.interop, ca_signature=bytes(64)).to_be_signed() == data[9:56]
    c.ca.public_key.verify(c.interop.ca_signature, data[9:56])
    c.issuer.public_key.verify(c.user_cert.issuer_signature, data[3:230])
    c.user.public_key.verify(c.payload.ride.user_signature, data[:299])
