"""Use cases of the packages area (see ca/service/__init__.py)."""

from __future__ import annotations
