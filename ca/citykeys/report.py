"""The expiry report an officer hands on (report.csv, report.md, timeline.png), from the
city keys in the database; the drawing and formatting are ``ca.citykeys.report_format``'s."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from sqlmodel import Session

from ca.citykeys.common import key_flags
from ca.citykeys.queries import KeyFilter, find_keys
from ca.citykeys.report_format import ReportKey, write_report
from ca.registry.divisions import default_divisions
from ca.store.models import CityKey

TITLE: Final = "城市密钥到期报告 / city key expiry report"


def report_scope(province: str | None) -> str:
    """What a report covers, as its heading says it."""
    return f"province {province}" if province else "national"


def report_key(key: CityKey, now: int) -> ReportKey:
    city = default_divisions().city(key.city)
    return ReportKey(
        key_id=key.id or 0,
        label=key.label,
        city=key.city,
        city_name=city.name if city else "",
        province=key.province,
        key_class=key.key_class,
        state=key.state,
        stage=key.stage,
        not_before=key.not_before,
        not_after=key.not_after,
        flags=tuple(key_flags(key, now)),
    )


def write_city_report(
    session: Session, directory: Path, *, now: int, province: str | None = None
) -> dict[str, Path]:
    keys = find_keys(session, KeyFilter(province=province), now=now)
    return write_report(
        directory,
        [report_key(k, now) for k in keys],
        now=now,
        title=TITLE,
        scope=report_scope(province),
    )
