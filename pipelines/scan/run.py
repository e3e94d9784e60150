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
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from model.bundle import check_precision, detector_config, read_bundle_manifest
from model.config import DetectorConfig
from model.errors import BundleError
from model.runtime import scored_version
from model.storage import is_s3, prefer_standard_retries
from pipelines.console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, emit, progress
from pipelines.scan import metrics
from pipelines.scan.decoders import ChildDecoders, Decoders
from pipelines.scan.graph import build_scan
from pipelines.scan.inference import WindowModelHandler
from pipelines.scan.options import ScanOptions, resolve_runner
from pipelines.store import database, runs
from pipelines.store.migrations import migrate


class ScanFailed(Exception):
    """The run itself failed (not a video): ``summary`` is what the run's row recorded."""

    def __init__(self, summary: dict[str, Any], cause: BaseException) -> None:
        super().__init__(f"scan {summary['run_id']} failed: {type(cause).__name__}: {cause}")
        self.summary = summary


class Stopped(Exception):
    """The scan was told to stop (SIGTERM, as Airflow and schedulers send, or Ctrl-C)."""


@contextlib.contextmanager
def on_stop_signals(stop: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGINT calls ``stop``; a second signal ends the
    process at once. The previous handlers come back on exit, so an in-process caller keeps its
    own."""
    stopping = (signal.SIGTERM, signal.SIGINT)
    previous = {each: signal.getsignal(each) for each in stopping}

    def handle(signum: int, _frame: Any) -> None:
        for each in stopping:
            signal.signal(each, signal.SIG_DFL)
        stop(signal.Signals(signum))

    for each in stopping:
        signal.signal(each, handle)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _raise_stopped(signum: signal.Signals) -> None:
    raise Stopped(f"stopped by {signum.name}")


def stop_on_signals() -> contextlib.AbstractContextManager[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped`, so a stopped scan records
    itself as failed rather than staying ``running``; a second signal ends the process at once."""
    return on_stop_signals(_raise_stopped)


def bundle_settings(model: str, precision: str) -> tuple[dict[str, Any], DetectorConfig]:
    """The bundle's manifest and detector settings; BundleError when they are unusable, or when
    the bundle cannot run in ``precision``."""
    manifest = read_bundle_manifest(model)
    check_precision(manifest, precision)
    try:
        return manifest, detector_config(manifest)
    except ValueError as err:
        raise BundleError(f"{model}: {err}") from err


@contextlib.contextmanager
def live_run(
    engine: Engine,
    tables: database.Tables,
    scan: ScanOptions,
    run_id: str,
    source: str,
    manifest: dict[str, Any],
    runner: str,
    noun: str = "scan",
) -> Iterator[None]:
    """Mark the runs that died as abandoned, then record ``run_id`` (reading ``source``) as
    running, with its heartbeat kept for the block; finish the run within the block."""
    for dead in runs.reap(engine, tables.runs, scan.liveness, scan.db_retry):
        progress(f"scan {dead} is no longer running: marked abandoned")
    version = scored_version(manifest["model_version"], scan.precision)
    with runs.alive(engine, tables.runs, run_id, scan.heartbeat_s):
        runs.start_run(engine, tables, run_id, source, version, runner, scan.db_retry)
        progress(
            f"{noun} {run_id}: {source} with model {version} "
            f"({manifest['backbone']['weights_label']}) on {runner}"
        )
        yield


def ready_database(engine: Engine, retry: database.Retry) -> database.Tables:
    """Check that the database answers, bring its schema up to date, and reflect its tables."""
    database.transaction(engine, lambda conn: conn.execute(text("SELECT 1")), retry)
    migrate(engine)
    return database.Tables.reflect(engine)


class RunNotRecorded(Exception):
    """The database went away for good during the run, so its outcome could not be written."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        reason = str(cause).splitlines()[0]
        super().__init__(
            f"scan {run_id} stopped and the database is unreachable, so scan_runs keeps it as "
            f"'running'; the next scan scores whatever has no row ({type(cause).__name__}: "
            f"{reason})"
        )


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def summarize(run: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "run_id",
        "status",
        "runner",
        "videos_seen",
        "skipped",
        "scored",
        "matched",
        "flagged",
        "errors",
    )
    summary = {key: run[key] for key in keys}
    summary.update(
        input=run["input_uri"],
        model_version=run["model_version"],
        backbone_weights=manifest["backbone"]["weights_label"],
        seconds=round((run["finished_at"] - run["started_at"]).total_seconds(), 1),
    )
    return summary


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    decoders: Decoders | None = None,
) -> dict[str, Any]:
    """Run one scan and return its summary.

    The scan runs on ``test_pipeline`` when given (Beam's convention), else on a pipeline made
    from ``argv``; the bundle's detector scores it, and ``decoders`` decode it (by default,
    ``--decoders`` child processes per worker process).

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
    manifest, config = bundle_settings(scan.model, scan.precision)
    prefer_standard_retries()
    retry = scan.db_retry
    engine = database.connect(scan.db)
    try:
        tables = ready_database(engine, retry)
        run_id = new_run_id()
        version = scored_version(manifest["model_version"], scan.precision)
        runner = standard.runner.rsplit(".", 1)[-1]
        with live_run(engine, tables, scan, run_id, scan.input, manifest, runner):
            pipeline = beam.Pipeline(options=options) if test_pipeline is None else test_pipeline
            handler = WindowModelHandler(
                scan.model,
                manifest["model_version"],
                scan.max_batch_windows,
                scan.precision,
                scan.adaptive,
            )
            if decoders is None:
                decoders = ChildDecoders(size=scan.decoders)
            build_scan(pipeline, scan, config, version, run_id, handler=handler, decoders=decoders)
            failure: Exception | None = None
            try:
                execute(pipeline)
            except Exception as err:
                failure = err
            try:
                finished = runs.finish_run(engine, tables, run_id, failure is not None, retry)
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
        done = summary["skipped"] + summary["scored"] + summary["matched"] + summary["errors"]
        lost = summary["videos_seen"] - done
        progress(f"deeptrust scan: {lost} listed videos have no row: the run is incomplete")
    emit(summary)
    return EXIT_OK if summary["status"] == "succeeded" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
