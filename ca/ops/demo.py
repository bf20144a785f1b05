"""Operations of the demo area (see ca/ops/base.py)."""

from __future__ import annotations
