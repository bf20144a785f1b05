"""Keys generated and kept inside a token, named by RFC 7512 URIs.

SM2 key pairs: ``CKM_EC_KEY_PAIR_GEN`` with EC_PARAMS = the SM2 curve OID. SM4 keys: 16-byte
generic secrets (PKCS#11 defines no SM4 key type). Private and secret keys are token objects,
private, sensitive (``CKA_VALUE`` never readable) and extractable only by wrapping.

The only way key material leaves a token is ``host_assisted``: ``C_WrapKey`` under a fresh
AES-256 transport key made for that one operation, unwrapped in this process, used once, and the
buffers wiped. Python's own integers and immutable bytes cannot be wiped; the buffers we own are.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar, cast

import pkcs11
import pkcs11.exceptions as p11e
from asn1crypto.core import OctetString
from asn1crypto.keys import ECPrivateKey, PrivateKeyInfo
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
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
    for i in range(len(buffer)):
        buffer[i] = 0


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
    def generate_sm2(self, label: str, *, decrypt: bool = False) -> TokenKey:
        """An SM2 key pair generated in the token. ``decrypt`` marks a transport key (one that
        receives key packages)."""
        self._refuse_duplicate_label(label)
        key_id = secrets.token_bytes(KEY_ID_SIZE)

        def generate(session: pkcs11.Session) -> SM2PublicKey:
            public_template: dict[Attribute, Any] = {
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.EC_PARAMS: SM2_CURVE_OID_DER,
                Attribute.VERIFY: True,
                Attribute.ENCRYPT: decrypt,
                Attribute.LABEL: label,
                Attribute.ID: key_id,
            }
            private_template = _base_secret_template(label, key_id) | {
                Attribute.SIGN: True,
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
        kcv = self.with_key_material(uri, lambda value: sm4_key_check_value(bytes(value)))
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
        """
        wrapped, transport = self.token.run(lambda s: _wrap_out(s, self.find(s, uri)))
        try:
            try:
                plain = bytearray(aes_key_unwrap_with_padding(bytes(transport), wrapped))
            except InvalidUnwrap:
                raise TokenError(f"the wrapped form of {uri} did not unwrap") from None
        finally:
            wipe(transport)
        try:
            value = _key_value(plain)
            try:
                return use(value)
            finally:
                wipe(value)
        finally:
            wipe(plain)

    def sign_host_assisted(self, uri: Pkcs11Uri, message: bytes) -> bytes:
        def sign(value: bytearray) -> bytes:
            return SM2PrivateKey.from_scalar(bytes(value)).sign(message)

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
            private = SM2PrivateKey.from_scalar(bytes(material))
            if public_key is not None and private.public_key != public_key:
                raise TokenError(f"{label}: the private key does not match its public key")
            public_key = private.public_key
            plain = bytearray(private.pkcs8_der())
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
            kcv = self.with_key_material(uri, lambda v: sm4_key_check_value(bytes(v)))
            if kcv != check_value:
                self.destroy(uri)
                raise TokenError(f"{label}: the installed key's check value differs")
        return key


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
    transport = bytearray(secrets.token_bytes(32))
    try:
        wrapped = aes_key_wrap_with_padding(bytes(transport), bytes(plain))
        unwrapper = session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: bytes(transport),
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
        return session.create_object(
            attrs
            | {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: SM2_CURVE_OID_DER,
                Attribute.VALUE: bytes(scalar),
            }
        )
    finally:
        wipe(scalar)


def _wrap_out(session: pkcs11.Session, target: pkcs11.Object) -> tuple[bytes, bytearray]:
    transport = bytearray(secrets.token_bytes(32))
    transport_key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: bytes(transport),
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


def _key_value(plain: bytearray) -> bytearray:
    """The raw key value inside a wrapped key: an SM2 scalar from PKCS#8, or an SM4 key."""
    if len(plain) == SM4_KEY_SIZE:
        return bytearray(plain)
    try:
        info = PrivateKeyInfo.load(bytes(plain))
        ec_key = info["private_key"].parsed
        if not isinstance(ec_key, ECPrivateKey):
            raise ValueError("not an EC private key")
        scalar = int(ec_key["private_key"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenError(f"unwrapped key material is not a PKCS#8 EC key: {exc}") from None
    return bytearray(scalar.to_bytes(32, "big"))


def _public_point(public: pkcs11.Object) -> SM2PublicKey:
    raw = bytes(public[Attribute.EC_POINT])
    # CKA_EC_POINT is a DER OCTET STRING holding the uncompressed point (PKCS#11 v2.40 §2.3.3)
    try:
        point = OctetString.load(raw).native if raw[:1] == b"\x04" and len(raw) != 65 else raw
    except ValueError:
        point = raw
    return SM2PublicKey.from_bytes(bytes(point))
