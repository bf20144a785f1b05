"""``jtca qr demo``: CA → issuer → user → ride → image → decode → verify, step by step.

The central CA key and the issuer key live in SoftHSM2 tokens under the state folder (the
embedded default, ``ca.vault.embedded``); the rider's wallet key is a software key, as in a phone.
This
shows the chain and the formats; it is not a ceremony. Each step is
reported as it finishes; any failure stops the demo with the error that caused it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ca.core.clock import Clock, iso_utc
from ca.core.errors import JtcaError
from ca.qr.codec import decode_payload
from ca.qr.image import ErrorLevel, RenderOptions, decode_image, render_png, render_svg, symbol_info
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier, Rejected
from ca.vault.embedded import embedded_token, sm2_key
from ca.vault.signers import token_signer
from hsm.signer import SoftwareSigner

DEMO_CA_INDEX = 1
DEMO_ISSUER_ID = "02113450"
DEMO_CA_TOKEN = "JTCA-DEMO-MOT"  # noqa: S105 - a token label, not a password
DEMO_CA_KEY = "qr-ca-1"
DEMO_ISSUER_TOKEN = "JTCA-DEMO-ISSUER"  # noqa: S105 - a token label
DEMO_ISSUER_KEY = "qr-issuer-02113450"


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    title: str
    detail: list[tuple[str, str]]


class DemoFailed(JtcaError):
    title = "Demo failed"


def _mmyy_in(now: int, months: int) -> str:
    t = time.gmtime(now)
    index = t.tm_year * 12 + (t.tm_mon - 1) + months
    return f"{index % 12 + 1:02d}{(index // 12) % 100:02d}"


def run_demo(
    out_dir: Path,
    state: Path,
    clock: Clock,
    *,
    level: ErrorLevel = ErrorLevel.L,
    with_extension: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    return list(_steps(out_dir, state, clock, level, with_extension, on_step))


def _steps(
    out_dir: Path,
    state: Path,
    clock: Clock,
    level: ErrorLevel,
    with_extension: bool,
    on_step: Callable[[Step], None] | None,
) -> Iterator[Step]:
    n = 0

    def step(title: str, *detail: tuple[str, str]) -> Step:
        nonlocal n
        n += 1
        s = Step(n, title, list(detail))
        if on_step is not None:
            on_step(s)
        return s

    now = clock.now()
    ministry = embedded_token(DEMO_CA_TOKEN, state)
    ca = token_signer(ministry.store, sm2_key(ministry.store, DEMO_CA_KEY).uri, "central-qr-ca")
    yield step(
        "Central CA key in the ministry token",
        ("key", ca.key_uri),
        ("CA public key index", str(DEMO_CA_INDEX)),
        ("CA public key", ca.public_key.compressed.hex()),
        ("signing path", ca.path.value),
    )

    issuer_token = embedded_token(DEMO_ISSUER_TOKEN, state)
    issuer = token_signer(
        issuer_token.store, sm2_key(issuer_token.store, DEMO_ISSUER_KEY).uri, "qr-issuer"
    )
    yield step(
        "QR issuer's key in the issuer's token",
        ("key", issuer.key_uri),
        ("issuer public key", issuer.public_key.compressed.hex()),
        ("signing path", issuer.path.value),
    )

    expiry = _mmyy_in(now, 24)
    interop = issue_interop_certificate(
        ca,
        ca_index=DEMO_CA_INDEX,
        issuer_id=DEMO_ISSUER_ID,
        expiry=expiry,
        serial=1,
        issuer_public_key=issuer.public_key,
    )
    yield step(
        "Interop certificate issued to QR issuer",
        ("issuer id", interop.issuer_id),
        ("expiry (MMYY)", f"{expiry} (valid through {iso_utc(interop.valid_through)})"),
        ("serial", str(interop.serial)),
        ("117-byte domain", interop.encode().hex()),
    )

    user = SoftwareSigner.generate()  # the rider's wallet key lives in the phone, not a token
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="JTCA-DEMO-000001",
        account_number="31040000000000000001",
        account_type=1,
        single_ride_limit=20000,
        user_public_key=user.public_key,
        expires_at=now + 30 * 86400,
        qr_validity=60,
        extension=bytes(range(32)) if with_extension else b"",
    )
    yield step(
        "User certificate issued by the issuer",
        ("account number", user_cert.account_number),
        ("single-ride limit", f"{user_cert.single_ride_limit} fen"),
        ("expires", iso_utc(user_cert.expires_at)),
        ("QR validity", f"{user_cert.qr_validity} s"),
    )

    payload = sign_ride(user, interop, user_cert, generated_at=now)
    data = payload.encode()
    yield step(
        "Ride signed by the user's wallet",
        ("generated at", iso_utc(now)),
        ("payload", f"{len(data)} bytes"),
        ("hex", data.hex()),
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    options = RenderOptions(level=level)
    png, svg = out_dir / "ride.png", out_dir / "ride.svg"
    png.write_bytes(render_png(data, options))
    svg.write_bytes(render_svg(data, options))
    (out_dir / "ride.bin").write_bytes(data)
    info = symbol_info(data, options)
    yield step(
        "Rendered as a QR code with the 交通联合 caption",
        (
            "symbol",
            f"QR version {info.version}, level {info.level}, {info.modules}×{info.modules} modules",
        ),
        ("size", f"{info.width_mm:.1f} mm wide, {info.module_mm:.2f} mm per module"),
        ("files", f"{png}, {svg}, {out_dir / 'ride.bin'}"),
    )

    read_back = decode_image(png.read_bytes())
    if read_back != data:
        raise DemoFailed("the PNG read back by zxing-cpp differs from the payload")
    decoded = decode_payload(read_back)
    if decoded != payload:
        raise DemoFailed("the decoded payload differs from the issued one")
    yield step(
        "Image read back (zxing-cpp) and decoded",
        ("bytes", f"{len(read_back)} bytes, identical to the payload"),
        ("issuer id", decoded.interop_cert.issuer_id),
    )

    verifier = PayloadVerifier(
        ca_keys={DEMO_CA_INDEX: ca.public_key}, accepted_issuers={DEMO_ISSUER_ID}, clock=clock
    )
    first = verifier.verify(read_back, fare=200)
    repeat = verifier.verify(read_back, fare=200)
    tampered = bytearray(read_back)
    tampered[-10] ^= 0x01
    try:
        verifier.verify(bytes(tampered))
    except Rejected as exc:
        refusal = exc.reason_code.value
    else:
        raise DemoFailed("a tampered payload was accepted")
    yield step(
        "Verified as an acceptor would",
        ("first ride", f"accepted, {first.signatures_verified} SM2 verifications"),
        (
            "repeat rider",
            f"accepted, {repeat.signatures_verified} SM2 verification (certificates cached)",
        ),
        ("one bit flipped", f"rejected: {refusal}"),
    )
