"""What an operation is: a name, a typed request, a typed result.

``Operation("city.apply", ApplyRequest, Application, ...)`` is served at ``POST /v1/city/apply``,
reads included (a typed JSON body, never a query string to parse; the distribution endpoints for
terminals and health checks are plain ``GET``); the request and result are pydantic models with
unknown fields forbidden, so a client and the service agree on every field or the request is refused
with the field's path (RFC 9457 problem details, see ``ca.api.problems``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator

API_PREFIX: Final = "/v1"
INT_MIN: Final = -(2**63)  # every integer fits a 64-bit column (SQLite, PostgreSQL BIGINT)
INT_MAX: Final = 2**63 - 1


class Model(BaseModel):
    """A request or result: immutable, unknown fields refused, bytes as base64 in JSON."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _integers_fit_64_bits(cls, value: object) -> object:
        """An integer no database column can hold is refused here, naming its field, before
        any use case turns it into a query (JSON numbers have no size limit)."""
        _check_int_range(value)
        return value


def _check_int_range(value: object) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"an integer from {INT_MIN} to {INT_MAX}")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_int_range(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_int_range(item)


class Empty(Model):
    """A request that carries nothing, or a result that says only 'done'."""


Req = TypeVar("Req", bound=Model)
Res = TypeVar("Res", bound=Model)


@dataclass(frozen=True, slots=True)
class Operation(Generic[Req, Res]):
    """One use case of the authority.

    ``mutating`` operations change state (policy, dual control and audit apply); ``officer``
    says whether an officer must be named (signed in) to call it.
    """

    name: str
    request: type[Req]
    result: type[Res]
    summary: str
    mutating: bool = True
    officer: bool = True

    @property
    def path(self) -> str:
        return API_PREFIX + "/" + self.name.replace(".", "/")

    @property
    def area(self) -> str:
        return self.name.split(".", 1)[0]


OPERATIONS: dict[str, Operation[Model, Model]] = {}


def operation(
    name: str,
    request: type[Req],
    result: type[Res],
    summary: str,
    *,
    mutating: bool = True,
    officer: bool = True,
) -> Operation[Req, Res]:
    """Declare an operation (once per name) and register it."""
    if name in OPERATIONS:
        raise ValueError(f"operation {name} is declared twice")
    op = Operation(name, request, result, summary, mutating=mutating, officer=officer)
    OPERATIONS[name] = op  # type: ignore[assignment]
    return op
