"""Operations of the audit area (see ca/ops/base.py)."""

from __future__ import annotations
