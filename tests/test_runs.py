"""Scans that overlap or die: claims, each run's own counts, heartbeats, and superseded reviews."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from model.config import FaceCropConfig
from pipelines.moderation.report import write_report
from pipelines.scan import writing
from pipelines.store import database, runs
from pipelines.store.migrations import migrate
from tests.rows import verdict

LIVE = runs.Liveness(heartbeat_s=30.0, stale_after_s=300.0)
KEY = ("/videos/a.mp4", "sha256:aa", "m1")


def start(engine, tables, run_id: str) -> None:
    runs.start_run(engine, tables, run_id, "/videos", "m1", "FnApiRunner")


def claim(engine, tables, run_id: str, key=KEY) -> str:
    with engine.begin() as conn:
        return runs.claim(conn, tables, key, run_id, LIVE)


def silence(engine, tables, run_id: str, seconds: float) -> None:
    """Move the run's last heartbeat (and start) ``seconds`` into the past."""
    past = database.utc_now() - timedelta(seconds=seconds)
    with engine.begin() as conn:
        conn.execute(
            update(tables.runs)
            .where(tables.runs.c.run_id == run_id)
            .values(heartbeat_at=past, started_at=past)
        )


def status(engine, tables, run_id: str) -> str:
    with engine.connect() as conn:
        query = select(tables.runs.c.status).where(tables.runs.c.run_id == run_id)
        return conn.execute(query).scalar_one()


def test_a_video_claimed_by_a_live_scan_is_not_claimed_by_another(db):
    engine, tables = db
    start(engine, tables, "run-a")
    start(engine, tables, "run-b")
    assert claim(engine, tables, "run-a") == "run-a"
    assert claim(engine, tables, "run-b") == "run-a"
    assert claim(engine, tables, "run-a") == "run-a"  # a retried bundle keeps its own claim
    other = ("/videos/b.mp4", "sha256:bb", "m1")
    assert claim(engine, tables, "run-b", other) == "run-b"


def test_claims_of_a_finished_or_silent_scan_are_taken_over(db):
    engine, tables = db
    start(engine, tables, "run-a")
    start(engine, tables, "run-b")
    start(engine, tables, "run-c")
    assert claim(engine, tables, "run-a") == "run-a"
    runs.finish_run(engine, tables, "run-a", failed=True)
    assert claim(engine, tables, "run-b") == "run-b"
    silence(engine, tables, "run-b", LIVE.stale_after_s + 1)
    assert claim(engine, tables, "run-c") == "run-c"


def test_a_run_counts_what_it_wrote_even_after_another_run_rewrites_the_rows(db):
    engine, tables = db
    start(engine, tables, "run-a")
    start(engine, tables, "run-b")
    flagged = writing.scored_row(*KEY, verdict(0.9, True))
    failed = writing.error_row("/videos/b.mp4", "sha256:bb", "m1", "no_frames", "empty")
    with engine.begin() as conn:
        runs.write_rows(conn, tables, [flagged, failed], "run-a")
        runs.record_listing(conn, tables.runs, "run-a", seen=2, skipped=0)
        runs.write_rows(conn, tables, [flagged], "run-b")  # --rescan of one video by run-b
        runs.record_listing(conn, tables.runs, "run-b", seen=2, skipped=1)
    a = runs.finish_run(engine, tables, "run-a")
    b = runs.finish_run(engine, tables, "run-b")
    assert (a["status"], a["scored"], a["flagged"], a["errors"]) == ("succeeded", 1, 1, 1)
    assert (b["status"], b["scored"], b["flagged"], b["errors"]) == ("succeeded", 1, 1, 0)
    assert [r["video_uri"] for r in database.flagged_results(engine, "run-a")] == [KEY[0]]


def test_a_silent_running_scan_is_reaped_as_abandoned_and_a_live_one_is_not(db):
    engine, tables = db
    start(engine, tables, "run-dead")
    start(engine, tables, "run-done")
    runs.finish_run(engine, tables, "run-done")
    silence(engine, tables, "run-dead", LIVE.stale_after_s + 1)
    silence(engine, tables, "run-done", LIVE.stale_after_s + 1)
    with runs.alive(engine, tables.runs, "run-alive", every_s=30.0):
        start(engine, tables, "run-alive")
        assert runs.reap(engine, tables.runs, LIVE, database.ONCE) == ["run-dead"]
        assert status(engine, tables, "run-dead") == "abandoned"
        assert status(engine, tables, "run-alive") == "running"
        assert status(engine, tables, "run-done") == "succeeded"
        assert runs.reap(engine, tables.runs, LIVE, database.ONCE) == []


def test_a_heartbeat_moves_the_runs_last_sign_of_life_forward(db):
    engine, tables = db
    with runs.alive(engine, tables.runs, "run-a", every_s=30.0):
        start(engine, tables, "run-a")
        silence(engine, tables, "run-a", 1000)
        runs.beat(engine, tables.runs, "run-a")
        assert runs.reap(engine, tables.runs, LIVE, database.ONCE) == []
        assert status(engine, tables, "run-a") == "running"


def test_a_new_content_version_supersedes_the_old_ones_pending_review(db):
    engine, tables = db
    start(engine, tables, "run-a")
    uri = "/videos/a.mp4"
    old = writing.scored_row(uri, "sha256:old", "m1", verdict(0.9, True))
    decided = writing.scored_row(uri, "sha256:older", "m1", verdict(0.8, True))
    other = writing.scored_row("/videos/b.mp4", "sha256:bb", "m1", verdict(0.9, True))
    with engine.begin() as conn:
        runs.write_rows(conn, tables, [decided, other], "run-a")
        conn.execute(
            update(tables.results)
            .where(tables.results.c.content_version == "sha256:older")
            .values(review_status="confirmed")
        )
        runs.write_rows(conn, tables, [old], "run-a")
        new = writing.scored_row(uri, "sha256:new", "m1", verdict(0.95, True))
        runs.write_rows(conn, tables, [new], "run-a")
    with engine.connect() as conn:
        query = select(tables.results.c.content_version, tables.results.c.review_status)
        review = dict(conn.execute(query).all())
    assert review == {
        "sha256:old": "superseded",
        "sha256:older": "confirmed",
        "sha256:new": "pending",
        "sha256:bb": "pending",
    }


def test_the_report_of_an_abandoned_run_says_so_and_counts_what_it_wrote(db, tmp_path):
    engine, tables = db
    start(engine, tables, "run-dead")
    flagged = writing.scored_row(*KEY, verdict(0.9, True))
    with engine.begin() as conn:
        runs.write_rows(conn, tables, [flagged], "run-dead")
    silence(engine, tables, "run-dead", LIVE.stale_after_s + 1)
    runs.reap(engine, tables.runs, LIVE, database.ONCE)

    summary = write_report(engine, tmp_path / "report", "run-dead", FaceCropConfig(), print)

    page = (tmp_path / "report" / "index.html").read_text()
    assert summary["flagged"] == 1
    assert "abandoned" in page
    assert "the run did not finish: 1 scored, 1 flagged, 0 errors written before it stopped" in page


@pytest.mark.e2e
def test_on_postgresql_a_run_whose_process_let_go_is_abandoned_at_once(pg_url):
    engine = database.connect(pg_url)
    try:
        migrate(engine)
        tables = database.Tables.reflect(engine)
        start(engine, tables, "run-b")
        with runs.alive(engine, tables.runs, "run-a", every_s=30.0):
            start(engine, tables, "run-a")
            assert claim(engine, tables, "run-a") == "run-a"
            assert runs.reap(engine, tables.runs, LIVE, database.ONCE) == ["run-b"]
            assert status(engine, tables, "run-a") == "running"
        # The heartbeat is fresh, but nobody holds the run's lock: its process let go.
        assert runs.reap(engine, tables.runs, LIVE, database.ONCE) == ["run-a"]
        assert status(engine, tables, "run-a") == "abandoned"
        assert claim(engine, tables, "run-c") == "run-c"
    finally:
        engine.dispose()
