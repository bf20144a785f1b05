"""Use cases of the console area (see ca/service/__init__.py)."""

from __future__ import annotations
