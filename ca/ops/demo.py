"""Operations of the demo (``jtca demo``): seeding a fresh embedded service with the demo world's
history (``ca.demo.seed``). Refused on a service that is not the embedded default or whose
database already holds anything: demo officers and their secrets never reach a real authority.

The seed leaves the officers without certificates: the demo's client then makes each officer's
personal token, enrols its key (``officer.enrol``) and does the day's work as signed requests of
those officers (``ca.demo.officer_work``; docs/officers.md, "The demo")."""

from __future__ import annotations

from typing import Final

from ca.ops.base import Empty, Model, operation

# In the demo state folder, mode 0600 (the format: ca/demo/credentials.py, docs/officers.md)
CREDENTIALS: Final = "demo-credentials.json"


class DemoStatus(Model):
    seeded: bool  # the service seeded the demo world's history into this state folder
    # where the demo officers' sign-in secrets are (demo-credentials.json), if seeded; its
    # "stage" says whether the demo's client has finished ("complete")
    credentials: str | None


class Seeded(Model):
    # the state folder's demo-credentials.json: the demo root share quorum and the officers,
    # stage "seeded" (no PINs yet: the client makes the tokens and writes them there)
    credentials: str
    officers: list[str]  # the demo officers registered, by id; none holds a certificate yet


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
    "seed the demo world's history (only on an empty embedded service)",
    officer=False,
)
