"""Keys generated and kept inside a token, named by RFC 7512 URIs.

SM2 key pairs: ``CKM_EC_KEY_PAIR_GEN`` with EC_PARAMS = the SM2 curve OID. SM4 keys: 16-byte
generic secrets (PKCS#11 defines no SM4 key type). Private and secret keys are token objects,
private, sensitive (``CKA_VALUE`` never readable) and extractable only by wrapping.

The only way key material leaves a token is ``host_assisted``: ``C_WrapKey`` under a fresh
AES-256 transport key made for that one operation, unwrapped in this process, used once, and the
buffers wiped. The key lives only in bytearrays of ours (never an immutable ``bytes`` or an
``int``): unwrapped by libcrypto through ctypes, read out of PKCS#8 in place, handed to Tongsuo
in place (docs/tokens.md, "Key bytes in memory"; tests/integration/test_key_zeroing.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar, cast

import pkcs11
import pkcs11.exceptions as p11e
from asn1crypto.core import OctetString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.attributes import ALL_CAPABILITIES
from pkcs11.constants import DEFAULT
from pkcs11.types import Key, UnwrapMixin, WrapMixin

from hsm.names import object_label
from hsm.pkcs11.token import ObjectMissing, Token, TokenError
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import SM2_CURVE_OID_DER, SM2PrivateKey, SM2PublicKey
from hsm.sm.sm4 import SM4_KEY_SIZE, sm4_key_check_value

T = TypeVar("T")
KEY_ID_SIZE: Final = 16


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


def _kwp(key: bytearray, data: bytearray | bytes, out: bytearray, *, encrypt: bool) -> int:
    """AES-256 key wrap with padding of ``data`` under ``key`` into ``out`` (at least
    len(data) + 8 bytes); returns the length written, or -1 when unwrapping fails (a wrong key
    or altered data: ``out`` is zeroed then)."""
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
        done = lib.EVP_CipherUpdate(
            ctx, _address(out), ctypes.byref(written), _address(data), len(data)
        )
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


def _base_secret_template(label: str, key_id: bytes) -> dict[Attribute, Any]:
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True,  # only by wrapping: a sensitive value is never readable
        Attribute.LABEL: label,
        Attribute.ID: key_id,
    }


class KeyStore:
    """Generate, find, list and destroy keys in one token."""

    def __init__(self, token: Token) -> None:
        self.token = token

    def uri(self, label: str, key_id: bytes, type_: str) -> Pkcs11Uri:
        return Pkcs11Uri(token=self.token.label, object=label, id=key_id, type=type_)

    # -- generation -----------------------------------------------------------------------
    def generate_sm2(self, label: str, *, decrypt: bool = False, sign: bool = True) -> TokenKey:
        """An SM2 key pair generated in the token. ``decrypt`` marks an encryption key (one that
        receives key packages); ``sign=False`` keeps it from signing (GM/T 0014/0015: a holder's
        signing and encryption key pairs are kept apart)."""
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)

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
            private_template = _base_secret_template(label, key_id) | {
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

    def generate_sm4(self, label: str) -> TokenKey:
        """A 16-byte SM4 key generated in the token; its check value is computed once, through
        the same host-assisted path signing uses, and returned for the record."""
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)

        def generate(session: pkcs11.Session) -> None:
            template = _base_secret_template(label, key_id) | {
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
    def with_key_material(self, uri: Pkcs11Uri, use: Callable[[bytearray], T]) -> T:
        """Unwrap the key ``uri`` names into this process for one use, then wipe it.

        ``use`` receives the raw key value: the 32-byte SM2 scalar or the 16-byte SM4 key.
        The value lives only in bytearrays made here and zeroed before returning, whatever
        ``use`` does: the wrapped key is unwrapped into one (``_kwp``, libcrypto through ctypes,
        no immutable copy), the raw value is read out of its PKCS#8 in place into another.
        ``use`` must not copy it into ``bytes`` or an ``int`` (those cannot be wiped).
        """
        wrapped, transport = self.token.run(lambda s: _wrap_out(s, self.find(s, uri)))
        plain = bytearray(max(len(wrapped), 16))
        try:
            try:
                size = _kwp(transport, wrapped, plain, encrypt=False)
            finally:
                wipe(transport)
            if size < 0:
                raise TokenError(f"the wrapped form of {uri} did not unwrap")
            value = _key_value(memoryview(plain)[:size])
            try:
                return use(value)
            finally:
                wipe(value)
        finally:
            wipe(plain)

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

        return self.with_key_material(uri, sign)

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
                created.append(_unwrap_into(session, kind, label, key_id, plain, decrypt))
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
) -> pkcs11.Object:
    template: dict[Attribute, Any] = _base_secret_template(label, key_id)
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


def _wrap_out(session: pkcs11.Session, target: pkcs11.Object) -> tuple[bytes, bytearray]:
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
    except p11e.KeyUnextractable:
        wipe(transport)
        raise TokenError("the key is not extractable, even by wrapping") from None
    finally:
        transport_key.destroy()
    return bytes(wrapped), transport


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
