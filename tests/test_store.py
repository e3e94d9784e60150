"""Rows in the moderation tables: idempotent upserts, skips, and honest run counts."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from pipelines.scan import writing
from pipelines.store import database, runs

VERDICT = {
    "score": 0.91,
    "flagged": True,
    "threshold": 0.5,
    "segments": [{"start_s": 0.0, "end_s": 1.0, "score": 0.91}],
    "frames_analyzed": 8,
    "duration_s": 2.0,
    "width": 320,
    "height": 240,
    "fps": 25.0,
}


def rows(engine, tables):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(tables.results))]


def upsert(engine, tables, batch, run_id):
    with engine.begin() as conn:
        database.upsert_results(conn, tables.results, batch, run_id)


def test_writing_the_same_rows_twice_keeps_one_row_per_key(db):
    engine, tables = db
    row = writing.scored_row("s3://b/v.mp4", "etag:1:size:9", "m1", VERDICT)
    upsert(engine, tables, [row], "run-1")
    upsert(engine, tables, [row], "run-2")
    (stored,) = rows(engine, tables)
    assert stored["run_id"] == "run-2"
    assert stored["flagged"] is True
    assert stored["review_status"] == "pending"
    assert json.loads(stored["segments"]) == VERDICT["segments"]


def test_a_new_content_or_model_version_is_a_new_row(db):
    engine, tables = db
    upsert(
        engine,
        tables,
        [
            writing.scored_row("v", "c1", "m1", VERDICT),
            writing.scored_row("v", "c2", "m1", VERDICT),
            writing.scored_row("v", "c1", "m2", VERDICT),
        ],
        "run-1",
    )
    assert len(rows(engine, tables)) == 3


def test_a_moderators_decision_survives_a_rescan(db):
    engine, tables = db
    row = writing.scored_row("v", "c", "m", VERDICT)
    upsert(engine, tables, [row], "run-1")
    with engine.begin() as conn:
        conn.execute(tables.results.update().values(review_status="confirmed"))
    upsert(engine, tables, [row], "run-2")
    assert rows(engine, tables)[0]["review_status"] == "confirmed"


def test_error_rows_do_not_count_as_scored_and_are_replaced_by_a_retry(db):
    engine, tables = db
    upsert(engine, tables, [writing.error_row("v", "c", "m", "unreadable", "bad header")], "run-1")
    with engine.connect() as conn:
        assert not database.is_scored(conn, tables.results, "v", "c", "m")
    upsert(engine, tables, [writing.scored_row("v", "c", "m", VERDICT)], "run-2")
    with engine.connect() as conn:
        assert database.is_scored(conn, tables.results, "v", "c", "m")
        assert conn.execute(select(func.count()).select_from(tables.results)).scalar() == 1
    (stored,) = rows(engine, tables)
    assert stored["status"] == "scored"
    assert stored["error_reason"] is None


def write(engine, tables, batch, run_id):
    with engine.begin() as conn:
        runs.write_rows(conn, tables, batch, run_id)


def test_finish_run_counts_rows_and_flags_a_run_that_lost_videos(db):
    engine, tables = db
    runs.start_run(engine, tables, "run-1", "/videos", "m", "FnApiRunner")
    with engine.begin() as conn:
        runs.record_listing(conn, tables.runs, "run-1", seen=4, skipped=1)
    write(
        engine,
        tables,
        [
            writing.scored_row("a", "c", "m", VERDICT),
            writing.scored_row("b", "c", "m", {**VERDICT, "score": 0.1, "flagged": False}),
        ],
        "run-1",
    )
    run = runs.finish_run(engine, tables, "run-1")
    assert (run["videos_seen"], run["skipped"], run["scored"], run["flagged"], run["errors"]) == (
        4,
        1,
        2,
        1,
        0,
    )
    assert run["status"] == "incomplete"  # 4 listed, 1 skipped, only 2 rows
    write(engine, tables, [writing.error_row("c", "c", "m", "no_frames", "empty")], "run-1")
    assert runs.finish_run(engine, tables, "run-1")["status"] == "succeeded"
