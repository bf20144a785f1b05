"""Operations of the ceremony area (see ca/ops/base.py)."""

from __future__ import annotations
