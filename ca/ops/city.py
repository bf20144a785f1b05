"""Operations of the city area (see ca/ops/base.py)."""

from __future__ import annotations
