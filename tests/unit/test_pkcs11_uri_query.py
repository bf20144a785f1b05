"""RFC 7512 §2.3 query attributes on PKCS#11 URIs (hsm.pkcs11.uri, issue #15, point 5):
pin-source, module-name, module-path; pin-value only where the policy allows it."""

# "token" here is a token label, not a password (S105/S106 are false positives).
# ruff: noqa: S106

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.pkcs11.uri import (
    PIN_VALUE_SWITCH,
    QUERY_ATTRS,
    TYPES,
    PinValueRefused,
    Pkcs11Uri,
    UriError,
    redact,
)

# RFC 7512 §2.3: pk11-qchar = unreserved / pk11-query-res-avail / pct-encoded, "&" between
# query attributes; the path keeps to pk11-pchar.
URI = re.compile(
    r"^pkcs11:[A-Za-z0-9\-._~:\[\]@!$'()*+,=&;%]*"
    r"(\?[A-Za-z0-9\-._~:\[\]@!$'()*+,=/?|%]+(&[A-Za-z0-9\-._~:\[\]@!$'()*+,=/?|%]+)*)?$"
)
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def test_a_uri_naming_a_key_fully() -> None:
    text = (
        "pkcs11:token=MOT-ROOT;object=qr-ca-17;id=%01%02;type=private"
        f"?pin-source=file:/etc/jtca/mot-root.pin&module-path={SOFTHSM}"
    )
    uri = Pkcs11Uri.parse(text)
    assert uri.pin_source == "file:/etc/jtca/mot-root.pin"
    assert uri.module_path == SOFTHSM
    assert uri.module_name is None
    assert uri.pin_value is None
    assert uri.has_query
    assert str(uri) == text  # already canonical: round trip to the same text
    name = uri.without_query()
    assert str(name) == "pkcs11:token=MOT-ROOT;object=qr-ca-17;id=%01%02;type=private"
    assert not name.has_query
    assert name.without_query() is name
    # what KeyStore.uri() makes (and the database stores) is the name, unchanged
    assert name == Pkcs11Uri(token="MOT-ROOT", object="qr-ca-17", id=b"\x01\x02", type="private")


def test_canonical_form_orders_and_encodes_the_query() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:object=k;token=T?module-name=softhsm2&pin-source=%2Frun%2Fsecrets%2Fpin"
    )
    assert str(uri) == "pkcs11:token=T;object=k?pin-source=/run/secrets/pin&module-name=softhsm2"
    # "&" and "#" in a value are percent-encoded; "/", "?", "|", ":" need not be
    odd = Pkcs11Uri(token="T", object="k", pin_source="/p/a&b#c?d|e:f g")
    assert str(odd).endswith("?pin-source=/p/a%26b%23c?d|e:f%20g")
    assert Pkcs11Uri.parse(str(odd)) == odd


@given(
    token=st.text(min_size=1, max_size=30),
    obj=st.none() | st.text(max_size=30),
    key_id=st.none() | st.binary(max_size=16),
    type_=st.none() | st.sampled_from(sorted(TYPES)),
    source=st.none() | st.text(min_size=1, max_size=40),
    module=st.sampled_from(["name", "path", None]),
    module_value=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and "\\" not in s),
)
def test_round_trip_property(
    token: str,
    obj: str | None,
    key_id: bytes | None,
    type_: str | None,
    source: str | None,
    module: str | None,
    module_value: str,
) -> None:
    if module_value in (".", "..") or "\0" in module_value:
        module_value = "m"
    uri = Pkcs11Uri(
        token=token,
        object=obj,
        id=key_id,
        type=type_,
        pin_source=source,
        module_name=module_value if module == "name" else None,
        module_path="/" + module_value if module == "path" else None,
    )
    text = str(uri)
    assert URI.match(text), text
    assert Pkcs11Uri.parse(text) == uri
    assert str(Pkcs11Uri.parse(text)) == text  # canonical: parse then print is the identity


def test_pin_value_is_refused_unless_the_policy_allows_it() -> None:
    text = "pkcs11:token=T;object=k?pin-value=s3cret-1234"
    with pytest.raises(PinValueRefused) as caught:
        Pkcs11Uri.parse(text)
    assert PIN_VALUE_SWITCH == "pkcs11_uri.allow_pin_value"
    assert PIN_VALUE_SWITCH in caught.value.message
    assert "s3cret" not in caught.value.message  # the refusal never repeats the PIN
    assert isinstance(caught.value, UriError)
    allowed = Pkcs11Uri.parse(text, allow_pin_value=True)
    assert allowed.pin_value == "s3cret-1234"
    assert "s3cret" not in repr(allowed)  # a PIN is never in a repr
    assert str(allowed) == text
    assert "pin-value" not in str(allowed.without_query())


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param(
            "pkcs11:token=T?pin-sauce=/p", "unknown query attribute 'pin-sauce'", id="fail/unknown"
        ),
        pytest.param(
            "pkcs11:token=T?x-vendor=1", "unknown query attribute 'x-vendor'", id="fail/vendor-x"
        ),
        pytest.param(
            "pkcs11:token=T?Module-Path=/m", "unknown query attribute 'Module-Path'", id="fail/case"
        ),
        pytest.param(
            "pkcs11:token=T?token=T",
            "unknown query attribute 'token'",
            id="fail/path-attr-in-query",
        ),
        pytest.param(
            "pkcs11:token=T;pin-source=/p",
            "unknown attribute 'pin-source'",
            id="fail/query-attr-in-path",
        ),
        pytest.param(
            "pkcs11:token=T?pin-source=/a&pin-source=/b", "'pin-source' given twice", id="fail/dup"
        ),
        pytest.param(
            "pkcs11:token=T?module-name=a&module-name=a",
            "'module-name' given twice",
            id="fail/dup-same",
        ),
        pytest.param("pkcs11:token=T?module-path", "has no '='", id="fail/no-equals"),
        pytest.param("pkcs11:token=T?pin-source=", "pin-source is empty", id="fail/empty-value"),
        pytest.param(
            "pkcs11:token=T?", "no query attribute after it", id="fail/bare-question-mark"
        ),
        pytest.param(
            "pkcs11:token=T?pin-source=/p&", "empty query attribute", id="fail/trailing-amp"
        ),
        pytest.param(
            "pkcs11:token=T?pin-source=/p&&module-name=m",
            "empty query attribute",
            id="fail/double-amp",
        ),
        pytest.param("pkcs11:token=T?pin-source=/p%4", "bad percent-encoding", id="fail/pct-short"),
        pytest.param(
            "pkcs11:token=T?pin-source=/p%zz", "bad percent-encoding", id="fail/pct-nonhex"
        ),
        pytest.param(
            "pkcs11:token=T?pin-source=/a b",
            "' ' in pin-source must be percent-encoded",
            id="fail/space",
        ),
        pytest.param(
            "pkcs11:token=T?pin-source=/a;b",
            "';' in pin-source must be percent-encoded",
            id="fail/semicolon",
        ),
        pytest.param("pkcs11:token=T?module-path=/a#b", "'#' in module-path", id="fail/hash"),
        pytest.param(
            "pkcs11:token=T?pin-source=/p%FF", "pin-source is not UTF-8", id="fail/not-utf8"
        ),
        pytest.param(
            "pkcs11:token=a/b", "'/' in token must be percent-encoded", id="fail/slash-in-path"
        ),
        pytest.param(
            "pkcs11:token=T;object=a b",
            "' ' in object must be percent-encoded",
            id="fail/space-in-path",
        ),
        pytest.param(
            "pkcs11:token=交通", "in token must be percent-encoded", id="fail/raw-utf8-in-path"
        ),
        pytest.param(
            "pkcs11:token=T?module-name=../lib/evil",
            "a name, not a path",
            id="fail/name-with-slash",
        ),
        pytest.param(
            "pkcs11:token=T?module-name=%2Fusr%2Flib%2Fx",
            "a name, not a path",
            id="fail/name-encoded-slash",
        ),
        pytest.param(
            "pkcs11:token=T?module-name=a%5Cb", "a name, not a path", id="fail/name-backslash"
        ),
        pytest.param("pkcs11:token=T?module-name=..", "a name, not a path", id="fail/name-dotdot"),
        pytest.param(
            "pkcs11:token=T?module-path=lib/x.so", "not an absolute path", id="fail/relative-path"
        ),
        pytest.param("pkcs11:token=T?module-path=/a%00b", "NUL", id="fail/nul-path"),
        pytest.param(
            "pkcs11:token=T?module-name=m&module-path=/m.so",
            "both name the module",
            id="fail/name-and-path",
        ),
        pytest.param("pkcs11:?pin-source=/p", "must name its token", id="fail/no-token"),
    ],
)
def test_refusals(text: str, complaint: str) -> None:
    with pytest.raises(UriError) as caught:
        Pkcs11Uri.parse(text)
    assert complaint in caught.value.message
    assert caught.value.title == "Bad PKCS#11 URI"
    assert caught.value.exit_code == 3


def test_pin_source_and_pin_value_together_are_refused_even_when_allowed() -> None:
    with pytest.raises(UriError, match="both give the PIN") as caught:
        Pkcs11Uri.parse("pkcs11:token=T?pin-source=/p&pin-value=1234", allow_pin_value=True)
    assert "1234" not in caught.value.message


def test_refusal_messages_never_repeat_a_pin_value() -> None:
    for text in (
        "pkcs11:token=T?pin-value=SECRETPIN&bogus=1",
        "pkcs11:token=T?pin-value=SECRETPIN&pin-value=SECRETPIN",
        "pkcs11:token=T?pin-value=SECRET PIN",
        "pkcs11:token=T;slot-id=1?pin-value=SECRETPIN",
    ):
        with pytest.raises(UriError) as caught:
            Pkcs11Uri.parse(text, allow_pin_value=True)
        assert "SECRET" not in caught.value.message, caught.value.message
    assert redact("pkcs11:token=T?module-name=m&pin-value=abc") == (
        "pkcs11:token=T?module-name=m&pin-value=***"
    )


def test_query_attributes_are_the_rfc_7512_ones() -> None:
    assert QUERY_ATTRS == ("pin-source", "pin-value", "module-name", "module-path")


def test_with_type_keeps_the_query() -> None:
    uri = Pkcs11Uri.parse(f"pkcs11:token=T;object=k;type=private?module-path={SOFTHSM}")
    public = uri.with_type("public")
    assert public.module_path == SOFTHSM
    assert public.type == "public"
