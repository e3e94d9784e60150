"""Scans that overlap or die, end to end: two scans of one input at once, and a killed scan."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from pipelines.moderation.report import load_run
from pipelines.store import database
from tests.scanning import scan, scan_run, table

pytestmark = pytest.mark.e2e


@pytest.fixture
def four_videos(corpus, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for source in sorted(corpus.rglob("*.mp4"))[:4]:
        shutil.copy(source, videos / f"{source.parent.name}-{source.name}")
    return videos


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scan.db'}"
    return request.getfixturevalue("pg_url")


def scan_command(videos, bundle, db_url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.scan",
        "--input",
        str(videos),
        "--model",
        str(bundle),
        "--db",
        db_url,
        "--runner=DirectRunner",
        *extra,
    ]


def ledger(db_url: str) -> list[dict]:
    engine = database.connect(db_url)
    try:
        entries = database.Tables.reflect(engine).ledger
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(entries))]
    finally:
        engine.dispose()


def test_two_scans_of_the_same_input_at_once_score_each_video_once(four_videos, bundle, db_url):
    # Both start before either has listed anything: TensorFlow's import alone takes seconds.
    scans = [
        subprocess.Popen(
            scan_command(four_videos, bundle, db_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in scans]
    for process, (_, err) in zip(scans, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    rows = table(db_url)
    keys = {(r["video_uri"], r["content_version"], r["model_version"]) for r in rows}
    assert len(rows) == len(keys) == 4
    assert all(r["status"] == "scored" for r in rows)
    scored = [e for e in ledger(db_url) if e["status"] == "scored"]
    assert sorted(e["video_uri"] for e in scored) == sorted(r["video_uri"] for r in rows)
    assert sum(s["scored"] for s in summaries) == 4
    for summary in summaries:
        assert summary["status"] == "succeeded"
        assert summary["videos_seen"] == 4
        assert summary["videos_seen"] == summary["skipped"] + summary["scored"] + summary["errors"]
        recorded = scan_run(db_url, summary["run_id"])
        assert (recorded["scored"], recorded["skipped"]) == (summary["scored"], summary["skipped"])
        mine = [e for e in scored if e["run_id"] == summary["run_id"]]
        assert len(mine) == summary["scored"]


def test_a_killed_scan_is_marked_abandoned_by_the_next_one(four_videos, bundle, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    killed = subprocess.Popen(
        scan_command(four_videos, bundle, db_url),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        # The scan prints "scan RUN_ID: ..." once its scan_runs row is written.
        for line in killed.stderr:
            if line.startswith("scan ") and ": " in line:
                run_id = line.split()[1].rstrip(":")
                break
        else:
            pytest.fail("the scan ended before it recorded its run")
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.stderr.close()
    assert scan_run(db_url, run_id)["status"] == "running"

    # The dead scan's last heartbeat is moved back past --stale_after_s (300 s), as if the next
    # nightly scan started that much later.
    engine = database.connect(db_url)
    try:
        runs_table = database.Tables.reflect(engine).runs
        past = database.utc_now() - timedelta(seconds=301)
        with engine.begin() as conn:
            conn.execute(
                update(runs_table).where(runs_table.c.run_id == run_id).values(heartbeat_at=past)
            )
    finally:
        engine.dispose()
    summary = scan(four_videos, bundle, db_url)
    assert summary["status"] == "succeeded"
    assert scan_run(db_url, run_id)["status"] == "abandoned"
    engine = database.connect(db_url)
    try:
        assert load_run(engine, run_id)["finished_at"] is not None
    finally:
        engine.dispose()
    assert len(table(db_url)) == 4
