"""The root of jtca's error tree.

It lives in ``hsm`` because ``hsm`` is the innermost layer and imports nothing else of ours;
``ca.core.errors`` re-exports it and adds the authority's own errors. A user is shown ``title`` and
``message``, never a traceback.
"""

from __future__ import annotations


class JtcaError(Exception):
    """Base of every error a jtca user may see: a short title and a one-line message."""

    title = "jtca error"
    exit_code = 1  # the command line's exit status for this error (docs/cli.md)

    def __init__(self, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class InvalidKey(JtcaError):
    """Key bytes that are not a valid SM2/SM4 key (wrong length, point not on the curve…)."""

    title = "Invalid key"
    exit_code = 3


class InvalidSignature(JtcaError):
    """A signature that does not verify. Verification raises; it never returns a bare bool."""

    title = "Invalid signature"
    exit_code = 4
