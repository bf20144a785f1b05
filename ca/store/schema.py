"""Schema revisions: where the database stands against the code's migrations.

Migrations are run by ``jtca db upgrade`` (and by the embedded default's own service), never by
every process that opens the database. A database newer than the code is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ca.store.db import StoreError, alembic_config, migrate


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # the database's revision, None for an empty database
    head: str  # the newest revision this code knows
    known: bool  # whether the code knows the database's revision

    @property
    def current_is_head(self) -> bool:
        return self.current == self.head

    @property
    def ahead(self) -> bool:
        return self.current is not None and not self.known


def _script(engine: Engine) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(engine))


def check_schema(engine: Engine) -> SchemaState:
    script = _script(engine)
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StoreError("no migrations found in the installed package")
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaState(current=current, head=head, known=known)


def upgrade(engine: Engine) -> SchemaState:
    """Bring the schema to the newest revision; refuse a database newer than the code."""
    found = check_schema(engine)
    if found.ahead:
        raise StoreError(
            f"the database is at revision {found.current}, newer than this jtca "
            f"(knows {found.head}): upgrade jtca, never downgrade the database"
        )
    if not found.current_is_head:
        migrate(engine)
    return check_schema(engine)
