"""Write the scan's outcomes to ``moderation_results`` and its listing tally to ``scan_runs``.

This is the one place where a video's outcome (``pipelines.scan.outcomes``) becomes a row.

Rows are buffered and written in batches of idempotent upserts: a flush in ``finish_bundle`` is a
side effect, not an output, so it runs on the Dask runner too (which drops only outputs there).
A write that loses its connection is retried with back-off (``database.transaction``); when the
database stays away, the step fails and so does the run, and the next scan writes what is left.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apache_beam as beam

from model.fingerprint import Fingerprint
from pipelines.scan import metrics
from pipelines.scan.listing import ListingTally
from pipelines.scan.outcomes import Failed, Matched, Outcome, Scored
from pipelines.store import bank, database, runs

_LOG = logging.getLogger(__name__)


def _row_key(uri: str, content_version: str, model_version: str) -> dict[str, Any]:
    """The columns that name a ``moderation_results`` row."""
    return {"video_uri": uri, "content_version": content_version, "model_version": model_version}


def scored_row(
    uri: str,
    content_version: str,
    model_version: str,
    verdict: dict[str, Any],
    fingerprint: Fingerprint | None = None,
) -> dict[str, Any]:
    """A ``moderation_results`` row from a ``model.verdict.verdict`` body; a flagged one keeps
    the video's perceptual hashes, so that confirming it can bank it."""
    flagged = verdict["flagged"]
    return {
        **_row_key(uri, content_version, model_version),
        "status": "scored",
        **verdict,
        "segments": json.dumps(verdict["segments"]),
        "review_status": "pending" if flagged else None,
        "frame_hashes": bank.encode_frame_hashes(fingerprint) if flagged and fingerprint else None,
    }


def matched_row(outcome: Matched, model_version: str) -> dict[str, Any]:
    """A flagged ``moderation_results`` row for a video that matched a known fake."""
    info, found = outcome.info, outcome.match
    return {
        **_row_key(outcome.ref.uri, outcome.ref.content_version, model_version),
        "status": "matched",
        "flagged": True,
        "segments": "[]",
        "frames_analyzed": len(outcome.fingerprint),
        "duration_s": info.duration_s,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "review_status": "pending",
        "match_video_uri": found.video_uri,
        "match_content_version": found.content_version,
        "match_share": found.share,
        "match_distance": found.distance,
        "frame_hashes": bank.encode_frame_hashes(outcome.fingerprint),
    }


def error_row(
    uri: str, content_version: str, model_version: str, code: str, detail: str
) -> dict[str, Any]:
    """A ``moderation_results`` row for a video that could not be scored."""
    return {
        **_row_key(uri, content_version, model_version),
        "status": "error",
        "error_reason": code,
        "error_detail": detail,
    }


def result_row(outcome: Outcome, model_version: str) -> dict[str, Any]:
    """The ``moderation_results`` row of one video's outcome under ``model_version``."""
    uri, content_version = outcome.ref.uri, outcome.ref.content_version
    if isinstance(outcome, Scored):
        return scored_row(uri, content_version, model_version, outcome.verdict, outcome.fingerprint)
    if isinstance(outcome, Matched):
        return matched_row(outcome, model_version)
    if isinstance(outcome, Failed):
        return error_row(uri, content_version, model_version, outcome.reason, outcome.detail)
    raise TypeError(f"not a video's outcome: {outcome!r}")


class UpsertResults(beam.DoFn):
    """Upserts outcomes as rows in batches of ``batch_size``; records a ListingTally on the
    run's row."""

    def __init__(
        self,
        db_url: str,
        run_id: str,
        model_version: str,
        batch_size: int,
        retry: database.Retry = database.ONCE,
    ) -> None:
        self._db_url = db_url
        self._run_id = run_id
        self._model_version = model_version
        self._batch_size = batch_size
        self._retry = retry
        self._rows = metrics.counter("rows_written")
        self._outcomes = metrics.OutcomeCounters()

    def setup(self) -> None:
        self._engine = database.connect(self._db_url)
        self._tables = database.Tables.reflect(self._engine)
        self._written = 0

    def start_bundle(self) -> None:
        self._pending: list[dict[str, Any]] = []

    def process(self, element: Outcome | ListingTally) -> None:
        if isinstance(element, ListingTally):
            database.transaction(
                self._engine,
                lambda conn: runs.record_listing(
                    conn, self._tables.runs, self._run_id, element.seen, element.skipped
                ),
                self._retry,
            )
            _LOG.info(
                "scan %s: listed %d videos, %d already scored",
                self._run_id,
                element.seen,
                element.skipped,
            )
            return
        self._pending.append(result_row(element, self._model_version))
        if len(self._pending) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        database.transaction(
            self._engine,
            lambda conn: runs.write_rows(conn, self._tables, self._pending, self._run_id),
            self._retry,
        )
        self._rows.inc(len(self._pending))
        for row in self._pending:
            self._outcomes.count(row)
        self._written += len(self._pending)
        _LOG.info("scan %s: %d rows written by this worker", self._run_id, self._written)
        self._pending = []

    def teardown(self) -> None:
        self._engine.dispose()


class WriteModerationResults(beam.PTransform):
    """Outcomes and the listing tally -> the database. Emits nothing downstream."""

    def __init__(
        self,
        db_url: str,
        run_id: str,
        model_version: str,
        batch_size: int,
        retry: database.Retry,
    ) -> None:
        super().__init__()
        self._db_url = db_url
        self._run_id = run_id
        self._model_version = model_version
        self._batch_size = batch_size
        self._retry = retry

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "Upsert" >> beam.ParDo(
            UpsertResults(
                self._db_url, self._run_id, self._model_version, self._batch_size, self._retry
            )
        )
