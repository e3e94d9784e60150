"""The watcher: score uploads within seconds of their arrival, from the bucket's SQS events.

Run it on Beam's local runner (the default; it never touches the network but for SQS, S3 and the
database)::

    python -m pipelines.watch --queue https://sqs.eu-west-1.amazonaws.com/123/uploads \\
        --dead_letter_queue https://sqs.eu-west-1.amazonaws.com/123/uploads-dead \\
        --model s3://models/detector --db postgresql+psycopg://moderation@db/moderation \\
        --liveness_file /tmp/deeptrust-alive --metrics_port 9464

or as a streaming job on Dataflow or Flink with their usual options plus ``--setup_file
./setup.py``. ``deeptrust watch`` takes the same arguments, and every scan option that shapes
the work (decode limits, batch sizes, decoders, known fakes, precision, database retries).

What it does, step by step:

1. records a run in ``scan_runs`` (its runner starts with ``watch:``) and keeps its heartbeat;
2. long-polls the queue; a batch waits at most ``--max_batch_wait_s`` after its first upload;
3. decodes each video in an isolated child under the scan's limits, matches known fakes,
   scores the rest in batches with the bundle's detector;
4. upserts one row per video (scored, matched or error) and only then deletes the message;
5. on SIGTERM or Ctrl-C takes no new message, finishes those in hand, records the run as
   ``succeeded`` and exits 0; the last stdout line is a JSON summary.

Exit status: 0 stopped on request; 1 the watcher failed (the database or the queue went away
for good, a refused bundle); 2 bad options.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from sqlalchemy.exc import SQLAlchemyError

from model.errors import BundleError
from model.runtime import scored_version
from model.storage import prefer_standard_retries
from pipelines.console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, emit, progress
from pipelines.scan.decoders import ChildDecoders, Decoders
from pipelines.scan.inference import WindowModelHandler
from pipelines.scan.options import ScanOptions, resolve_runner
from pipelines.scan.run import (
    bundle_settings,
    execute,
    live_run,
    new_run_id,
    on_stop_signals,
    ready_database,
)
from pipelines.store import database, runs
from pipelines.watch import lifecycle
from pipelines.watch import metrics as watch_metrics
from pipelines.watch.graph import build_watch
from pipelines.watch.options import WatchOptions

# The scan's options that a watcher has no use for: its videos come from the queue.
SCAN_ONLY = (
    "--input",
    "--rescan",
    "--shard",
    "--decode_groups",
    "--write_batch_size",
    "--pushgateway",
)


class WatchFailed(Exception):
    """The watcher stopped for another reason than a request; ``summary`` is its run's."""

    def __init__(self, summary: dict[str, Any], cause: BaseException) -> None:
        super().__init__(f"watcher {summary['run_id']} failed: {type(cause).__name__}: {cause}")
        self.summary = summary


def _summary(run: dict[str, Any], queue: str) -> dict[str, Any]:
    keys = ("run_id", "status", "runner", "scored", "matched", "flagged", "errors")
    return {key: run[key] for key in keys} | {
        "queue": queue,
        "model_version": run["model_version"],
        "seconds": round((run["finished_at"] - run["started_at"]).total_seconds(), 1),
    }


class _HideStopped(logging.Filter):
    """Beam logs the exception that ends a stopped watcher as an error; it is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, lifecycle.WatchStopped) or lifecycle.STOPPED in record.getMessage()
        )


@contextlib.contextmanager
def _quiet_stop() -> Iterator[None]:
    beam_log = logging.getLogger("apache_beam")
    hide = _HideStopped()
    beam_log.addFilter(hide)
    for handler in logging.getLogger().handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        beam_log.removeFilter(hide)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(hide)


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    decoders: Decoders | None = None,
) -> dict[str, Any]:
    """Watch the queue until a stop is requested (``lifecycle.request_stop``, SIGTERM in
    ``main``); return the run's summary.

    Raises ValueError for unusable options, BundleError for a refused bundle, SQLAlchemyError
    when the database is unreachable at the start, and WatchFailed when the pipeline failed.
    """
    options = PipelineOptions(argv)
    watch = options.view_as(WatchOptions)
    scan = options.view_as(ScanOptions)
    watch.check()
    if not scan.model:
        raise ValueError("--model is required")
    scan.check_settings()
    standard = options.view_as(StandardOptions)
    standard.runner = resolve_runner(standard.runner)
    standard.streaming = True
    manifest, config = bundle_settings(scan.model, scan.precision)
    prefer_standard_retries()
    retry = scan.db_retry
    engine = database.connect(scan.db)
    try:
        tables = ready_database(engine, retry)
        run_id = f"watch-{new_run_id()}"
        version = scored_version(manifest["model_version"], scan.precision)
        runner = runs.WATCHER_RUNNER + standard.runner.rsplit(".", 1)[-1]
        if watch.metrics_port:
            watch_metrics.serve(watch.metrics_port, watch.metrics_address)
        with live_run(engine, tables, scan, run_id, watch.queue, manifest, runner, "watcher"):
            pipeline = beam.Pipeline(options=options) if test_pipeline is None else test_pipeline
            handler = WindowModelHandler(
                scan.model,
                manifest["model_version"],
                scan.max_batch_windows,
                scan.precision,
                scan.adaptive,
            )
            build_watch(
                pipeline,
                watch.settings,
                scan,
                config,
                version,
                run_id,
                handler=handler,
                decoders=ChildDecoders(size=scan.decoders) if decoders is None else decoders,
            )
            failure: Exception | None = None
            try:
                with _quiet_stop():
                    execute(pipeline)
            except Exception as err:
                if not lifecycle.stop_requested():
                    failure = err
            finally:
                lifecycle.remove_liveness(watch.liveness_file)
            finished = _finish(engine, tables, run_id, failure is not None, retry)
        summary = _summary(finished, watch.queue)
        if failure is not None:
            raise WatchFailed(summary, failure) from failure
        return summary
    finally:
        engine.dispose()


def _finish(
    engine: Any, tables: database.Tables, run_id: str, failed: bool, retry: database.Retry
) -> dict[str, Any]:
    """Close the run: its videos seen are the rows it wrote (a queue has no listing)."""

    def record(conn: Any) -> None:
        scored, matched, _flagged, errors = runs.counts(conn, tables.ledger, run_id)
        runs.record_listing(conn, tables.runs, run_id, scored + matched + errors, 0)

    database.transaction(engine, record, retry)
    return runs.finish_run(engine, tables, run_id, failed, retry)


class _HidingScanOnly:
    """Adds the scan's options to a parser, hiding those a watcher does not use from --help."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        if names[0] in SCAN_ONLY:
            kwargs["help"] = argparse.SUPPRESS
        return self._parser.add_argument(*names, **kwargs)


def parser() -> argparse.ArgumentParser:
    """``deeptrust watch``'s parser: for --help and for checking options before the start."""
    parsed = argparse.ArgumentParser(
        prog="deeptrust watch",
        description="Score uploads within seconds of their arrival: read the bucket's S3 event "
        "notifications from an SQS queue, score each new video and upsert its row, then delete "
        "the message. Runs until SIGTERM or Ctrl-C.",
        epilog="Beam pipeline options (--runner, --s3_endpoint_url, ...) pass through. "
        "Endpoints also come from $AWS_ENDPOINT_URL_SQS and $AWS_ENDPOINT_URL_S3; credentials "
        "only from the environment or the machine's role. Exit status: 0 stopped on request, "
        "1 failed, 2 bad options.",
    )
    WatchOptions._add_argparse_args(parsed)
    ScanOptions._add_argparse_args(_HidingScanOnly(parsed))
    return parsed


def _stop_gracefully(signum: signal.Signals) -> None:
    progress(
        f"deeptrust watch: {signum.name}: finishing the messages in hand, then stopping "
        "(send it again to stop at once)"
    )
    lifecycle.request_stop()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m pipelines.watch`` and ``deeptrust watch``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    known, _ = parser().parse_known_args(argv)
    if known.input:
        progress("deeptrust watch: error: --input is the scan's; the watcher reads --queue")
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.INFO)
    try:
        with on_stop_signals(_stop_gracefully), lifecycle.stop_cleared():
            summary = run(argv)
    except ValueError as err:
        progress(f"deeptrust watch: error: {err}")
        return EXIT_USAGE
    except WatchFailed as err:
        progress(f"deeptrust watch: {err}")
        emit(err.summary)
        return EXIT_FAILED
    except (BundleError, SQLAlchemyError, FileNotFoundError) as err:
        progress(f"deeptrust watch: the watcher could not start: {type(err).__name__}: {err}")
        return EXIT_FAILED
    progress(f"deeptrust watch: stopped; {summary['scored']} scored, {summary['errors']} errors")
    emit(summary)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
