"""Use cases of the lists area (see ca/service/__init__.py)."""

from __future__ import annotations
