"""The moderation tables through SQLAlchemy: row shapes, idempotent upserts, scan bookkeeping.

Tables are reflected from the database that the migrator built, so ``infra/migrations/`` stays
the one definition of the schema. Every statement is parameterized. Times are naive UTC, which
SQLite and PostgreSQL ``TIMESTAMP`` columns both store unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    case,
    create_engine,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

RESULT_KEY = ("video_uri", "content_version", "model_version")
# A moderator's decision survives a re-scan of the same video by the same model.
DECIDED = ("confirmed", "dismissed")
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def connect(url: str) -> Engine:
    """An engine for an SQLAlchemy URL: ``sqlite:///file.db`` or ``postgresql+psycopg://...``."""
    if url.startswith("sqlite"):
        # Several worker processes may write at once; wait for SQLite's lock instead of failing.
        return create_engine(url, connect_args={"timeout": 60})
    return create_engine(url, pool_pre_ping=True)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def scored_row(
    uri: str, content_version: str, model_version: str, verdict: dict[str, Any]
) -> dict[str, Any]:
    """A ``moderation_results`` row from a ``model.verdict.verdict`` body."""
    return {
        "video_uri": uri,
        "content_version": content_version,
        "model_version": model_version,
        "status": "scored",
        **verdict,
        "segments": json.dumps(verdict["segments"]),
        "review_status": "pending" if verdict["flagged"] else None,
    }


def error_row(
    uri: str, content_version: str, model_version: str, code: str, detail: str
) -> dict[str, Any]:
    """A ``moderation_results`` row for a video that could not be scored."""
    return {
        "video_uri": uri,
        "content_version": content_version,
        "model_version": model_version,
        "status": "error",
        "error_reason": code,
        "error_detail": detail,
    }


@dataclass(frozen=True)
class Tables:
    results: Table
    runs: Table

    @classmethod
    def reflect(cls, engine: Engine) -> Tables:
        metadata = MetaData()
        metadata.reflect(engine, only=["moderation_results", "scan_runs"])
        return cls(metadata.tables["moderation_results"], metadata.tables["scan_runs"])


def upsert_results(conn: Connection, table: Table, rows: list[dict[str, Any]], run_id: str) -> None:
    """Insert or replace rows on (video_uri, content_version, model_version), in one statement.

    Writing the same rows twice leaves the table as writing them once, so a retried Beam bundle
    never duplicates a row.
    """
    if not rows:
        return
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        raise ValueError(f"unsupported database {conn.dialect.name!r}: use SQLite or PostgreSQL")
    scanned_at = utc_now()
    values = [
        {c.name: row.get(c.name) for c in table.columns}
        | {"run_id": run_id, "scanned_at": scanned_at}
        for row in rows
    ]
    statement = insert(table)
    updates: dict[str, Any] = {
        c.name: statement.excluded[c.name] for c in table.columns if c.name not in RESULT_KEY
    }
    updates["review_status"] = case(
        (or_(*(table.c.review_status == d for d in DECIDED)), table.c.review_status),
        else_=statement.excluded.review_status,
    )
    conn.execute(statement.on_conflict_do_update(index_elements=RESULT_KEY, set_=updates), values)


def is_scored(
    conn: Connection, table: Table, uri: str, content_version: str, model_version: str
) -> bool:
    """Whether this exact content already has a scored row from this model (errors do not count)."""
    query = select(table.c.video_uri).where(
        table.c.video_uri == uri,
        table.c.content_version == content_version,
        table.c.model_version == model_version,
        table.c.status == "scored",
    )
    return conn.execute(query).first() is not None


def start_run(
    engine: Engine, tables: Tables, run_id: str, input_uri: str, model_version: str, runner: str
) -> None:
    with engine.begin() as conn:
        conn.execute(
            tables.runs.insert().values(
                run_id=run_id,
                started_at=utc_now(),
                input_uri=input_uri,
                model_version=model_version,
                runner=runner,
                status="running",
            )
        )


def record_listing(conn: Connection, table: Table, run_id: str, seen: int, skipped: int) -> None:
    """Store what the listing found; setting (not adding) keeps a retried write harmless."""
    conn.execute(
        table.update().where(table.c.run_id == run_id).values(videos_seen=seen, skipped=skipped)
    )


def finish_run(engine: Engine, tables: Tables, run_id: str, failed: bool = False) -> dict[str, Any]:
    """Count the run's rows into ``scan_runs``, set its final status, and return its row.

    A run is ``incomplete`` when some listed video got neither a row nor a skip: something was
    dropped on the way, and the run must not pass as a success.
    """
    results = tables.results
    count_rows = select(
        func.count().filter(results.c.status == "scored"),
        func.count().filter(results.c.flagged.is_(True)),
        func.count().filter(results.c.status == "error"),
    ).where(results.c.run_id == run_id)
    with engine.begin() as conn:
        scored, flagged, errors = conn.execute(count_rows).one()
        seen, skipped = conn.execute(
            select(tables.runs.c.videos_seen, tables.runs.c.skipped).where(
                tables.runs.c.run_id == run_id
            )
        ).one()
        status = "succeeded"
        if failed:
            status = "failed"
        elif seen != skipped + scored + errors:
            status = "incomplete"
        conn.execute(
            tables.runs.update()
            .where(tables.runs.c.run_id == run_id)
            .values(
                finished_at=utc_now(),
                status=status,
                scored=scored,
                flagged=flagged,
                errors=errors,
            )
        )
        row = conn.execute(select(tables.runs).where(tables.runs.c.run_id == run_id)).one()
    return dict(row._mapping)


def flagged_results(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's flagged rows, most suspicious first."""
    results = Tables.reflect(engine).results
    query = (
        select(results)
        .where(results.c.run_id == run_id, results.c.flagged.is_(True))
        .order_by(results.c.score.desc(), results.c.video_uri)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
