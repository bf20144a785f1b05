"""Key bytes in memory (issue #14, point 5): after 200 host-assisted signatures and a garbage
collection, the private scalar is nowhere in the signing process's memory.

The test installs a key of a known random scalar in a real SoftHSM2 token, then starts a fresh
Python process (this file run as a script) that never sees the scalar: it opens the token, signs
200 times on the host-assisted path (``TokenSigner`` -> ``KeyStore.sign_host_assisted``: the key
wrapped out of the token under a one-use AES key — or, in a token made since issue #15, under
the token's trusted wrapping key, whose value is read from the host's ``.wrap`` file for each
operation — unwrapped here, used once, wiped), runs
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

import ctypes
import gc
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SIGNATURES = 200
RECORDED = SIGNATURES + 8  # transport keys noted (one per signature)


# -- the process under test (this file run as a script) ----------------------------------------
def _record_transport_keys() -> tuple[ctypes.Array[ctypes.c_ubyte], list[int]]:
    """Note each one-use transport key as it is made, in a ctypes array (no Python copy):
    with the wrapped bytes, a transport key left in memory would give the scalar back."""
    from hsm.pkcs11 import keys

    record = (ctypes.c_ubyte * (32 * RECORDED))()
    made = [0]
    fresh = keys._fresh_key

    def recording(size: int = 32) -> bytearray:
        key = fresh(size)
        if size == 32 and made[0] < RECORDED:
            source = (ctypes.c_char * size).from_buffer(key)
            ctypes.memmove(ctypes.addressof(record) + 32 * made[0], source, size)
            del source
            made[0] += 1
        return key

    keys._fresh_key = recording  # type: ignore[assignment]
    return record, made


def _child(label: str, pin_variable: str, uri_text: str, mode: str, record_fd: str) -> None:
    from hsm.pkcs11.keys import KeyStore, _wrap_out, wipe
    from hsm.pkcs11.signer import TokenSigner
    from hsm.pkcs11.token import EnvPin, Token
    from hsm.pkcs11.uri import Pkcs11Uri
    from hsm.signer import SigningPath

    record, made = _record_transport_keys()
    uri = Pkcs11Uri.parse(uri_text)
    token = Token(label, EnvPin(pin_variable))
    store = KeyStore(token)
    if mode == "wrap-only":  # the token's half alone: no plaintext reaches our code
        for _ in range(SIGNATURES):
            out = store.token.run(lambda s: _wrap_out(s, store.find(s, uri)))
            # the key that unwraps it: one-use, or the trusted key's value read from its file
            wipe(out.transport if out.transport is not None else store._trusted_value(out.key_id))
    else:
        signer = TokenSigner(store, uri, vendor_mechanisms=())
        assert signer.path == SigningPath.HOST_ASSISTED
        public = signer.public_key
        for i in range(SIGNATURES):
            message = b"zeroing %d" % i
            public.verify(signer.sign(message), message)
    gc.collect()
    sys.stdout.write(f"record {ctypes.addressof(record)} {len(record)}\n")
    sys.stdout.flush()
    os.write(int(record_fd), memoryview(record).cast("B")[: 32 * made[0]])
    os.close(int(record_fd))
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
        kept.append(bytes(record[0:32]))  # and the first transport key
    token.close()


if __name__ == "__main__":
    _child(*sys.argv[1:6])
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


def scan(
    pid: int, needles: dict[str, bytes], skip: tuple[int, int] = (0, 0)
) -> list[dict[str, Any]]:
    """Every copy of a needle in the readable memory of process ``pid`` (its parent may read
    /proc/<pid>/mem), with the mapping it lies in; nothing in ``skip`` (the test's own record)."""
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
                    if skip[0] <= start + at < skip[1]:
                        at = data.find(needle, at + 1)
                        continue
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
        read, write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, __file__, label, variable, uri, mode, str(write)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
            pass_fds=(write,),
        )
        os.close(write)
        self._keys = read

    def transport_keys(self) -> tuple[list[bytes], tuple[int, int]]:
        """The transport keys the process made, and where its own record of them lies."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert line[:1] == ["record"], line
        address, size = int(line[1]), int(line[2])
        data = b""
        while chunk := os.read(self._keys, 65536):
            data += chunk
        os.close(self._keys)
        return [data[i : i + 32] for i in range(0, len(data), 32)], (address, address + size)

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


@pytest.mark.parametrize(
    ("mode", "trusted_wrap"),
    [("host-assisted", False), ("wrap-only", False), ("host-assisted", True), ("wrap-only", True)],
    ids=["host-assisted", "wrap-only", "trusted-host-assisted", "trusted-wrap-only"],
)
def test_no_copy_of_the_scalar_after_200_host_assisted_signatures(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, mode: str, trusted_wrap: bool
) -> None:
    """With ``trusted_wrap`` the key is CKA_WRAP_WITH_TRUSTED and leaves the token under the
    token's trusted wrapping key: no one-use key is made (that is checked), and the trusted
    key's value is not looked for — SoftHSM2 holds it in its own memory as a live token object
    (a public object, kept unencrypted), so copies of it there are the token's, not ours."""
    import secrets

    from hsm.pkcs11.keys import KeyKind

    token, store, pin = new_token("ZERO", trusted_wrap=trusted_wrap)
    scalar = bytearray(secrets.token_bytes(32))
    scalar[0] = (scalar[0] & 0x7F) | 0x40  # below the order n; its int has 9 digits
    needles = shapes(bytes(scalar))
    key = store.install_key(KeyKind.SM2, "zeroing", scalar)
    token.close()
    monkeypatch.setenv("JTCA_ZEROING_PIN", pin)

    signer = Signer(token.label, "JTCA_ZEROING_PIN", str(key.uri), mode)
    try:
        transports, record = signer.transport_keys()
        signer.ready()
        hits = scan(signer.process.pid, needles)
        # the last transport keys (most likely still lying in freed memory) and a sample of
        # the others, as bytes and as AES key-schedule words (4-byte words byte-swapped)
        chosen = {
            i: transports[i]
            for i in {*range(len(transports))[-16:], *range(0, 200, 20)}
            if i < len(transports)
        }
        transport_needles = {
            f"transport-key-{i}{form}": (
                key if form == "" else b"".join(key[j : j + 4][::-1] for j in range(0, 32, 4))
            )
            for i, key in chosen.items()
            for form in ("", "-words")
        }
        transport_hits = scan(signer.process.pid, transport_needles, skip=record)
        signer.order("copy")
        signer.ready()
        control = scan(signer.process.pid, needles)
        control_transport = scan(signer.process.pid, transport_needles, skip=record)
    finally:
        code = signer.end()
    assert code == 0
    assert sorted({h["shape"] for h in control}) == sorted(SHAPES), (
        "the scan did not find copies made on purpose:\n" + where(control)
    )
    assert hits == [], f"copies of the private scalar after 200 {mode} operations:\n" + where(hits)
    assert store.key_attributes(key.uri).wrap_with_trusted is trusted_wrap
    if trusted_wrap:
        assert transports == [], "a one-use transport key was made for a WRAP_WITH_TRUSTED key"
        return
    assert len(transports) == SIGNATURES
    assert "transport-key-0" in {h["shape"] for h in control_transport}
    assert transport_hits == [], (
        f"copies of one-use transport keys after 200 {mode} operations:\n" + where(transport_hits)
    )


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
