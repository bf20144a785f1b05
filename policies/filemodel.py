"""Declarative models of jtca's TOML files (issue #17): the policy file and the ceremony file.

A file is read by ``policies.bounded.load_toml`` (size, depth and number limits first), then
validated by a pydantic v2 model derived from ``FileModel``: every table forbids keys it does
not declare, every value is strict (a string is no number, ``true`` is no 1), and each rule is
written once beside its field (``Annotated[int, whole(1, 30)]``). The first failure comes back
as ``(path, problem)`` with the field's path as the file spells it: ``token.custodians[2]``,
``key_classes.city-card.validity_days``, ``(file).colour`` for an unknown top-level key.

Rules across fields live in the model's ``model_validator(mode="after")`` and call ``fail``
with the path of the field they blame, relative to the table they check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

T = TypeVar("T")

MAX_KEY: Final = 64  # characters of a key shown as it is in a path (longer: shown cut short)
UNKNOWN_KEY: Final = "unknown key (a typo must not pass unnoticed)"
_RULE: Final = "jtca_rule"


class FileModel(BaseModel):
    """A table of a jtca file: unknown keys refused, types strict, values immutable."""

    # defer_build: a model's validator is built on first use, so importing costs no build
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


def shown(value: Any) -> str:
    """A value for an error message: its repr, cut short (a file may hold a long one)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def fail(problem: str, at: str = "") -> NoReturn:
    """Refuse the value being validated; ``at`` is the blamed field's path below it (``"x"``,
    ``"[2].name"``), empty for the value itself."""
    raise PydanticCustomError(_RULE, "{problem}", {"problem": problem, "at": at})


def rule(check: Callable[[Any], str | None]) -> AfterValidator:
    """A validator from a check that returns the problem (or None when the value is good)."""

    def validate(value: T) -> T:
        problem = check(value)
        if problem is not None:
            fail(problem)
        return value

    return AfterValidator(validate)


def whole(low: int, high: int) -> AfterValidator:
    """A whole number from ``low`` to ``high``."""
    return rule(
        lambda v: None if low <= v <= high else f"must be a whole number {low}-{high}, got {v}"
    )


def _key(part: str | int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    return part if 0 < len(part) <= MAX_KEY and part.isprintable() else shown(part)


def path(loc: Sequence[str | int], at: str = "") -> str:
    """``('token', 'custodians', 2)`` → ``token.custodians[2]``; a dictionary key's own
    validation (``'[key]'``) blames the key."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        piece = _key(part)
        text += piece if piece.startswith("[") or not text else f".{piece}"
    if at:
        text += at if at.startswith("[") or not text else f".{at}"
    return text or "(file)"


_TYPES: Final = {
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
}


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """The first failure of a validation as (field path, problem), with how many more."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = error["loc"]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == _RULE:
        where, problem = path(loc, str(ctx.get("at", ""))), str(ctx["problem"])
    elif kind == "extra_forbidden":
        where = path(loc) if len(loc) > 1 else f"(file).{_key(loc[0])}"
        problem = UNKNOWN_KEY
    elif kind == "missing":
        where, problem = path(loc), "missing"
    elif kind in _TYPES:
        where, problem = path(loc), f"{_TYPES[kind]}, got {shown(error['input'])}"
    else:
        where, problem = path(loc), f"{error['msg']}, got {shown(error['input'])}"
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return where, problem
