"""The signed acknowledgment's statement (issue #16, point 2): one canonical text per
statement, signatures bound to the context, the operator and the exact bytes; the service's
reading refuses anything but the canonical form, naming the field."""

from __future__ import annotations

import json

import pytest

from ca.ops.operators import (
    AckStatement,
    possession_message,
    signed_message,
    statement_text,
)
from ca.publish.acks import AckRefused, _statement
from hsm.errors import InvalidSignature
from hsm.sm.sm2 import SM2PrivateKey, raw_to_der

GOOD = {
    "operator": "gz-bus",
    "list_type": "city-list",
    "sequence": 7,
    "sm3": "0f" * 32,
    "terminals": 1200,
    "loaded_at": 1_800_000_000,
    "signed_at": 1_800_000_100,
    "nonce": "a1" * 16,
    "cities": ["440100"],
}


def test_canonical_text_round_trips() -> None:
    text = statement_text(AckStatement(**GOOD))
    assert text == json.dumps(
        {**GOOD, "v": 1}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    assert _statement(text) == AckStatement(**GOOD)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t.replace(",", ", ", 1), "canonical"),
        (lambda t: t.replace('"terminals":1200', '"terminals":-1'), "terminals"),
        (lambda t: t.replace('"sm3":"' + "0f" * 32, '"sm3":"' + "0F" * 32), "sm3"),
        (lambda t: t.replace('"v":1', '"v":2'), "version 1 only"),
        (lambda t: t.replace('"list_type":"city-list"', '"list_type":"bus-list"'), "list_type"),
        (lambda t: t.replace('"nonce":"' + "a1" * 16, '"nonce":"ab'), "nonce"),
        (lambda t: t[:-1], "not JSON"),
        (lambda t: "[1]", "a JSON object"),
        (lambda t: "[" * 3000 + "]" * 3000, "nested too deep"),
    ],
)
def test_anything_but_the_canonical_form_is_refused(change, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AckRefused) as exc:
        _statement(change(statement_text(AckStatement(**GOOD))))
    assert exc.value.title == "Bad statement"
    assert says in exc.value.message


def test_signatures_are_bound_to_context_operator_and_bytes() -> None:
    key = SM2PrivateKey.generate()
    public = key.public_key
    text = statement_text(AckStatement(**GOOD))
    signature = raw_to_der(key.sign(signed_message(text)))
    public.verify_der(signature, signed_message(text))
    with pytest.raises(InvalidSignature):  # the same text without the context
        public.verify_der(signature, text.encode())
    with pytest.raises(InvalidSignature):  # one byte changed
        public.verify_der(signature, signed_message(text.replace("1200", "1201")))
    point = public.uncompressed.hex()
    proof = raw_to_der(key.sign(possession_message("gz-bus", point)))
    public.verify_der(proof, possession_message("gz-bus", point.upper()))  # hex case is one key
    with pytest.raises(InvalidSignature):  # a proof for one operator is none for another
        public.verify_der(proof, possession_message("sz-metro", point))
    with pytest.raises(InvalidSignature):  # nor an acknowledgment
        public.verify_der(proof, signed_message(text))
