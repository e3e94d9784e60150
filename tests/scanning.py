"""Helpers for the scan's tests: run a scan, read its tables, check a summary against them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import select

from model.adaptive import WindowScores
from model.bundle import MANIFEST, content_version
from pipelines.scan.run import run
from pipelines.store import database


def every_window(clip, score: float) -> WindowScores:
    """What a model that gives each of ``clip``'s windows ``score`` returns for it."""
    return WindowScores(np.arange(clip.windows), np.full(clip.windows, score), int(clip.mask.sum()))


def scan(input_uri, bundle, db_url, *extra: str) -> dict:
    return run(["--input", str(input_uri), "--model", str(bundle), "--db", db_url, *extra])


def every_row(db_url: str, name: str) -> list[dict]:
    """Every row of one of ``database.Tables``: ``results`` or ``runs``."""
    engine = database.connect(db_url)
    try:
        chosen = getattr(database.Tables.reflect(engine), name)
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(chosen))]
    finally:
        engine.dispose()


def table(db_url: str) -> list[dict]:
    """The moderation table's rows."""
    return every_row(db_url, "results")


def scan_runs(db_url: str) -> list[dict]:
    """The scan_runs table's rows."""
    return every_row(db_url, "runs")


def scan_run(db_url: str, run_id: str) -> dict:
    engine = database.connect(db_url)
    try:
        runs = database.Tables.reflect(engine).runs
        with engine.connect() as conn:
            return dict(conn.execute(select(runs).where(runs.c.run_id == run_id)).one()._mapping)
    finally:
        engine.dispose()


def assert_summary_matches_table(summary: dict, db_url: str) -> None:
    """The summary's counts are the run's rows, and scan_runs records the same numbers."""
    rows = [r for r in table(db_url) if r["run_id"] == summary["run_id"]]
    assert summary["scored"] == sum(r["status"] == "scored" for r in rows)
    assert summary["errors"] == sum(r["status"] == "error" for r in rows)
    assert summary["flagged"] == sum(bool(r["flagged"]) for r in rows)
    assert summary["videos_seen"] == summary["skipped"] + summary["scored"] + summary["errors"]
    recorded = scan_run(db_url, summary["run_id"])
    for key in ("videos_seen", "skipped", "scored", "flagged", "errors", "status"):
        assert recorded[key] == summary[key]
    flagged = [r for r in rows if r["flagged"]]
    assert all(r["review_status"] == "pending" for r in flagged)


def new_version(bundle: Path, out: Path) -> str:
    """A copy of ``bundle`` with another threshold: a valid bundle with a new model_version."""
    shutil.copytree(bundle, out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["decision"]["threshold"] = manifest["decision"]["threshold"] * 0.9
    manifest["model_version"] = content_version(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest))
    return manifest["model_version"]


def flag_everything(bundle: Path, out: Path) -> Path:
    """A copy of ``bundle`` with threshold 0, so that every scored video is flagged."""
    shutil.copytree(bundle, out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["decision"]["threshold"] = 0.0
    manifest["model_version"] = content_version(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out
