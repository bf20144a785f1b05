"""Keys generated and kept inside a token, named by RFC 7512 URIs.

SM2 key pairs: ``CKM_EC_KEY_PAIR_GEN`` with EC_PARAMS = the SM2 curve OID. SM4 keys: 16-byte
generic secrets (PKCS#11 defines no SM4 key type). Private and secret keys are token objects,
private and sensitive (``CKA_VALUE`` never readable). A key of a class whose policy forbids
host-assisted use is generated ``CKA_EXTRACTABLE=FALSE``: it never leaves the token, not even
wrapped. The others are extractable only by wrapping, and in a token that holds a trusted
wrapping key (``CKA_TRUSTED``, made by the security officer at initialisation,
``hsm.pkcs11.softhsm2.init_token``) they are generated ``CKA_WRAP_WITH_TRUSTED=TRUE``: the token
wraps
them under that key alone, never under a key a user session makes (docs/tokens.md,
"Extractability").

The only way key material leaves a token is ``host_assisted``: ``C_WrapKey`` under the token's
trusted wrapping key (whose value the host keeps beside the PIN file, ``<label>.wrap``), or, for
keys made in a token without one, under a fresh AES-256 transport key made for that one
operation; unwrapped in this process, used once, and the buffers wiped. The key lives only in
bytearrays of ours (never an immutable ``bytes`` or an ``int``): unwrapped by libcrypto through
ctypes, read out of PKCS#8 in place, handed to Tongsuo in place (docs/tokens.md, "Key bytes in
memory"; tests/integration/test_key_zeroing.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import pkcs11
import pkcs11.exceptions as p11e
from asn1crypto.core import OctetString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.attributes import ALL_CAPABILITIES
from pkcs11.constants import DEFAULT
from pkcs11.types import Key, UnwrapMixin, WrapMixin

from hsm.names import object_label
from hsm.pkcs11.token import (
    MODULE_LOCK,
    ObjectMissing,
    Token,
    TokenError,
    clear_openssl_errors,
    find_module,
    load_module,
)
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import SM2_CURVE_OID_DER, SM2PrivateKey, SM2PublicKey
from hsm.sm.sm4 import SM4_KEY_SIZE, sm4_key_check_value

T = TypeVar("T")
KEY_ID_SIZE: Final = 16
# The token's trusted wrapping key (docs/tokens.md, "Extractability"): an AES-256 token object
# the security officer creates at initialisation with CKA_TRUSTED=TRUE; its value is kept by
# the host in ``<label>.wrap`` beside the token's PIN file.
TRUSTED_WRAP_LABEL: Final = "jtca-trusted-wrap"
TRUSTED_WRAP_SIZE: Final = 32
_TRUSTED_ID_CONTEXT: Final = b"jtca trusted wrapping key id/1:"


class KeyUse(StrEnum):
    """What a host-assisted use of a key is for: checked against the key's own capability
    attribute (CKA_SIGN, CKA_DECRYPT) read from the token, never taken from the caller."""

    SIGN = "sign"
    DECRYPT = "decrypt"


class KeyKind(StrEnum):
    SM2 = "sm2"
    SM4 = "sm4"


class KeyNotFound(ObjectMissing):
    title = "Key not found"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class TokenKey:
    """What the database records of a token key: never the private part."""

    uri: Pkcs11Uri  # names the private or secret object
    kind: KeyKind
    label: str
    key_id: bytes
    public_key: SM2PublicKey | None = None  # SM2 only
    check_value: bytes | None = None  # SM4 only: first 3 bytes of SM4(key, 0^16)


@dataclass(frozen=True, slots=True)
class KeyAttributes:
    """A key's extractability and capability attributes as the token reports them."""

    extractable: bool  # CKA_EXTRACTABLE
    never_extractable: bool  # CKA_NEVER_EXTRACTABLE
    always_sensitive: bool  # CKA_ALWAYS_SENSITIVE
    local: bool  # CKA_LOCAL: generated in the token (not imported)
    sensitive: bool  # CKA_SENSITIVE
    wrap_with_trusted: bool  # CKA_WRAP_WITH_TRUSTED
    sign: bool  # CKA_SIGN
    decrypt: bool  # CKA_DECRYPT

    def as_pkcs11(self) -> dict[str, bool]:
        """By their PKCS#11 names, in this order (the ceremony transcript, ``token show``)."""
        return {
            "CKA_EXTRACTABLE": self.extractable,
            "CKA_NEVER_EXTRACTABLE": self.never_extractable,
            "CKA_ALWAYS_SENSITIVE": self.always_sensitive,
            "CKA_LOCAL": self.local,
            "CKA_SENSITIVE": self.sensitive,
            "CKA_WRAP_WITH_TRUSTED": self.wrap_with_trusted,
            "CKA_SIGN": self.sign,
            "CKA_DECRYPT": self.decrypt,
        }


def wipe(buffer: bytearray) -> None:
    """Zero a buffer we own, in place (``ctypes.memset`` over the bytearray's storage)."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))


def _fresh_key(size: int = 32) -> bytearray:
    """A random key made straight into a buffer we own (libcrypto's RAND_bytes): no ``bytes``
    of it is ever made, as ``secrets.token_bytes`` would."""
    buffer = bytearray(size)
    if _libcrypto().RAND_bytes(_address(buffer), size) != 1:  # pragma: no cover
        raise TokenError("libcrypto's random generator failed")
    return buffer


@contextlib.contextmanager
def _lent(buffer: bytearray) -> Iterator[bytes]:
    """An immutable copy of ``buffer`` for a PKCS#11 attribute template (python-pkcs11 takes
    only ``bytes``), zeroed in place when the call is done: it is ours alone (made here, never
    hashed or shared) and python-pkcs11 has copied what it needs. The pointer comes from
    ctypes (``c_char_p`` of a ``bytes`` points at its own storage), not from object layout."""
    value = bytes(buffer)
    try:
        yield value
    finally:
        address = ctypes.cast(ctypes.c_char_p(value), ctypes.c_void_p).value
        if address and value:
            ctypes.memset(address, 0, len(value))
        del value


# -- AES key wrap with padding (RFC 5649) into buffers we own ---------------------------------
# cryptography's aes_key_unwrap_with_padding returns immutable bytes and leaves its working
# copies in freed Rust heap; this runs the same primitive in libcrypto (the library SoftHSM2
# itself runs on) through ctypes, reading and writing only buffers passed in, and frees its
# context with EVP_CIPHER_CTX_free, which cleanses it.
_WRAP_ALLOW: Final = 0x1  # EVP_CIPHER_CTX_FLAG_WRAP_ALLOW (needed before OpenSSL 3, harmless after)


@functools.cache
def _libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto")
    if name is None:  # pragma: no cover - every Debian/Ubuntu has libcrypto
        raise TokenError("libcrypto not found: the host-assisted path unwraps keys with it")
    lib = ctypes.CDLL(name)
    lib.RAND_bytes.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    lib.EVP_CIPHER_CTX_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.EVP_aes_256_wrap_pad.restype = ctypes.c_void_p
    lib.EVP_CipherInit_ex.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.EVP_CipherUpdate.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.EVP_CipherFinal_ex.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    ]
    return lib


def _address(buffer: bytearray | bytes) -> int:
    if isinstance(buffer, bytearray):
        return ctypes.addressof((ctypes.c_char * max(1, len(buffer))).from_buffer(buffer))
    return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0


def _kwp(
    key: bytearray,
    data: bytearray | bytes,
    out: bytearray,
    *,
    encrypt: bool,
    length: int | None = None,
) -> int:
    """AES-256 key wrap with padding of ``data`` under ``key`` into ``out`` (at least
    len(data) + 8 bytes); returns the length written, or -1 when unwrapping fails (a wrong key
    or altered data: ``out`` is zeroed then). ``length``: only the first bytes of ``data``."""
    size = len(data) if length is None else length
    lib = _libcrypto()
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:  # pragma: no cover - out of memory
        raise TokenError("libcrypto could not make a cipher context")
    try:
        lib.EVP_CIPHER_CTX_set_flags(ctx, _WRAP_ALLOW)
        if (
            lib.EVP_CipherInit_ex(
                ctx, lib.EVP_aes_256_wrap_pad(), None, _address(key), None, int(encrypt)
            )
            != 1
        ):  # pragma: no cover - libcrypto without AES key wrap
            raise TokenError("libcrypto refused AES-256 key wrap with padding")
        written = ctypes.c_int(0)
        done = lib.EVP_CipherUpdate(ctx, _address(out), ctypes.byref(written), _address(data), size)
        if done != 1 or written.value < 0:
            wipe(out)
            return -1
        final = ctypes.c_int(0)
        if lib.EVP_CipherFinal_ex(ctx, _address(out) + written.value, ctypes.byref(final)) != 1:
            wipe(out)
            return -1
        return written.value + final.value
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


def _base_secret_template(
    label: str, key_id: bytes, *, extractable: bool = True, wrap_with_trusted: bool = False
) -> dict[Attribute, Any]:
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        # only by wrapping (a sensitive value is never readable), and only when the class's
        # policy allows host-assisted use; FALSE can never be set back to TRUE
        Attribute.EXTRACTABLE: extractable,
        # only under a key the security officer marked CKA_TRUSTED (once TRUE, read-only)
        Attribute.WRAP_WITH_TRUSTED: wrap_with_trusted,
        Attribute.COPYABLE: False,  # no C_CopyObject with other attributes
        Attribute.LABEL: label,
        Attribute.ID: key_id,
    }


def trusted_key_id(value: bytearray) -> bytes:
    """The CKA_ID of a trusted wrapping key: a hash of its value, so that the host can tell
    that its ``.wrap`` file belongs to the token (the value itself is not recoverable)."""
    digest = hashlib.sha256(_TRUSTED_ID_CONTEXT)
    digest.update(value)  # no concatenated copy; OpenSSL clears the context when it is freed
    return digest.digest()[:KEY_ID_SIZE]


def default_trusted_wrap_file(token_label: str) -> Path | None:
    """Where the embedded default keeps a SoftHSM2 token's trusted wrapping key value:
    ``<label>.wrap`` beside the SoftHSM2 config the module reads (and the PIN file)."""
    conf = os.environ.get("SOFTHSM2_CONF")
    return Path(conf).parent / f"{token_label}.wrap" if conf else None


def read_trusted_wrap_file(path: Path) -> bytearray:
    """A ``.wrap`` file's 32 bytes, read straight into a buffer we own (the caller wipes it);
    never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TokenError(
            f"cannot read the trusted wrapping key file {path}: {exc.strerror}",
            title="Trusted wrapping key missing",
        ) from None
    value = bytearray(TRUSTED_WRAP_SIZE + 1)
    try:
        with os.fdopen(fd, "rb", buffering=0) as source:
            size = source.readinto(value)
    except OSError as exc:
        wipe(value)
        raise TokenError(
            f"cannot read the trusted wrapping key file {path}: {exc.strerror}",
            title="Trusted wrapping key missing",
        ) from None
    if size != TRUSTED_WRAP_SIZE:
        wipe(value)
        raise TokenError(
            f"{path}: a trusted wrapping key file holds {TRUSTED_WRAP_SIZE} bytes, "
            f"this one {size if size is not None and size <= TRUSTED_WRAP_SIZE else 'more'}",
            title="Trusted wrapping key unusable",
        )
    del value[TRUSTED_WRAP_SIZE:]  # shrinking in place: no reallocation, no copy
    return value


def fresh_trusted_wrap_value() -> bytearray:
    """A new trusted wrapping key value (libcrypto's RAND_bytes into a buffer we own)."""
    return _fresh_key(TRUSTED_WRAP_SIZE)


def create_trusted_wrap_key(
    token_label: str,
    so_pin: str,
    value: bytearray,
    *,
    slot_id: int | None = None,
    module: str | os.PathLike[str] | None = None,
) -> None:
    """The security officer's trusted wrapping key, created in a security officer session.

    An SO session can create public objects only (SoftHSM2 ``haveWrite``: a private object is
    CKR_USER_NOT_LOGGED_IN), so the key is CKA_PRIVATE=FALSE: visible to any session, but
    sensitive and unextractable (its value never readable), able to wrap and nothing else (an
    unwrap or decrypt capability would hand back what it wraps), and neither modifiable,
    copyable nor destroyable (a user session could otherwise add CKA_UNWRAP). Only the SO can
    set CKA_TRUSTED=TRUE (SoftHSM2 ``P11AttrTrusted``: CKR_ATTRIBUTE_READ_ONLY otherwise)."""
    lib = load_module(find_module(module))
    with MODULE_LOCK:
        try:
            if slot_id is not None:
                found = [s for s in lib.get_slots(token_present=True) if s.slot_id == slot_id]
                if not found:
                    raise TokenError(f"token {token_label!r}: slot {slot_id} is gone")
                token = found[0].get_token()
            else:
                token = lib.get_token(token_label=token_label)
            with token.open(rw=True, so_pin=so_pin) as session, _lent(value) as secret:
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE: secret,
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: False,
                        Attribute.TRUSTED: True,
                        Attribute.WRAP: True,
                        Attribute.UNWRAP: False,
                        Attribute.ENCRYPT: False,
                        Attribute.DECRYPT: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                        Attribute.DERIVE: False,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.MODIFIABLE: False,
                        Attribute.COPYABLE: False,
                        Attribute.DESTROYABLE: False,
                        Attribute.LABEL: TRUSTED_WRAP_LABEL,
                        Attribute.ID: trusted_key_id(value),
                    }
                )
        except p11e.PKCS11Error as exc:
            raise TokenError(
                f"token {token_label!r}: the security officer could not create the trusted "
                f"wrapping key ({type(exc).__name__} {exc})".strip()
            ) from None
        finally:
            clear_openssl_errors()


def _trusted_wrap_object(session: pkcs11.Session) -> pkcs11.Object | None:
    """The token's trusted wrapping key, if it holds one (CKA_TRUSTED=TRUE: only the security
    officer can have made it)."""
    found = list(
        session.get_objects(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.LABEL: TRUSTED_WRAP_LABEL,
                Attribute.TRUSTED: True,
            }
        )
    )
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class TrustedWrapStatus:
    """Whether a token holds a trusted wrapping key, and whether this host's file is its."""

    present: bool  # the token holds one
    file: Path | None  # where this host looks for its value
    file_matches: bool  # the file exists and its value is the token's key (by CKA_ID)


class KeyStore:
    """Generate, find, list and destroy keys in one token."""

    def __init__(self, token: Token, *, trusted_wrap_file: Path | None = None) -> None:
        self.token = token
        self._trusted_wrap_file = trusted_wrap_file

    # -- the trusted wrapping key -----------------------------------------------------------
    @property
    def trusted_wrap_file(self) -> Path | None:
        """Where this host keeps the value of the token's trusted wrapping key."""
        return self._trusted_wrap_file or default_trusted_wrap_file(self.token.label)

    def trusted_wrap_status(self) -> TrustedWrapStatus:
        def look(session: pkcs11.Session) -> bytes | None:
            found = _trusted_wrap_object(session)
            return bytes(found[Attribute.ID]) if found is not None else None

        key_id = self.token.run(look)
        path = self.trusted_wrap_file
        matches = False
        if key_id is not None and path is not None:
            try:
                value = read_trusted_wrap_file(path)
            except TokenError:
                value = None
            if value is not None:
                try:
                    matches = trusted_key_id(value) == key_id
                finally:
                    wipe(value)
        return TrustedWrapStatus(key_id is not None, path, matches)

    def _trusted_value(self, key_id: bytes) -> bytearray:
        """The trusted wrapping key's value from this host's file, checked against the token's
        key (the caller wipes it)."""
        path = self.trusted_wrap_file
        if path is None:
            raise TokenError(
                f"token {self.token.label!r} holds a trusted wrapping key and this host has no "
                "file of its value (the embedded SoftHSM2 keeps it as <label>.wrap)",
                title="Trusted wrapping key missing",
            )
        value = read_trusted_wrap_file(path)
        if trusted_key_id(value) != key_id:
            wipe(value)
            raise TokenError(
                f"{path} is not the value of token {self.token.label!r}'s trusted wrapping key "
                "(another token's file?)",
                title="Trusted wrapping key unusable",
            )
        return value

    def _wrap_with_trusted(self) -> bool:
        """Whether keys made now are generated CKA_WRAP_WITH_TRUSTED: when the token holds a
        trusted wrapping key, and only once this host's file is checked to be its value (a key
        no one could use is never made)."""
        key_id = self.token.run(
            lambda s: (
                bytes(found[Attribute.ID])
                if (found := _trusted_wrap_object(s)) is not None
                else None
            )
        )
        if key_id is None:
            return False
        wipe(self._trusted_value(key_id))
        return True

    def uri(self, label: str, key_id: bytes, type_: str) -> Pkcs11Uri:
        return Pkcs11Uri(token=self.token.label, object=label, id=key_id, type=type_)

    # -- generation -----------------------------------------------------------------------
    def generate_sm2(
        self, label: str, *, decrypt: bool = False, sign: bool = True, host_assisted: bool = True
    ) -> TokenKey:
        """An SM2 key pair generated in the token. ``decrypt`` marks an encryption key (one that
        receives key packages); ``sign=False`` keeps it from signing (GM/T 0014/0015: a holder's
        signing and encryption key pairs are kept apart). ``host_assisted=False`` (a class
        whose policy forbids host-assisted use) makes the private key CKA_EXTRACTABLE=FALSE:
        it can never leave the token; usable only by a token with a native SM2 mechanism."""
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)
        trusted = host_assisted and self._wrap_with_trusted()

        def generate(session: pkcs11.Session) -> SM2PublicKey:
            public_template: dict[Attribute, Any] = {
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.EC_PARAMS: SM2_CURVE_OID_DER,
                Attribute.VERIFY: sign,
                Attribute.ENCRYPT: decrypt,
                Attribute.LABEL: label,
                Attribute.ID: key_id,
            }
            private_template = _base_secret_template(
                label, key_id, extractable=host_assisted, wrap_with_trusted=trusted
            ) | {
                Attribute.SIGN: sign,
                Attribute.DECRYPT: decrypt,
            }
            try:
                public, _ = session.generate_keypair(
                    KeyType.EC,
                    store=True,
                    mechanism=Mechanism.EC_KEY_PAIR_GEN,
                    public_template=public_template,
                    private_template=private_template,
                )
            except (p11e.DomainParamsInvalid, p11e.MechanismInvalid, p11e.AttributeValueInvalid):
                raise TokenError(
                    f"token {self.token.label!r} cannot generate keys on the SM2 curve"
                ) from None
            return _public_point(public)

        public_key = self.token.run(generate)
        return TokenKey(
            uri=self.uri(label, key_id, "private"),
            kind=KeyKind.SM2,
            label=label,
            key_id=key_id,
            public_key=public_key,
        )

    def generate_sm4(self, label: str, *, host_assisted: bool = True) -> TokenKey:
        """A 16-byte SM4 key generated in the token; its check value is computed once, through
        the same host-assisted path signing uses, and returned for the record.
        ``host_assisted=False`` makes it CKA_EXTRACTABLE=FALSE: it never leaves the token (so
        it cannot be delivered in a key package either), and it has no check value here
        (SoftHSM2 has no SM4 mechanism to compute one in the token)."""
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)
        trusted = host_assisted and self._wrap_with_trusted()

        def generate(session: pkcs11.Session) -> None:
            template = _base_secret_template(
                label, key_id, extractable=host_assisted, wrap_with_trusted=trusted
            ) | {
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
                Attribute.DERIVE: False,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
            }
            session.generate_key(
                KeyType.GENERIC_SECRET,
                SM4_KEY_SIZE * 8,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
                store=True,
                template=template,
            )

        self.token.run(generate)
        uri = self.uri(label, key_id, "secret-key")
        if not host_assisted:
            return TokenKey(uri=uri, kind=KeyKind.SM4, label=label, key_id=key_id)
        kcv = self.with_key_material(uri, sm4_key_check_value)
        return TokenKey(uri=uri, kind=KeyKind.SM4, label=label, key_id=key_id, check_value=kcv)

    def _refuse_duplicate_label(self, label: str) -> None:
        if not label:
            raise TokenError("a key label must not be empty")
        # Every key made or installed passes here: its label must fit hsm.names' pattern
        # (BadName, exit 3) — labels name package files and appear in paths further on.
        object_label(label)

        def exists(session: pkcs11.Session) -> bool:
            # consume the search fully: an abandoned search outlives its session
            return len(list(session.get_objects({Attribute.LABEL: label}))) > 0

        if self.token.run(exists):
            raise TokenError(
                f"token {self.token.label!r} already holds an object labelled {label!r}",
                title="Duplicate key label",
            )

    # -- finding --------------------------------------------------------------------------
    def find(self, session: pkcs11.Session, uri: Pkcs11Uri) -> pkcs11.Object:
        """The one object ``uri`` names in this token (inside an operation's session)."""
        if uri.token != self.token.label:
            raise KeyNotFound(f"{uri} names token {uri.token!r}, not {self.token.label!r}")
        attrs: dict[Attribute, Any] = {}
        if uri.object is not None:
            attrs[Attribute.LABEL] = uri.object
        if uri.id is not None:
            attrs[Attribute.ID] = uri.id
        if uri.type is not None:
            attrs[Attribute.CLASS] = {
                "private": ObjectClass.PRIVATE_KEY,
                "public": ObjectClass.PUBLIC_KEY,
                "secret-key": ObjectClass.SECRET_KEY,
                "cert": ObjectClass.CERTIFICATE,
                "data": ObjectClass.DATA,
            }[uri.type]
        if not attrs.keys() - {Attribute.CLASS}:
            raise KeyNotFound(f"{uri} names no object (give object= or id=)")
        found = list(session.get_objects(attrs))
        if not found:
            raise KeyNotFound(f"no object matches {uri}")
        if len(found) > 1:
            raise KeyNotFound(f"{len(found)} objects match {uri}; add id= or type=")
        return found[0]

    def public_key(self, uri: Pkcs11Uri) -> SM2PublicKey:
        """The SM2 public point, read from the token's public object."""
        public_uri = uri.with_type("public")
        return self.token.run(lambda s: _public_point(self.find(s, public_uri)))

    def key_attributes(self, uri: Pkcs11Uri) -> KeyAttributes:
        """The extractability and capability attributes of the key ``uri`` names, as the
        token reports them."""

        def read(session: pkcs11.Session) -> KeyAttributes:
            return _attributes_of(self.find(session, uri))

        return self.token.run(read)

    def list_keys(self) -> list[TokenKey]:
        def collect(session: pkcs11.Session) -> list[TokenKey]:
            keys = []
            publics = {
                bytes(obj[Attribute.ID]): obj
                for obj in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
            }
            for obj in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
                key_id, label = bytes(obj[Attribute.ID]), str(obj[Attribute.LABEL])
                public = publics.get(key_id)
                keys.append(
                    TokenKey(
                        uri=self.uri(label, key_id, "private"),
                        kind=KeyKind.SM2,
                        label=label,
                        key_id=key_id,
                        public_key=_public_point(public) if public is not None else None,
                    )
                )
            for obj in list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})):
                if obj[Attribute.KEY_TYPE] != KeyType.GENERIC_SECRET:
                    continue
                key_id, label = bytes(obj[Attribute.ID]), str(obj[Attribute.LABEL])
                keys.append(
                    TokenKey(
                        uri=self.uri(label, key_id, "secret-key"),
                        kind=KeyKind.SM4,
                        label=label,
                        key_id=key_id,
                    )
                )
            return sorted(keys, key=lambda k: k.label)

        return self.token.run(collect)

    def destroy(self, uri: Pkcs11Uri) -> int:
        """Destroy the key ``uri`` names and, for a key pair, its public half. Returns how
        many objects were destroyed."""

        def destroy(session: pkcs11.Session) -> int:
            target = self.find(session, uri)
            key_id = bytes(target[Attribute.ID])
            count = 0
            if target.object_class == ObjectClass.PRIVATE_KEY:
                for public in list(
                    session.get_objects(
                        {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id}
                    )
                ):
                    public.destroy()
                    count += 1
            target.destroy()
            return count + 1

        return self.token.run(destroy)

    # -- the host-assisted path -----------------------------------------------------------
    def with_key_material(
        self, uri: Pkcs11Uri, use: Callable[[bytearray], T], *, purpose: KeyUse | None = None
    ) -> T:
        """Unwrap the key ``uri`` names into this process for one use, then wipe it.

        ``use`` receives the raw key value: the 32-byte SM2 scalar or the 16-byte SM4 key.
        The value lives only in bytearrays made here and zeroed before returning, whatever
        ``use`` does: the wrapped key is unwrapped into one (``_kwp``, libcrypto through ctypes,
        no immutable copy), the raw value is read out of its PKCS#8 in place into another.
        ``use`` must not copy it into ``bytes`` or an ``int`` (those cannot be wiped).

        ``purpose`` (``KeyUse.SIGN``, ``KeyUse.DECRYPT``) is checked against the key's own
        CKA_SIGN / CKA_DECRYPT, read in the same session that wraps it: a key the token says
        may not do that is refused before it is wrapped. Without it (exporting a key in a
        package, a check value, a backup) no capability is asked.
        """

        def use_plain(plain: bytearray, length: int) -> T:
            value = _key_value(memoryview(plain)[:length])
            try:
                return use(value)
            finally:
                wipe(value)

        return self._with_wrapped_plain(uri, use_plain, purpose=purpose)

    def _with_wrapped_plain(
        self,
        uri: Pkcs11Uri,
        use: Callable[[bytearray, int], T],
        *,
        purpose: KeyUse | None = None,
    ) -> T:
        """The token's own wrapped form of the key (PKCS#8 for SM2, the 16 bytes of an SM4 key)
        unwrapped into a buffer of ours for ``use``, then wiped."""
        out = self.token.run(lambda s: _wrap_out(s, self.find(s, uri), purpose))
        transport = out.transport if out.transport is not None else self._trusted_value(out.key_id)
        plain = bytearray(max(len(out.wrapped), 16))
        try:
            try:
                size = _kwp(transport, out.wrapped, plain, encrypt=False)
            finally:
                wipe(transport)
            if size < 0:
                raise TokenError(f"the wrapped form of {uri} did not unwrap")
            return use(plain, size)
        finally:
            wipe(plain)

    def wrap_under(self, uri: Pkcs11Uri, wrap_key: bytearray) -> bytes:
        """The key ``uri`` names wrapped (AES key wrap with padding) under ``wrap_key`` — what
        ``C_WrapKey`` under a key of that value gives (a backup archive's entry). A key that
        may be wrapped only under the token's trusted key is wrapped under it, unwrapped here
        and wrapped again under ``wrap_key``, in buffers wiped afterwards."""

        def wrap_plain(plain: bytearray, length: int) -> bytes:
            sealed = bytearray(length + 16)
            try:
                size = _kwp(wrap_key, plain, sealed, encrypt=True, length=length)
                if size < 0:  # pragma: no cover - wrapping a well-formed value cannot fail
                    raise TokenError(f"{uri}: libcrypto could not wrap the key")
                return bytes(sealed[:size])  # ciphertext under wrap_key
            finally:
                wipe(sealed)

        return self._with_wrapped_plain(uri, wrap_plain)

    def sign_host_assisted(self, uri: Pkcs11Uri, message: bytes) -> bytes:
        """Sign ``message`` with the SM2 key ``uri`` names, unwrapped for this one signature:
        the scalar goes from our buffer straight into Tongsuo (``from_scalar_buffer``) and the
        key object is dropped before the buffer is wiped."""

        def sign(value: bytearray) -> bytes:
            key = SM2PrivateKey.from_scalar_buffer(value)
            try:
                return key.sign(message)
            finally:
                del key  # EC_KEY_free: Tongsuo zeroes its BIGNUM of the scalar

        return self.with_key_material(uri, sign, purpose=KeyUse.SIGN)

    # -- putting key material into the token ---------------------------------------------
    def install_key(
        self,
        kind: KeyKind,
        label: str,
        material: bytearray,
        *,
        public_key: SM2PublicKey | None = None,
        check_value: bytes | None = None,
        companions: list[dict[Attribute, Any]] | None = None,
        decrypt: bool = False,
    ) -> TokenKey:
        """Put a key value (a 32-byte SM2 scalar or a 16-byte SM4 key) into the token as a
        sensitive object, with its companion objects (a public key, a replay marker), all or
        nothing: if any object cannot be created, those already created are destroyed.

        The value crosses into the token wrapped under a fresh transport key (``C_UnwrapKey``);
        a token that cannot parse SM2-curve PKCS#8 (SoftHSM2 on OpenSSL 3) gets the sensitive
        object created from its value in the same session instead.
        """
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)
        trusted = self._wrap_with_trusted()
        if kind == KeyKind.SM2:
            private = SM2PrivateKey.from_scalar_buffer(material)
            if public_key is not None and private.public_key != public_key:
                raise TokenError(f"{label}: the private key does not match its public key")
            public_key = private.public_key
            del private
            plain = _sm2_pkcs8(material, public_key)
        else:
            if len(material) != SM4_KEY_SIZE:
                raise TokenError(f"{label}: an SM4 key is 16 bytes, got {len(material)}")
            plain = bytearray(material)
        extra = list(companions or [])
        if public_key is not None:
            extra.insert(0, _public_template(label, key_id, public_key, encrypt=decrypt))

        def install(session: pkcs11.Session) -> None:
            created: list[pkcs11.Object] = []
            try:
                created.append(
                    _unwrap_into(session, kind, label, key_id, plain, decrypt, trusted=trusted)
                )
                for template in extra:
                    created.append(session.create_object(template))
            except BaseException:
                for obj in reversed(created):
                    with contextlib.suppress(p11e.PKCS11Error):
                        obj.destroy()
                raise

        try:
            self.token.run(install)
        finally:
            wipe(plain)
        uri = self.uri(label, key_id, "private" if kind == KeyKind.SM2 else "secret-key")
        key = TokenKey(
            uri=uri,
            kind=kind,
            label=label,
            key_id=key_id,
            public_key=public_key,
            check_value=check_value,
        )
        if kind == KeyKind.SM4 and check_value is not None:
            # Prove the import through the same path signing uses.
            kcv = self.with_key_material(uri, sm4_key_check_value)
            if kcv != check_value:
                self.destroy(uri)
                raise TokenError(f"{label}: the installed key's check value differs")
        return key


# PKCS#8 PrivateKeyInfo of an SM2 key (RFC 5208, RFC 5915): this prefix, the 32-byte scalar,
# then [1] { BIT STRING 04 || X || Y } — the same bytes Tongsuo's encoder writes.
_SM2_PKCS8_HEAD: Final = bytes.fromhex(
    "308187020100301306072a8648ce3d020106082a811ccf5501822d046d306b0201010420"
)
_SM2_PKCS8_PUBLIC: Final = bytes.fromhex("a144034200")


def _sm2_pkcs8(scalar: bytearray, public_key: SM2PublicKey) -> bytearray:
    """The PKCS#8 DER of an SM2 key, built in a buffer we own (the caller wipes it): Tongsuo's
    encoder would hand back an immutable ``bytes``."""
    if len(scalar) != 32:
        raise TokenError(f"an SM2 private key is 32 bytes, got {len(scalar)}")
    head, tail = len(_SM2_PKCS8_HEAD), len(_SM2_PKCS8_HEAD) + 32
    plain = bytearray(tail + len(_SM2_PKCS8_PUBLIC) + 65)  # sized once: never reallocated
    plain[:head] = _SM2_PKCS8_HEAD
    plain[head:tail] = scalar
    plain[tail : tail + len(_SM2_PKCS8_PUBLIC)] = _SM2_PKCS8_PUBLIC
    plain[tail + len(_SM2_PKCS8_PUBLIC) :] = public_key.uncompressed
    return plain


def _public_template(
    label: str, key_id: bytes, public_key: SM2PublicKey, *, encrypt: bool = False
) -> dict[Attribute, Any]:
    return {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.EC,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: True,
        Attribute.ENCRYPT: encrypt,
        Attribute.EC_PARAMS: SM2_CURVE_OID_DER,
        Attribute.EC_POINT: OctetString(public_key.uncompressed).dump(),
        Attribute.LABEL: label,
        Attribute.ID: key_id,
    }


def _unwrap_into(
    session: pkcs11.Session,
    kind: KeyKind,
    label: str,
    key_id: bytes,
    plain: bytearray,
    decrypt: bool = False,
    *,
    trusted: bool = False,
) -> pkcs11.Object:
    template: dict[Attribute, Any] = _base_secret_template(label, key_id, wrap_with_trusted=trusted)
    if kind == KeyKind.SM2:
        # Capabilities a private key cannot carry: drop python-pkcs11's defaults for them.
        template |= {
            Attribute.SIGN: True,
            Attribute.DECRYPT: decrypt,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
            Attribute.ENCRYPT: DEFAULT,
            Attribute.VERIFY: DEFAULT,
            Attribute.WRAP: DEFAULT,
        }
        object_class, key_type = ObjectClass.PRIVATE_KEY, KeyType.EC
    else:
        template |= {attr: False for attr in ALL_CAPABILITIES}
        object_class, key_type = ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET
    transport = _fresh_key()
    try:
        sealed = bytearray(len(plain) + 16)
        size = _kwp(transport, plain, sealed, encrypt=True)
        if size < 0:  # pragma: no cover - wrapping a well-formed value cannot fail
            raise TokenError(f"{label}: libcrypto could not wrap the key for the token")
        wrapped = bytes(sealed[:size])  # ciphertext under the one-use transport key
        with _lent(transport) as value:
            unwrapper = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: value,
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.UNWRAP: True,
                    Attribute.WRAP: False,
                }
            )
    finally:
        wipe(transport)
    try:
        return cast(UnwrapMixin, unwrapper).unwrap_key(
            object_class,
            key_type,
            wrapped,
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template=template,
        )
    except (p11e.FunctionFailed, p11e.WrappedKeyInvalid):
        if kind != KeyKind.SM2:
            raise
    finally:
        unwrapper.destroy()
    scalar = _key_value(plain)
    try:
        attrs = {k: v for k, v in template.items() if v is not DEFAULT}
        with _lent(scalar) as value:
            return session.create_object(
                attrs
                | {
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.KEY_TYPE: KeyType.EC,
                    Attribute.EC_PARAMS: SM2_CURVE_OID_DER,
                    Attribute.VALUE: value,
                }
            )
    finally:
        wipe(scalar)


@dataclass(slots=True)
class _Wrapped:
    wrapped: bytes  # the key under ``transport``, or under the trusted key (``key_id``)
    transport: bytearray | None  # the one-use key's value (ours to wipe), or None
    key_id: bytes = b""  # the trusted wrapping key's CKA_ID, when it wrapped


def _attributes_of(target: pkcs11.Object) -> KeyAttributes:
    def flag(attribute: Attribute) -> bool:
        try:
            return bool(target[attribute])
        except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
            return False

    return KeyAttributes(
        extractable=flag(Attribute.EXTRACTABLE),
        never_extractable=flag(Attribute.NEVER_EXTRACTABLE),
        always_sensitive=flag(Attribute.ALWAYS_SENSITIVE),
        local=flag(Attribute.LOCAL),
        sensitive=flag(Attribute.SENSITIVE),
        wrap_with_trusted=flag(Attribute.WRAP_WITH_TRUSTED),
        sign=flag(Attribute.SIGN),
        decrypt=flag(Attribute.DECRYPT),
    )


def _wrap_out(
    session: pkcs11.Session, target: pkcs11.Object, purpose: KeyUse | None = None
) -> _Wrapped:
    """The key wrapped for the host: refused when ``purpose`` asks what its CKA_SIGN or
    CKA_DECRYPT forbids; under the trusted wrapping key when the key is
    CKA_WRAP_WITH_TRUSTED; otherwise under a fresh one-use transport key."""
    attributes = _attributes_of(target)
    name = str(target[Attribute.LABEL])
    if purpose == KeyUse.SIGN and not attributes.sign:
        raise TokenError(
            f"key {name!r} may not sign (CKA_SIGN is FALSE in the token)",
            title="Key may not sign",
        )
    if purpose == KeyUse.DECRYPT and not attributes.decrypt:
        raise TokenError(
            f"key {name!r} may not decrypt (CKA_DECRYPT is FALSE in the token)",
            title="Key may not decrypt",
        )
    if not attributes.extractable:
        raise TokenError(
            f"key {name!r} is not extractable (CKA_EXTRACTABLE is FALSE): it never leaves the "
            "token, so it cannot be used host-assisted, exported or backed up",
            title="Key not extractable",
        )
    if attributes.wrap_with_trusted:
        trusted = _trusted_wrap_object(session)
        if trusted is None:
            raise TokenError(
                f"key {name!r} may be wrapped only under a trusted key, and the token holds "
                f"no {TRUSTED_WRAP_LABEL!r}",
                title="Trusted wrapping key missing",
            )
        wrapped = cast(WrapMixin, trusted).wrap_key(
            cast(Key, target), mechanism=Mechanism.AES_KEY_WRAP_PAD
        )
        return _Wrapped(bytes(wrapped), None, bytes(trusted[Attribute.ID]))
    transport = _fresh_key()
    with _lent(transport) as value:
        transport_key = session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: value,
                Attribute.TOKEN: False,  # a session object: gone when the session ends
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: True,
                Attribute.UNWRAP: False,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
            }
        )
    try:
        wrapped = cast(WrapMixin, transport_key).wrap_key(
            cast(Key, target), mechanism=Mechanism.AES_KEY_WRAP_PAD
        )
    except BaseException:
        wipe(transport)
        raise
    finally:
        transport_key.destroy()
    return _Wrapped(bytes(wrapped), transport)


def _key_value(plain: bytearray | memoryview) -> bytearray:
    """The raw key value inside a wrapped key, copied into a new bytearray (the caller wipes
    both): an SM2 scalar out of PKCS#8, read in place (no parser's copies), or an SM4 key."""
    if len(plain) == SM4_KEY_SIZE:
        return bytearray(plain)
    view = memoryview(plain)
    start, end = _ec_private_scalar(view)
    if end - start > 32:
        raise TokenError("unwrapped key material: the EC private key is longer than 32 bytes")
    value = bytearray(32)
    value[32 - (end - start) :] = view[start:end]
    return value


def _der(view: memoryview, at: int, end: int, tag: int) -> tuple[int, int]:
    """The content (start, end) of the DER element with ``tag`` at ``at``, within ``end``."""
    if at + 2 > end or view[at] != tag:
        raise TokenError(
            f"unwrapped key material is not a PKCS#8 EC key (offset {at}: expected tag 0x{tag:02x})"
        )
    length, at = view[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or at + count > end:
            raise TokenError(f"unwrapped key material: bad DER length at offset {at - 1}")
        length = 0
        for _ in range(count):
            length = (length << 8) | view[at]
            at += 1
    if at + length > end:
        raise TokenError(f"unwrapped key material: element at offset {at} overruns its parent")
    return at, at + length


def _ec_private_scalar(view: memoryview) -> tuple[int, int]:
    """Where the private key OCTET STRING's content lies in a PKCS#8 PrivateKeyInfo holding
    an ECPrivateKey (RFC 5208, RFC 5915), read without copying."""
    start, end = _der(view, 0, len(view), 0x30)  # PrivateKeyInfo
    _, after = _der(view, start, end, 0x02)  # version
    _, after = _der(view, after, end, 0x30)  # AlgorithmIdentifier
    inner, inner_end = _der(view, after, end, 0x04)  # privateKey OCTET STRING
    key, key_end = _der(view, inner, inner_end, 0x30)  # ECPrivateKey
    _, after = _der(view, key, key_end, 0x02)  # version 1
    return _der(view, after, key_end, 0x04)  # privateKey


def _public_point(public: pkcs11.Object) -> SM2PublicKey:
    raw = bytes(public[Attribute.EC_POINT])
    # CKA_EC_POINT is a DER OCTET STRING holding the uncompressed point (PKCS#11 v2.40 §2.3.3)
    try:
        point = OctetString.load(raw).native if raw[:1] == b"\x04" and len(raw) != 65 else raw
    except ValueError:
        point = raw
    return SM2PublicKey.from_bytes(bytes(point))
