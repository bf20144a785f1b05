"""Use cases of the demo area (see ca/service/__init__.py)."""

from __future__ import annotations
