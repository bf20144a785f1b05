"""The policy in force (issue #16, point 4): proposals, dual-controlled changes."""

from __future__ import annotations
