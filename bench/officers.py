"""What proving who an officer is costs (issue #12), against bare SM2 in the same run.

Prints, each as operations per second and as a ratio to its bare baseline:
- **request check**: ``ca.service.auth.authenticate`` on a signed, state-changing request (the
  session row, the officer and their certificate in force, the session key's SM2 verification,
  the nonce spent once, ``last_seen``) against one bare SM2 verification of the same bytes;
- **read check**: the same for a read (no nonce written);
- **sign-in**: challenge and response through the use cases, with the officer's SoftHSM2 token
  signing (host-assisted) and the service verifying, against one bare token signature.

Machines here are shared and noisy: only the ratios mean anything. Each figure is the best of
several rounds. SQLite in a temporary state folder.

    python bench/officers.py [--seconds 3.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ca.core.clock import SystemClock
from ca.officers.certificates import OFFICER_CA_TOKEN, issue_officer_certificate, open_officer_ca
from ca.officers.roster import add_officer_in
from ca.officers.statements import RequestSignature, b64url, request_base, sign_in_message
from ca.ops import auth as auth_ops
from ca.ops.base import Empty
from ca.service.auth import authenticate
from ca.service.context import Context
from ca.service.registry import call
from ca.service.runtime import open_runtime
from ca.site.officer_token import OfficerToken, create_embedded_token, default_label
from ca.store.db import transaction
from hsm.sm.sm2 import SM2PrivateKey

OFFICER = "bench-gd-1"
PIN = "bench-officer-pin"


class _Pin:
    def pin(self) -> str:
        return PIN

    def describe(self) -> str:
        return "the benchmark's PIN"


def rate(fn: Callable[[], object], seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / rounds
        while time.perf_counter() < deadline:
            fn()
            n += 1
        best = max(best, n / (time.perf_counter() - start))
    return best


def line(label: str, measured: float, bare: float) -> None:
    print(f"  {label:<44}{measured:9.1f}/s   bare {bare:9.1f}/s   ratio {measured / bare:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state"
        runtime = open_runtime(state, migrate="upgrade", embedded=True)
        create_embedded_token(state, default_label(OFFICER), PIN)
        token = OfficerToken(default_label(OFFICER), _Pin(), state=state)
        token.generate_key()
        now = clock.now()
        with transaction(runtime.engine) as session:
            add_officer_in(
                session, officer_id=OFFICER, name=OFFICER, roles=["provincial-officer"],
                province="440000", actor="bench", now=now,
            )  # fmt: skip
        with transaction(runtime.engine) as session, runtime.tokens(create=True) as vault:
            ca = open_officer_ca(session, vault.store(OFFICER_CA_TOKEN), now=now, actor="bench")
            issue_officer_certificate(
                session, ca, officer_id=OFFICER, name=OFFICER, public_key=token.public_key,
                token_label=token.label, issued_by="bench", now=now,
            )  # fmt: skip
        ctx = Context(runtime, None, clock)

        def sign_in() -> str:
            challenge = call(ctx, auth_ops.CHALLENGE, Empty())
            session_key = SM2PrivateKey.generate()
            at = clock.now()
            message = sign_in_message(
                service=challenge.service, officer=OFFICER, nonce=challenge.nonce, at=at,
                session_key=session_key.public_key.uncompressed,
            )  # fmt: skip
            opened = call(
                ctx,
                auth_ops.SIGN_IN,
                auth_ops.SignInRequest(
                    officer=OFFICER, nonce=challenge.nonce, at=at,
                    session_key=session_key.public_key.uncompressed,
                    signature=token.sign(message),
                ),
            )  # fmt: skip
            keys[opened.session] = session_key
            return opened.session

        keys: dict[str, SM2PrivateKey] = {}
        session_id = sign_in()
        key = keys[session_id]
        body = b'{"keys":[1],"reason":"bench"}'
        path = "/v1/city/suspend"

        def signed() -> tuple[str, int, bytes]:
            nonce = b64url(secrets.token_bytes(16))
            at = clock.now()
            message = request_base(
                method="POST", path=path, session=session_id, at=at, nonce=nonce, body=body
            )
            header = RequestSignature(at, nonce, key.sign(message)).header()
            return header, at, message

        # requests signed beforehand: only the service's check is timed
        prepared = [signed() for _ in range(int(args.seconds * 2000) + 1000)]
        public = key.public_key
        raw = key.sign(prepared[0][2])

        def bare_verify() -> None:
            public.verify(raw, prepared[0][2])

        queue = iter(prepared)

        def check(mutating: bool) -> Callable[[], object]:
            def run() -> object:
                header = next(queue)[0] if mutating else prepared[0][0]
                return authenticate(
                    runtime.engine, now=clock.now(), method="POST", path=path,
                    session_id=session_id, signature_header=header, body=body, mutating=mutating,
                )  # fmt: skip

            return run

        bare = rate(bare_verify, args.seconds, args.rounds)
        print("Officers (issue #12), SQLite")
        line("request check, state-changing (nonce spent)", rate(check(True), args.seconds,
             args.rounds), bare)  # fmt: skip
        line("request check, read", rate(check(False), args.seconds, args.rounds), bare)
        message = b"bench" * 20
        bare_token = rate(lambda: token.sign(message), args.seconds, args.rounds)
        line("sign-in (challenge, token signature, check)", rate(sign_in, args.seconds,
             args.rounds), bare_token)  # fmt: skip
        token.close()
        runtime.close()


if __name__ == "__main__":
    main()
