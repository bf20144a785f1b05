"""Operators (issue #16, point 2): registration with an SM2 key, signed acknowledgments."""

from __future__ import annotations
