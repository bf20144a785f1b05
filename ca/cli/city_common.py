"""What the ``jtca city`` commands share: one round trip to the service as the officer of this
machine's session (``jtca login``), output, and the JSON shape of a key."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ca.clock import iso_utc
from ca.ops.base import Model, Operation

if TYPE_CHECKING:
    from ca.ops.city import KeyView

Req = TypeVar("Req", bound=Model)
Res = TypeVar("Res", bound=Model)

# the times of a key view, written ISO-8601 UTC in --json output
KEY_TIMES: Final = frozenset(
    {
        "not_before",
        "not_after",
        "delivered_at",
        "installed_at",
        "activated_at",
        "first_use",
        "last_use",
        "supersede_at",
        "destroy_after",
        "destroyed_at",
    }
)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def call(
    args: argparse.Namespace,
    op: Operation[Req, Res],
    request: Req,
    options: Mapping[str, str] | None = None,
) -> Res:
    """``op`` at the service, as the officer of this machine's session (an operation that needs
    one is not sent without it). A refusal that names a request field (``city abc: …``) is said
    with the command's option for that field instead (``--city abc: …``), as ``options`` maps
    them."""
    from ca.cli import desk
    from ca.client.http import ServiceError

    client = desk.connect()
    try:
        return desk.call(op, request, client)
    except ServiceError as exc:
        if exc.field and options:
            _say_option(exc, options)
        raise
    finally:
        client.close()


def _say_option(exc: Any, options: Mapping[str, str]) -> None:
    field: str = exc.field
    option = options.get(field.split("[", 1)[0])
    if option is None:
        return
    for lead in (f"{field} ", f"{field}:"):
        if exc.message.startswith(lead):
            exc.message = option + exc.message[len(field) :]
            exc.args = (exc.message,)
            return


def key_json(view: KeyView) -> dict[str, Any]:
    """A key as ``--json`` has always written it: ``class``, times ISO-8601 UTC."""
    data: dict[str, Any] = {}
    for name, value in view.model_dump().items():
        if name in KEY_TIMES and value is not None:
            value = iso_utc(value)
        data["class" if name == "key_class" else name] = value
    return data
