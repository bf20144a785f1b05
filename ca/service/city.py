"""Use cases of the city area (see ca/service/__init__.py)."""

from __future__ import annotations
