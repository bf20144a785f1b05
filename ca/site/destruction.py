"""Copies of city keys destroyed at their sites (issue #11, point 5: tokens stay at their sites).

When destroy-material is carried out, the service destroys the ministry's copy in the ministry's
token and records each province's and city's copy as awaiting destruction at its holder's site.
Here the holder's site client asks the service which of its copies await destruction, destroys
each in its own token and reports it; the service checks the report (the holder's copy, awaiting
destruction, the officer of that province) and records it, audited. A copy already gone from the
token (an earlier run destroyed it and its report was lost) counts as destroyed, so running the
command again finishes what a broken run left. Destruction is never undone: a refused report
leaves the copy listed as awaiting, and the next run reports it again.
"""

# The named exception to "ca.cli imports no hsm" (issue #11): a site's own token.
from __future__ import annotations

from collections.abc import Callable

from ca.client.http import Client
from ca.core.errors import JtcaError
from ca.ops import packages as ops
from ca.site.packages import Tokens
from hsm.pkcs11.keys import KeyNotFound, KeyStore
from hsm.pkcs11.uri import Pkcs11Uri, UriError


def awaiting(client: Client, holder: str) -> list[ops.SiteCopy]:
    """``holder``'s copies that await destruction at its site (the service's scope checks)."""
    return client.call(ops.AWAITING_DESTRUCTION, ops.Holder(holder=holder)).copies


def _still_there(store: KeyStore, uri: Pkcs11Uri) -> bool:
    """Whether an object ``uri`` names is still in the token (``destroy`` also says 'not
    found' for a URI that matches several objects: that is not a copy gone)."""
    return any(
        k.label == uri.object and (uri.id is None or k.key_id == uri.id) for k in store.list_keys()
    )


def destroy_copy(client: Client, tokens: Tokens, copy: ops.SiteCopy) -> ops.SiteCopy:
    """Destroy one copy in this site's token and report it."""
    try:
        uri = Pkcs11Uri.parse(copy.uri)
    except UriError as exc:
        raise JtcaError(f"the service named the copy of {copy.label} {copy.uri!r}: {exc}") from None
    if uri.token != copy.token or uri.object != copy.label:
        raise JtcaError(
            f"the service named the copy of {copy.label} {copy.uri!r}: not that key in token "
            f"{copy.token!r}"
        )
    store = tokens.store(copy.token)
    try:
        store.destroy(uri)
    except KeyNotFound:
        if _still_there(store, uri):
            raise
    return client.call(
        ops.REPORT_DESTROYED, ops.DestroyedReport(key=copy.key, holder=copy.holder, uri=copy.uri)
    )


def destroy_copies(
    client: Client,
    tokens: Tokens,
    holder: str,
    *,
    done: Callable[[ops.SiteCopy], None] | None = None,
) -> list[ops.SiteCopy]:
    """Destroy every copy of ``holder`` that awaits destruction, each reported as it goes
    (``done`` is told of each; a refusal stops the run, the copies reported so far stay so)."""
    destroyed: list[ops.SiteCopy] = []
    for copy in awaiting(client, holder):
        reported = destroy_copy(client, tokens, copy)
        destroyed.append(reported)
        if done is not None:
            done(reported)
    return destroyed
