"""Operations of the lists area (see ca/ops/base.py)."""

from __future__ import annotations
