"""Token backup and restore at a site, safe against a power cut (issue #14).

``jtca token backup`` and ``jtca token restore`` are the local token tool's (``ca.cli.token``):
no database, so their intents are the site's own journal (``ca.site.journal``).

- **Backup** writes nothing to the token; its one file is the archive, written atomically (a
  temporary ``.<name>.<random>.tmp`` in the same folder, fsync'd, renamed). The intent names the
  archive and its temporaries before the write; a cut leaves at most a stray temporary, which the
  next backup (into any folder) and ``jtca recover`` remove.
- **Restore** names, before the first key is installed, the token and every key of the archive
  (label, kind, public point or check value) and the replay markers it will make. A rerun with
  the same archive takes the cut run's intent over and adopts the keys already restored that
  are the archive's (``hsm.backup.restore_token(adopt=True)``), installs the rest, and never
  says 'Duplicate key label' (a token that already holds the archive's keys, restored before,
  has them adopted the same way); a rerun with another archive first rolls the cut one back.
  ``jtca recover`` has no custodians' shares, so it cannot install what is missing: it rolls
  forward a restore whose every key is already in the token (completing the replay markers,
  which need no shares) and rolls back any other (destroying the archive's keys the cut run
  installed — only keys that prove to be the archive's, never another key under its label).

CKA_IDs: a restored key's id is made by the token layer as it installs the key
(``KeyStore.install_key``), so the plan names each key by label and public part, and each id is
noted in the intent's progress as soon as the key exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ca.core.errors import BadInput, JtcaError
from ca.core.files import stray_temporaries, write_atomically
from ca.core.owners import this_owner
from ca.site.journal import SiteIntent, site_journal
from ca.site.recovery import (
    ROLLED_BACK,
    ROLLED_FORWARD,
    SiteContext,
    recover_site,
    site_recoverer,
)
from hsm.backup import (
    ArchivedKey,
    Backup,
    KeysTrack,
    backup_token,
    holds,
    restore_markers,
    restore_token,
    verify_archive,
)
from hsm.crashpoints import crash_point
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey

BACKUP_OP: Final = "token.backup"
RESTORE_OP: Final = "token.restore"
COMPLETED: Final = "completed"


def site_context() -> SiteContext:
    """This client's journal, as ``jtca recover`` finds it (ca.site.recovery)."""
    from ca.client.config import has_state, state_dir

    state = state_dir() if has_state(state_dir()) else None

    def vault() -> Any:
        from ca.vault.site import SiteVault

        return SiteVault(state=state)

    def client() -> Any:
        from ca.cli.desk import connect

        return connect()

    return SiteContext(site_journal(state), state, int(time.time()), vault, client)


# -- backup --------------------------------------------------------------------------------
def _temporaries(folder: Path, name: str) -> list[Path]:
    """The temporary files of ``name`` a dead writer left in ``folder``."""
    return stray_temporaries(folder, name)


def write_archive(path: Path, data: bytes) -> None:
    """``ca.core.files.write_atomically`` (mode 0600: wrapped keys only, but the custodians'
    business), with this operation's own crash point between the temporary file and its
    rename."""
    write_atomically(path, data, mode=0o600, crash=f"{BACKUP_OP}:before-rename")


def backup_into(
    store: KeyStore,
    out: Path,
    *,
    threshold: int,
    custodians: int,
    show: Callable[[Backup], None],
    track: KeysTrack | None = None,
) -> Backup:
    """Back the token up into ``out``; ``show`` hands the shares out; ``track`` sees the keys
    go by (``backup_token``). What a cut backup left (a stray temporary) is removed first."""
    ctx = site_context()
    recover_site(ctx, BACKUP_OP)
    target = out.absolute()
    if not target.parent.is_dir():
        raise BadInput(f"cannot write {out}: no folder {target.parent}")
    plan = {
        "token": store.token.label,
        "archive": str(target),
        "temporaries": f".{target.name}.*.tmp",
    }
    intent = ctx.journal.begin(BACKUP_OP, str(target), plan, now=ctx.now)
    try:
        backup = backup_token(store, threshold=threshold, custodians=custodians, track=track)
        # the archive's digest, so recovery knows it from an earlier one at the same path
        intent = ctx.journal.note(intent, writing=hashlib.sha256(backup.archive).hexdigest())
        crash_point(f"{BACKUP_OP}:before-write")
        write_archive(target, backup.archive)
        crash_point(f"{BACKUP_OP}:after-write")
        show(backup)
    except BaseException as exc:
        for stray in _temporaries(target.parent, target.name):
            stray.unlink(missing_ok=True)
        ctx.journal.end(intent, state=ROLLED_BACK, outcome=f"failed: {exc}"[:500])
        raise
    ctx.journal.end(intent, state=COMPLETED, outcome=f"archive {target} written")
    return backup


@site_recoverer(BACKUP_OP)
def recover_backup(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
    """A cut backup: its stray temporaries removed. The archive itself, when it was renamed
    into place, is whole (and useless without its shares, which may never have been shown)."""
    target = Path(str(intent.plan.get("archive", "")))
    removed = _temporaries(target.parent, target.name) if target.name else []
    for stray in removed:
        stray.unlink(missing_ok=True)
    written = intent.progress.get("writing")
    whole = (
        bool(written)
        and target.is_file()
        and hashlib.sha256(target.read_bytes()).hexdigest() == written
    )
    if whole:
        result = ROLLED_FORWARD
        outcome = (
            f"archive {target} is whole; if its shares were not shown, make a new backup "
            f"({len(removed)} stray temporary file(s) removed)"
        )
    else:
        result = ROLLED_BACK
        outcome = f"no archive written; {len(removed)} stray temporary file(s) removed"
    ctx.journal.end(intent, state=result, outcome=outcome)
    return result, outcome


# -- restore -------------------------------------------------------------------------------
def _archived(plan: Any) -> list[ArchivedKey]:
    keys = []
    for entry in plan.get("keys", []):
        keys.append(
            ArchivedKey(
                label=str(entry["label"]),
                kind=KeyKind(str(entry["kind"])),
                public_key=entry.get("public_key"),
                check_value=entry.get("check_value"),
            )
        )
    return keys


def _open_target(plan: Any) -> KeyStore:
    """The token a restore's intent names, opened as the restore opened it (a PIN source that
    is a prompt cannot be used by recovery)."""
    from ca.vault.embedded import embedded_token
    from hsm.pkcs11.softhsm2 import use_softhsm
    from hsm.pkcs11.token import Token, pin_source_from_spec

    label = str(plan["token"])
    module, pin_source = plan.get("module"), plan.get("pin_source")
    state = Path(str(plan.get("state") or "state"))
    if module is None and pin_source is None:
        return embedded_token(label, state, create=False).store
    if module is None:
        use_softhsm(state / "softhsm2")
    if not pin_source or pin_source == "prompt":
        raise JtcaError(
            f"token {label!r} is opened with a PIN typed at a prompt: run `jtca token restore` "
            "again (with the same archive it finishes the cut one)"
        )
    return KeyStore(Token(label, pin_source_from_spec(str(pin_source)), module=module))


def _roll_back(store: KeyStore, plan: Any) -> list[str]:
    """Destroy the archive's keys the token holds (only keys that prove to be the archive's)."""
    present = {k.label: k for k in store.list_keys()}
    destroyed = []
    for archived in _archived(plan):
        key = present.get(archived.label)
        if key is not None and holds(store, key, archived):
            crash_point(f"{RESTORE_OP}:recover-before-destroy")
            store.destroy(key.uri)
            destroyed.append(str(key.uri))
    return destroyed


def restore_into(
    store: KeyStore,
    archive_path: Path,
    archive: bytes,
    shares: list[str],
    *,
    module: str | None,
    pin_source: str | None,
    state: Path,
    advance: Callable[[int, int], None] | None = None,
) -> tuple[list[TokenKey], dict[str, list[str]]]:
    """Restore ``archive`` into ``store``'s token under an intent; a cut restore of the same
    token is finished (same archive) or rolled back first (another archive). Returns the keys
    and ``{"installed": [labels], "adopted": [labels]}``. ``advance(done, total)`` is called
    after each key (the command line's progress bar)."""
    info = verify_archive(archive, shares)
    ctx = site_context()
    subject = store.token.label
    plan = {
        "token": subject,
        "module": module,
        "pin_source": pin_source if pin_source and pin_source != "prompt" else None,
        "state": str(state.absolute()),
        "archive": str(archive_path.absolute()),
        "archive_sha256": info.sha256,
        "keys": [k.as_plan() for k in info.keys],
        "imported_packages": info.imported_packages,
    }
    intent: SiteIntent | None = None
    for orphan in ctx.journal.orphaned(now=ctx.now, operation=RESTORE_OP):
        if orphan.subject != subject:
            continue
        if intent is None and orphan.plan.get("archive_sha256") == info.sha256:
            # the cut run of this very restore: carried on under its own intent
            taken = dataclasses.replace(orphan, owner=this_owner(), began_at=ctx.now)
            intent = ctx.journal.note(taken, resumed_at=ctx.now)
            continue
        destroyed = _roll_back(store, orphan.plan)
        ctx.journal.end(
            orphan,
            state=ROLLED_BACK,
            outcome=f"another archive restored instead; {len(destroyed)} key(s) destroyed",
        )
    resumed = intent is not None
    current = [intent or ctx.journal.begin(RESTORE_OP, subject, plan, now=ctx.now)]
    crash_point(f"{RESTORE_OP}:after-intent")
    done: dict[str, list[str]] = {"installed": [], "adopted": []}

    def step(what: str, key: TokenKey) -> None:
        done[what].append(key.label)
        ids = dict(current[0].progress.get(what) or {})
        ids[key.label] = key.key_id.hex()
        current[0] = ctx.journal.note(current[0], **{what: ids})
        if advance is not None:
            advance(len(done["installed"]) + len(done["adopted"]), len(info.keys))

    try:
        keys = restore_token(store, archive, shares, progress=step, adopt=True)
    except BaseException as exc:
        # all or nothing: what this call installed is gone already; what the cut run left goes
        destroyed = _roll_back(store, current[0].plan) if resumed else []
        ctx.journal.end(
            current[0],
            state=ROLLED_BACK,
            outcome=f"failed ({exc}); {len(destroyed)} key(s) of the cut run destroyed"[:500],
        )
        raise
    crash_point(f"{RESTORE_OP}:before-end")
    ctx.journal.end(
        current[0],
        state=COMPLETED,
        outcome=f"{len(done['installed'])} key(s) installed, {len(done['adopted'])} adopted",
    )
    return keys, done


@site_recoverer(RESTORE_OP)
def recover_restore(ctx: SiteContext, intent: SiteIntent) -> tuple[str, str]:
    """A cut restore, with no shares at hand: rolled forward when every key of the archive is
    in the token already (the replay markers completed), else rolled back."""
    store = _open_target(intent.plan)
    try:
        present = {k.label: k for k in store.list_keys()}
        archived = _archived(intent.plan)
        whole = all(
            a.label in present
            and (a.kind != KeyKind.SM2 or present[a.label].public_key is not None)
            and holds(store, present[a.label], a)
            for a in archived
        )
        if whole:
            markers = [str(p) for p in intent.plan.get("imported_packages", [])]
            made = restore_markers(store, markers)
            result = ROLLED_FORWARD
            outcome = (
                f"all {len(archived)} key(s) of the archive were in token {store.token.label}; "
                f"{made} replay marker(s) completed"
            )
        else:
            destroyed = _roll_back(store, intent.plan)
            result = ROLLED_BACK
            outcome = (
                f"{len(destroyed)} partially restored key(s) destroyed from token "
                f"{store.token.label}; run `jtca token restore` again with the custodians' shares"
            )
    finally:
        store.token.close()
    ctx.journal.end(intent, state=result, outcome=outcome)
    return result, outcome
