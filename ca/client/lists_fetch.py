"""An operator's reference client for lists over HTTP (issue #16, point 2: ``jtca operator
fetch``): a conditional GET of ``/lists/{type}`` from the service or any mirror serving the
published folder (nginx with docs/deploy/nginx-jtca-lists.conf), the terminal's checks of a new
list, and its atomic install.

The folder ``--out`` holds, per list type:

- ``<type>.der`` — the list installed (what terminals load);
- ``<type>.http.json`` — the ETag and Last-Modified it came with, its sequence and SM3, for the
  next conditional GET (used only while its SM3 is the installed file's).

A new list is installed only when it passes, in this order: the answer's ETag is the SM3 of the
bytes (``etag-mismatch``), then ``ca.lists.verify.load_list`` against the root the operator
trusts: well formed, the type asked for, signed by a list-signing certificate the root issued,
thisUpdate not ahead, nextUpdate not passed (``stale``), sequence after the one installed
(``rollback``). A refusal names its reason and changes nothing; an install writes the list, then
its HTTP note, each replaced whole (``ca.core.files.write_atomically``).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ca.core.clock import iso_utc
from ca.core.errors import BadInput, JtcaError
from ca.core.files import write_atomically
from ca.lists.asn1 import ListContentError, ListType, decode_signed_list
from ca.lists.verify import ListReason, ListRefused, load_list
from hsm.sm.sm3 import sm3

TIMEOUT: Final = 30.0
MAX_LIST: Final = 64 * 1024 * 1024  # a list bigger than this is refused unread


class FetchError(JtcaError):
    """The list could not be fetched (network, HTTP status): nothing installed."""

    title = "Fetch failed"
    exit_code = 69  # EX_UNAVAILABLE: the timer tries again


@dataclass(frozen=True, slots=True)
class Fetched:
    list_type: ListType
    action: str  # installed | unchanged
    sequence: int | None
    previous_sequence: int | None
    sm3: str | None
    next_update: int | None
    etag: str | None
    path: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_type.value,
            "action": self.action,
            "sequence": self.sequence,
            "previous_sequence": self.previous_sequence,
            "sm3": self.sm3,
            "next_update": iso_utc(self.next_update) if self.next_update is not None else None,
            "etag": self.etag,
            "file": str(self.path),
        }


def list_path(out: Path, list_type: ListType) -> Path:
    return out / f"{list_type.value}.der"


def note_path(out: Path, list_type: ListType) -> Path:
    return out / f"{list_type.value}.http.json"


def http_client(service: str, server_cert: Path | None = None) -> httpx.Client:
    """A client of ``service``: ``https://HOST[:PORT]``, ``http://HOST[:PORT]`` (lists are
    signed: a plain HTTP mirror is fine) or ``unix:///PATH`` (the service's socket)."""
    parts = urlsplit(service)
    if parts.scheme == "unix" and parts.path:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=parts.path), base_url="http://jtca", timeout=TIMEOUT
        )
    if parts.scheme in ("http", "https") and parts.hostname:
        verify: ssl.SSLContext | bool = True
        if parts.scheme == "https" and server_cert is not None:
            verify = ssl.create_default_context(cafile=str(server_cert))
        return httpx.Client(base_url=service.rstrip("/"), verify=verify, timeout=TIMEOUT)
    raise BadInput(
        f"--service {service!r}: use https://HOST[:PORT], http://HOST[:PORT] or unix:///PATH"
    )


@dataclass(frozen=True, slots=True)
class _Held:
    sequence: int | None
    sm3: str | None
    etag: str | None
    last_modified: str | None


def _held(out: Path, list_type: ListType) -> _Held:
    """The list installed in ``out`` (its sequence from the file itself) and its HTTP note."""
    try:
        data = list_path(out, list_type).read_bytes()
    except FileNotFoundError:
        return _Held(None, None, None, None)
    except OSError as exc:
        raise BadInput(f"cannot read {list_path(out, list_type)}: {exc.strerror}") from None
    try:
        content = decode_signed_list(data).content
    except ListContentError as exc:
        raise BadInput(
            f"{list_path(out, list_type)}: the list installed is not a list ({exc.message}); "
            "move it away to fetch afresh"
        ) from None
    digest = sm3(data).hex()
    etag = last_modified = None
    try:
        note = json.loads(note_path(out, list_type).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        note = None
    if isinstance(note, dict) and note.get("sm3") == digest:
        etag = note.get("etag") if isinstance(note.get("etag"), str) else None
        lm = note.get("last_modified")
        last_modified = lm if isinstance(lm, str) else None
    return _Held(content.sequence, digest, etag, last_modified)


def fetch_list(
    http: httpx.Client,
    list_type: ListType,
    out: Path,
    *,
    trusted_root_der: bytes,
    now: int,
    grace_seconds: int = 0,
) -> Fetched:
    """One conditional GET of ``/lists/{list_type}`` and, for a new list that passes every
    check, its install in ``out``. ``ListRefused`` (nothing changed) for a list a terminal
    must not take, ``FetchError`` when the server does not answer with a list."""
    if not out.is_dir():
        raise BadInput(f"--out {out}: not a folder")
    held = _held(out, list_type)
    headers = {}
    if held.etag:
        headers["If-None-Match"] = held.etag
    if held.last_modified:
        headers["If-Modified-Since"] = held.last_modified
    url = f"/lists/{list_type.value}"
    try:
        with http.stream("GET", url, headers=headers) as response:
            if response.status_code == 200:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_LIST:
                        raise FetchError(f"{url}: more than {MAX_LIST} bytes: not a list")
                data = bytes(body)
            else:
                response.read()
                data = b""
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch {http.base_url}{url}: {exc}") from None
    target = list_path(out, list_type)
    if response.status_code == 304:
        return Fetched(
            list_type, "unchanged", held.sequence, held.sequence, held.sm3, None, held.etag, target
        )
    if response.status_code != 200:
        raise FetchError(
            f"{http.base_url}{url} answered HTTP {response.status_code}: {response.text[:200]}"
        )
    digest = sm3(data).hex()
    etag = response.headers.get("etag")
    if etag is not None and etag.removeprefix("W/") != f'"{digest}"':
        raise ListRefused(
            ListReason.MALFORMED,
            f"the answer's ETag {etag[:80]} is not the SM3 of its {len(data)} bytes ({digest}): "
            "a damaged or substituted answer",
            field="ETag",
        )
    if digest == held.sm3:  # the server ignored the conditional request: the same list
        return Fetched(
            list_type, "unchanged", held.sequence, held.sequence, digest, None, etag, target
        )
    verified = load_list(
        data,
        trusted_root_der=trusted_root_der,
        expected_type=list_type,
        previous_sequence=held.sequence,
        now=now,
        grace_seconds=grace_seconds,
    )
    write_atomically(target, data)
    note = {
        "list_type": list_type.value,
        "sequence": verified.sequence,
        "sm3": verified.sm3,
        "etag": etag,
        "last_modified": response.headers.get("last-modified"),
        "next_update": iso_utc(verified.next_update),
        "fetched_at": iso_utc(now),
        "source": f"{http.base_url}{url}",
    }
    text = json.dumps(note, indent=1, sort_keys=True) + "\n"
    write_atomically(note_path(out, list_type), text.encode("utf-8"))
    return Fetched(
        list_type,
        "installed",
        verified.sequence,
        held.sequence,
        verified.sm3,
        verified.next_update,
        etag,
        target,
    )
