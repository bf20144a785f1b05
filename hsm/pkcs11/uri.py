"""RFC 7512 PKCS#11 URIs: how the database and the audit log name a key.

``pkcs11:token=MOT-ROOT;object=qr-ca-17;id=%01%02;type=private``. Only the path attributes
jtca uses are understood (token, manufacturer, serial, model, object, id, type); any other
attribute is refused rather than ignored, so a URI never names something other than it seems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from hsm.errors import JtcaError

TYPES: Final = frozenset({"private", "public", "secret-key", "cert", "data"})
_ATTRS: Final = ("token", "manufacturer", "serial", "model", "object", "id", "type")
# RFC 7512 §2.3 pk11-pchar: unreserved / pct-encoded / ":" / "[" / "]" / "@" / "!" / "$" /
# "'" / "(" / ")" / "*" / "+" / "," / "=" / "&"
_SAFE: Final = ":[]@!$'()*+,=&"


class UriError(JtcaError):
    title = "Bad PKCS#11 URI"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    token: str
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise UriError("a jtca key URI must name its token (token=…)")
        if self.type is not None and self.type not in TYPES:
            raise UriError(f"type={self.type!r} is not one of {', '.join(sorted(TYPES))}")

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not text.startswith("pkcs11:"):
            raise UriError(f"{text!r} does not start with 'pkcs11:'")
        path, _, query = text[len("pkcs11:") :].partition("?")
        if query:
            raise UriError(f"{text!r}: query attributes (after '?') are not used by jtca")
        values: dict[str, str | bytes] = {}
        for part in filter(None, path.split(";")):
            name, sep, raw = part.partition("=")
            if not sep:
                raise UriError(f"{text!r}: attribute {part!r} has no '='")
            if name not in _ATTRS:
                raise UriError(f"{text!r}: unknown attribute {name!r}")
            if name in values:
                raise UriError(f"{text!r}: attribute {name!r} given twice")
            if not _well_formed_pct(raw):
                raise UriError(f"{text!r}: bad percent-encoding in {name}")
            decoded = unquote_to_bytes(raw)
            if name == "id":
                values[name] = decoded
            else:
                try:
                    values[name] = decoded.decode("utf-8")
                except UnicodeDecodeError:
                    raise UriError(f"{text!r}: {name} is not UTF-8") from None
        if "token" not in values:
            raise UriError(f"{text!r}: a jtca key URI must name its token (token=…)")
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        parts = []
        for name in _ATTRS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bytes):
                encoded = "".join(f"%{b:02x}" for b in value)
            else:
                encoded = quote(value, safe=_SAFE)
            parts.append(f"{name}={encoded}")
        return "pkcs11:" + ";".join(parts)

    def with_type(self, type_: str) -> Pkcs11Uri:
        return Pkcs11Uri(
            token=self.token,
            object=self.object,
            id=self.id,
            type=type_,
            manufacturer=self.manufacturer,
            serial=self.serial,
            model=self.model,
        )


def _well_formed_pct(raw: str) -> bool:
    i = 0
    while i < len(raw):
        if raw[i] == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
                return False
            i += 3
        else:
            i += 1
    return True
