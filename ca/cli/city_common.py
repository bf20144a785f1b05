"""What the ``jtca city`` commands share: one round trip to the service as the officer of this
machine's session (``jtca login``), output, and the JSON shape of a key."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ca.core.clock import iso_utc
from ca.core.errors import BadInput
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
    *,
    progress: bool = False,
) -> Res:
    """``op`` at the service, as the officer of this machine's session (an operation that needs
    one is not sent without it). A refusal that names a request field (``city abc: …``) is said
    with the command's option for that field instead (``--city abc: …``), as ``options`` maps
    them. With ``progress``, long work draws a bar on a terminal (``ca.cli.progress.awaited``)."""
    from ca.cli import desk
    from ca.client.http import ServiceError

    client = desk.connect()
    try:
        if progress:
            if op.officer:
                desk.signed_in(client, op.name)
            return desk.call_with_progress(client, op, request, args)
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


KEY_HELP: Final = "a key's id or its label (city-card-440100-g1)"


def key_ids(args: argparse.Namespace, refs: Sequence[str], option: str = "KEY") -> list[int]:
    """The ids of the keys ``refs`` name, each an id (``7``) or a label (``city-qr-440100-g1``;
    a label's unique beginning, ``city-qr-440100``, too). A label is found through the
    service's own key page, in the officer's scope; one that matches no key, or several, is
    refused naming it (and the keys it matches)."""
    ids: list[int] = []
    for ref in refs:
        text = ref.strip()
        if text.isdigit():
            ids.append(int(text))
            continue
        if not text:
            raise BadInput(f"{option} {ref!r}: a key's id or label")
        ids.append(_key_by_label(args, text, option))
    return ids


def _key_by_label(args: argparse.Namespace, label: str, option: str) -> int:
    from ca.ops import city as ops

    found = call(args, ops.PAGE, ops.PageRequest(text=label, sort="label", limit=500)).keys
    exact = [k for k in found if k.label == label]
    if len(exact) == 1:
        return exact[0].id
    starting = exact or [k for k in found if k.label.startswith(label)]
    if len(starting) == 1:
        return starting[0].id
    if not starting:
        raise BadInput(f"{option} {label}: no key has this label (or it is outside your scope)")
    named = ", ".join(f"{k.label} (key {k.id})" for k in starting[:6])
    more = f" and {len(starting) - 6} more" if len(starting) > 6 else ""
    raise BadInput(f"{option} {label}: {len(starting)} keys match it: {named}{more}; name one")
