"""Signed lists (issue #6): build, sign and write; load and verify as a terminal does.

In the same run, on a throwaway SoftHSM2 token holding the list-signing key:

- publish: ``build_list`` (check, sort, DER) + the token's SM2 signature + the atomic write, for
  an issuer whitelist of 10,000 issuers and a list of every city of the registry;
- bare publish (baseline): SM3 over the same TBS bytes + one token SM2 signature of them;
- load: ``load_list`` (strict DER, signer certified by the root, signature, type, freshness);
- bare load (baseline): SM3 over the same TBS bytes + one SM2 verification.

Prints lists per second and the ratios; only the ratios mean anything on a shared machine.

    python bench/lists.py [--issuers 10000] [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from timing import rate

from ca.core.files import write_atomically
from ca.lists.asn1 import (
    CityEntry,
    InteropStatus,
    IssuerEntry,
    IssuerStatus,
    ListType,
    decode_signed_list,
)
from ca.lists.build import build_list
from ca.lists.verify import load_list
from ca.pki.x509 import LIST_SIGNING_EKU, issue_certificate, self_signed_root
from ca.registry.divisions import default_divisions
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.softhsm2 import init_token, use_softhsm
from hsm.pkcs11.token import EnvPin, Token
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import der_to_raw
from hsm.sm.sm3 import sm3

DAY = 86400
NAME = {"CN": "bench root", "O": "jtca", "C": "CN"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    now = int(time.time())
    issuers = [
        IssuerEntry(f"{10_000_000 + i}", i % 16_777_215, 1 + i % 2, IssuerStatus.ACTIVE, "1230")
        for i in range(args.issuers)
    ]
    cities = [
        CityEntry(d.code, d.name, d.province, InteropStatus.CONNECTED, InteropStatus.CONNECTED, now)
        for d in default_divisions().by_code.values()
        if d.is_city
    ]
    with tempfile.TemporaryDirectory(prefix="jtca-bench-") as tmp:
        use_softhsm(Path(tmp) / "softhsm")
        pin = secrets.token_hex(8)
        os.environ["JTCA_BENCH_PIN"] = pin
        init_token("BENCH-LISTS", pin, secrets.token_hex(8))
        with Token("BENCH-LISTS", EnvPin("JTCA_BENCH_PIN")) as token:
            store = KeyStore(token)
            key = store.generate_sm2("list-signing")
            signer = TokenSigner(store, key.uri)
            assert key.public_key is not None
            root = SoftwareSigner.generate()
            start = datetime.fromtimestamp(now - DAY, UTC)
            end = datetime.fromtimestamp(now + 365 * DAY, UTC)
            root_der = self_signed_root(root, NAME, 1, start, end, path_length=1)
            cert = issue_certificate(
                root,
                subject={"CN": "bench lists", "O": "jtca", "C": "CN"},
                subject_public_key=key.public_key,
                issuer_name=NAME,
                serial=2,
                not_before=start,
                not_after=end,
                ca=False,
                path_length=None,
                key_usage={"digital_signature"},
                extended_key_usage=[LIST_SIGNING_EKU],
            )
            for list_type, entries in ((ListType.ISSUERS, issuers), (ListType.CITIES, cities)):
                out = Path(tmp) / f"{list_type.value}.der"

                def publish(
                    list_type: ListType = list_type,
                    entries: list = entries,  # type: ignore[type-arg]
                    out: Path = out,
                ) -> bytes:
                    data = build_list(
                        list_type,
                        entries,
                        sequence=1,
                        this_update=now,
                        next_update=now + DAY,
                        signer=signer,
                        signer_certificate_der=cert,
                    )
                    write_atomically(out, data)
                    return data

                data = publish()
                parts = decode_signed_list(data)
                tbs = parts.tbs_der
                signature = der_to_raw(parts.signature_der)

                def bare_publish(tbs: bytes = tbs) -> bytes:
                    sm3(tbs)
                    return signer.sign(tbs)

                def load(data: bytes = data, list_type: ListType = list_type) -> object:
                    return load_list(
                        data,
                        trusted_root_der=root_der,
                        expected_type=list_type,
                        now=now,
                        grace_seconds=0,
                    )

                def bare_load(tbs: bytes = tbs, signature: bytes = signature) -> None:
                    sm3(tbs)
                    signer.public_key.verify(signature, tbs)

                bare_p = rate(bare_publish, args.seconds)
                full_p = rate(publish, args.seconds)
                bare_l = rate(bare_load, args.seconds)
                full_l = rate(load, args.seconds)
                print(f"\n{list_type.value}: {len(entries)} entries, {len(data):,} bytes")
                print(f"  bare SM3 + token SM2 sign      {bare_p:9.1f}/s  (baseline)")
                print(
                    f"  build + sign + write           {full_p:9.1f}/s  ratio {full_p / bare_p:.3f}"
                )
                print(f"  bare SM3 + SM2 verify          {bare_l:9.1f}/s  (baseline)")
                print(
                    f"  load_list (terminal side)      {full_l:9.1f}/s  ratio {full_l / bare_l:.3f}"
                )


if __name__ == "__main__":
    main()
