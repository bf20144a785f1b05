"""One URI names a key fully: ``open_key`` loads the module the URI names, finds the token,
logs in with the PIN from the URI's ``pin-source`` and returns the key (RFC 7512 §2.3 query
attributes, issue #15).

- ``module-path``: the absolute path of the PKCS#11 module (a regular file).
- ``module-name``: a module name (no path separators) looked up in ``MODULE_DIRS`` as
  ``lib<name>.so`` or ``<name>.so`` (RFC 7512: ``module-name=mypkcs11`` → ``libmypkcs11.so``).
- neither: the module jtca opens otherwise (``JTCA_PKCS11_MODULE``, else SoftHSM2).
- ``pin-source``: a ``file:`` URI (``file:/p``, ``file:///p``, ``file://localhost/p``) or an
  absolute path; the file must be a regular file of the user running jtca (or root) that no
  group or other user may read or write (mode 0600 or 0400), like an ssh key.
- ``pin-value``: the PIN itself, only where the policy switch ``pkcs11_uri.allow_pin_value``
  is true (``allow_pin_value=``); refused otherwise, naming the switch.

The token named by ``token=`` must also carry the ``manufacturer``, ``model`` and ``serial`` the
URI gives, checked before any PIN is sent to it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import pkcs11.exceptions as p11e

from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.token import (
    MODULE_LOCK,
    PinSource,
    Token,
    TokenError,
    clear_openssl_errors,
    find_module,
    load_module,
)
from hsm.pkcs11.uri import PIN_VALUE_SWITCH, PinValueRefused, Pkcs11Uri, UriError, redact

# The standard places of PKCS#11 modules on Debian, Ubuntu and Fedora: p11-kit's module
# directories (multiarch and not) and SoftHSM2's own directories.
MODULE_DIRS: Final = (
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11",
    "/usr/local/lib/pkcs11",
    "/usr/lib/softhsm",
    "/usr/lib/x86_64-linux-gnu/softhsm",
    "/usr/lib/aarch64-linux-gnu/softhsm",
    "/usr/lib64/softhsm",
    "/usr/local/lib/softhsm",
)
PIN_FILE_LIMIT: Final = 4096


class UriPinFile:
    """The PIN in the file a URI's ``pin-source`` names: refused if anyone but its owner may
    read or write it, if another user owns it, or if it is not a regular file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.path = pin_source_path(source)

    def pin(self) -> str:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise TokenError(
                f"cannot read PIN file {self.path} (pin-source): {exc.strerror}", title="No PIN"
            ) from None
        try:
            self._check(os.fstat(fd))  # the file opened, not a name looked up again
            raw = os.read(fd, PIN_FILE_LIMIT + 1)
        except OSError as exc:
            raise TokenError(
                f"cannot read PIN file {self.path} (pin-source): {exc.strerror}", title="No PIN"
            ) from None
        finally:
            os.close(fd)
        if len(raw) > PIN_FILE_LIMIT:
            raise TokenError(f"pin-source {self.path} is too long for a PIN", title="No PIN")
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise TokenError(f"pin-source {self.path} is not UTF-8 text", title="No PIN") from None
        if not value:
            raise TokenError(f"pin-source {self.path} is empty", title="No PIN")
        return value

    def _check(self, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(
                f"pin-source {self.path} is not a regular file", title="PIN file refused"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise TokenError(
                f"pin-source {self.path} has mode {mode:04o}: a PIN file must not be readable "
                "or writable by group or others (chmod 600)",
                title="PIN file refused",
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise TokenError(
                f"pin-source {self.path} belongs to user id {info.st_uid}, not to the user "
                "running jtca",
                title="PIN file refused",
            )

    def describe(self) -> str:
        return f"pin-source {self.path}"


class UriPinValue:
    """The PIN a URI carries itself (``pin-value``), where the policy allows it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def pin(self) -> str:
        return self._value

    def describe(self) -> str:
        return "pin-value of the URI"

    def __repr__(self) -> str:
        return "UriPinValue(***)"


def pin_source_path(source: str) -> Path:
    """The file a ``pin-source`` value names: a ``file:`` URI of this host or an absolute
    path. Anything else (a relative path, another scheme, a ``|command``) is refused."""
    if source.startswith("file:"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise UriError(
                f"pin-source {source!r}: only a file: URI of this host (no host name, query or "
                "fragment) is read"
            )
        path = unquote(parts.path)
    else:
        path = source
    if not path.startswith("/") or "\0" in path:
        raise UriError(
            f"pin-source {source!r}: give a file: URI or an absolute path of the PIN file"
        )
    return Path(path)


def module_of(uri: Pkcs11Uri, *, module_dirs: tuple[str, ...] = MODULE_DIRS) -> Path:
    """The PKCS#11 module ``uri`` names (module-path or module-name), else jtca's default."""
    if uri.module_path is not None:
        path = Path(uri.module_path)
        if not path.is_file():
            raise TokenError(
                f"module-path {path}: no such PKCS#11 module file", title="PKCS#11 module missing"
            )
        return path
    if uri.module_name is not None:
        name = uri.module_name
        for folder in module_dirs:
            for candidate in (f"lib{name}.so", f"{name}.so"):
                path = Path(folder) / candidate
                if path.is_file():
                    return path
        raise TokenError(
            f"module-name {name!r}: neither lib{name}.so nor {name}.so is in "
            f"{', '.join(module_dirs)} (give module-path for a module elsewhere)",
            title="PKCS#11 module missing",
        )
    return find_module()


def pin_source_of(
    uri: Pkcs11Uri, *, allow_pin_value: bool = False, default: PinSource | None = None
) -> PinSource:
    """Where the PIN for ``uri``'s token comes from: its pin-source, its pin-value (only if
    ``allow_pin_value``, the policy switch), else ``default``."""
    if uri.pin_value is not None:
        if not allow_pin_value:
            raise PinValueRefused(
                f"{redact(str(uri))!r}: a PIN in clear (pin-value) is refused unless the "
                f"policy switch {PIN_VALUE_SWITCH} is true"
            )
        return UriPinValue(uri.pin_value)
    if uri.pin_source is not None:
        return UriPinFile(uri.pin_source)
    if default is not None:
        return default
    raise UriError(
        f"{uri}: the URI gives no PIN (pin-source=file:/path/to/pin) and no other PIN source "
        "was given"
    )


@dataclass(frozen=True, slots=True)
class OpenedKey:
    """A key a URI named, in its opened, logged-in token. ``uri`` is its name (no query)."""

    uri: Pkcs11Uri
    key: TokenKey
    token: Token
    store: KeyStore
    module: Path

    def close(self) -> None:
        self.token.close()

    def __enter__(self) -> OpenedKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_key(
    uri: Pkcs11Uri | str,
    *,
    allow_pin_value: bool = False,
    pin_source: PinSource | None = None,
    module_dirs: tuple[str, ...] = MODULE_DIRS,
) -> OpenedKey:
    """Load the module ``uri`` names, find its token, log in with the PIN its pin-source
    gives and return the key it names (a private or secret key: exactly one must match).

    ``allow_pin_value`` is the policy's ``pkcs11_uri.allow_pin_value``; ``pin_source`` is used
    when the URI gives none. Refusals are typed JtcaErrors naming what is wrong; the token is
    closed again on any refusal."""
    parsed = Pkcs11Uri.parse(uri, allow_pin_value=allow_pin_value) if isinstance(uri, str) else uri
    source = pin_source_of(parsed, allow_pin_value=allow_pin_value, default=pin_source)
    if isinstance(source, UriPinFile):
        source.pin()  # refuse a bad PIN file before the module is loaded or the token touched
    module = module_of(parsed, module_dirs=module_dirs)
    name = parsed.without_query()
    if name.type not in (None, "private", "secret-key"):
        raise UriError(f"{name}: type={name.type} names no key jtca holds (private, secret-key)")
    if name.object is None and name.id is None:
        raise UriError(f"{name}: the URI names no key (give object= or id=)")
    _check_token_identity(name, module)
    token = Token(name.token, source, module=module)
    try:
        store = KeyStore(token)
        key = _the_key(store, name)
    except BaseException:
        token.close()
        raise
    return OpenedKey(name, key, token, store, module)


def _check_token_identity(uri: Pkcs11Uri, module: Path) -> None:
    """The token labelled ``uri.token`` in ``module`` is made by the manufacturer, of the
    model and serial the URI gives (C_GetTokenInfo, no login)."""
    wanted = {"manufacturer": uri.manufacturer, "model": uri.model, "serial": uri.serial}
    if all(value is None for value in wanted.values()):
        return
    with MODULE_LOCK:
        try:
            info = load_module(module).get_token(token_label=uri.token)
        except p11e.NoSuchToken:
            raise TokenError(
                f"no token labelled {uri.token!r} in {module}", title="Token missing"
            ) from None
        except p11e.PKCS11Error as exc:
            raise TokenError(
                f"token {uri.token!r}: {type(exc).__name__}", title="Token unavailable"
            ) from None
        finally:
            clear_openssl_errors()
    found = {
        "manufacturer": str(info.manufacturer_id).strip(),
        "model": str(info.model).strip(),
        "serial": bytes(info.serial).decode("ascii", "replace").strip(),
    }
    for attribute, value in wanted.items():
        if value is not None and value.strip() != found[attribute]:
            raise TokenError(
                f"token {uri.token!r} in {module} has {attribute} {found[attribute]!r}; the URI "
                f"says {value!r}",
                title="Token mismatch",
            )


def _the_key(store: KeyStore, uri: Pkcs11Uri) -> TokenKey:
    kinds = {None: (KeyKind.SM2, KeyKind.SM4), "private": (KeyKind.SM2,)}
    wanted = kinds.get(uri.type, (KeyKind.SM4,))
    found = [
        key
        for key in store.list_keys()  # logs in: a wrong PIN is refused here
        if key.kind in wanted
        and (uri.object is None or key.label == uri.object)
        and (uri.id is None or key.key_id == uri.id)
    ]
    if not found:
        raise KeyNotFound(f"no key matches {uri} in token {store.token.label!r}")
    if len(found) > 1:
        raise KeyNotFound(f"{len(found)} keys match {uri}; add id= or type=")
    return found[0]
