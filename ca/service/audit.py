"""Use cases of the audit area (see ca/service/__init__.py)."""

from __future__ import annotations
