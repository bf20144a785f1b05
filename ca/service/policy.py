"""The policy in force's use cases (issue #16, point 4)."""

from __future__ import annotations
