"""The transport QR payload (交通一卡通二维码), byte-exact per ``shared/spec/qr-payload.md``.

Layout (L = user extension length, 0 or 32; total = 332 + L bytes)::

    0    guide        type/version (1), data length (2)                         annex 引导域
    3    interop cert record header … CA signature (117)                        annex 互通证书域
    120  user cert    issuer data … extension, issuer signature (143 + L)        annex 用户证书域
    263+L ride        generation time (4), user signature (65)                   annex 乘车信息域

Values are immutable dataclasses that check every field when built; ``decode_payload`` checks
every byte and raises ``CodecError`` naming the field, its offset and what was wrong. Nothing
else escapes the decoder. Pure: no I/O, no PKCS#11, no SQL, no UI.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeVar

from ca.core.errors import CodecError
from hsm.errors import InvalidKey
from hsm.sm.sm2 import SM2PublicKey

# --- fixed values (spec "Layout" table) ---------------------------------------------------
QR_TYPE: Final = 0x8  # 二维码类型标识: high nibble 1000
STRUCTURE_VERSIONS: Final = frozenset({0, 1})  # 二维码版本
RECORD_HEADER: Final = 0x24  # 互通证书域 记录头
SERVICE_ID: Final = bytes.fromhex("01010000")  # 服务标识: 交通电子现金应用
CERT_FORMAT: Final = 0x12  # 证书格式
SIGNATURE_ALGORITHM_SM2: Final = 0x04  # 签名算法标识
ENCRYPTION_ALGORITHM_SM2: Final = 0x04  # 加密算法标识 (reserved)
PUBLIC_KEY_PARAMETER: Final = 0x00  # 公钥参数标识
PUBLIC_KEY_LENGTH: Final = 0x21  # 公钥长度: 33, a compressed point
SIGNATURE_FORMAT_TAG: Final = 0x15  # the one-byte tag before the issuer and user r‖s
EXTENSION_LENGTHS: Final = frozenset({0, 32})  # 用户扩展信息长度

GUIDE_SIZE: Final = 3
INTEROP_CERT_SIZE: Final = 117
INTEROP_SIGNED_START: Final = 9 - GUIDE_SIZE  # within the domain: cert format …
INTEROP_SIGNED_END: Final = 56 - GUIDE_SIZE  # … through the issuer public key (47 bytes)
USER_CERT_FIXED_SIZE: Final = 143  # without the extension
RIDE_SIZE: Final = 69
BASE_PAYLOAD_SIZE: Final = GUIDE_SIZE + INTEROP_CERT_SIZE + USER_CERT_FIXED_SIZE + RIDE_SIZE  # 332
MAX_UINT24: Final = (1 << 24) - 1
MAX_UINT32: Final = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where a field sits: its domain, its annex name, its offset (for L = 0) and length."""

    domain: str
    name: str
    annex_name: str
    offset: int
    length: int
    after_extension: bool = False  # offset moves by L

    def at(self, extension_length: int) -> int:
        return self.offset + (extension_length if self.after_extension else 0)

    @property
    def qualified(self) -> str:
        return f"{self.domain}.{self.name}"


def _f(
    domain: str, name: str, annex: str, offset: int, length: int, after: bool = False
) -> FieldSpec:
    return FieldSpec(domain, name, annex, offset, length, after)


# Spec table, row for row. Offsets of the fields after the extension are for L = 0.
LAYOUT: Final[tuple[FieldSpec, ...]] = (
    _f("guide", "type_version", "二维码类型标识+二维码版本", 0, 1),
    _f("guide", "data_length", "二维码数据长度", 1, 2),
    _f("interop_cert", "record_header", "记录头", 3, 1),
    _f("interop_cert", "service_id", "服务标识", 4, 4),
    _f("interop_cert", "ca_index", "中心CA公钥索引", 8, 1),
    _f("interop_cert", "cert_format", "证书格式", 9, 1),
    _f("interop_cert", "issuer_id", "发行机构标识", 10, 4),
    _f("interop_cert", "expiry", "证书失效日期", 14, 2),
    _f("interop_cert", "serial", "证书序列号", 16, 3),
    _f("interop_cert", "signature_algorithm", "签名算法标识", 19, 1),
    _f("interop_cert", "encryption_algorithm", "加密算法标识", 20, 1),
    _f("interop_cert", "public_key_parameter", "公钥参数标识", 21, 1),
    _f("interop_cert", "public_key_length", "公钥长度", 22, 1),
    _f("interop_cert", "issuer_public_key", "发行机构签名公钥", 23, 33),
    _f("interop_cert", "ca_signature", "数字签名", 56, 64),
    _f("user_cert", "issuer_data", "发行方自定义数据", 120, 16),
    _f("user_cert", "account_number", "用户账户号", 136, 10),
    _f("user_cert", "card_issuer_code", "发卡机构代码", 146, 4),
    _f("user_cert", "platform_id", "发码平台编号", 150, 4),
    _f("user_cert", "account_type", "用户账户类型", 154, 1),
    _f("user_cert", "single_ride_limit", "单次消费金额上限", 155, 3),
    _f("user_cert", "user_public_key", "用户签名公钥", 158, 33),
    _f("user_cert", "expires_at", "用户证书过期时间", 191, 4),
    _f("user_cert", "qr_validity", "用户二维码有效时间", 195, 2),
    _f("user_cert", "extension_length", "用户扩展信息长度", 197, 1),
    _f("user_cert", "extension", "用户扩展信息", 198, 0),
    _f("user_cert", "issuer_signature", "数字签名", 198, 65, after=True),
    _f("ride", "generated_at", "二维码生成时间", 263, 4, after=True),
    _f("ride", "user_signature", "数字签名", 267, 65, after=True),
)
FIELDS: Final[dict[str, FieldSpec]] = {f.qualified: f for f in LAYOUT}


def _err(qualified: str, problem: str, extension_length: int = 0) -> CodecError:
    return CodecError(qualified, FIELDS[qualified].at(extension_length), problem)


# --- field encodings ----------------------------------------------------------------------
def encode_cn(digits: str, size: int) -> bytes:
    """cn: BCD left-justified, padded on the right with F nibbles."""
    nibbles = digits + "F" * (size * 2 - len(digits))
    return bytes.fromhex(nibbles)


def decode_cn(raw: bytes) -> str:
    """The digits of a cn field; raises ValueError for a non-digit nibble or a digit after F."""
    text = raw.hex().upper()
    digits = text.rstrip("F")
    if digits and (not digits.isdigit() or not digits.isascii()):
        bad = next((c for c in digits if c not in "0123456789"), "F")
        raise ValueError(f"nibble {bad} is not a digit (cn: digits, then F padding)")
    return digits


def decode_n(raw: bytes) -> str:
    """n: BCD, every nibble a digit."""
    text = raw.hex()
    if not text.isdigit():
        bad = next(c for c in text if c not in "0123456789")
        raise ValueError(f"nibble {bad.upper()} is not a decimal digit")
    return text


def expiry_end(mmyy: str) -> int:
    """The last second (UTC) of the month named by MMYY: a certificate is valid through it."""
    month, year = int(mmyy[:2]), 2000 + int(mmyy[2:])
    last_day = calendar.monthrange(year, month)[1]
    return calendar.timegm((year, month, last_day, 23, 59, 59, 0, 0, 0))


def _check_mmyy(mmyy: str) -> str | None:
    if len(mmyy) != 4 or not mmyy.isdigit() or not mmyy.isascii():
        return f"expiry must be 4 digits MMYY, got {mmyy!r}"
    if not 1 <= int(mmyy[:2]) <= 12:
        return f"expiry month {mmyy[:2]} is not 01-12"
    return None


@lru_cache(maxsize=8192)
def load_point(data: bytes) -> SM2PublicKey:
    """A compressed point as a checked public key, memoised by its bytes (pure)."""
    return SM2PublicKey.from_bytes(data)


def _point(qualified: str, raw: bytes, extension_length: int = 0) -> SM2PublicKey:
    try:
        return load_point(raw)
    except InvalidKey as exc:
        raise _err(qualified, f"{exc} (value {raw.hex()})", extension_length) from None


# --- the domains --------------------------------------------------------------------------
def _need_int(qualified: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _err(qualified, f"must be an integer in [{low}, {high}], got {value!r}")


def _need_bytes(qualified: str, value: object, size: int, extension_length: int = 0) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise _err(qualified, f"must be {size} bytes, got {got}", extension_length)


@dataclass(frozen=True, slots=True)
class Guide:
    """引导域. The data length is derived from the rest of the payload when encoding."""

    structure_version: int = 0

    def __post_init__(self) -> None:
        version = self.structure_version
        if type(version) is not int or version not in STRUCTURE_VERSIONS:
            raise _err(
                "guide.type_version",
                f"structure version {self.structure_version!r} is not one of 0, 1",
            )

    def encode(self, total_length: int) -> bytes:
        return bytes(((QR_TYPE << 4) | self.structure_version,)) + (total_length - 3).to_bytes(
            2, "big"
        )


@dataclass(frozen=True, slots=True)
class InteropCertificate:
    """互通证书域: issued by the central CA to a QR issuer (发行机构), 117 bytes."""

    ca_index: int
    issuer_id: str  # cn8
    expiry: str  # n4 MMYY, valid through the end of that month (UTC)
    serial: int  # 3 bytes, unique per CA key
    issuer_public_key: SM2PublicKey
    ca_signature: bytes  # raw r‖s, 64 bytes

    def __post_init__(self) -> None:
        _need_int("interop_cert.ca_index", self.ca_index, 0, 255)
        iid = self.issuer_id
        if not isinstance(iid, str) or not (1 <= len(iid) <= 8 and iid.isdigit() and iid.isascii()):
            raise _err("interop_cert.issuer_id", f"must be 1-8 decimal digits (cn8), got {iid!r}")
        problem = _check_mmyy(self.expiry) if isinstance(self.expiry, str) else "must be a str"
        if problem:
            raise _err("interop_cert.expiry", problem)
        _need_int("interop_cert.serial", self.serial, 0, MAX_UINT24)
        if not isinstance(self.issuer_public_key, SM2PublicKey):
            raise _err("interop_cert.issuer_public_key", "must be an SM2PublicKey")
        _need_bytes("interop_cert.ca_signature", self.ca_signature, 64)

    @staticmethod
    def signed_part(
        ca_index: int, issuer_id: str, expiry: str, serial: int, issuer_public_key: SM2PublicKey
    ) -> bytes:
        """The 47 bytes the CA signs: cert format through the issuer public key."""
        return (
            bytes((CERT_FORMAT,))
            + encode_cn(issuer_id, 4)
            + bytes.fromhex(expiry)
            + serial.to_bytes(3, "big")
            + bytes(
                (
                    SIGNATURE_ALGORITHM_SM2,
                    ENCRYPTION_ALGORITHM_SM2,
                    PUBLIC_KEY_PARAMETER,
                    PUBLIC_KEY_LENGTH,
                )
            )
            + issuer_public_key.compressed
        )

    def to_be_signed(self) -> bytes:
        return self.signed_part(
            self.ca_index, self.issuer_id, self.expiry, self.serial, self.issuer_public_key
        )

    def encode(self) -> bytes:
        return (
            bytes((RECORD_HEADER,))
            + SERVICE_ID
            + bytes((self.ca_index,))
            + self.to_be_signed()
            + self.ca_signature
        )

    @property
    def valid_through(self) -> int:
        """Unix time of the last second of validity (end of the MMYY month, UTC)."""
        return expiry_end(self.expiry)


@dataclass(frozen=True, slots=True)
class UserCertificate:
    """用户证书域: issued by the QR issuer to one user account, 143 + L bytes."""

    issuer_data: str  # ans16, printable ASCII
    account_number: str  # 20 BCD digits (virtual 交通联合 card number)
    card_issuer_code: bytes  # 4, reserved
    platform_id: bytes  # 4, reserved
    account_type: int
    single_ride_limit: int  # fen
    user_public_key: SM2PublicKey
    expires_at: int  # Unix seconds
    qr_validity: int  # seconds
    extension: bytes  # 0 or 32 bytes
    issuer_signature: bytes  # raw r‖s, 64 bytes (the 0x15 tag is added on encoding)

    def __post_init__(self) -> None:
        data = self.issuer_data
        if not isinstance(data, str) or len(data) != 16 or not _is_ans(data):
            raise _err(
                "user_cert.issuer_data",
                f"must be 16 printable ASCII characters (ans16), got {data!r}",
            )
        acct = self.account_number
        if not isinstance(acct, str) or len(acct) != 20 or not acct.isdigit() or not acct.isascii():
            raise _err("user_cert.account_number", f"must be 20 decimal digits, got {acct!r}")
        _need_bytes("user_cert.card_issuer_code", self.card_issuer_code, 4)
        _need_bytes("user_cert.platform_id", self.platform_id, 4)
        _need_int("user_cert.account_type", self.account_type, 0, 255)
        _need_int("user_cert.single_ride_limit", self.single_ride_limit, 0, MAX_UINT24)
        if not isinstance(self.user_public_key, SM2PublicKey):
            raise _err("user_cert.user_public_key", "must be an SM2PublicKey")
        _need_int("user_cert.expires_at", self.expires_at, 0, MAX_UINT32)
        _need_int("user_cert.qr_validity", self.qr_validity, 0, 0xFFFF)
        if not isinstance(self.extension, bytes) or len(self.extension) not in EXTENSION_LENGTHS:
            got = len(self.extension) if isinstance(self.extension, bytes) else self.extension
            raise _err("user_cert.extension", f"must be 0 or 32 bytes, got {got!r}")
        _need_bytes("user_cert.issuer_signature", self.issuer_signature, 64, len(self.extension))

    @staticmethod
    def fields_part(
        *,
        issuer_data: str,
        account_number: str,
        card_issuer_code: bytes,
        platform_id: bytes,
        account_type: int,
        single_ride_limit: int,
        user_public_key: SM2PublicKey,
        expires_at: int,
        qr_validity: int,
        extension: bytes,
    ) -> bytes:
        """The user domain up to and including the extension (what follows the interop cert in
        the bytes the issuer signs)."""
        return (
            issuer_data.encode("ascii")
            + bytes.fromhex(account_number)
            + card_issuer_code
            + platform_id
            + bytes((account_type,))
            + single_ride_limit.to_bytes(3, "big")
            + user_public_key.compressed
            + expires_at.to_bytes(4, "big")
            + qr_validity.to_bytes(2, "big")
            + bytes((len(extension),))
            + extension
        )

    def encode_fields(self) -> bytes:
        return self.fields_part(
            issuer_data=self.issuer_data,
            account_number=self.account_number,
            card_issuer_code=self.card_issuer_code,
            platform_id=self.platform_id,
            account_type=self.account_type,
            single_ride_limit=self.single_ride_limit,
            user_public_key=self.user_public_key,
            expires_at=self.expires_at,
            qr_validity=self.qr_validity,
            extension=self.extension,
        )

    def encode(self) -> bytes:
        return self.encode_fields() + bytes((SIGNATURE_FORMAT_TAG,)) + self.issuer_signature


@dataclass(frozen=True, slots=True)
class Ride:
    """乘车信息域: the wallet's signature at the moment the code is shown, 69 bytes."""

    generated_at: int  # Unix seconds
    user_signature: bytes  # raw r‖s, 64 bytes (the 0x15 tag is added on encoding)

    def __post_init__(self) -> None:
        _need_int("ride.generated_at", self.generated_at, 0, MAX_UINT32)
        _need_bytes("ride.user_signature", self.user_signature, 64)

    def encode(self) -> bytes:
        return (
            self.generated_at.to_bytes(4, "big")
            + bytes((SIGNATURE_FORMAT_TAG,))
            + self.user_signature
        )


@dataclass(frozen=True, slots=True)
class QrPayload:
    guide: Guide
    interop_cert: InteropCertificate
    user_cert: UserCertificate
    ride: Ride

    @property
    def extension_length(self) -> int:
        return len(self.user_cert.extension)

    @property
    def total_length(self) -> int:
        return BASE_PAYLOAD_SIZE + self.extension_length

    def encode(self) -> bytes:
        return (
            self.unsigned_prefix(
                self.guide, self.interop_cert, self.user_cert, self.ride.generated_at
            )
            + bytes((SIGNATURE_FORMAT_TAG,))
            + self.ride.user_signature
        )

    @staticmethod
    def unsigned_prefix(
        guide: Guide, interop: InteropCertificate, user: UserCertificate, generated_at: int = 0
    ) -> bytes:
        """Bytes [0, 267+L): what the user signs (guide through generation time)."""
        total = BASE_PAYLOAD_SIZE + len(user.extension)
        return (
            guide.encode(total) + interop.encode() + user.encode() + generated_at.to_bytes(4, "big")
        )


def ride_signed_bytes(payload: QrPayload) -> bytes:
    return QrPayload.unsigned_prefix(
        payload.guide, payload.interop_cert, payload.user_cert, payload.ride.generated_at
    )


_T = TypeVar("_T")


def _checked(cls: type[_T], **fields: object) -> _T:
    """Build a value whose every field the decoder has already checked, without checking again
    (decoding is on the acceptor's hot path). Only the decoder calls this."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def _is_ans(text: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in text)


# --- decoding -----------------------------------------------------------------------------
def _truncated(data: bytes, domain: str, needed_end: int) -> CodecError:
    first_missing = next(
        f for f in LAYOUT if f.domain == domain and f.offset + max(f.length, 1) > len(data)
    )
    return CodecError(
        first_missing.qualified,
        first_missing.offset,
        f"payload truncated at {len(data)} bytes: the {domain.replace('_', ' ')} domain ends at "
        f"offset {needed_end}",
    )


def decode_guide(data: bytes) -> Guide:
    if len(data) < GUIDE_SIZE:
        raise _truncated(data, "guide", GUIDE_SIZE)
    head = data[0]
    if head >> 4 != QR_TYPE:
        raise _err("guide.type_version", f"type nibble must be 1000 (0x8_), got 0x{head:02x}")
    if head & 0x0F not in STRUCTURE_VERSIONS:
        raise _err("guide.type_version", f"structure version {head & 0x0F} is not one of 0, 1")
    declared = int.from_bytes(data[1:3], "big")
    if declared != len(data) - 3:
        raise _err(
            "guide.data_length",
            f"declares {declared} bytes after the length field, the payload has {len(data) - 3}",
        )
    return Guide(structure_version=head & 0x0F)


def decode_interop_certificate(domain: bytes, at: int = GUIDE_SIZE) -> InteropCertificate:
    """Decode the 117-byte 互通证书域; ``at`` is where it starts in the payload, so that errors
    name payload offsets."""
    if len(domain) != INTEROP_CERT_SIZE:
        raise CodecError(
            "interop_cert", at, f"must be {INTEROP_CERT_SIZE} bytes, got {len(domain)}"
        )

    def err(q: str, problem: str) -> CodecError:
        return CodecError(q, FIELDS[q].offset - GUIDE_SIZE + at, problem)

    def fixed(q: str, expected: int, what: str) -> None:
        got = domain[FIELDS[q].offset - GUIDE_SIZE]
        if got != expected:
            raise err(q, f"must be 0x{expected:02x} ({what}), got 0x{got:02x}")

    d = domain
    fixed("interop_cert.record_header", RECORD_HEADER, "record header")
    if d[1:5] != SERVICE_ID:
        raise err(
            "interop_cert.service_id", f"must be 01010000 (交通电子现金应用), got {d[1:5].hex()}"
        )
    fixed("interop_cert.cert_format", CERT_FORMAT, "certificate format")
    try:
        issuer_id = decode_cn(d[7:11])
    except ValueError as exc:
        raise err("interop_cert.issuer_id", f"{exc}; value {d[7:11].hex()}") from None
    if not issuer_id:
        raise err("interop_cert.issuer_id", f"is empty (all F padding): {d[7:11].hex()}")
    try:
        expiry = decode_n(d[11:13])
    except ValueError as exc:
        raise err("interop_cert.expiry", f"{exc}; value {d[11:13].hex()}") from None
    problem = _check_mmyy(expiry)
    if problem:
        raise err("interop_cert.expiry", problem)
    fixed("interop_cert.signature_algorithm", SIGNATURE_ALGORITHM_SM2, "SM2")
    fixed("interop_cert.encryption_algorithm", ENCRYPTION_ALGORITHM_SM2, "SM2")
    fixed("interop_cert.public_key_parameter", PUBLIC_KEY_PARAMETER, "public key parameter")
    fixed("interop_cert.public_key_length", PUBLIC_KEY_LENGTH, "33-byte compressed point")
    try:
        issuer_key = load_point(d[20:53])
    except InvalidKey as exc:
        raise err("interop_cert.issuer_public_key", f"{exc} (value {d[20:53].hex()})") from None
    return _checked(
        InteropCertificate,
        ca_index=d[5],
        issuer_id=issuer_id,
        expiry=expiry,
        serial=int.from_bytes(d[13:16], "big"),
        issuer_public_key=issuer_key,
        ca_signature=d[53:117],
    )


def decode_payload(raw: bytes | bytearray | memoryview) -> QrPayload:
    """Decode a whole payload, checking every byte. Raises CodecError and nothing else."""
    data = bytes(raw)
    guide = decode_guide(data)
    if len(data) < GUIDE_SIZE + INTEROP_CERT_SIZE:
        raise _truncated(data, "interop_cert", GUIDE_SIZE + INTEROP_CERT_SIZE)
    interop = decode_interop_certificate(data[GUIDE_SIZE : GUIDE_SIZE + INTEROP_CERT_SIZE])
    if len(data) < 198:
        raise _truncated(data, "user_cert", 198)
    ext_len = data[197]
    if ext_len not in EXTENSION_LENGTHS:
        raise _err("user_cert.extension_length", f"must be 0 or 32, got {ext_len}")
    total = BASE_PAYLOAD_SIZE + ext_len
    if len(data) != total:
        # The guide's declared length agreed with the byte count, so the declaration is wrong.
        where = "truncated" if len(data) < total else f"{len(data) - total} trailing bytes"
        raise _err(
            "guide.data_length",
            f"payload has {len(data)} bytes but a payload with extension length {ext_len} has "
            f"{total} ({where})",
        )

    issuer_data_raw = data[120:136]
    if not all(0x20 <= b <= 0x7E for b in issuer_data_raw):
        bad = next(i for i, b in enumerate(issuer_data_raw) if not 0x20 <= b <= 0x7E)
        raise CodecError(
            "user_cert.issuer_data",
            120 + bad,
            f"byte 0x{issuer_data_raw[bad]:02x} is not printable ASCII (ans16)",
        )
    try:
        account = decode_n(data[136:146])
    except ValueError as exc:
        raise _err("user_cert.account_number", f"{exc}; value {data[136:146].hex()}") from None
    user_key = _point("user_cert.user_public_key", data[158:191])
    tag_at = 198 + ext_len
    if data[tag_at] != SIGNATURE_FORMAT_TAG:
        raise CodecError(
            "user_cert.issuer_signature",
            tag_at,
            f"signature format tag must be 0x15, got 0x{data[tag_at]:02x}",
        )
    user = _checked(
        UserCertificate,
        issuer_data=issuer_data_raw.decode("ascii"),
        account_number=account,
        card_issuer_code=data[146:150],
        platform_id=data[150:154],
        account_type=data[154],
        single_ride_limit=int.from_bytes(data[155:158], "big"),
        user_public_key=user_key,
        expires_at=int.from_bytes(data[191:195], "big"),
        qr_validity=int.from_bytes(data[195:197], "big"),
        extension=data[198:tag_at],
        issuer_signature=data[tag_at + 1 : tag_at + 65],
    )
    ride_at = 263 + ext_len
    if data[ride_at + 4] != SIGNATURE_FORMAT_TAG:
        raise CodecError(
            "ride.user_signature",
            ride_at + 4,
            f"signature format tag must be 0x15, got 0x{data[ride_at + 4]:02x}",
        )
    ride = _checked(
        Ride,
        generated_at=int.from_bytes(data[ride_at : ride_at + 4], "big"),
        user_signature=data[ride_at + 5 : ride_at + 69],
    )
    return _checked(QrPayload, guide=guide, interop_cert=interop, user_cert=user, ride=ride)
