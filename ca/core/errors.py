"""The authority's errors. The root, ``JtcaError``, comes from ``hsm.errors``."""

from __future__ import annotations

from hsm.errors import InvalidKey, InvalidSignature, JtcaError

__all__ = [
    "BadInput",
    "CodecError",
    "InvalidKey",
    "InvalidSignature",
    "JtcaError",
    "PayloadRejected",
]


class BadInput(JtcaError):
    """An argument or file that cannot be used as given (names the option and the value)."""

    title = "Bad input"
    exit_code = 3


class CodecError(JtcaError):
    """Bytes that are not a well-formed structure: names the field, its offset and the problem."""

    title = "Malformed data"
    exit_code = 3

    def __init__(self, field: str, offset: int, problem: str) -> None:
        self.field = field
        self.offset = offset
        self.problem = problem
        super().__init__(f"{field} at offset {offset}: {problem}")


class PayloadRejected(JtcaError):
    """An acceptor check failed. ``reason`` is the stable code; see ca.qr.verify.Reason."""

    title = "QR code rejected"
    exit_code = 4

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")
