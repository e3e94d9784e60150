"""A scan's life in the database: its heartbeat, the videos it claims, what it did, and the runs
that died without saying so.

Several scans may run over the same videos at once (a retried Airflow task beside a slow one,
overlapping backfill shards). Three things keep them safe and truthful:

- **Claims.** Before a scan decodes a video it claims it in ``video_claims``. A claim held by
  another run that is still alive (``running`` with a fresh heartbeat) makes this scan skip the
  video, so no two live scans score the same bytes with the same model. A claim of a run that
  finished or died is taken over.
- **A ledger.** Each run records the outcome of every video it wrote in ``run_results``, in the
  same transaction as the row itself. A run's counts come from there, so another run that later
  rewrites ``moderation_results.run_id`` cannot change them.
- **Signs of life.** A running scan touches ``scan_runs.heartbeat_at`` every ``heartbeat_s``. A
  ``running`` run whose heartbeat is older than ``stale_after_s`` is marked ``abandoned`` by the
  next scan or by ``deeptrust runs reap``, and its claims lapse. On PostgreSQL a running scan
  also holds a session advisory lock of its own, which the server releases the moment the scan's
  process dies, so a killed scan is known dead at once, not only after ``stale_after_s``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, text, update

from pipelines.store import database

_LOG = logging.getLogger(__name__)


# The ``runner`` of a watcher's run (``deeptrust watch``) starts with this, so that a watcher's
# run, which ends whenever the watcher is stopped, never passes for a nightly scan's success.
WATCHER_RUNNER = "watch:"


@dataclass(frozen=True)
class Liveness:
    """How often a running scan says it is alive, and how long a silent one is trusted."""

    heartbeat_s: float = 30.0
    stale_after_s: float = 300.0

    def stale_before(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.stale_after_s)


def beat(engine: Engine, runs: Any, run_id: str) -> None:
    """Record that ``run_id`` is alive now."""
    statement = update(runs).where(runs.c.run_id == run_id).values(heartbeat_at=database.utc_now())
    database.transaction(engine, lambda conn: conn.execute(statement))


def _life_key(run_id: str) -> int:
    """The run's PostgreSQL advisory-lock key: a signed 64-bit hash of its id."""
    digest = hashlib.sha256(f"deeptrust.run:{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _life_lock(engine: Engine, run_id: str) -> Iterator[None]:
    """On PostgreSQL, hold the run's advisory lock on a connection of its own for the block."""
    if engine.dialect.name != "postgresql":
        yield
        return
    conn = engine.connect()
    try:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _life_key(run_id)})
        conn.commit()  # the session keeps the lock; no transaction stays open meanwhile
        yield
    finally:
        conn.invalidate()  # closing the session releases the lock, whatever state it is in
        conn.close()


@contextmanager
def alive(engine: Engine, runs: Any, run_id: str, every_s: float) -> Iterator[None]:
    """Within the block the run shows it is alive: a thread touches its heartbeat every
    ``every_s`` seconds and, on PostgreSQL, it holds its advisory lock. Enter the block before
    the run's row is written, so no other scan ever sees the row without its sign of life.

    A beat that fails (the database is briefly away) is logged and tried again at the next beat;
    the run itself goes on, and only a silence longer than ``stale_after_s`` marks it abandoned.
    """
    stop = threading.Event()

    def beat_until_stopped() -> None:
        while not stop.wait(every_s):
            try:
                beat(engine, runs, run_id)
            except Exception as err:  # a missed beat must never end the scan
                _LOG.warning("scan %s: heartbeat failed: %s", run_id, type(err).__name__)

    with _life_lock(engine, run_id):
        thread = threading.Thread(
            target=beat_until_stopped, name=f"heartbeat-{run_id}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def reap(engine: Engine, runs: Any, liveness: Liveness, retry: database.Retry) -> list[str]:
    """Mark ``running`` runs that are gone as ``abandoned``; return their ids.

    Gone: the heartbeat is stale (a run from before heartbeats existed is judged by when it
    started), or, on PostgreSQL, nobody holds the run's advisory lock any more.
    """
    now = database.utc_now()
    stale_before = liveness.stale_before(now)
    last_sign = runs.c.heartbeat_at
    silent = or_(
        last_sign < stale_before,
        and_(last_sign.is_(None), runs.c.started_at < stale_before),
    )

    def mark(conn: Connection) -> list[str]:
        dead = list(
            conn.execute(select(runs.c.run_id).where(runs.c.status == "running", silent)).scalars()
        )
        if conn.dialect.name == "postgresql":
            running = select(runs.c.run_id).where(runs.c.status == "running")
            dead += [r for r in conn.execute(running).scalars() if r not in dead and _gone(conn, r)]
        if dead:
            conn.execute(
                update(runs)
                .where(runs.c.run_id.in_(dead), runs.c.status == "running")
                .values(status="abandoned", finished_at=now)
            )
        return dead

    dead = database.transaction(engine, mark, retry)
    for run_id in dead:
        _LOG.warning("scan %s is no longer running: marked abandoned", run_id)
    return dead


def _gone(conn: Connection, run_id: str) -> bool:
    """Whether no session holds the run's advisory lock: its process has ended."""
    key = {"key": _life_key(run_id)}
    if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
        return False
    conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
    return True


def claim(
    conn: Connection,
    tables: database.Tables,
    key: tuple[str, str, str],
    run_id: str,
    liveness: Liveness,
) -> str:
    """Claim the video ``key`` (uri, content version, model version) for ``run_id``.

    Returns the run that holds the claim afterwards: ``run_id`` itself, or another live run that
    is scoring the video now. One statement, so two scans claiming at once cannot both win: the
    database serializes the insert on the key, and the loser's update finds a live holder.
    """
    claims, runs = tables.claims, tables.runs
    now = database.utc_now()
    live_holders = select(runs.c.run_id).where(
        runs.c.status == "running",
        runs.c.heartbeat_at >= liveness.stale_before(now),
    )
    values = dict(zip(database.RESULT_KEY, key, strict=True)) | {
        "run_id": run_id,
        "claimed_at": now,
    }
    insert = database.insert_for(conn)(claims).values(values)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=database.RESULT_KEY,
            set_={"run_id": insert.excluded.run_id, "claimed_at": insert.excluded.claimed_at},
            where=or_(claims.c.run_id == run_id, claims.c.run_id.not_in(live_holders)),
        )
    )
    where = [claims.c[name] == value for name, value in zip(database.RESULT_KEY, key, strict=True)]
    return conn.execute(select(claims.c.run_id).where(*where)).scalar_one()


def write_rows(
    conn: Connection, tables: database.Tables, rows: list[dict[str, Any]], run_id: str
) -> None:
    """Upsert a run's rows, add them to its ledger, and supersede the reviews they replace: one
    transaction's work, so a row never lands without its ledger entry."""
    database.upsert_results(conn, tables.results, rows, run_id)
    record_outcomes(conn, tables.ledger, run_id, rows)
    supersede_older_versions(conn, tables.results, rows)


def record_outcomes(conn: Connection, ledger: Any, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Add what ``run_id`` did to each row's video to the run's ledger; idempotent on retries."""
    if not rows:
        return
    values = [
        {name: row[name] for name in database.RESULT_KEY}
        | {
            "run_id": run_id,
            "status": row["status"],
            "flagged": bool(row.get("flagged")),
            "error_reason": row.get("error_reason"),
        }
        for row in rows
    ]
    insert = database.insert_for(conn)(ledger)
    keys = ("run_id", *database.RESULT_KEY)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: insert.excluded[name] for name in ("status", "flagged", "error_reason")},
        ),
        values,
    )


def supersede_older_versions(conn: Connection, results: Any, rows: list[dict[str, Any]]) -> None:
    """Pending reviews of other content versions of the same URIs become ``superseded``.

    The rows being written describe the bytes each URI holds now; a moderator must not be asked
    to review bytes that were replaced. Decided rows keep their decision.
    """
    current: dict[str, set[str]] = {}
    for row in rows:
        current.setdefault(row["video_uri"], set()).add(row["content_version"])
    for uri, versions in sorted(current.items()):
        conn.execute(
            update(results)
            .where(
                results.c.video_uri == uri,
                results.c.content_version.not_in(sorted(versions)),
                results.c.review_status == "pending",
            )
            .values(review_status="superseded")
        )


def counts(conn: Connection, ledger: Any, run_id: str) -> tuple[int, int, int, int]:
    """(scored, matched, flagged, errors) as ``run_id`` itself wrote them."""
    query = select(
        func.count().filter(ledger.c.status == "scored"),
        func.count().filter(ledger.c.status == "matched"),
        func.count().filter(ledger.c.flagged.is_(True)),
        func.count().filter(ledger.c.status == "error"),
    ).where(ledger.c.run_id == run_id)
    scored, matched, flagged, errors = conn.execute(query).one()
    return scored, matched, flagged, errors


def start_run(
    engine: Engine,
    tables: database.Tables,
    run_id: str,
    input_uri: str,
    model_version: str,
    runner: str,
    retry: database.Retry = database.ONCE,
) -> None:
    now = database.utc_now()
    row = tables.runs.insert().values(
        run_id=run_id,
        started_at=now,
        heartbeat_at=now,
        input_uri=input_uri,
        model_version=model_version,
        runner=runner,
        status="running",
    )
    database.transaction(engine, lambda conn: conn.execute(row), retry)


def record_listing(conn: Connection, runs: Any, run_id: str, seen: int, skipped: int) -> None:
    """Store what the listing found; setting (not adding) keeps a retried write harmless."""
    conn.execute(
        update(runs).where(runs.c.run_id == run_id).values(videos_seen=seen, skipped=skipped)
    )


def finish_run(
    engine: Engine,
    tables: database.Tables,
    run_id: str,
    failed: bool = False,
    retry: database.Retry = database.ONCE,
) -> dict[str, Any]:
    """Count the run's own outcomes into ``scan_runs``, set its final status, return its row.

    A run is ``incomplete`` when some listed video got neither a row nor a skip: something was
    dropped on the way, and the run must not pass as a success.
    """
    runs = tables.runs

    def finish(conn: Connection) -> dict[str, Any]:
        scored, matched, flagged, errors = counts(conn, tables.ledger, run_id)
        seen, skipped = conn.execute(
            select(runs.c.videos_seen, runs.c.skipped).where(runs.c.run_id == run_id)
        ).one()
        status = "succeeded"
        if failed:
            status = "failed"
        elif seen != skipped + scored + matched + errors:
            status = "incomplete"
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(
                finished_at=database.utc_now(),
                status=status,
                scored=scored,
                matched=matched,
                flagged=flagged,
                errors=errors,
            )
        )
        return dict(conn.execute(select(runs).where(runs.c.run_id == run_id)).one()._mapping)

    return database.transaction(engine, finish, retry)
