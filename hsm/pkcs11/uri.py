"""RFC 7512 PKCS#11 URIs: how the database and the audit log name a key, and how one URI names
a key fully (module, token, PIN and object).

``pkcs11:token=MOT-ROOT;object=qr-ca-17;id=%01%02;type=private`` names a key: this path part is
what the database and the audit log store. Only the path attributes jtca uses are understood
(token, manufacturer, serial, model, object, id, type); any other attribute is refused rather
than ignored, so a URI never names something other than it seems.

After ``?`` come the query attributes of RFC 7512 §2.3, ``&``-separated: ``pin-source`` (a
``file:`` URI or an absolute path of a file holding the PIN), ``module-name`` (a module looked
up in the standard module directories), ``module-path`` (the absolute path of the PKCS#11
module) and ``pin-value`` (the PIN itself: refused unless the policy switch
``pkcs11_uri.allow_pin_value`` is true, see ``Pkcs11Uri.parse``). Other query attributes, the
vendor-specific ``x-`` ones included, are refused by name; an attribute given twice is refused.
The query says how to reach a key on this host, so it is never stored: ``without_query()`` is
the key's name (``hsm.pkcs11.resolve.open_key`` acts on a whole URI).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from hsm.errors import JtcaError

TYPES: Final = frozenset({"private", "public", "secret-key", "cert", "data"})
_ATTRS: Final = ("token", "manufacturer", "serial", "model", "object", "id", "type")
# RFC 7512 §2.3: the query attributes, in the grammar's order (the canonical order of str()).
QUERY_ATTRS: Final = ("pin-source", "pin-value", "module-name", "module-path")
_FIELD: Final = {name: name.replace("-", "_") for name in QUERY_ATTRS}
# RFC 7512 §2.3 pk11-pchar: unreserved / pct-encoded / ":" / "[" / "]" / "@" / "!" / "$" /
# "'" / "(" / ")" / "*" / "+" / "," / "=" / "&"
_SAFE: Final = ":[]@!$'()*+,=&"
# pk11-qchar: unreserved / pct-encoded / pk11-res-avail / "/" / "?" / "|" ("&" separates)
_QUERY_SAFE: Final = ":[]@!$'()*+,=/?|"
_UNRESERVED: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PCHARS: Final = frozenset(_UNRESERVED + _SAFE + "%")
_QCHARS: Final = frozenset(_UNRESERVED + _QUERY_SAFE + "%")
PIN_VALUE_SWITCH: Final = "pkcs11_uri.allow_pin_value"


class UriError(JtcaError):
    title = "Bad PKCS#11 URI"
    exit_code = 3


class PinValueRefused(UriError):
    """A URI carrying its PIN (``pin-value``) where the policy does not allow it."""


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    token: str
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    # the query (RFC 7512 §2.3): how to reach the key on this host, never stored
    pin_source: str | None = None
    module_name: str | None = None
    module_path: str | None = None
    pin_value: str | None = field(default=None, repr=False)  # a PIN: never printed by repr

    def __post_init__(self) -> None:
        if not self.token:
            raise UriError("a jtca key URI must name its token (token=…)")
        if self.type is not None and self.type not in TYPES:
            raise UriError(f"type={self.type!r} is not one of {', '.join(sorted(TYPES))}")
        for name in QUERY_ATTRS:
            if getattr(self, _FIELD[name]) == "":
                raise UriError(f"query attribute {name} is empty")
        if self.pin_source is not None and self.pin_value is not None:
            raise UriError("pin-source and pin-value both give the PIN: give one")
        if self.module_name is not None and self.module_path is not None:
            raise UriError("module-name and module-path both name the module: give one")
        if self.module_name is not None and (
            any(c in self.module_name for c in "/\\\0") or self.module_name in (".", "..")
        ):
            raise UriError(
                f"module-name={self.module_name!r} is a name, not a path: no '/' or '\\' "
                "(a module outside the standard directories is named by module-path)"
            )
        if self.module_path is not None and not self.module_path.startswith("/"):
            raise UriError(f"module-path={self.module_path!r} is not an absolute path")
        if self.module_path is not None and "\0" in self.module_path:
            raise UriError("module-path holds a NUL character")

    @classmethod
    def parse(cls, text: str, *, allow_pin_value: bool = False) -> Pkcs11Uri:
        """The URI in ``text`` (RFC 7512 §2.3), every attribute checked.

        ``allow_pin_value`` is the policy switch ``pkcs11_uri.allow_pin_value``: without it a
        URI holding ``pin-value`` is refused (PinValueRefused, naming the switch). Messages never
        repeat a ``pin-value``."""
        shown = redact(text)
        if not text.startswith("pkcs11:"):
            raise UriError(f"{shown!r} does not start with 'pkcs11:'")
        path, has_query, query = text[len("pkcs11:") :].partition("?")
        values: dict[str, str | bytes] = {}
        for part in filter(None, path.split(";")):
            name, sep, raw = part.partition("=")
            if not sep:
                raise UriError(f"{shown!r}: attribute {part!r} has no '='")
            if name not in _ATTRS:
                raise UriError(f"{shown!r}: unknown attribute {name!r}")
            if name in values:
                raise UriError(f"{shown!r}: attribute {name!r} given twice")
            _check_chars(shown, name, raw, _PCHARS)
            decoded = unquote_to_bytes(raw)
            values[name] = decoded if name == "id" else _utf8(shown, name, decoded)
        if has_query:
            _parse_query(shown, query, values)
        if "token" not in values:
            raise UriError(f"{shown!r}: a jtca key URI must name its token (token=…)")
        if "pin_value" in values and not allow_pin_value:
            raise PinValueRefused(
                f"{shown!r}: a PIN in clear among the query attributes (pin-value) is refused "
                f"unless the policy switch {PIN_VALUE_SWITCH} is true; give pin-source (a file "
                "of mode 0600) instead"
            )
        try:
            return cls(**values)  # type: ignore[arg-type]
        except UriError as exc:
            raise type(exc)(f"{shown!r}: {exc.message}") from None

    def __str__(self) -> str:
        """The canonical form: path attributes in a fixed order, then the query attributes in
        RFC 7512's order; each value percent-encoded where the grammar needs it."""
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
        text = "pkcs11:" + ";".join(parts)
        query = [
            f"{name}={quote(value, safe=_QUERY_SAFE)}"
            for name in QUERY_ATTRS
            if (value := getattr(self, _FIELD[name])) is not None
        ]
        return text + ("?" + "&".join(query) if query else "")

    @property
    def has_query(self) -> bool:
        return any(getattr(self, _FIELD[name]) is not None for name in QUERY_ATTRS)

    def without_query(self) -> Pkcs11Uri:
        """The key's name alone: what the database and the audit log store (no PIN source, no
        PIN, no module path of this host)."""
        if not self.has_query:
            return self
        return dataclasses.replace(
            self, pin_source=None, module_name=None, module_path=None, pin_value=None
        )

    def with_type(self, type_: str) -> Pkcs11Uri:
        return dataclasses.replace(self, type=type_)


def redact(text: str) -> str:
    """``text`` with the value of any ``pin-value`` query attribute replaced by ``***``."""
    return re.sub(r"((?:^|[?&])pin-value=)[^&]*", r"\1***", text)


def _parse_query(shown: str, query: str, values: dict[str, str | bytes]) -> None:
    if not query:
        raise UriError(f"{shown!r}: '?' with no query attribute after it")
    for part in query.split("&"):
        if not part:
            raise UriError(f"{shown!r}: an empty query attribute (two '&' or one at the end)")
        name, sep, raw = part.partition("=")
        if name not in QUERY_ATTRS:
            raise UriError(
                f"{shown!r}: unknown query attribute {name!r} (jtca knows {', '.join(QUERY_ATTRS)})"
            )
        if not sep:
            raise UriError(f"{shown!r}: query attribute {name!r} has no '='")
        key = _FIELD[name]
        if key in values:
            raise UriError(f"{shown!r}: query attribute {name!r} given twice")
        _check_chars(shown, name, raw, _QCHARS, secret=name == "pin-value")
        values[key] = _utf8(shown, name, unquote_to_bytes(raw))


def _check_chars(
    shown: str, name: str, raw: str, allowed: frozenset[str], *, secret: bool = False
) -> None:
    if not _well_formed_pct(raw):
        raise UriError(f"{shown!r}: bad percent-encoding in {name}")
    bad = next((c for c in raw if c not in allowed), None)
    if bad is not None:
        what = "a character" if secret else repr(bad)
        raise UriError(f"{shown!r}: {what} in {name} must be percent-encoded (RFC 7512 §2.3)")


def _utf8(shown: str, name: str, decoded: bytes) -> str:
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise UriError(f"{shown!r}: {name} is not UTF-8") from None


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
