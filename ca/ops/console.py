"""Operations of the console area (see ca/ops/base.py)."""

from __future__ import annotations
