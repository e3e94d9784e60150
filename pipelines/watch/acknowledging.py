"""The watcher's sink: write each video's row, then delete its message once every video the
message names has a row.

The row is committed before the delete, so a watcher killed at any point loses nothing: the
message comes back after its visibility timeout and the upsert key makes the second pass
harmless. A message is deleted by whichever of its videos completes it; the check reads the
database, so it holds wherever the videos of one message were written.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import apache_beam as beam

from pipelines.scan import metrics
from pipelines.scan.outcomes import Outcome
from pipelines.scan.writing import result_row
from pipelines.store import database, runs
from pipelines.watch import metrics as watch_metrics
from pipelines.watch.options import WatchSettings
from pipelines.watch.receiving import Delivery, QueuedRef, all_written

_LOG = logging.getLogger(__name__)
# Message ids this worker deleted lately, so that a message is counted once.
_REMEMBERED = 1000


class WriteAndAcknowledge(beam.DoFn):
    """Outcome (of a QueuedRef) -> its row; QueuedRef (already scored) -> nothing to write.
    Either way the message is deleted when all of its videos have rows. Emits nothing."""

    def __init__(
        self,
        settings: WatchSettings,
        db_url: str,
        run_id: str,
        model_version: str,
        retry: database.Retry,
    ) -> None:
        self._settings = settings
        self._db_url = db_url
        self._run_id = run_id
        self._model_version = model_version
        self._retry = retry
        self._rows = metrics.counter("rows_written")
        self._outcomes = metrics.OutcomeCounters()

    def setup(self) -> None:
        self._queue = self._settings.queue
        self._engine = database.connect(self._db_url)
        self._tables = database.Tables.reflect(self._engine)
        self._deleted: OrderedDict[str, None] = OrderedDict()

    def teardown(self) -> None:
        self._engine.dispose()

    def process(self, element: Outcome | QueuedRef) -> None:
        if isinstance(element, QueuedRef):
            ref = element
        else:
            ref = element.ref
            self._write(element)
        if isinstance(ref, QueuedRef) and ref.delivery is not None:
            self._acknowledge(ref.delivery)

    def _write(self, outcome: Outcome) -> None:
        row = result_row(outcome, self._model_version)
        database.transaction(
            self._engine,
            lambda conn: runs.write_rows(conn, self._tables, [row], self._run_id),
            self._retry,
        )
        self._rows.inc()
        self._outcomes.count(row)
        watch_metrics.VIDEOS.labels(row["status"]).inc()
        uploaded_at = getattr(outcome.ref, "uploaded_at", None)
        after = ""
        if uploaded_at is not None:
            seconds = max(0.0, time.time() - uploaded_at)
            watch_metrics.UPLOAD_TO_ROW.observe(seconds)
            after = f", {seconds:.1f} s after its upload"
        verdict = row.get("error_reason") or ("flagged" if row.get("flagged") else "not flagged")
        _LOG.info("watch: %s: %s (%s)%s", row["video_uri"], row["status"], verdict, after)

    def _acknowledge(self, delivery: Delivery) -> None:
        message = delivery.message
        if message.message_id in self._deleted:
            return
        done = database.transaction(
            self._engine,
            lambda conn: all_written(conn, self._tables, delivery, self._model_version),
            self._retry,
        )
        if not done:
            return  # another of its videos completes it, or it comes back after its timeout
        self._queue.delete(message)
        watch_metrics.MESSAGES.labels("acknowledged").inc()
        self._deleted[message.message_id] = None
        if len(self._deleted) > _REMEMBERED:
            self._deleted.popitem(last=False)
