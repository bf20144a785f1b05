"""QR verification throughput against bare SM2 verification, measured in the same run.

Prints, each as operations per second and as a ratio to the bare baseline:
- raw: tongsuopy verifying one DER SM2 signature over 267 bytes with a preloaded key (baseline);
- cold: the full acceptor chain with nothing cached (3 SM2 verifications + decoding + checks);
- warm: the full chain for a repeat rider (certificates cached: 1 SM2 verification + checks);
- decode: decoding and checking every byte of a payload (no signature work).

Targets (issue #2): warm ≥ 0.9 × raw, cold ≥ 0.3 × raw. Machines here are shared and noisy:
only the ratios mean anything. Each figure is the best of several rounds.

    python bench/qr_verify.py [--seconds 1.0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tongsuopy.crypto import hashes
from tongsuopy.crypto.asymciphers import ec

from ca.core.clock import FixedClock
from ca.qr.codec import decode_payload, load_point
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from hsm.signer import SoftwareSigner


def rate(fn: Callable[[], object], seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(20):
                fn()
            n += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    now = 1_790_000_000
    ca, issuer, user = (
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
    )
    interop = issue_interop_certificate(
        ca,
        ca_index=1,
        issuer_id="02113450",
        expiry="1230",
        serial=1,
        issuer_public_key=issuer.public_key,
    )
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="BENCH-0000000001",
        account_number="31040000000000000001",
        account_type=1,
        single_ride_limit=20000,
        user_public_key=user.public_key,
        expires_at=now + 86400,
        qr_validity=60,
    )
    payload = sign_ride(user, interop, user_cert, generated_at=now).encode()

    # Bare baseline: one tongsuopy verification of a DER signature over the same 267 bytes the
    # ride signature covers, with the key object already loaded.
    bare_key = ec.generate_private_key(ec.SM2())
    bare_pub = bare_key.public_key()
    algorithm = ec.ECDSA(hashes.SM3())
    message = payload[:267]
    der = bare_key.sign(message, algorithm)
    raw = rate(lambda: bare_pub.verify(der, message, algorithm), args.seconds, args.rounds)

    verifier = PayloadVerifier(
        ca_keys={1: ca.public_key}, accepted_issuers={"02113450"}, clock=FixedClock(now)
    )

    def cold() -> None:
        verifier.clear_caches()
        load_point.cache_clear()
        verifier.verify(payload)

    cold_rate = rate(cold, args.seconds, args.rounds)
    verifier.verify(payload)
    warm_rate = rate(lambda: verifier.verify(payload), args.seconds, args.rounds)

    def decode() -> None:
        load_point.cache_clear()
        decode_payload(payload)

    decode_rate = rate(decode, args.seconds, args.rounds)
    decode_cached = rate(lambda: decode_payload(payload), args.seconds, args.rounds)

    rows = [
        ("raw tongsuopy SM2 verify", raw, "baseline"),
        ("full chain, cold", cold_rate, "target ≥ 0.3"),
        ("full chain, warm", warm_rate, "target ≥ 0.9"),
        ("decode, points uncached", decode_rate, ""),
        ("decode, points cached", decode_cached, ""),
    ]
    for name, value, note in rows:
        print(f"{name:<26} {value:10.0f} /s   ratio {value / raw:6.3f}   {note}")


if __name__ == "__main__":
    main()
