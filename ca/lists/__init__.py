"""Signed lists for acceptors (issue #6): issuer whitelists, interconnected city lists and
central CA key lists, signed by the list-signing key and checked by terminals.

``der`` holds the format and its one codec (a descriptor per list type; ``asn1`` keeps the
names other modules import from it), ``build`` makes a signed list, ``verify`` is the terminal's
side, ``render`` shows a list to people and ``trust`` hands verified lists to the QR verifier.
All of them are pure: no PKCS#11, no SQL, no UI (pyproject.toml's import-linter contract).
The format is described in docs/lists.md.
"""
