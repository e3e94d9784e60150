"""The nightly scan: list videos, score the new ones, and upsert one row per video.

Run it locally (the default runner is Beam's in-process FnApiRunner; nothing touches the
network)::

    python -m pipelines.scan --input s3://uploads/2024-06-01/ --model ./bundle \\
        --db postgresql+psycopg://moderation@db/moderation

on a Dask cluster::

    python -m pipelines.scan --input ./videos --model ./bundle --db sqlite:///deeptrust.db \\
        --runner=DaskRunner --dask_client_address=tcp://scheduler:8786

or on Dataflow, Flink or Spark with their usual options plus ``--setup_file ./setup.py``.
``deeptrust scan`` takes the same arguments. The last stdout line is a JSON summary; the exit
status is 0 when the run finished (error rows included) and 1 when the run itself failed. A
scan stopped by SIGTERM or Ctrl-C records its run as ``failed`` and exits 1; the next scan
scores whatever has no row.

Every database transaction is retried with back-off when the connection is refused or lost
(``--db_attempts``, ``--db_retry_backoff_s``); each video is decoded in a child process under
``--decode_timeout_s`` once its listed size passed ``--max_video_bytes``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from model.bundle import detector_config, read_manifest
from model.config import DetectorConfig
from model.errors import BundleError
from model.runtime import FLOAT32
from model.storage import fetch_tree, is_s3, prefer_standard_retries
from pipelines import metrics, store
from pipelines.cli import (
    DEFAULT_DB_URL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_precision_option,
    emit,
    progress,
)
from pipelines.decode import DecodeLimits, ExtractWindows
from pipelines.inference import ScoreWindows, WindowModelHandler
from pipelines.isolation import SPARE_AFTER_S
from pipelines.listing import CountListing, ListVideos, PlanScan
from pipelines.migrations import migrate
from pipelines.sharding import parse_shard
from pipelines.writing import WriteModerationResults

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
        parser.add_argument(
            "--max_video_bytes",
            type=int,
            default=DecodeLimits.max_bytes,
            help="larger videos are not downloaded or decoded but get an error row "
            "too_large (default: %(default)s)",
        )
        parser.add_argument(
            "--decode_timeout_s",
            type=float,
            default=DecodeLimits.timeout_s,
            help="seconds one video may take to decode before its decoder is stopped and it "
            "gets an error row decode_timeout (default: %(default)s)",
        )
        parser.add_argument(
            "--db_attempts",
            type=int,
            default=store.Retry.attempts,
            help="tries of each database transaction when the connection is refused or lost "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--db_retry_backoff_s",
            type=float,
            default=store.Retry.backoff_s,
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
        add_precision_option(parser, default=FLOAT32)
        parser.add_argument(
            "--pushgateway",
            help="Prometheus Pushgateway URL that gets the run's metrics at its end "
            f"(default: ${metrics.PUSHGATEWAY_ENV}; unset: no push)",
        )

    def check(self) -> None:
        """Raise ValueError for options that cannot make a scan."""
        if not self.input or not self.model:
            raise ValueError("--input and --model are required")
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
        if self.decode_timeout_s <= 0:
            raise ValueError("--decode_timeout_s must be positive")
        if self.db_retry_backoff_s < 0:
            raise ValueError("--db_retry_backoff_s must not be negative")
        if self.min_batch_windows > self.max_batch_windows:
            raise ValueError("--min_batch_windows must not exceed --max_batch_windows")
        if self.shard:
            parse_shard(self.shard)

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
    def db_retry(self) -> store.Retry:
        return store.Retry(attempts=self.db_attempts, backoff_s=self.db_retry_backoff_s)


class ScanFailed(Exception):
    """The run itself failed (not a video): ``summary`` is what the run's row recorded."""

    def __init__(self, summary: dict[str, Any], cause: BaseException) -> None:
        super().__init__(f"scan {summary['run_id']} failed: {type(cause).__name__}: {cause}")
        self.summary = summary


class Stopped(Exception):
    """The scan was told to stop (SIGTERM, as Airflow and schedulers send, or Ctrl-C)."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped`, so a stopped scan records
    itself as failed rather than staying ``running``; a second signal ends the process at once.
    The previous handlers come back on exit, so an in-process caller keeps its own."""
    stopping = (signal.SIGTERM, signal.SIGINT)
    previous = {each: signal.getsignal(each) for each in stopping}

    def stop(signum: int, _frame: Any) -> None:
        for each in stopping:
            signal.signal(each, signal.SIG_DFL)
        raise Stopped(f"stopped by {signal.Signals(signum).name}")

    for each in stopping:
        signal.signal(each, stop)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


class RunNotRecorded(Exception):
    """The database went away for good during the run, so its outcome could not be written."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        reason = str(cause).splitlines()[0]
        super().__init__(
            f"scan {run_id} stopped and the database is unreachable, so scan_runs keeps it as "
            f"'running'; the next scan scores whatever has no row ({type(cause).__name__}: "
            f"{reason})"
        )


class ScanVideos(beam.PTransform):
    """PBegin -> rows in the database, for every new video under ``scan.input``."""

    def __init__(
        self, scan: ScanOptions, config: DetectorConfig, model_version: str, run_id: str
    ) -> None:
        super().__init__()
        self._scan = scan
        self._config = config
        self._model_version = model_version
        self._run_id = run_id

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        scan, config, version = self._scan, self._config, self._model_version
        planned = (
            pbegin
            | "List videos" >> ListVideos(scan.input, scan.extensions, scan.listing_shard)
            | "Plan the scan" >> beam.ParDo(PlanScan(scan.db, version, scan.rescan, scan.db_retry))
        )
        tally = planned | "Count the listing" >> CountListing()
        extracted = (
            planned
            | "Drop already scored" >> beam.FlatMap(lambda item: [] if item.skip else [item.ref])
            | "Extract windows"
            >> ExtractWindows(
                config,
                version,
                scan.decode_groups,
                scan.min_batch_windows,
                scan.limits,
                scan.decoders,
            )
        )
        handler = WindowModelHandler(scan.model, version, scan.max_batch_windows, scan.precision)
        scored = (
            extracted
            | "Window batches" >> beam.Filter(lambda item: isinstance(item, list))
            | "Score windows" >> ScoreWindows(handler, config.decision)
        )
        failed = extracted | "Failed videos" >> beam.Filter(lambda item: isinstance(item, dict))
        # A writer per branch, so rows reach the database as videos finish: the local runner
        # fuses each writer into the step that feeds it, where one writer behind a Flatten would
        # run only once every branch had ended. The writers emit nothing; the last Flatten joins
        # them because the Dask runner computes only the last step's graph.
        run_id, size, retry = self._run_id, scan.write_batch_size, scan.db_retry
        branches = {"scored rows": scored, "error rows": failed, "the listing": tally}
        return [
            branch | f"Write {name}" >> WriteModerationResults(scan.db, run_id, size, retry)
            for name, branch in branches.items()
        ] | "Every write done" >> beam.Flatten()


def resolve_runner(name: str | None) -> str:
    """The runner to use for ``--runner``; the local default never reaches the network."""
    name = name or LOCAL_RUNNER
    return _RUNNER_ALIASES.get(name, name)


def read_bundle_manifest(uri: str) -> dict[str, Any]:
    """Verify a bundle's manifest and files, locally or on S3, without building the model."""
    with tempfile.TemporaryDirectory(prefix="deeptrust-bundle-") as tmp:
        return read_manifest(fetch_tree(uri, tmp))


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def summarize(run: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "status", "runner", "videos_seen", "skipped", "scored", "flagged", "errors")
    summary = {key: run[key] for key in keys}
    summary.update(
        input=run["input_uri"],
        model_version=manifest["model_version"],
        backbone_weights=manifest["backbone"]["weights_label"],
        seconds=round((run["finished_at"] - run["started_at"]).total_seconds(), 1),
    )
    return summary


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one scan and return its summary.

    Raises ValueError for unusable options, BundleError for a refused bundle, SQLAlchemyError when
    the database is unreachable at the start (nothing is written then), ScanFailed when the
    pipeline fails once the run has started, and RunNotRecorded when the database went away for
    good during the run.
    """
    options = PipelineOptions(argv)
    scan = options.view_as(ScanOptions)
    scan.check()
    if not is_s3(scan.input):
        scan.input = os.path.abspath(scan.input)
    standard = options.view_as(StandardOptions)
    standard.runner = resolve_runner(standard.runner)
    manifest = read_bundle_manifest(scan.model)
    try:
        config = detector_config(manifest)
    except ValueError as err:
        raise BundleError(f"{scan.model}: {err}") from err
    prefer_standard_retries()
    retry = scan.db_retry
    engine = store.connect(scan.db)
    try:
        store.transaction(engine, lambda conn: conn.execute(text("SELECT 1")), retry)
        migrate(engine)
        tables = store.Tables.reflect(engine)
        run_id = new_run_id()
        version = manifest["model_version"]
        runner = standard.runner.rsplit(".", 1)[-1]
        store.start_run(engine, tables, run_id, scan.input, version, runner, retry)
        progress(
            f"scan {run_id}: {scan.input} with model {version} "
            f"({manifest['backbone']['weights_label']}) on {runner}"
        )
        pipeline = beam.Pipeline(options=options)
        _ = pipeline | "Scan videos" >> ScanVideos(scan, config, version, run_id)
        failure: Exception | None = None
        try:
            execute(pipeline)
        except Exception as err:
            failure = err
        try:
            finished = store.finish_run(engine, tables, run_id, failure is not None, retry)
        except SQLAlchemyError as err:
            raise RunNotRecorded(run_id, failure or err) from err
        push = metrics.publish_run(engine, run_id, metrics.gateway_url(scan.pushgateway))
        summary = summarize(finished, manifest) | {"metrics_push": push}
        if failure is not None:
            raise ScanFailed(summary, failure) from failure
        return summary
    finally:
        engine.dispose()


def execute(pipeline: beam.Pipeline) -> None:
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        # The Dask runner leaves its distributed client connected; let the scheduler go.
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m pipelines.scan`` and ``deeptrust scan``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="deeptrust scan",
        description="Score new videos for deepfakes and upsert one row per video.",
        epilog="Beam pipeline options (--runner, --s3_endpoint_url, ...) pass through.",
    )
    ScanOptions._add_argparse_args(parser)
    parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.INFO)
    try:
        with stop_on_signals():
            summary = run(argv)
    except ValueError as err:
        progress(f"deeptrust scan: error: {err}")
        return EXIT_USAGE
    except ScanFailed as err:
        progress(f"deeptrust scan: {err}")
        emit(err.summary)
        return EXIT_FAILED
    except (RunNotRecorded, Stopped) as err:
        progress(f"deeptrust scan: {err}")
        return EXIT_FAILED
    except (BundleError, SQLAlchemyError, FileNotFoundError) as err:
        progress(f"deeptrust scan: the run could not start: {type(err).__name__}: {err}")
        return EXIT_FAILED
    if summary["status"] != "succeeded":
        lost = summary["videos_seen"] - summary["skipped"] - summary["scored"] - summary["errors"]
        progress(f"deeptrust scan: {lost} listed videos have no row: the run is incomplete")
    emit(summary)
    return EXIT_OK if summary["status"] == "succeeded" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
