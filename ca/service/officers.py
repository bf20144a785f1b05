"""Use cases of the officers area (see ca/service/__init__.py)."""

from __future__ import annotations
