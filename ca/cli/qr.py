"""``jtca qr``: inspect, demo, spec-check, render."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ca.client.config import state_dir
from ca.core.clock import SystemClock, to_unix
from ca.core.errors import BadInput
from ca.core.vocabulary import mmyy
from ca.qr.verify import DEFAULT_SKEW
from hsm.errors import InvalidKey
from hsm.sm.sm2 import SM2PublicKey


def register(sub: Any) -> None:
    qr = sub.add_parser("qr", help="the transport QR code of the annex")
    qsub = qr.add_subparsers(dest="qr_command", metavar="COMMAND", parser_class=type(qr))
    qsub.required = True

    p = qsub.add_parser(
        "inspect",
        help="decode a payload: every field with its offset, signature verdicts, clock checks",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--b64", metavar="S", help="the payload in base64")
    src.add_argument("--hex", metavar="S", help="the payload in hex")
    src.add_argument("file", nargs="?", help="a binary payload file or an image (- for stdin)")
    p.add_argument(
        "--ca-key",
        action="append",
        default=[],
        metavar="INDEX=HEXPOINT",
        help="a trusted central CA public key (33 or 65 bytes hex) at its index; repeatable",
    )
    p.add_argument(
        "--accept-issuer",
        action="append",
        default=[],
        metavar="ISSUER_ID",
        help="an issuer id on the acceptor's whitelist; repeatable",
    )
    p.add_argument(
        "--lists",
        type=Path,
        metavar="DIR",
        help="take the CA keys and accepted issuers from the signed lists in DIR "
        "(issuer-whitelist.der, ca-key-list.der), checked as a terminal does; needs --root",
    )
    p.add_argument("--root", type=Path, metavar="CERT", help="the root the lists chain to")
    p.add_argument(
        "--grace-hours", type=float, default=24.0, help="accept lists this long past nextUpdate"
    )
    p.add_argument("--now", metavar="ISO8601", help="check the clock as of this time (UTC)")
    p.add_argument("--skew", type=int, default=DEFAULT_SKEW, help="clock skew tolerated, seconds")
    p.add_argument("--fare", type=int, metavar="FEN", help="check the fare against the limit")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--require-accepted",
        action="store_true",
        help="exit 4 unless an acceptor with these keys and this whitelist would accept it",
    )
    p.set_defaults(handler=cmd_inspect)

    p = qsub.add_parser("demo", help="CA → issuer → user → ride → image → decode → verify")
    p.add_argument("--out", type=Path, help="where to write the images (default STATE/demo)")
    p.add_argument("--level", choices=["L", "M"], default="L", help="QR error correction level")
    p.add_argument("--extension", action="store_true", help="include the 32-byte user extension")
    p.set_defaults(handler=cmd_demo)

    p = qsub.add_parser("spec-check", help="report the annex's contradictions with figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_spec_check)

    p = qsub.add_parser("render", help="draw a payload as an image (PNG or SVG)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--b64", metavar="S", help="the payload in base64")
    src.add_argument("--hex", metavar="S", help="the payload in hex")
    src.add_argument("file", nargs="?", help="a binary payload file (- for stdin)")
    p.add_argument("-o", "--output", type=Path, required=True, help="file.png or file.svg")
    p.add_argument("--level", choices=["L", "M"], default="L")
    p.add_argument("--symbology", choices=["qr", "hanxin"], default="qr")
    p.add_argument("--size-mm", type=float, default=30.0, help="printed width, 20-40 mm")
    p.add_argument("--dpi", type=int, default=300)
    p.set_defaults(handler=cmd_render)


# -- input ---------------------------------------------------------------------------------
def read_payload(args: argparse.Namespace, allow_image: bool = True) -> bytes:
    if args.b64 is not None:
        try:
            return base64.b64decode(args.b64.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"--b64: not valid base64 ({exc})") from None
    if args.hex is not None:
        text = "".join(args.hex.split())
        try:
            return bytes.fromhex(text)
        except ValueError:
            bad = next((i for i, c in enumerate(text) if c not in "0123456789abcdefABCDEF"), None)
            where = f"character {bad} ({text[bad]!r})" if bad is not None else "an odd length"
            raise BadInput(f"--hex: not hexadecimal: {where}") from None
    if args.file is None:
        raise BadInput("give the payload as --b64, --hex or a file")
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {args.file}: {exc.strerror}") from None
    if allow_image:
        from ca.qr.image import decode_image, looks_like_image

        if looks_like_image(data):
            return decode_image(data)
    return data


def parse_ca_keys(values: list[str]) -> dict[int, SM2PublicKey]:
    keys: dict[int, SM2PublicKey] = {}
    for value in values:
        index_text, sep, point_text = value.partition("=")
        if not sep:
            raise BadInput(f"--ca-key {value!r}: expected INDEX=HEXPOINT")
        try:
            index = int(index_text)
        except ValueError:
            raise BadInput(f"--ca-key {value!r}: index {index_text!r} is not a number") from None
        if not 0 <= index <= 255:
            raise BadInput(f"--ca-key {value!r}: index {index} is outside 0-255")
        try:
            point = bytes.fromhex(point_text)
        except ValueError:
            raise BadInput(f"--ca-key index {index}: the point is not hexadecimal") from None
        try:
            key = SM2PublicKey.from_bytes(point)
        except InvalidKey as exc:
            raise BadInput(f"--ca-key index {index}: {exc}") from None
        if index in keys and keys[index] != key:
            raise BadInput(f"--ca-key: two different keys given for index {index}")
        keys[index] = key
    return keys


def parse_now(text: str | None) -> int:
    if text is None:
        return SystemClock().now()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"--now {text!r}: not an ISO-8601 time (e.g. 2026-11-25T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise BadInput(f"--now {text!r}: give a timezone (e.g. a trailing Z for UTC)")
    return to_unix(moment)


def check_issuer_ids(values: list[str]) -> list[str]:
    from ca.registry.divisions import InvalidIssuerId, validate_issuer_id

    for value in values:
        try:
            validate_issuer_id(value)
        except InvalidIssuerId:
            raise BadInput(f"--accept-issuer {value!r}: an issuer id is 1-8 digits (cn8)") from None
    return values


# -- commands ------------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from ca.qr.inspection import inspect_payload

    if args.skew < 0:
        raise BadInput(f"--skew {args.skew}: must be ≥ 0 seconds")
    if args.fare is not None and args.fare < 0:
        raise BadInput(f"--fare {args.fare}: must be ≥ 0 fen")
    ca_keys = parse_ca_keys(args.ca_key)
    issuers = check_issuer_ids(args.accept_issuer)
    now = parse_now(args.now)
    if args.lists is not None:
        listed_keys, listed_issuers = trust_from_list_files(args, now)
        ca_keys = {**listed_keys, **ca_keys}
        issuers = sorted(set(issuers) | listed_issuers)
    elif args.root is not None:
        raise BadInput("--root is used with --lists DIR")
    data = read_payload(args)
    report = inspect_payload(
        data, ca_keys=ca_keys, accepted_issuers=issuers, now=now, skew=args.skew, fare=args.fare
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_inspect_table(report, data)
    if args.require_accepted and not report["checks"]["acceptor"]["accepted"]:
        return 4
    return 0


def trust_from_list_files(
    args: argparse.Namespace, now: int
) -> tuple[dict[int, SM2PublicKey], frozenset[str]]:
    """The terminal side of issue #6: load and verify the published lists, then trust what
    they say (only active issuers; CA keys not past verifyUntil)."""
    from ca.lists.asn1 import ListType
    from ca.lists.trust import accepted_issuers, trusted_ca_keys
    from ca.lists.verify import load_list
    from ca.pki.x509 import pem_to_der

    if args.root is None:
        raise BadInput("--lists needs --root CERT (the root certificate the terminal trusts)")
    if args.grace_hours != args.grace_hours or args.grace_hours < 0:
        raise BadInput(f"--grace-hours {args.grace_hours}: 0 or more")
    try:
        root = args.root.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read --root {args.root}: {exc.strerror}") from None
    if root.lstrip().startswith(b"-----BEGIN"):
        root = pem_to_der(root)
    at = now
    loaded = {}
    for list_type in (ListType.ISSUERS, ListType.CA_KEYS):
        path = args.lists / f"{list_type.value}.der"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {path}: {exc.strerror}") from None
        loaded[list_type] = load_list(
            data,
            trusted_root_der=root,
            expected_type=list_type,
            now=at,
            grace_seconds=int(args.grace_hours * 3600),
        )
    return (
        trusted_ca_keys(loaded[ListType.CA_KEYS], now=at),
        accepted_issuers(loaded[ListType.ISSUERS]),
    )


def print_inspect_table(report: dict[str, Any], data: bytes) -> None:
    from ca.qr.inspection import field_rows

    print(f"payload: {len(data)} bytes")
    print(f"{'offset':>6} {'len':>3}  {'field':<36} value")
    domain = None
    for row in field_rows(data):
        if row.domain != domain:
            domain = row.domain
            print(f"-- {domain}")
        value = str(row.value)
        if row.name.rsplit(".", 1)[-1] == "expiry" and mmyy(value) != value:
            value = f"{value} ({mmyy(value)})"  # MMYY as the annex writes it, and as a date
        if len(value) > 66:
            value = value[:64] + "…"
        print(f"{row.offset:>6} {row.length:>3}  {row.name + ' ' + row.annex_name:<36} {value}")
    sig = report["signatures"]
    print("-- signatures")
    print(f"   CA (index {report['interop_cert']['ca_index']}): {sig['ca']}")
    print(f"   issuer: {sig['issuer']}")
    print(f"   user:   {sig['user']}")
    checks = report["checks"]
    print(f"-- checks at {checks['now']} (skew {checks['skew_seconds']} s)")
    ie, ue, gt = (
        checks["interop_cert_expiry"],
        checks["user_cert_expiry"],
        checks["generation_time"],
    )
    print(f"   interop certificate valid through {ie['valid_through']}: {ie['status']}")
    print(f"   user certificate expires {ue['expires_at']}: {ue['status']}")
    print(
        f"   generated {gt['generated_at']}, accepted {gt['accepted_from']} – "
        f"{gt['accepted_until']}: {gt['status']}"
    )
    print(f"   issuer whitelist: {checks['issuer_whitelist']}")
    if "fare" in checks:
        f = checks["fare"]
        print(f"   fare {f['fare']} fen, limit {f['single_ride_limit']} fen: {f['status']}")
    acc = checks["acceptor"]
    verdict = "ACCEPTED" if acc["accepted"] else f"REJECTED ({acc['message']})"
    print(f"-- acceptor verdict: {verdict}")


def cmd_demo(args: argparse.Namespace) -> int:
    from ca.qr.demo import Step, run_demo
    from ca.qr.image import ErrorLevel

    out = args.out or state_dir() / "demo"

    def show(step: Step) -> None:
        print(f"[{step.number}] {step.title}")
        for label, value in step.detail:
            if len(value) > 96:
                value = value[:94] + "…"
            print(f"      {label:<20} {value}")

    print("jtca qr demo: the transport QR chain end to end, CA and issuer keys in SoftHSM2 tokens")
    run_demo(
        out,
        state_dir(),
        SystemClock(),
        level=ErrorLevel(args.level),
        with_extension=args.extension,
        on_step=show,
    )
    print(f"done: images and payload in {out}")
    return 0


def cmd_spec_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ca.qr.spec import spec_check

    findings = spec_check()
    if args.json:
        print(json.dumps([asdict(f) for f in findings], ensure_ascii=False, indent=2))
        return 0
    print("Contradictions in the annex (交通一卡通二维码技术规则), with figures:")
    for f in findings:
        print(f"\n[{f.code}]")
        print(f"  annex says : {f.annex_says}")
        print(f"  in fact    : {f.reality}")
        print(f"  jtca       : {f.what_jtca_does}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from ca.qr.codec import decode_payload
    from ca.qr.image import (
        ErrorLevel,
        RenderOptions,
        Symbology,
        render_png,
        render_svg,
        symbol_info,
    )

    data = read_payload(args, allow_image=False)
    decode_payload(data)  # refuse to draw something that is not a payload
    options = RenderOptions(
        level=ErrorLevel(args.level),
        size_mm=args.size_mm,
        dpi=args.dpi,
        symbology=Symbology(args.symbology),
    )
    suffix = args.output.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise BadInput(f"--output {args.output}: the name must end in .png or .svg")
    image = render_png(data, options) if suffix == ".png" else render_svg(data, options)
    from ca.core.files import write_atomically

    write_atomically(args.output, image)
    info = symbol_info(data, options)
    print(
        f"wrote {args.output}: {info.symbology} version {info.version}, level {info.level}, "
        f"{info.modules}×{info.modules} modules, {info.width_mm:.1f} mm"
    )
    return 0
