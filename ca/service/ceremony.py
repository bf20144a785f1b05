"""Use cases of the ceremony area (see ca/service/__init__.py)."""

from __future__ import annotations
