"""A witness of the authority's audit log (issue #13; docs/witness.md): a client, run by a
province or any auditor, that holds no database and no ministry token.

Each round it fetches the newest checkpoint (``GET /log/checkpoint``), checks the log's
signature with the audit certificate it was given (never a key the service hands it), checks
that the tree extends the last one it cosigned (``GET /log/proof/consistency``), cosigns it with
its own SM2 key in its own token, keeps its own copy and hands the cosignature in
(``log.cosign``). Two different trees of one size, a tree that does not extend the last one, or
a tree smaller than the last one is a split view: refused, recorded, reported loudly.

- ``ca.witness.folder``: the witness's folder (``witness.json``, its trusted certificates, its
  copies of the checkpoints, split-view evidence), written atomically under a lock;
- ``ca.witness.token``: the witness's own token and key;
- ``ca.witness.round``: one round, over a ``LogSource`` (the service over HTTP, or a test's).
"""
