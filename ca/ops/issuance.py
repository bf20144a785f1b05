"""Operations of the issuance area (see ca/ops/base.py)."""

from __future__ import annotations
