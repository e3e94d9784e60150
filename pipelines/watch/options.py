"""The watcher's own options: which queue, how long a batch may wait, when a message is poison,
and how the watcher shows it is alive. Everything else (model, database, decode limits, batch
sizes, known fakes) is the scan's own option (``pipelines.scan.options``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.watch.queue import MAX_WAIT_S, Queue

# SQS's longest visibility timeout: 12 hours.
MAX_VISIBILITY_S = 43200


class WatchOptions(PipelineOptions):
    """Where the upload events come from and how the watcher paces itself."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--queue", help="URL of the SQS queue that the uploads bucket notifies (required)"
        )
        parser.add_argument(
            "--dead_letter_queue",
            help="URL of the SQS queue that gets poison messages (bodies that are no S3 event, "
            "videos delivered --max_receives times without a row); unset: they are deleted "
            "once their error row is written",
        )
        parser.add_argument(
            "--sqs_endpoint_url",
            help="SQS endpoint (default: boto3's choice, $AWS_ENDPOINT_URL_SQS included)",
        )
        parser.add_argument(
            "--max_batch_wait_s",
            type=float,
            default=2.0,
            help="seconds a batch waits for more uploads after its first one before it is "
            "decoded and scored (default: %(default)s)",
        )
        parser.add_argument(
            "--max_batch_messages",
            type=int,
            default=10,
            help="messages gathered into one batch at most (default: %(default)s)",
        )
        parser.add_argument(
            "--poll_wait_s",
            type=int,
            default=10,
            help=f"seconds one idle receive waits for a message (SQS long polling, at most "
            f"{MAX_WAIT_S}); also the most a stop waits for the receive in hand "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--visibility_timeout_s",
            type=int,
            default=300,
            help="seconds a received message stays hidden from other receives; a watcher that "
            "dies leaves its messages to come back after this (default: %(default)s)",
        )
        parser.add_argument(
            "--max_receives",
            type=int,
            default=5,
            help="a message received more often than this without its rows is poison: its "
            "videos get the error row retries_exhausted and it goes to --dead_letter_queue "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--liveness_file",
            help="a file rewritten with the time after every receive, for a liveness probe; "
            "removed when the watcher stops",
        )
        parser.add_argument(
            "--metrics_port",
            type=int,
            default=0,
            help="serve Prometheus metrics on this port at /metrics (default: 0, none)",
        )
        parser.add_argument(
            "--metrics_address",
            default="0.0.0.0",
            help="address the metrics server listens on (default: %(default)s)",
        )

    def check(self) -> None:
        """Raise ValueError for options that cannot make a watcher."""
        if not self.queue:
            raise ValueError("--queue is required")
        if self.max_batch_wait_s < 0:
            raise ValueError("--max_batch_wait_s must not be negative")
        if not 1 <= self.max_batch_messages <= 100:
            raise ValueError("--max_batch_messages must be between 1 and 100")
        if not 1 <= self.poll_wait_s <= MAX_WAIT_S:
            raise ValueError(f"--poll_wait_s must be between 1 and {MAX_WAIT_S}")
        if not 1 <= self.visibility_timeout_s <= MAX_VISIBILITY_S:
            raise ValueError(f"--visibility_timeout_s must be between 1 and {MAX_VISIBILITY_S}")
        if self.max_receives < 1:
            raise ValueError("--max_receives must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics_port must be a port number (0: none)")

    @property
    def settings(self) -> WatchSettings:
        return WatchSettings(
            queue=Queue(self.queue, self.sqs_endpoint_url),
            dead_letter_url=self.dead_letter_queue,
            max_batch_wait_s=self.max_batch_wait_s,
            max_batch_messages=self.max_batch_messages,
            poll_wait_s=self.poll_wait_s,
            visibility_timeout_s=self.visibility_timeout_s,
            max_receives=self.max_receives,
            liveness_file=self.liveness_file,
        )


@dataclass(frozen=True)
class WatchSettings:
    """What the watcher's steps carry to the workers (picklable)."""

    queue: Queue
    dead_letter_url: str | None = None
    max_batch_wait_s: float = 2.0
    max_batch_messages: int = 10
    poll_wait_s: int = 10
    visibility_timeout_s: int = 300
    max_receives: int = 5
    liveness_file: str | None = None
