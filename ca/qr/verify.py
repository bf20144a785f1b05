"""What an acceptor checks, in the spec's order, each failure with its own reason code.

1. structure (type nibble, version, declared length, every fixed value) → ``malformed``
2. CA index known → ``unknown-ca-key``; CA signature → ``bad-ca-signature``
3. issuer id on the accepted list → ``issuer-not-accepted``
4. interop certificate not expired (MMYY, end of month) → ``interop-cert-expired``
5. issuer signature → ``bad-issuer-signature``
6. user certificate not expired → ``user-cert-expired``
7. generation time within [now − validity − skew, now + skew] → ``qr-expired`` /
   ``qr-not-yet-valid``
8. user signature → ``bad-user-signature``
9. fare, where known, ≤ the single-ride limit → ``fare-over-limit``

Interop and user certificates whose signatures verified are cached by their bytes (bounded,
least recently used first out), so a repeat rider costs one SM2 verification. Only signature
results are cached: the accepted issuers, expiry and the clock are checked on every ride, and a
cached CA signature counts only while the same CA key still sits at that index.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, TypeVar

from ca.core.clock import Clock
from ca.core.errors import CodecError, InvalidSignature, PayloadRejected
from ca.qr.codec import (
    BASE_PAYLOAD_SIZE,
    GUIDE_SIZE,
    INTEROP_CERT_SIZE,
    QR_TYPE,
    SIGNATURE_FORMAT_TAG,
    STRUCTURE_VERSIONS,
    Guide,
    InteropCertificate,
    QrPayload,
    Ride,
    UserCertificate,
    decode_payload,
)
from hsm.sm.sm2 import SM2PublicKey

DEFAULT_SKEW: Final = 30  # seconds of clock difference tolerated between wallet and acceptor
DEFAULT_CACHE_SIZE: Final = 65536


class Reason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_CA_KEY = "unknown-ca-key"
    BAD_CA_SIGNATURE = "bad-ca-signature"
    ISSUER_NOT_ACCEPTED = "issuer-not-accepted"
    INTEROP_CERT_EXPIRED = "interop-cert-expired"
    BAD_ISSUER_SIGNATURE = "bad-issuer-signature"
    USER_CERT_EXPIRED = "user-cert-expired"
    QR_EXPIRED = "qr-expired"
    QR_NOT_YET_VALID = "qr-not-yet-valid"
    BAD_USER_SIGNATURE = "bad-user-signature"
    FARE_OVER_LIMIT = "fare-over-limit"


class Rejected(PayloadRejected):
    """A payload an acceptor must refuse; ``reason`` is a ``Reason``."""

    def __init__(self, reason: Reason, message: str, codec_error: CodecError | None = None):
        super().__init__(reason.value, message)
        self.reason_code = reason
        self.codec_error = codec_error


@dataclass(frozen=True, slots=True)
class VerifiedRide:
    payload: QrPayload
    verified_at: int
    signatures_verified: int  # how many SM2 verifications this ride cost (1 to 3)


K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("cache capacity must be ≥ 0")
        self._capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self._capacity == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class _InteropEntry:
    cert: InteropCertificate
    ca_key: SM2PublicKey  # the key that verified it; the entry counts only while it is current


@dataclass(frozen=True, slots=True)
class _UserEntry:
    interop: _InteropEntry
    cert: UserCertificate


class PayloadVerifier:
    """An acceptor's verifier: trusted CA keys by index, accepted issuer ids, a clock, a skew."""

    def __init__(
        self,
        *,
        ca_keys: Mapping[int, SM2PublicKey],
        accepted_issuers: Collection[str],
        clock: Clock,
        skew: int = DEFAULT_SKEW,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if skew < 0:
            raise ValueError("skew must be ≥ 0 seconds")
        self.ca_keys: Mapping[int, SM2PublicKey] = dict(ca_keys)
        self.accepted_issuers: frozenset[str] = frozenset(accepted_issuers)
        self.clock = clock
        self.skew = skew
        self._interop_cache: LruCache[bytes, _InteropEntry] = LruCache(cache_size)
        self._user_cache: LruCache[bytes, _UserEntry] = LruCache(cache_size)

    def update_trust(
        self,
        *,
        ca_keys: Mapping[int, SM2PublicKey] | None = None,
        accepted_issuers: Collection[str] | None = None,
    ) -> None:
        """Take a new CA key list or issuer whitelist (from freshly verified signed lists)."""
        if ca_keys is not None:
            self.ca_keys = dict(ca_keys)
        if accepted_issuers is not None:
            self.accepted_issuers = frozenset(accepted_issuers)

    def clear_caches(self) -> None:
        self._interop_cache.clear()
        self._user_cache.clear()

    # -- the checks -----------------------------------------------------------------------
    def verify(self, data: bytes, *, fare: int | None = None) -> VerifiedRide:
        """Run the acceptor checks in order. Raises ``Rejected``; returns the verified ride."""
        now = self.clock.now()
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        ext_len = n - BASE_PAYLOAD_SIZE
        ride_at = 263 + ext_len
        # 1. structure. The quick test covers the guide, the ride and the lengths; the domains
        #    are checked byte by byte when first decoded, then cached by their bytes.
        structure_ok = (
            ext_len in (0, 32)
            and data[0] >> 4 == QR_TYPE
            and data[0] & 0x0F in STRUCTURE_VERSIONS
            and int.from_bytes(data[1:3], "big") == n - 3
            and data[197] == ext_len
            and data[ride_at + 4] == SIGNATURE_FORMAT_TAG
        )
        user_key_bytes = data[GUIDE_SIZE:ride_at]
        entry = self._user_cache.get(user_key_bytes) if structure_ok else None
        verifications = 0
        if entry is None or self.ca_keys.get(entry.interop.cert.ca_index) != entry.interop.ca_key:
            payload = self._decode(data)  # raises Rejected(malformed) naming field and offset
            interop_entry, verifications = self._check_interop(data, payload.interop_cert)
            self._check_issuer_and_expiry(payload.interop_cert, now)
            # 5. issuer signature over [3, 198+L)
            try:
                payload.interop_cert.issuer_public_key.verify(
                    payload.user_cert.issuer_signature, data[GUIDE_SIZE : 198 + ext_len]
                )
            except InvalidSignature:
                raise Rejected(
                    Reason.BAD_ISSUER_SIGNATURE,
                    "the user certificate is not signed by issuer "
                    f"{payload.interop_cert.issuer_id}",
                ) from None
            verifications += 1
            entry = _UserEntry(interop=interop_entry, cert=payload.user_cert)
            self._user_cache.put(user_key_bytes, entry)
            ride = payload.ride
            guide = payload.guide
        else:
            self._check_issuer_and_expiry(entry.interop.cert, now)
            ride = Ride(
                generated_at=int.from_bytes(data[ride_at : ride_at + 4], "big"),
                user_signature=data[ride_at + 5 : ride_at + 69],
            )
            guide = Guide(structure_version=data[0] & 0x0F)
            payload = QrPayload(
                guide=guide, interop_cert=entry.interop.cert, user_cert=entry.cert, ride=ride
            )
        user = entry.cert
        # 6. user certificate expiry
        if now > user.expires_at:
            raise Rejected(
                Reason.USER_CERT_EXPIRED,
                f"user certificate expired at {user.expires_at} (now {now})",
            )
        # 7. generation time window
        if ride.generated_at < now - user.qr_validity - self.skew:
            raise Rejected(
                Reason.QR_EXPIRED,
                f"code generated at {ride.generated_at} is older than its {user.qr_validity} s "
                f"validity plus {self.skew} s skew (now {now})",
            )
        if ride.generated_at > now + self.skew:
            raise Rejected(
                Reason.QR_NOT_YET_VALID,
                f"code generated at {ride.generated_at} is more than {self.skew} s in the future "
                f"(now {now})",
            )
        # 8. user signature over [0, 267+L)
        try:
            user.user_public_key.verify(ride.user_signature, data[: ride_at + 4])
        except InvalidSignature:
            raise Rejected(
                Reason.BAD_USER_SIGNATURE, "the ride is not signed by the user's key"
            ) from None
        verifications += 1
        # 9. fare
        if fare is not None and fare > user.single_ride_limit:
            raise Rejected(
                Reason.FARE_OVER_LIMIT,
                f"fare {fare} fen exceeds the single-ride limit of {user.single_ride_limit} fen",
            )
        return VerifiedRide(payload=payload, verified_at=now, signatures_verified=verifications)

    def _decode(self, data: bytes) -> QrPayload:
        try:
            return decode_payload(data)
        except CodecError as exc:
            raise Rejected(Reason.MALFORMED, str(exc), codec_error=exc) from None

    def _check_interop(self, data: bytes, cert: InteropCertificate) -> tuple[_InteropEntry, int]:
        # 2. CA index known, CA signature over [9, 56)
        ca_key = self.ca_keys.get(cert.ca_index)
        if ca_key is None:
            raise Rejected(
                Reason.UNKNOWN_CA_KEY, f"no trusted central CA key has index {cert.ca_index}"
            )
        domain = data[GUIDE_SIZE : GUIDE_SIZE + INTEROP_CERT_SIZE]
        cached = self._interop_cache.get(domain)
        if cached is not None and cached.ca_key == ca_key:
            return cached, 0
        try:
            ca_key.verify(cert.ca_signature, data[9:56])
        except InvalidSignature:
            raise Rejected(
                Reason.BAD_CA_SIGNATURE,
                f"interop certificate for issuer {cert.issuer_id} (serial {cert.serial}) is not "
                f"signed by central CA key {cert.ca_index}",
            ) from None
        entry = _InteropEntry(cert=cert, ca_key=ca_key)
        self._interop_cache.put(domain, entry)
        return entry, 1

    def _check_issuer_and_expiry(self, cert: InteropCertificate, now: int) -> None:
        # 3. issuer on the accepted list
        if cert.issuer_id not in self.accepted_issuers:
            raise Rejected(
                Reason.ISSUER_NOT_ACCEPTED,
                f"issuer {cert.issuer_id} is not on the accepted issuer list",
            )
        # 4. interop certificate expiry (through the end of the MMYY month, UTC)
        if now > cert.valid_through:
            raise Rejected(
                Reason.INTEROP_CERT_EXPIRED,
                f"interop certificate of issuer {cert.issuer_id} expired at the end of "
                f"{cert.expiry[:2]}/20{cert.expiry[2:]}",
            )


def verify_payload(
    data: bytes,
    *,
    ca_keys: Mapping[int, SM2PublicKey],
    accepted_issuers: Collection[str],
    clock: Clock,
    skew: int = DEFAULT_SKEW,
    fare: int | None = None,
) -> VerifiedRide:
    """One-shot verification without a cache; acceptors keep a ``PayloadVerifier`` instead."""
    verifier = PayloadVerifier(
        ca_keys=ca_keys, accepted_issuers=accepted_issuers, clock=clock, skew=skew, cache_size=0
    )
    return verifier.verify(data, fare=fare)
