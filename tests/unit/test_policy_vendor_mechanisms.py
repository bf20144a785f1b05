"""The policy's vendor mechanism table and PKCS#11 URI switch (issue #15, points 4 and 5):
entries name the maker and model they are for; every parse error names its field."""

from __future__ import annotations

import pytest

from policies.rules import DEFAULT_POLICY_PATH, PolicyFileError, UriPolicy, parse_policy

TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
TASS = 'vendor = "TASS/Koal"\nmanufacturer = "TASS"\nmodel = "*"\n'


def edit(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


def test_shipped_table_names_maker_and_model_for_every_entry() -> None:
    policy = parse_policy(TEXT)
    table = {(m.vendor, m.manufacturer, m.model, m.mechanism) for m in policy.vendor_mechanisms}
    assert table == {
        ("Sansec", "Sansec", "*", 0x80008102),
        ("TASS/Koal", "TASS", "*", 0x80008100),
        ("Thales Luna", "Safenet, Inc.", "*", 0x80000B22),
        ("IBM EP11", "IBM", "EP11", 0x8005000C),
    }
    assert policy.pkcs11_uri == UriPolicy(allow_pin_value=False)


def test_one_number_for_two_makers_is_two_entries() -> None:
    """Vendor numbers collide across makers: the same number may be listed for each maker."""
    text = TEXT + (
        '\n[[vendor_mechanism]]\nvendor = "Koal"\nmanufacturer = "Koal"\nmodel = "*"\n'
        'mechanism = 0x80008100\ninput = "digest"\n'
    )
    entries = parse_policy(text).vendor_mechanisms
    assert [(e.manufacturer, e.mechanism) for e in entries if e.mechanism == 0x80008100] == [
        ("TASS", 0x80008100),
        ("Koal", 0x80008100),
    ]


def test_allow_pin_value_switch() -> None:
    text = edit("allow_pin_value = false", "allow_pin_value = true")
    assert parse_policy(text).pkcs11_uri.allow_pin_value is True
    without = edit("[pkcs11_uri]\nallow_pin_value = false\n", "")
    assert parse_policy(without).pkcs11_uri.allow_pin_value is False  # the default: refused


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "missing",
            id="fail/manufacturer-missing",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "TASS"\n'),
            "vendor_mechanism[1].model",
            "model may be '*'",
            id="fail/model-missing",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "*"\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "matched exactly",
            id="fail/manufacturer-pattern",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "TA?S"\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "matched exactly",
            id="fail/manufacturer-question-mark",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = ""\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "non-empty",
            id="fail/manufacturer-empty",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = 7\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "must be a string",
            id="fail/manufacturer-number",
        ),
        pytest.param(
            edit(TASS, f'vendor = "TASS/Koal"\nmanufacturer = "{"M" * 33}"\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "at most 32 bytes",
            id="fail/manufacturer-too-long",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "TASS"\nmodel = "交通部交通部"\n'),
            "vendor_mechanism[1].model",
            "at most 16 bytes",
            id="fail/model-too-long-in-utf8",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "TASS "\nmodel = "*"\n'),
            "vendor_mechanism[1].manufacturer",
            "blanks",
            id="fail/manufacturer-padded",
        ),
        pytest.param(
            edit(TASS, 'vendor = "TASS/Koal"\nmanufacturer = "TASS"\nmodel = "*"\nmaker = "x"\n'),
            "vendor_mechanism[1].maker",
            "unknown key",
            id="fail/unknown-key",
        ),
        pytest.param(
            TEXT.replace(
                '[[vendor_mechanism]]\nvendor = "IBM EP11"\nmanufacturer = "IBM"\nmodel = "EP11"',
                '[[vendor_mechanism]]\nvendor = "IBM EP11"\nmanufacturer = "IBM"\nmodel = "EP11"'
                '\nmechanism = 0x8005000C\ninput = "message"\n\n'
                '[[vendor_mechanism]]\nvendor = "again"\nmanufacturer = "IBM"\nmodel = "EP11"',
            ),
            "vendor_mechanism[4].mechanism",
            "listed twice for manufacturer 'IBM', model 'EP11'",
            id="fail/same-maker-model-number",
        ),
        pytest.param(
            edit("mechanism = 0x80008100", "mechanism = 0x00001041"),
            "vendor_mechanism[1].mechanism",
            "2147483648",
            id="fail/not-vendor-defined",
        ),
        pytest.param(
            edit("allow_pin_value = false", 'allow_pin_value = "no"'),
            "pkcs11_uri.allow_pin_value",
            "true or false",
            id="fail/switch-text",
        ),
        pytest.param(
            edit("allow_pin_value = false", "allow_pin_value = 0"),
            "pkcs11_uri.allow_pin_value",
            "true or false",
            id="fail/switch-number",
        ),
        pytest.param(
            edit("allow_pin_value = false", "allow_pin_value = false\npin_value = 1"),
            "pkcs11_uri.pin_value",
            "unknown key",
            id="fail/switch-table-unknown-key",
        ),
    ],
)
def test_parse_errors_name_the_field(text: str, key: str, words: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text)
    assert caught.value.key == key
    assert words in caught.value.problem
    assert caught.value.message.startswith(f"{key}: ")
