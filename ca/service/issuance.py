"""Use cases of the issuance area (see ca/service/__init__.py)."""

from __future__ import annotations
