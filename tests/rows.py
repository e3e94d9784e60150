"""Helpers for tests that need moderation rows and finished runs without running a scan."""

from __future__ import annotations

from pipelines.store import database, runs
from pipelines.store.migrations import migrate


def verdict(score: float, flagged: bool, segments: list[dict] | None = None) -> dict:
    """A ``model.verdict.verdict`` body for a 4-second, 64x64 video at 8 fps."""
    return {
        "score": score,
        "flagged": flagged,
        "threshold": 0.5,
        "segments": segments or [{"start_s": 0.0, "end_s": 1.0, "score": score}],
        "frames_analyzed": 8,
        "duration_s": 4.0,
        "width": 64,
        "height": 64,
        "fps": 8.0,
    }


def finished_run(
    db_url: str,
    run_id: str,
    version: str,
    rows: list[dict],
    seen: int | None = None,
    failed: bool = False,
    runner: str = "FnApiRunner",
) -> dict:
    """Writes a run's rows, listing and final counts as a scan does; returns its scan_runs row.

    ``seen`` defaults to the rows written; any more listed videos count as skipped.
    """
    seen = len(rows) if seen is None else seen
    engine = database.connect(db_url)
    try:
        migrate(engine)
        tables = database.Tables.reflect(engine)
        runs.start_run(engine, tables, run_id, "/videos", version, runner)
        with engine.begin() as conn:
            runs.write_rows(conn, tables, rows, run_id)
            runs.record_listing(conn, tables.runs, run_id, seen, seen - len(rows))
        return runs.finish_run(engine, tables, run_id, failed=failed)
    finally:
        engine.dispose()
