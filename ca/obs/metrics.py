"""The authority service's metrics (issue #16, point 3), read fresh at every scrape.

One ``ServiceMetrics`` per application, each with a registry of its own (never the
``prometheus_client`` global one), so several applications in one process never collide.
What a scrape reads:

- ``jtca_list_*`` per list type: the newest published version's sequence, age (now −
  thisUpdate) and seconds to nextUpdate (negative once past: terminals refuse the list);
- ``jtca_pending_approvals{kind}``: key applications, pending actions by action name (misuse
  actions, emergency publications, policy changes…) and officer enrolments awaiting a decision;
- ``jtca_overdue_operators{list_type}``: operators that have not reported loading a version
  published more than 15 days ago (第十二条, the report of ``jtca lists overdue``);
- ``jtca_token_signatures_total{key,path}``: signatures this process made with token keys,
  native or host-assisted (``hsm.pkcs11.signer.signature_counts``);
- ``jtca_token_up``: the ministry's token module answers and lists its tokens;
- ``jtca_log_*``: the newest checkpoint's size, age and cosignature count, the age of the
  newest checkpoint a witness cosigned, the active witnesses;
- ``jtca_http_request_duration_seconds{method,route,status}``: request latency (the route
  template, never the path with its values, so the label set stays small).

A part that cannot be read (the database down, the tokens busy) is left out of that scrape
and counted in ``jtca_metrics_errors_total{part}``; the scrape itself still answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from ca.core.clock import Clock
from ca.lists.asn1 import ListType
from ca.service.runtime import Runtime
from ca.store.models import (
    KeyApplication,
    ListVersion,
    LogCheckpoint,
    LogCosignature,
    LogWitness,
    OfficerEnrolment,
    PendingAction,
)

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_WAIT: Final = 2.0  # seconds a scrape waits for the tokens before reporting them busy
log = logging.getLogger("jtca.metrics")


class ServiceMetrics:
    """The registry of one application: its request histogram and a collector of the rest."""

    def __init__(self, runtime: Runtime, clock: Clock) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "jtca_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "jtca_metrics_errors",
            "Scrapes that could not read a part of the metrics, by part",
            ["part"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(runtime, clock, self.errors))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)


class _StateCollector(Collector):
    def __init__(self, runtime: Runtime, clock: Clock, errors: Counter) -> None:
        self.runtime = runtime
        self.clock = clock
        self.errors = errors
        self._token_up = 1.0  # the last answer, kept while the tokens are busy signing
        self._token_lock = threading.Lock()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # read at scrape time only

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = self.clock.now()
        parts = (
            ("lists", self._lists),
            ("approvals", self._approvals),
            ("operators", self._overdue),
            ("log", self._log),
            ("tokens", self._tokens),
        )
        for part, read in parts:
            try:
                families = list(read(now))
            except Exception:  # a part that cannot be read is left out, never the scrape
                log.warning("metrics: cannot read %s", part, exc_info=True, extra={"part": part})
                self.errors.labels(part).inc()
                continue
            yield from families
        yield from self._signatures()

    # -- lists ----------------------------------------------------------------------------------
    def _lists(self, now: int) -> Iterator[GaugeMetricFamily]:
        sequence = GaugeMetricFamily(
            "jtca_list_sequence", "Sequence of the newest published list", labels=["list_type"]
        )
        age = GaugeMetricFamily(
            "jtca_list_age_seconds",
            "Seconds since the newest published list's thisUpdate",
            labels=["list_type"],
        )
        remaining = GaugeMetricFamily(
            "jtca_list_next_update_seconds",
            "Seconds until the newest published list's nextUpdate (negative: past it)",
            labels=["list_type"],
        )
        published = GaugeMetricFamily(
            "jtca_list_published_timestamp_seconds",
            "When the newest list was published (Unix time)",
            labels=["list_type"],
        )
        with Session(self.runtime.engine) as session:
            for list_type in ListType:
                newest = session.exec(
                    select(ListVersion)
                    .where(ListVersion.list_type == list_type.value)
                    .order_by(col(ListVersion.sequence).desc())
                    .limit(1)
                ).first()
                if newest is None:
                    continue
                sequence.add_metric([list_type.value], newest.sequence)
                age.add_metric([list_type.value], now - newest.this_update)
                remaining.add_metric([list_type.value], newest.next_update - now)
                published.add_metric([list_type.value], newest.published_at)
        yield from (sequence, age, remaining, published)

    # -- dual control ---------------------------------------------------------------------------
    def _approvals(self, _now: int) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "jtca_pending_approvals",
            "Requests awaiting an approver's decision, by kind",
            labels=["kind"],
        )
        with Session(self.runtime.engine) as session:
            applications = session.exec(
                select(func.count()).where(KeyApplication.state == "pending")
            ).one()
            pending.add_metric(["application"], applications)
            enrolments = session.exec(
                select(func.count()).where(OfficerEnrolment.state == "pending")
            ).one()
            pending.add_metric(["enrolment"], enrolments)
            for action, count in session.exec(
                select(PendingAction.action, func.count())
                .where(PendingAction.state == "pending")
                .group_by(col(PendingAction.action))
                .order_by(col(PendingAction.action))
            ):
                pending.add_metric([f"action:{action}"], count)
        yield pending

    # -- operators (第十二条) ----------------------------------------------------------------------
    def _overdue(self, now: int) -> Iterator[GaugeMetricFamily]:
        from ca.publish import acks

        overdue = GaugeMetricFamily(
            "jtca_overdue_operators",
            f"Operators that have not reported loading a version published more than "
            f"{acks.LOAD_DEADLINE_DAYS} days ago, by list type",
            labels=["list_type"],
        )
        with Session(self.runtime.engine) as session:
            found = acks.overdue(session, now=now, days=acks.LOAD_DEADLINE_DAYS)
        by_type = {t.value: set[str]() for t in ListType}
        for item in found:
            by_type.setdefault(item.list_type, set()).add(item.operator_id)
        for list_type, operators in by_type.items():
            overdue.add_metric([list_type], len(operators))
        yield overdue

    # -- the audit log (issue #13) --------------------------------------------------------------
    def _log(self, now: int) -> Iterator[GaugeMetricFamily]:
        with Session(self.runtime.engine) as session:
            newest = session.exec(
                select(LogCheckpoint).order_by(col(LogCheckpoint.id).desc()).limit(1)
            ).first()
            witnessed = session.exec(
                select(func.max(LogCheckpoint.at)).where(
                    col(LogCheckpoint.id).in_(select(LogCosignature.checkpoint_id))
                )
            ).one()
            cosignatures = (
                session.exec(
                    select(func.count()).where(LogCosignature.checkpoint_id == newest.id)
                ).one()
                if newest is not None
                else 0
            )
            witnesses = session.exec(select(func.count()).where(LogWitness.state == "active")).one()
        yield GaugeMetricFamily(
            "jtca_log_witnesses", "Witnesses whose cosignatures count (active)", value=witnesses
        )
        if newest is None:
            return
        yield GaugeMetricFamily(
            "jtca_log_checkpoint_size", "Entries in the newest checkpoint", value=newest.size
        )
        yield GaugeMetricFamily(
            "jtca_log_checkpoint_age_seconds",
            "Seconds since the newest checkpoint was signed",
            value=now - newest.at,
        )
        yield GaugeMetricFamily(
            "jtca_log_checkpoint_cosignatures",
            "Witness cosignatures of the newest checkpoint",
            value=cosignatures,
        )
        if witnessed is not None:
            yield GaugeMetricFamily(
                "jtca_log_witnessed_checkpoint_age_seconds",
                "Seconds since the newest checkpoint that at least one witness cosigned was "
                "signed (absent: none cosigned yet)",
                value=now - int(witnessed),
            )

    # -- tokens ---------------------------------------------------------------------------------
    def _tokens(self, _now: int) -> Iterator[GaugeMetricFamily]:
        from ca.service.runtime import TokensBusy
        from hsm.pkcs11.softhsm2 import token_labels, use_softhsm

        with self._token_lock:
            count: int | None = None
            try:
                with self.runtime.tokens(timeout=TOKEN_WAIT):
                    use_softhsm(self.runtime.state / "softhsm2")
                    count = len(token_labels())
                self._token_up = 1.0
            except TokensBusy:
                pass  # signing right now: the module answered last time and is in use
            except Exception:
                log.warning("metrics: the token module does not answer", exc_info=True)
                self._token_up = 0.0
            up = self._token_up
        yield GaugeMetricFamily(
            "jtca_token_up", "1 when the ministry's token module answers, else 0", value=up
        )
        if count is not None:
            yield GaugeMetricFamily("jtca_tokens", "Tokens the module lists", value=count)

    def _signatures(self) -> Iterator[CounterMetricFamily]:
        from hsm.pkcs11.signer import signature_counts

        made = CounterMetricFamily(
            "jtca_token_signatures",
            "Signatures made with token keys by this process, by key and path "
            "(native: the token's vendor mechanism; host-assisted: wrapped out and used once)",
            labels=["key", "path"],
        )
        for (key, path), count in sorted(signature_counts().items()):
            made.add_metric([key, path], count)
        yield made
