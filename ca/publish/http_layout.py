"""The published folder laid out by URL (issue #16, point 1), so any web server can serve it.

Beside the publisher's own files (``<type>.der``, ``<type>.json``, ``archive/...``), each
publication keeps, under ``<published>/lists/``:

- ``lists/<type>/<sequence>.der`` — every recorded version, its modification time set to its
  thisUpdate (a web server's Last-Modified); immutable once written;
- ``lists/<type>/current.der`` — the newest recorded version (for servers without the map);
- ``lists/<type>/index.json`` — every version: sequence, SM3, SHA-256, thisUpdate, nextUpdate,
  URL; the same document ``GET /lists/{type}/index.json`` of the service answers;
- ``lists/nginx-lists.conf`` — the ``map`` blocks docs/deploy/nginx-jtca-lists.conf includes:
  ``/lists/<type>`` → the current version's file, each URL → its ETag (``"<SM3 hex>"``), the
  current version's lifetime (nextUpdate - thisUpdate) and its nextUpdate as an HTTP date.

nginx serves ``/lists/<type>`` from the file the map names, so until it is reloaded it keeps
serving the previous version whole, with that version's headers: bytes and headers always agree.
Every file is written with ``ca.core.files.write_atomically``; a version file is written only for a
version recorded in the database (recorded before served). ``sync`` rebuilds whatever is
missing or not the recorded bytes; the publisher calls it after each run, from its repair and
from its recovery. Pure file work over records the caller reads: no token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

from ca.core.files import write_atomically
from ca.lists.asn1 import ListType
from ca.store.models import ListVersion

LISTS: Final = "lists"
CURRENT: Final = "current.der"
INDEX: Final = "index.json"
NGINX_MAP: Final = "nginx-lists.conf"
TEMP_SUFFIX: Final = ".tmp"
ARCHIVED_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
INDEX_CACHE_CONTROL: Final = "no-cache"
LIST_MEDIA_TYPE: Final = "application/octet-stream"


def type_dir(out_dir: Path, list_type: ListType) -> Path:
    return out_dir / LISTS / list_type.value


def version_file(out_dir: Path, list_type: ListType, sequence: int) -> Path:
    return type_dir(out_dir, list_type) / f"{sequence}.der"


def current_file(out_dir: Path, list_type: ListType) -> Path:
    return type_dir(out_dir, list_type) / CURRENT


def index_file(out_dir: Path, list_type: ListType) -> Path:
    return type_dir(out_dir, list_type) / INDEX


def nginx_map_file(out_dir: Path) -> Path:
    return out_dir / LISTS / NGINX_MAP


def etag(sm3_hex: str) -> str:
    """The strong ETag of a list version: its SM3, hex, quoted (RFC 9110 §8.8.3)."""
    return f'"{sm3_hex}"'


def http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def index_document(list_type: ListType, rows: Sequence[ListVersion]) -> bytes:
    """``index.json`` of ``list_type``: its versions, oldest first, and the current sequence."""
    versions: list[dict[str, Any]] = [
        {
            "sequence": row.sequence,
            "sm3": row.sm3,
            "sha256": row.sha256,
            "this_update": row.this_update,
            "next_update": row.next_update,
            "entries": row.entries,
            "emergency": row.emergency,
            "url": f"/lists/{list_type.value}/{row.sequence}",
        }
        for row in sorted(rows, key=lambda r: r.sequence)
    ]
    document = {
        "list_type": list_type.value,
        "current": versions[-1]["sequence"] if versions else None,
        "current_url": f"/lists/{list_type.value}",
        "versions": versions,
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")


def nginx_map(newest: dict[ListType, ListVersion], rows: Iterable[ListVersion]) -> bytes:
    """The ``map`` blocks of docs/deploy/nginx-jtca-lists.conf (http context)."""
    lines = [
        "# Written by the jtca publisher at each publication (ca/publish/http_layout.py):",
        "# do not edit. Reload nginx after it changes (docs/lists.md, Distribution over HTTP).",
        "map $uri $jtca_list_current {",
        '    default "";',
    ]
    for list_type, row in sorted(newest.items()):
        lines.append(f"    /lists/{list_type.value} {row.sequence}.der;")
    lines += ["}", "map $uri $jtca_list_etag {", '    default "";']
    for list_type, row in sorted(newest.items()):
        lines.append(f'    /lists/{list_type.value} "\\"{row.sm3}\\"";')
    for row in sorted(rows, key=lambda r: (r.list_type, r.sequence)):
        lines.append(f'    /lists/{row.list_type}/{row.sequence} "\\"{row.sm3}\\"";')
    lines += ["}", "map $uri $jtca_list_lifetime {", "    default 0s;"]
    for list_type, row in sorted(newest.items()):
        lines.append(f"    /lists/{list_type.value} {max(0, row.next_update - row.this_update)}s;")
    lines += ["}", "map $uri $jtca_list_expires {", '    default "";']
    for list_type, row in sorted(newest.items()):
        lines.append(f'    /lists/{list_type.value} "{http_date(row.next_update)}";')
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _write_version(path: Path, data: bytes, this_update: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data)
    os.utime(path, (this_update, this_update))  # Last-Modified of a web server: thisUpdate


def _replace_if_changed(path: Path, data: bytes) -> bool:
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data)
    return True


def sync(
    out_dir: Path,
    rows_by_type: dict[ListType, list[ListVersion]],
    bytes_of: Callable[[ListVersion], bytes | None],
) -> list[str]:
    """Make ``<out_dir>/lists`` hold every recorded version of ``rows_by_type`` (all the list
    types: the map names them all), the current file and index of each type and the nginx map.
    ``bytes_of`` gives a recorded version's checked bytes (None: nothing holds them; that
    version's file is left missing and so is not served). Returns the paths written, relative
    to ``out_dir``. Call it with the folder's lock held."""
    written: list[Path] = []
    newest: dict[ListType, ListVersion] = {}
    served: list[ListVersion] = []
    for list_type, rows in rows_by_type.items():
        ordered = sorted(rows, key=lambda r: r.sequence)
        for row in ordered:
            path = version_file(out_dir, list_type, row.sequence)
            # the newest checked byte for byte; older ones were checked when written
            whole = path.is_file() and (row is not ordered[-1] or _sha256_of(path) == row.sha256)
            if not whole:
                data = bytes_of(row)
                if data is None:
                    continue
                _write_version(path, data, row.this_update)
                written.append(path)
            served.append(row)
            newest[list_type] = row
        top = newest.get(list_type)
        if top is None:
            continue
        current = current_file(out_dir, list_type)
        if _sha256_of(current) != top.sha256:
            data = version_file(out_dir, list_type, top.sequence).read_bytes()
            _write_version(current, data, top.this_update)
            written.append(current)
        if _replace_if_changed(index_file(out_dir, list_type), index_document(list_type, rows)):
            written.append(index_file(out_dir, list_type))
    if newest and _replace_if_changed(nginx_map_file(out_dir), nginx_map(newest, served)):
        written.append(nginx_map_file(out_dir))
    return [p.relative_to(out_dir).as_posix() for p in written]


def strays(out_dir: Path, newest: dict[ListType, int]) -> list[Path]:
    """What a dead run may have left under ``<out_dir>/lists``: temporary files, and version
    files above the newest recorded sequence of their type (``newest``: type → sequence)."""
    found: list[Path] = []
    folders = [out_dir / LISTS] + [type_dir(out_dir, t) for t in ListType]
    for folder in folders:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    found.append(folder / name)
    for list_type in ListType:
        top = newest.get(list_type, 0)
        with contextlib.suppress(OSError):
            for name in os.listdir(type_dir(out_dir, list_type)):
                number = name[: -len(".der")]
                if name.endswith(".der") and number.isdigit() and int(number) > top:
                    found.append(type_dir(out_dir, list_type) / name)
    return found
