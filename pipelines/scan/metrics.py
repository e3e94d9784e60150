"""The scan's metrics: Beam metrics while it runs, and each finished run pushed to Prometheus.

Beam metrics (namespace ``deeptrust``) count and time the work in the DoFns, for the runners and
UIs that show them. They are not what gets pushed: ``PipelineResult.metrics()`` is missing on
Beam 2.77's Dask runner, so the pushed numbers come from the run's ``scan_runs`` row and its
``moderation_results`` rows, which are exact on every runner.

The push follows Prometheus's conventions for batch jobs: one group per job
(``job="deeptrust_scan"``, no ``instance``), replaced whole by every push. ``model_version`` is a
label on each metric rather than part of the grouping key, so a new model replaces the group
instead of leaving the old model's group behind, whose last-success time would age into a false
alert. The last success time is read from the database, so every push (a failed run's too)
carries it, and a Pushgateway restarted without persistence gets it back at the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apache_beam.metrics import Metrics
from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select

from pipelines.store import database
from pipelines.store.runs import WATCHER_RUNNER

NAMESPACE = "deeptrust"
JOB = "deeptrust_scan"
PUSHGATEWAY_ENV = "DEEPTRUST_PUSHGATEWAY"
PUSH_TIMEOUT_S = 10.0
# The values of ``deeptrust_scan_videos_total{outcome=...}``; flagged videos are also scored or
# matched (known fakes, flagged without a model call).
OUTCOMES = ("listed", "skipped", "scored", "matched", "flagged", "error")

_LOG = logging.getLogger(__name__)


# --- Beam metrics, declared in the DoFns ---


def counter(name: str) -> Metrics.DelegatingCounter:
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str) -> Metrics.DelegatingDistribution:
    return Metrics.distribution(NAMESPACE, name)


@contextlib.contextmanager
def timed_ms(into: Metrics.DelegatingDistribution) -> Iterator[None]:
    """Adds the milliseconds the block took to a Beam distribution."""
    start = time.perf_counter()
    try:
        yield
    finally:
        into.update(round((time.perf_counter() - start) * 1000))


class OutcomeCounters:
    """Counts written rows as ``videos_scored``, ``videos_matched_written``, ``videos_flagged``
    and ``errors_<reason>``."""

    def __init__(self) -> None:
        self._scored = counter("videos_scored")
        self._matched = counter("videos_matched_written")
        self._flagged = counter("videos_flagged")
        self._errors: dict[str, Metrics.DelegatingCounter] = {}

    def count(self, row: dict[str, Any]) -> None:
        if row["status"] in ("scored", "matched"):
            (self._scored if row["status"] == "scored" else self._matched).inc()
            if row["flagged"]:
                self._flagged.inc()
            return
        reason = row.get("error_reason") or "unknown"
        if reason not in self._errors:
            self._errors[reason] = counter(f"errors_{reason}")
        self._errors[reason].inc()


# --- one finished run, pushed to the Pushgateway ---


@dataclass(frozen=True)
class RunMetrics:
    """What the Pushgateway gets for one run, all read from the database."""

    model_version: str
    duration_s: float
    videos: dict[str, int]  # by outcome, see OUTCOMES
    errors_by_reason: dict[str, int]
    # The latest succeeded scan in this database (this one or an earlier one): naive UTC finish
    # time and model version, or None when no scan has succeeded yet.
    last_success: tuple[datetime, str] | None

    @property
    def flagged_ratio(self) -> float | None:
        """Videos the model flagged over those it scored; None when it scored none. Matched
        known fakes are flagged without the model, so they are left out of both."""
        scored = self.videos["scored"]
        return (self.videos["flagged"] - self.videos["matched"]) / scored if scored else None


def read_run_metrics(engine: Engine, run_id: str) -> RunMetrics:
    """The metrics of a finished run from its ``scan_runs`` row and its ledger of outcomes."""
    tables = database.Tables.reflect(engine)
    runs, ledger = tables.runs, tables.ledger
    reasons = (
        select(ledger.c.error_reason, func.count())
        .where(ledger.c.run_id == run_id, ledger.c.status == "error")
        .group_by(ledger.c.error_reason)
    )
    last_success = (
        select(runs.c.finished_at, runs.c.model_version)
        .where(runs.c.status == "succeeded", runs.c.runner.not_like(f"{WATCHER_RUNNER}%"))
        .order_by(runs.c.finished_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        run = conn.execute(select(runs).where(runs.c.run_id == run_id)).one()._mapping
        by_reason = {reason or "unknown": n for reason, n in conn.execute(reasons)}
        succeeded = conn.execute(last_success).first()
    return RunMetrics(
        model_version=run["model_version"],
        duration_s=(run["finished_at"] - run["started_at"]).total_seconds(),
        videos={
            "listed": run["videos_seen"],
            "skipped": run["skipped"],
            "scored": run["scored"],
            "matched": run["matched"],
            "flagged": run["flagged"],
            "error": run["errors"],
        },
        errors_by_reason=by_reason,
        last_success=tuple(succeeded) if succeeded else None,
    )


class RunCollector:
    """A Prometheus collector that exposes one RunMetrics (counters without ``_created``)."""

    def __init__(self, run: RunMetrics) -> None:
        self._run = run

    def collect(self) -> Iterator[Metric]:
        run, version = self._run, [self._run.model_version]
        if run.last_success is not None:
            finished_at, success_version = run.last_success
            yield _gauge(
                "deeptrust_scan_last_success_timestamp_seconds",
                "When a scan last succeeded (Unix time), with the model version it ran.",
                [success_version],
                finished_at.replace(tzinfo=UTC).timestamp(),
            )
        yield _gauge(
            "deeptrust_scan_duration_seconds",
            "How long the last scan took.",
            version,
            run.duration_s,
        )
        # Left out when nothing was scored, so a ratio of nothing never enters the 7-day level.
        if run.flagged_ratio is not None:
            yield _gauge(
                "deeptrust_scan_flagged_ratio",
                "Videos the model flagged over those it scored in the last scan.",
                version,
                run.flagged_ratio,
            )
        videos = CounterMetricFamily(
            "deeptrust_scan_videos",
            "Videos of the last scan by outcome: listed, skipped, scored, matched (known fakes, "
            "no model call), flagged (of scored and matched), error.",
            labels=["model_version", "outcome"],
        )
        for outcome in OUTCOMES:
            videos.add_metric([*version, outcome], run.videos[outcome])
        yield videos
        errors = CounterMetricFamily(
            "deeptrust_scan_errors",
            "Videos of the last scan that became error rows, by reason.",
            labels=["model_version", "reason"],
        )
        for reason, count in sorted(run.errors_by_reason.items()):
            errors.add_metric([*version, reason], count)
        yield errors


def run_registry(run: RunMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RunCollector(run))
    return registry


def gateway_url(option: str | None) -> str | None:
    """The Pushgateway to push to: ``--pushgateway``, else ``$DEEPTRUST_PUSHGATEWAY``, else none."""
    return option or os.environ.get(PUSHGATEWAY_ENV) or None


def publish_run(engine: Engine, run_id: str, gateway: str | None) -> str:
    """Push a finished run's metrics and record the outcome on its ``scan_runs`` row.

    Returns ``pushed``, ``failed`` or ``disabled`` (no gateway set). A failed push is logged and
    recorded, never raised: the scan's rows are written and stay valid without it.
    """
    outcome, error = "disabled", None
    if gateway:
        try:
            push_to_gateway(
                gateway,
                job=JOB,
                registry=run_registry(read_run_metrics(engine, run_id)),
                timeout=PUSH_TIMEOUT_S,
            )
            outcome = "pushed"
        except Exception as err:  # urllib, http.client and socket errors alike
            outcome, error = "failed", f"{type(err).__name__}: {err}"
            _LOG.warning("scan %s: pushing metrics to %s failed: %s", run_id, gateway, error)
    runs = database.Tables.reflect(engine).runs
    with engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(metrics_push=outcome, metrics_push_error=error)
        )
    return outcome


def _gauge(name: str, documentation: str, version: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["model_version"])
    family.add_metric(version, value)
    return family
