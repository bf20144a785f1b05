"""Operations of the packages area (see ca/ops/base.py)."""

from __future__ import annotations
