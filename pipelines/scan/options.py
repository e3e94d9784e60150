"""The scan's options: what to scan, with which model, into which database, in which batch sizes,
and which Beam runner runs it."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from model.adaptive import AdaptiveSampling
from model.runtime import FLOAT32
from pipelines.console import (
    DEFAULT_DB_URL,
    adaptive_sampling,
    add_precision_option,
    add_sampling_options,
)
from pipelines.scan import metrics
from pipelines.scan.isolation import SPARE_AFTER_S
from pipelines.scan.limits import DecodeLimits, add_decode_limit_options
from pipelines.scan.matching import KnownFakes, MatchSettings, add_match_options
from pipelines.scan.sharding import parse_shard
from pipelines.store import database, runs

# Beam's DirectRunner first tries the Prism runner, which downloads a binary. FnApiRunner is the
# engine it then falls back to for batch pipelines, so the local runner goes there directly.
LOCAL_RUNNER = "FnApiRunner"
_RUNNER_ALIASES = {
    "DirectRunner": LOCAL_RUNNER,
    "SwitchingDirectRunner": LOCAL_RUNNER,
    # Beam knows the Dask runner only by its full name.
    "DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner",
}


class ScanOptions(PipelineOptions):
    """What to scan, with which model, into which database, in which batch sizes."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        # No option is argparse-required: Beam parses every options class for every view.
        parser.add_argument("--input", help="local folder or file, glob, or s3://bucket/prefix")
        parser.add_argument("--model", help="model bundle: a local folder or s3:// prefix")
        parser.add_argument(
            "--db",
            default=DEFAULT_DB_URL,
            help="SQLAlchemy URL of the moderation database (default: %(default)s)",
        )
        parser.add_argument(
            "--rescan",
            action="store_true",
            help="score every video again, even those already scored by this model",
        )
        parser.add_argument(
            "--min_batch_windows",
            type=int,
            default=16,
            help="windows gathered across videos before a model call (default: %(default)s)",
        )
        parser.add_argument(
            "--max_batch_windows",
            type=int,
            default=64,
            help="most windows in one model call, to bound accelerator memory "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--decode_groups",
            type=int,
            default=16,
            help="groups the videos are decoded in, in parallel (default: %(default)s)",
        )
        parser.add_argument(
            "--decoders",
            type=int,
            default=1,
            help="decoder processes per worker process, shared by its threads; one keeps up "
            "with a CPU's model, a GPU needs more. A spare starts when every one has spent "
            f"{SPARE_AFTER_S:g} s on one video (default: %(default)s)",
        )
        parser.add_argument(
            "--write_batch_size",
            type=int,
            default=100,
            help="rows per database upsert (default: %(default)s)",
        )
        add_decode_limit_options(parser)
        parser.add_argument(
            "--db_attempts",
            type=int,
            default=database.Retry.attempts,
            help="tries of each database transaction when the connection is refused or lost "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--db_retry_backoff_s",
            type=float,
            default=database.Retry.backoff_s,
            help="pause before the second try, doubled before each further one "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--video_extensions",
            default="mp4,mov,avi,mkv,webm,m4v",
            help="file extensions scanned as videos (default: %(default)s)",
        )
        parser.add_argument(
            "--shard",
            help="scan only shard INDEX/COUNT of the listing, split by a stable hash of each "
            "object's URI (parallel backfills)",
        )
        parser.add_argument(
            "--heartbeat_s",
            type=float,
            default=runs.Liveness.heartbeat_s,
            help="seconds between the run's heartbeats in scan_runs (default: %(default)s)",
        )
        parser.add_argument(
            "--stale_after_s",
            type=float,
            default=runs.Liveness.stale_after_s,
            help="a running scan silent this long is marked abandoned and its videos may be "
            "claimed by another scan (default: %(default)s)",
        )
        add_match_options(parser)
        add_precision_option(parser, default=FLOAT32)
        add_sampling_options(parser)
        parser.add_argument(
            "--pushgateway",
            help="Prometheus Pushgateway URL that gets the run's metrics at its end "
            f"(default: ${metrics.PUSHGATEWAY_ENV}; unset: no push)",
        )

    def check(self) -> None:
        """Raise ValueError for options that cannot make a scan."""
        if not self.input or not self.model:
            raise ValueError("--input and --model are required")
        self.check_settings()

    def check_settings(self) -> None:
        """Raise ValueError for settings out of range (all but what to scan: the watcher's
        source is its queue)."""
        counts = (
            "min_batch_windows",
            "max_batch_windows",
            "decode_groups",
            "decoders",
            "write_batch_size",
            "max_video_bytes",
            "db_attempts",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1")
        if self.heartbeat_s <= 0 or self.stale_after_s <= self.heartbeat_s:
            raise ValueError("--stale_after_s must exceed --heartbeat_s, which must be positive")
        if self.decode_timeout_s <= 0:
            raise ValueError("--decode_timeout_s must be positive")
        if self.db_retry_backoff_s < 0:
            raise ValueError("--db_retry_backoff_s must not be negative")
        if self.min_batch_windows > self.max_batch_windows:
            raise ValueError("--min_batch_windows must not exceed --max_batch_windows")
        if self.shard:
            parse_shard(self.shard)
        _ = self.adaptive  # AdaptiveSampling refuses settings out of range
        _ = self.known_fakes  # MatchSettings refuses thresholds out of range

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(e.strip().lower().lstrip(".") for e in self.video_extensions.split(","))

    @property
    def listing_shard(self) -> tuple[int, int] | None:
        return parse_shard(self.shard) if self.shard else None

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_video_bytes, timeout_s=self.decode_timeout_s)

    @property
    def liveness(self) -> runs.Liveness:
        return runs.Liveness(heartbeat_s=self.heartbeat_s, stale_after_s=self.stale_after_s)

    @property
    def db_retry(self) -> database.Retry:
        return database.Retry(attempts=self.db_attempts, backoff_s=self.db_retry_backoff_s)

    @property
    def adaptive(self) -> AdaptiveSampling | None:
        """Adaptive sampling's settings, or None when every window is scored."""
        return adaptive_sampling(self)

    @property
    def known_fakes(self) -> KnownFakes:
        """The bank of known fakes in ``--db``, matched with the ``--match_*`` thresholds."""
        settings = MatchSettings(
            quality=self.match_quality,
            distance=self.match_distance,
            query_share=self.match_query_share,
            bank_share=self.match_bank_share,
        )
        return KnownFakes(self.db, settings, self.db_retry)


def resolve_runner(name: str | None) -> str:
    """The runner to use for ``--runner``; the local default never reaches the network."""
    name = name or LOCAL_RUNNER
    return _RUNNER_ALIASES.get(name, name)
