"""The signing policy file (``policies/signing.toml``): validated, pure (no I/O).

``parse_signing_policy(text)`` returns plain data; ``ca`` turns it into the token layer's
objects. Every error names the key and the problem.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, Final

INPUTS: Final = frozenset({"message", "digest"})
OUTPUTS: Final = frozenset({"raw", "der"})


class PolicyFileError(Exception):
    """A policy file that does not validate; ``key`` is the dotted path of the culprit."""

    title = "Bad policy file"
    exit_code = 3

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.message = f"{key}: {problem}"
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class MechanismEntry:
    vendor: str
    mechanism: int
    input: str
    output: str


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    vendor_mechanisms: tuple[MechanismEntry, ...]
    host_assisted: dict[str, bool]

    def host_assisted_allowed(self, key_class: str) -> bool:
        """Unknown classes are refused: a class must be named to be allowed."""
        return self.host_assisted.get(key_class, False)


def parse_signing_policy(text: str) -> SigningPolicy:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError("(file)", f"not valid TOML: {exc}") from None
    unknown = set(doc) - {"vendor_mechanism", "host_assisted"}
    if unknown:
        raise PolicyFileError(sorted(unknown)[0], "unknown section")
    entries = []
    raw_entries = doc.get("vendor_mechanism", [])
    if not isinstance(raw_entries, list):
        raise PolicyFileError(
            "vendor_mechanism", "must be an array of tables ([[vendor_mechanism]])"
        )
    seen: set[int] = set()
    for i, raw in enumerate(raw_entries):
        entries.append(_entry(f"vendor_mechanism[{i}]", raw, seen))
    host = doc.get("host_assisted", {})
    if not isinstance(host, dict):
        raise PolicyFileError("host_assisted", "must be a table of key class = true/false")
    for name, value in host.items():
        if not isinstance(value, bool):
            raise PolicyFileError(f"host_assisted.{name}", f"must be true or false, got {value!r}")
    return SigningPolicy(tuple(entries), dict(host))


def _entry(where: str, raw: Any, seen: set[int]) -> MechanismEntry:
    if not isinstance(raw, dict):
        raise PolicyFileError(where, "must be a table")
    extra = set(raw) - {"vendor", "mechanism", "input", "output"}
    if extra:
        raise PolicyFileError(f"{where}.{sorted(extra)[0]}", "unknown key")
    vendor = raw.get("vendor")
    if not isinstance(vendor, str) or not vendor:
        raise PolicyFileError(f"{where}.vendor", "must be a non-empty string")
    mechanism = raw.get("mechanism")
    if not isinstance(mechanism, int) or isinstance(mechanism, bool) or not 0 < mechanism < 2**32:
        raise PolicyFileError(
            f"{where}.mechanism", f"must be a 32-bit mechanism number, got {mechanism!r}"
        )
    if mechanism < 0x80000000:
        raise PolicyFileError(
            f"{where}.mechanism", f"0x{mechanism:08x} is not in the vendor range (≥ 0x80000000)"
        )
    if mechanism in seen:
        raise PolicyFileError(f"{where}.mechanism", f"0x{mechanism:08x} is listed twice")
    seen.add(mechanism)
    kind = raw.get("input")
    if kind not in INPUTS:
        raise PolicyFileError(f"{where}.input", f"must be one of {sorted(INPUTS)}, got {kind!r}")
    output = raw.get("output", "raw")
    if output not in OUTPUTS:
        raise PolicyFileError(
            f"{where}.output", f"must be one of {sorted(OUTPUTS)}, got {output!r}"
        )
    return MechanismEntry(vendor, mechanism, kind, output)
