"""The watcher's source: receive upload events from SQS and turn them into the scan's VideoRefs.

On every tick of its impulse, :class:`ReceiveUploads` long-polls the queue. Once a message
arrives it keeps receiving for up to ``max_batch_wait_s`` more (or until ``max_batch_messages``),
so one batch of videos reaches the model together; an idle watcher waits inside SQS's long poll
and uses no CPU. Each received message is then one of:

- **uploads**: every video it names becomes a :class:`QueuedRef` (the scan's ``VideoRef`` with
  the message it came in), in one group for the scan's decoder (``DecodeGroups``). The content
  version comes from the event (ETag and size, as the nightly scan's listing reads them), so the
  nightly scan skips what the watcher scored. A video that already has a scored row for this
  model goes to the ``skipped`` output instead; the others are claimed, as a scan claims them.
- **nothing to score** (an ``s3:TestEvent``, keys that are not videos, deletions): deleted at
  once, with a log line and the ``ignored`` count.
- **poison**: a body that is no S3 event (error row ``bad_event`` under the message's own
  ``sqs://QUEUE/MESSAGE_ID``), or a message received more than ``max_receives`` times whose
  videos still have no row (error rows ``retries_exhausted``). The rows are written first, then
  the message goes to the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from sqlalchemy import Connection

from model.storage import prefer_standard_retries
from pipelines.scan.listing import VideoRef, content_version, s3_content_version
from pipelines.scan.writing import error_row
from pipelines.store import database, runs
from pipelines.watch import lifecycle
from pipelines.watch import metrics as watch_metrics
from pipelines.watch.events import BadEvent, Upload, excerpt, parse_notification
from pipelines.watch.options import WatchSettings
from pipelines.watch.queue import Message

_LOG = logging.getLogger(__name__)
# The tag of ReceiveUploads' second output: QueuedRefs that need no decoding.
SKIPPED = "skipped"
BAD_EVENT, RETRIES_EXHAUSTED = "bad_event", "retries_exhausted"


@dataclass(frozen=True)
class Delivery:
    """One received message and the videos it names, as (uri, content_version) pairs: it is
    deleted once each of them has a row."""

    message: Message
    videos: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class QueuedRef(VideoRef):
    """A VideoRef that came from the queue: the scan's steps carry it through unchanged."""

    delivery: Delivery | None = None
    uploaded_at: float | None = None  # Unix time of the upload, from its event


def all_written(
    conn: Connection, tables: database.Tables, delivery: Delivery, model_version: str
) -> bool:
    """Whether every video that ``delivery`` names has a row (of any status) from this model."""
    return all(
        database.has_row(conn, tables.results, uri, version, model_version)
        for uri, version in delivery.videos
    )


def message_uri(queue_url: str, message: Message) -> str:
    """The ``video_uri`` of a message's own error row: ``sqs://QUEUE_NAME/MESSAGE_ID``."""
    return f"sqs://{queue_url.rstrip('/').rsplit('/', 1)[-1]}/{message.message_id}"


def _version(upload: Upload) -> str:
    """The upload's content version as the nightly scan's listing gives it; read from S3 only
    when the event carries no ETag."""
    if upload.etag:
        return s3_content_version(upload.etag, upload.size)
    return content_version(FileMetadata(upload.uri, upload.size, 0.0))


class ReceiveUploads(beam.DoFn):
    """tick -> ``(0, [QueuedRef])`` for the videos of one receive to decode, and QueuedRefs
    that need no decoding on the ``skipped`` output. Raises WatchStopped at the first tick
    after a stop was asked for."""

    def __init__(
        self,
        settings: WatchSettings,
        db_url: str,
        model_version: str,
        run_id: str,
        liveness: runs.Liveness,
        retry: database.Retry,
        extensions: tuple[str, ...],
    ) -> None:
        self._settings = settings
        self._db_url = db_url
        self._model_version = model_version
        self._run_id = run_id
        self._liveness = liveness
        self._retry = retry
        self._extensions = extensions

    def setup(self) -> None:
        prefer_standard_retries()
        self._queue = self._settings.queue
        self._engine = database.connect(self._db_url)
        self._tables = database.Tables.reflect(self._engine)

    def teardown(self) -> None:
        self._engine.dispose()

    def process(
        self, _tick: object
    ) -> Iterator[tuple[int, list[QueuedRef]] | beam.pvalue.TaggedOutput]:
        if lifecycle.stop_requested():
            raise lifecycle.WatchStopped(lifecycle.STOPPED)
        messages = self._gather()
        watch_metrics.beat(min((m.sent_at for m in messages), default=None))
        lifecycle.touch_liveness(self._settings.liveness_file)
        group: list[QueuedRef] = []
        for message in messages:
            for ref in self._admit(message):
                if self._skips(ref):
                    watch_metrics.VIDEOS.labels(SKIPPED).inc()
                    yield beam.pvalue.TaggedOutput(SKIPPED, ref)
                else:
                    group.append(ref)
        if group:
            _LOG.info("watch: %d videos from %d messages to score", len(group), len(messages))
            yield 0, group

    def _gather(self) -> list[Message]:
        """The messages of one batch: the first receive waits up to ``poll_wait_s``; once one
        came, more are taken for up to ``max_batch_wait_s``."""
        settings = self._settings
        most, visibility = settings.max_batch_messages, settings.visibility_timeout_s
        messages = self._queue.receive(most, settings.poll_wait_s, visibility)
        if not messages:
            return []
        deadline = time.monotonic() + settings.max_batch_wait_s
        while len(messages) < most and not lifecycle.stop_requested():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            messages += self._queue.receive(most - len(messages), left, visibility)
        return messages

    def _admit(self, message: Message) -> list[QueuedRef]:
        """The videos of ``message`` to score; a message with none is dealt with here."""
        settings = self._settings
        try:
            notification = parse_notification(message.body, self._extensions)
        except BadEvent as err:
            self._poison(message, [(message_uri(settings.queue.url, message), BAD_EVENT, str(err))])
            return []
        for reason in notification.ignored:
            _LOG.info("watch: message %s: %s: ignored", message.message_id, reason)
        if not notification.uploads:
            self._queue.delete(message)
            watch_metrics.MESSAGES.labels("ignored").inc()
            return []
        versions = [(upload, _version(upload)) for upload in notification.uploads]
        delivery = Delivery(message, tuple((u.uri, version) for u, version in versions))
        if message.receive_count > settings.max_receives and not self._written(delivery):
            detail = (
                f"received {message.receive_count} times without a row (--max_receives "
                f"{settings.max_receives}): each attempt died before writing one"
            )
            self._poison(
                message,
                [(uri, RETRIES_EXHAUSTED, detail) for uri, _ in delivery.videos],
                delivery,
            )
            return []
        return [
            QueuedRef(
                upload.uri,
                version,
                upload.size,
                delivery=delivery,
                uploaded_at=upload.event_time.timestamp() if upload.event_time else None,
            )
            for upload, version in versions
        ]

    def _poison(
        self,
        message: Message,
        failures: list[tuple[str, str, str]],
        delivery: Delivery | None = None,
    ) -> None:
        """Write an error row for each ``(uri, code, detail)`` that has no row yet, then send
        the message to the dead-letter queue."""
        versions = dict(delivery.videos) if delivery else {}
        fallback = f"message:{message.message_id}"
        rows = [
            error_row(uri, versions.get(uri, fallback), self._model_version, code, detail)
            for uri, code, detail in failures
        ]

        def write(conn: Connection) -> None:
            missing = [
                row
                for row in rows
                if not database.has_row(
                    conn,
                    self._tables.results,
                    row["video_uri"],
                    row["content_version"],
                    self._model_version,
                )
            ]
            runs.write_rows(conn, self._tables, missing, self._run_id)

        database.transaction(self._engine, write, self._retry)
        for uri, code, detail in failures:
            _LOG.warning("watch: %s: %s: %s", uri, code, detail)
            watch_metrics.VIDEOS.labels("error").inc()
        _LOG.warning(
            "watch: message %s goes to the dead-letter queue: %s",
            message.message_id,
            excerpt(message.body),
        )
        self._queue.dead_letter(message, failures[0][1], self._settings.dead_letter_url)
        watch_metrics.MESSAGES.labels("dead_lettered").inc()

    def _written(self, delivery: Delivery) -> bool:
        return database.transaction(
            self._engine,
            lambda conn: all_written(conn, self._tables, delivery, self._model_version),
            self._retry,
        )

    def _skips(self, ref: QueuedRef) -> bool:
        """Whether ``ref`` already has a scored row from this model; if not, claim it, so that a
        nightly scan starting now leaves it to the watcher.

        Unlike a scan, the watcher scores a video that another live run has claimed: SQS hands a
        message to one receiver at a time, so a claim held elsewhere is most likely a killed
        watcher's whose heartbeat has not gone stale yet, and waiting for it would return the
        message until it counts as poison. Scoring twice is harmless (the upsert).
        """
        key = (ref.uri, ref.content_version, self._model_version)

        def plan(conn: Connection) -> bool:
            if database.is_scored(conn, self._tables.results, *key):
                return True
            runs.claim(conn, self._tables, key, self._run_id, self._liveness)
            return False

        return database.transaction(self._engine, plan, self._retry)
