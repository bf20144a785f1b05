"""Operations of the demo (``jtca demo``): seeding a fresh embedded service with the demo world
(``ca.demodata``). Refused on a service that is not the embedded default or whose database
already holds anything: demo officers and their PINs never reach a real authority."""

from __future__ import annotations

from typing import Final

from ca.ops.base import Empty, Model, operation

CREDENTIALS: Final = "demo-credentials.json"  # in the service's state folder (mode 0600)


class DemoStatus(Model):
    seeded: bool  # the demo world is there (seeded by this service's state folder)
    credentials: str | None  # where the demo officers' sign-in secrets are, if seeded


class Seeded(Model):
    credentials: str  # the service's state folder's demo-credentials.json
    officers: list[str]  # the demo officers, who sign in with the secrets in that file


STATUS = operation(
    "demo.status",
    Empty,
    DemoStatus,
    "whether this service holds the demo world",
    mutating=False,
    officer=False,
)

SEED = operation(
    "demo.seed",
    Empty,
    Seeded,
    "seed the demo world (only on an empty embedded service)",
    officer=False,
)
