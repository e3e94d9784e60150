"""The watcher's Prometheus metrics, served by the watcher itself (``--metrics_port``).

The nightly scan pushes once at its end (``pipelines.scan.metrics``); a watcher runs for days, so
Prometheus scrapes it like any long-running service (``job="deeptrust_watch"``). The metrics live
in the process that runs the steps: with the local runner, the watcher's own process.

- ``deeptrust_watch_heartbeat_timestamp_seconds``: when the watcher last asked its queue for
  messages. The alert ``DeepTrustWatcherStalled`` fires when it ages (infra/prometheus).
- ``deeptrust_watch_queue_age_seconds``: how long the oldest message of the last receive had
  waited in the queue; 0 when the receive found none.
- ``deeptrust_watch_upload_to_row_seconds``: from the upload (the S3 event's time) to its row.
- ``deeptrust_watch_messages_total{outcome}``: deleted after their rows (``acknowledged``),
  deleted with nothing to score (``ignored``: test events, keys that are not videos), sent to
  the dead-letter queue (``dead_lettered``).
- ``deeptrust_watch_videos_total{outcome}``: rows written (``scored``, ``matched``, ``error``)
  and videos that already had a row (``skipped``).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

HEARTBEAT = Gauge(
    "deeptrust_watch_heartbeat_timestamp_seconds",
    "When the watcher last asked its queue for messages (Unix time).",
)
QUEUE_AGE = Gauge(
    "deeptrust_watch_queue_age_seconds",
    "How long the oldest message of the last receive had waited in the queue.",
)
UPLOAD_TO_ROW = Histogram(
    "deeptrust_watch_upload_to_row_seconds",
    "Seconds from an upload (its S3 event time) to its row in moderation_results.",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800),
)
MESSAGES = Counter(
    "deeptrust_watch_messages",
    "Queue messages by what became of them: acknowledged, ignored, dead_lettered.",
    ["outcome"],
)
VIDEOS = Counter(
    "deeptrust_watch_videos",
    "Videos by outcome: scored, matched, error (rows written) and skipped (already scored).",
    ["outcome"],
)


def beat(oldest_sent_at: float | None) -> None:
    """One receive done: the heartbeat now, and the age of the oldest message it brought."""
    now = time.time()
    HEARTBEAT.set(now)
    QUEUE_AGE.set(0.0 if oldest_sent_at is None else max(0.0, now - oldest_sent_at))


def serve(port: int, address: str) -> None:
    """Serve this process's metrics at ``http://address:port/metrics`` from a daemon thread."""
    start_http_server(port, addr=address)
