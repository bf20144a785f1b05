"""RFC 7512 PKCS#11 URIs (hsm.pkcs11.uri): how the database and the audit log name a key."""

# "token" here is a token label, not a password (S105/S106 are false positives).
# ruff: noqa: S105, S106

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.pkcs11.uri import TYPES, Pkcs11Uri, UriError

# RFC 7512 §2.3: pk11-pchar = unreserved / pk11-res-avail / pct-encoded, and ";" between
# attributes, "=" between name and value.
URI_CHARS = re.compile(r"^pkcs11:[A-Za-z0-9\-._~:\[\]@!$'()*+,=&;%]*$")


def test_round_trip_of_awkward_names() -> None:
    uri = Pkcs11Uri(
        token="MOT ROOT 交通部",
        object="qr;ca%17/a=b?c#d",
        id=bytes([0x00, 0xFF, 0x3B, 0x25, 0x2F, 0x20]),
        type="private",
        manufacturer="SoftHSM project",
        serial="0a1b 2c3d",
        model="SoftHSM v2",
    )
    text = str(uri)
    assert Pkcs11Uri.parse(text) == uri
    assert URI_CHARS.match(text), text
    # the separators of the value are percent-encoded, never left bare
    assert "object=qr%3Bca%2517%2Fa=b%3Fc%23d" in text
    assert "token=MOT%20ROOT%20%E4%BA%A4%E9%80%9A%E9%83%A8" in text
    assert "id=%00%ff%3b%25%2f%20" in text
    assert text.count(";") == 6  # seven attributes, six separators


def test_format_is_in_attribute_order_and_omits_absent_attributes() -> None:
    uri = Pkcs11Uri(token="MOT-ROOT", object="qr-ca-17", id=b"\x01\x02", type="private")
    assert str(uri) == "pkcs11:token=MOT-ROOT;object=qr-ca-17;id=%01%02;type=private"
    assert str(Pkcs11Uri(token="T")) == "pkcs11:token=T"


def test_parse_of_the_rfc_7512_style_example() -> None:
    text = (
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;"
        "manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;"
        "id=%69%95%3E%5C%F4%BD%EC%91%DE%64%A1%1A%BC%D5%74%8A%E4%4A%0F%70;serial="
    )
    uri = Pkcs11Uri.parse(text)
    assert uri.token == "The Software PKCS#11 Softtoken"
    assert uri.manufacturer == "Snake Oil, Inc."
    assert uri.model == "1.0"
    assert uri.object == "my-certificate"
    assert uri.type == "cert"
    assert uri.id == bytes.fromhex("69953E5CF4BDEC91DE64A11ABCD5748AE44A0F70")
    assert uri.serial == ""


def test_parse_accepts_attributes_in_any_order_and_unencoded_id_bytes() -> None:
    uri = Pkcs11Uri.parse("pkcs11:type=secret-key;id=ab%01;object=city-0571;token=ZJ")
    assert uri == Pkcs11Uri(token="ZJ", object="city-0571", id=b"ab\x01", type="secret-key")


@given(
    token=st.text(min_size=1, max_size=40),
    obj=st.none() | st.text(max_size=40),
    key_id=st.none() | st.binary(max_size=32),
    type_=st.none() | st.sampled_from(sorted(TYPES)),
)
def test_round_trip_property(
    token: str, obj: str | None, key_id: bytes | None, type_: str | None
) -> None:
    uri = Pkcs11Uri(token=token, object=obj, id=key_id, type=type_)
    text = str(uri)
    assert URI_CHARS.match(text), text
    assert Pkcs11Uri.parse(text) == uri


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param("token=MOT;object=k", "does not start with 'pkcs11:'", id="fail/no-prefix"),
        pytest.param("PKCS11:token=MOT", "does not start with 'pkcs11:'", id="fail/upper-prefix"),
        pytest.param("pkcs11:object=k;type=private", "must name its token", id="fail/no-token"),
        pytest.param("pkcs11:", "must name its token", id="fail/empty"),
        pytest.param("pkcs11:token=", "must name its token", id="fail/empty-token"),
        pytest.param("pkcs11:token=MOT;slot-id=1", "unknown attribute 'slot-id'", id="fail/slot"),
        pytest.param("pkcs11:token=MOT;Object=k", "unknown attribute 'Object'", id="fail/case"),
        pytest.param("pkcs11:token=A;token=B", "attribute 'token' given twice", id="fail/dup"),
        pytest.param("pkcs11:token=A;id=%01;id=%01", "'id' given twice", id="fail/dup-id"),
        pytest.param("pkcs11:token=A;object=%G1", "bad percent-encoding", id="fail/pct-nonhex"),
        pytest.param("pkcs11:token=A;object=a%4", "bad percent-encoding", id="fail/pct-short"),
        pytest.param("pkcs11:token=A;id=%", "bad percent-encoding", id="fail/pct-bare"),
        pytest.param("pkcs11:token=A%2;object=k", "bad percent-encoding", id="fail/pct-token"),
        pytest.param("pkcs11:token=A;type=secret", "unknown", id="fail/type"),
        pytest.param("pkcs11:token=A;type=Private", "unknown", id="fail/type-case"),
        pytest.param("pkcs11:token=A;object", "has no '='", id="fail/no-equals"),
        pytest.param("pkcs11:token=A?pin-value=1234", "query attributes", id="fail/query"),
        pytest.param("pkcs11:token=%FF%FE", "token is not UTF-8", id="fail/not-utf8"),
    ],
)
def test_refusals(text: str, complaint: str) -> None:
    with pytest.raises(UriError) as caught:
        Pkcs11Uri.parse(text)
    if complaint == "unknown":  # a bad type is refused with the list of good ones
        assert "is not one of" in caught.value.message
        for good in TYPES:
            assert good in caught.value.message
    else:
        assert complaint in caught.value.message
    assert caught.value.title == "Bad PKCS#11 URI"


def test_constructor_refuses_what_parse_refuses() -> None:
    with pytest.raises(UriError, match="must name its token"):
        Pkcs11Uri(token="")
    with pytest.raises(UriError, match="is not one of"):
        Pkcs11Uri(token="T", type="privat")


def test_with_type_changes_only_the_type() -> None:
    uri = Pkcs11Uri(
        token="MOT",
        object="k",
        id=b"\x07",
        type="private",
        manufacturer="M",
        serial="S",
        model="X",
    )
    public = uri.with_type("public")
    assert public.type == "public"
    assert (public.token, public.object, public.id) == ("MOT", "k", b"\x07")
    assert (public.manufacturer, public.serial, public.model) == ("M", "S", "X")
    assert uri.type == "private"  # a new value; the original is untouched
    assert str(public) == str(uri).replace("type=private", "type=public")
    assert Pkcs11Uri(token="MOT", object="k").with_type("secret-key").type == "secret-key"
    with pytest.raises(UriError):
        uri.with_type("key")


def test_uris_are_values() -> None:
    a = Pkcs11Uri.parse("pkcs11:token=T;object=k;id=%01")
    b = Pkcs11Uri(token="T", object="k", id=b"\x01")
    assert a == b
    assert hash(a) == hash(b)
    assert a != b.with_type("private")
    with pytest.raises(AttributeError):
        a.token = "other"  # type: ignore[misc]
