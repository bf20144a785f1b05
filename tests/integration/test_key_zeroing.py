"""Key bytes in memory (issue #14, point 5): after 200 host-assisted signatures and a garbage
collection, the private scalar is nowhere in the signing process's memory.

The test installs a key of a known random scalar in a real SoftHSM2 token, then starts a fresh
Python process (this file run as a script) that never sees the scalar: it opens the token, signs
200 times on the host-assisted path (``TokenSigner`` -> ``KeyStore.sign_host_assisted``: the key
wrapped out of the token under a one-use AES key, unwrapped here, used once, wiped), runs
``gc.collect()`` and then blocks on a pipe. Blocked, it allocates nothing, so every block freed
by the signing is still as it was left; the test reads that process's memory — every readable
region of ``/proc/<pid>/maps`` through ``/proc/<pid>/mem`` — for the scalar in the three shapes
a copy takes: big-endian bytes (``bytes``, PKCS#8, DER), little-endian bytes (an OpenSSL
BIGNUM's limbs) and CPython's 30-bit digits (an ``int``). (A scan from inside the process would
allocate while it reads and reuse exactly the freed blocks where copies linger: measured, a
freed ``bytes`` of the scalar vanished under the scanner's own allocations.)

The scan can fail: a positive control then asks the same process to unwrap the key and keep a
``bytes``, a reversed ``bytes`` and an ``int`` of it, and the scan must find each shape. A second
case runs 200 ``C_WrapKey`` calls alone (the token's half, no plaintext reaching our code), so a
copy left by SoftHSM2 itself (a library in our process) would be told from ours: each hit is
reported with its mapping (``[heap]`` is malloc: SoftHSM2, libcrypto, Tongsuo; an anonymous
read-write mapping is most often a CPython object arena).
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SIGNATURES = 200


# -- the process under test (this file run as a script) ----------------------------------------
def _child(label: str, pin_variable: str, uri_text: str, mode: str) -> None:
    from hsm.pkcs11.keys import KeyStore, _wrap_out, wipe
    from hsm.pkcs11.signer import TokenSigner
    from hsm.pkcs11.token import EnvPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri
    from hsm.signer import SigningPath

    uri = Pkcs11Uri.parse(uri_text)
    token = Token(label, EnvPin(pin_variable))
    store = KeyStore(token)
    if mode == "wrap-only":  # the token's half alone: no plaintext reaches our code
        for _ in range(SIGNATURES):
            _, transport = store.token.run(lambda s: _wrap_out(s, store.find(s, uri)))
            wipe(transport)
    else:
        signer = TokenSigner(store, uri, vendor_mechanisms=())
        assert signer.path == SigningPath.HOST_ASSISTED
        public = signer.public_key
        for i in range(SIGNATURES):
            message = b"zeroing %d" % i
            public.verify(signer.sign(message), message)
    gc.collect()
    kept: list[object] = []
    while True:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        order = sys.stdin.readline().strip()
        if order != "copy":
            break

        # the positive control: copies made on purpose, in each shape
        def keep(value: bytearray) -> None:
            kept.append(bytes(value))
            kept.append(bytes(reversed(value)))
            kept.append(int.from_bytes(value, "big"))

        store.with_key_material(uri, keep)
    token.close()


if __name__ == "__main__":
    _child(*sys.argv[1:5])
    sys.exit(0)


# -- the test ----------------------------------------------------------------------------------
import pytest  # noqa: E402
from conftest import NewToken  # noqa: E402

SHAPES = ("big-endian", "little-endian", "python-int")


def shapes(scalar: bytes) -> dict[str, bytes]:
    value = int.from_bytes(scalar, "big")
    digits = b"".join(
        ((value >> (30 * i)) & ((1 << 30) - 1)).to_bytes(4, "little")
        for i in range((value.bit_length() + 29) // 30)
    )
    return {"big-endian": scalar, "little-endian": scalar[::-1], "python-int": digits}


def scan(pid: int, needles: dict[str, bytes]) -> list[dict[str, Any]]:
    """Every copy of a needle in the readable memory of process ``pid`` (its parent may read
    /proc/<pid>/mem), with the mapping it lies in."""
    hits: list[dict[str, Any]] = []
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or line.endswith("[vvar]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                data = os.pread(fd, end - start, start)
            except OSError:
                continue
            for shape, needle in needles.items():
                at = data.find(needle)
                while at != -1:
                    hits.append(
                        {
                            "shape": shape,
                            "address": start + at,
                            "offset": at,
                            "mapping": " ".join(fields[5:]) or "anonymous",
                            "perms": fields[1],
                            "before": data[max(0, at - 16) : at].hex(),
                        }
                    )
                    at = data.find(needle, at + 1)
    finally:
        os.close(fd)
    return hits


def where(hits: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {h['shape']} at {h['address']:#x} ({h['perms']} {h['mapping']} +{h['offset']:#x}; "
        f"16 bytes before: {h['before']})"
        for h in hits
    )


class Signer:
    """The process under test, blocked between orders."""

    def __init__(self, label: str, variable: str, uri: str, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, label, variable, uri, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )

    def ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == "ready\n", f"the signing process ended early ({self.process.wait()})"

    def order(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def end(self) -> int:
        if self.process.poll() is None:
            self.order("end")
        return self.process.wait(timeout=60)


@pytest.mark.parametrize("mode", ["host-assisted", "wrap-only"])
def test_no_copy_of_the_scalar_after_200_host_assisted_signatures(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    import secrets

    from hsm.pkcs11.keys import KeyKind

    token, store, pin = new_token("ZERO")
    scalar = bytearray(secrets.token_bytes(32))
    scalar[0] = (scalar[0] & 0x7F) | 0x40  # below the order n; its int has 9 digits
    needles = shapes(bytes(scalar))
    key = store.install_key(KeyKind.SM2, "zeroing", scalar)
    token.close()
    monkeypatch.setenv("JTCA_ZEROING_PIN", pin)

    signer = Signer(token.label, "JTCA_ZEROING_PIN", str(key.uri), mode)
    try:
        signer.ready()
        hits = scan(signer.process.pid, needles)
        signer.order("copy")
        signer.ready()
        control = scan(signer.process.pid, needles)
    finally:
        code = signer.end()
    assert code == 0
    assert sorted({h["shape"] for h in control}) == sorted(SHAPES), (
        "the scan did not find copies made on purpose:\n" + where(control)
    )
    assert hits == [], f"copies of the private scalar after 200 {mode} operations:\n" + where(hits)


def test_the_scalar_shapes_are_what_python_and_openssl_hold() -> None:
    """The needles are right: CPython's int digits and a BIGNUM's limbs, read back from a live
    object of each in this process."""
    import ctypes

    scalar = bytes(range(0x41, 0x61))
    needles = shapes(scalar)
    value = int.from_bytes(scalar, "big")
    size = sys.getsizeof(value)
    raw = ctypes.string_at(id(value), size)
    assert needles["python-int"] in raw
    assert len(needles["python-int"]) == 36
    assert re.fullmatch(r"[0-9a-f]{64}", needles["little-endian"].hex())
    assert needles["little-endian"] == bytes(reversed(scalar))
