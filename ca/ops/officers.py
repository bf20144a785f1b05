"""Operations of the officers area (see ca/ops/base.py)."""

from __future__ import annotations
