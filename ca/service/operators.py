"""Operators' use cases (issue #16, point 2)."""

from __future__ import annotations
