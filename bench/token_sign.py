"""Signing through a token key against bare tongsuopy signing, measured in the same run.

Prints operations per second and the ratio to the bare baseline:
- bare: tongsuopy SM2 signing with an in-process key (baseline);
- token: ``TokenSigner.sign`` on a SoftHSM2 key (host-assisted: CKA_SIGN checked in the token,
  wrapped under the token's trusted wrapping key — issue #15, CKA_WRAP_WITH_TRUSTED — unwrapped
  in the host, signed once, wiped);
- SM2 and SM4 key generations in the token, per second.

Runs on a throwaway SoftHSM2 folder; never touches real tokens. Machines here are shared and
noisy: only the ratios mean anything.

    python bench/token_sign.py [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from pathlib import Path

from timing import rate
from tongsuopy.crypto import hashes
from tongsuopy.crypto.asymciphers import ec

from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.softhsm2 import init_token, use_softhsm
from hsm.pkcs11.token import EnvPin, Token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jtca-bench-") as tmp:
        use_softhsm(Path(tmp))
        pin = secrets.token_hex(8)
        os.environ["JTCA_BENCH_PIN"] = pin
        init_token("BENCH", pin, secrets.token_hex(8))
        with Token("BENCH", EnvPin("JTCA_BENCH_PIN")) as token:
            store = KeyStore(token)
            key = store.generate_sm2("bench-sign")
            signer = TokenSigner(store, key.uri)
            message = secrets.token_bytes(267)

            bare_key = ec.generate_private_key(ec.SM2())
            algorithm = ec.ECDSA(hashes.SM3())
            bare = rate(lambda: bare_key.sign(message, algorithm), args.seconds)
            token_rate = rate(lambda: signer.sign(message), args.seconds)
            counter = iter(range(10**9))
            gen_sm2 = rate(lambda: store.generate_sm2(f"g2-{next(counter)}"), args.seconds)
            gen_sm4 = rate(lambda: store.generate_sm4(f"g4-{next(counter)}"), args.seconds)

    print(f"{'bare tongsuopy SM2 sign':<30} {bare:9.0f} /s   ratio 1.000   baseline")
    print(
        f"{'token SM2 sign (' + signer.path.value + ')':<30} {token_rate:9.0f} /s   "
        f"ratio {token_rate / bare:.3f}"
    )
    print(f"{'token SM2 key generation':<30} {gen_sm2:9.1f} /s   ratio {gen_sm2 / bare:.4f}")
    print(f"{'token SM4 key generation':<30} {gen_sm4:9.1f} /s   ratio {gen_sm4 / bare:.4f}")


if __name__ == "__main__":
    main()
