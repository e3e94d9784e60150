"""The moderation tables through SQLAlchemy: row shapes, idempotent upserts, scan bookkeeping.

Tables are reflected from the database that the migrations built, so the Alembic revisions in
``alembic/versions/`` stay the one definition of the schema. Every statement is parameterized.
Times are naive UTC, which SQLite and PostgreSQL ``TIMESTAMP`` columns both store unchanged.

Every transaction of a scan goes through ``transaction``, which retries it with exponential
back-off when the database is unreachable or drops the connection. That is safe because each one
is a read, an idempotent upsert, or an update that sets rather than adds. A database that refuses
for good (it does not exist, the role does not, the password is wrong) is never retried: it
raises ``DatabaseRefused`` at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    and_,
    case,
    create_engine,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

RESULT_KEY = ("video_uri", "content_version", "model_version")
# A moderator's decision survives a re-scan of the same video by the same model.
DECIDED = ("confirmed", "dismissed", "escalated")
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_LOG = logging.getLogger(__name__)
T = TypeVar("T")
# SQLSTATEs that no retry can change: invalid_catalog_name (no such database) and class 28,
# invalid authorization (no such role, wrong password, no pg_hba.conf entry).
_PERMANENT_SQLSTATES = ("3D000", "28")
# Errors met while connecting carry no SQLSTATE in psycopg, only the server's message.
_PERMANENT_MESSAGE = re.compile(
    r'(database|role) "[^"]*" does not exist'
    r"|password authentication failed"
    r"|authentication failed for user"
    r"|no pg_hba\.conf entry"
    r"|no password supplied"
    r"|permission denied for database"
)


class DatabaseRefused(SQLAlchemyError):
    """The database refused in a way no retry can change: a wrong ``--db``, role or password."""


@dataclass(frozen=True)
class Retry:
    """How many times a transaction is tried, and the first pause (doubled after each failure)."""

    attempts: int = 5
    backoff_s: float = 1.0


ONCE = Retry(attempts=1)


def connect(url: str) -> Engine:
    """An engine for an SQLAlchemy URL: ``sqlite:///file.db`` or ``postgresql+psycopg://...``."""
    if url.startswith("sqlite"):
        # Several worker processes may write at once; wait for SQLite's lock instead of failing.
        return create_engine(url, connect_args={"timeout": 60})
    return create_engine(url, pool_pre_ping=True)


def _lost_connection(err: DBAPIError) -> bool:
    return err.connection_invalidated or isinstance(err, (OperationalError, InterfaceError))


def _reason(err: DBAPIError) -> str:
    """The driver's own first line, never the URL: it may hold a password."""
    if err.orig is None:
        return type(err).__name__
    return str(err.orig).splitlines()[0]


def refusal(err: DBAPIError) -> DatabaseRefused | None:
    """A ``DatabaseRefused`` when ``err`` is permanent (by SQLSTATE, else by message), else None."""
    sqlstate = getattr(err.orig, "sqlstate", None) or ""
    message = str(err.orig) if err.orig is not None else ""
    if not sqlstate.startswith(_PERMANENT_SQLSTATES) and not _PERMANENT_MESSAGE.search(message):
        return None
    reason = _reason(err).removeprefix("connection failed: ")
    return DatabaseRefused(f"{reason} (a permanent error: not retried)")


def transaction(engine: Engine, work: Callable[[Connection], T], retry: Retry = ONCE) -> T:
    """``work(conn)`` in one transaction, tried again after a lost or refused connection.

    Raises ``DatabaseRefused`` at the first permanent error (see ``refusal``).
    """
    attempt = 1
    while True:
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as err:
            refused = refusal(err)
            if refused is not None:
                raise refused from err
            if attempt >= retry.attempts or not _lost_connection(err):
                raise
            pause = retry.backoff_s * 2 ** (attempt - 1)
            _LOG.warning(
                "database unavailable (%s); attempt %d of %d, retrying in %.2f s",
                _reason(err),
                attempt,
                retry.attempts,
                pause,
            )
            time.sleep(pause)
            attempt += 1


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Tables:
    results: Table
    runs: Table
    claims: Table
    ledger: Table

    @classmethod
    def reflect(cls, engine: Engine) -> Tables:
        names = ("moderation_results", "scan_runs", "video_claims", "run_results")
        metadata = MetaData()
        metadata.reflect(engine, only=names)
        return cls(*(metadata.tables[name] for name in names))


def insert_for(conn: Connection) -> Callable[[Table], Any]:
    """The dialect's INSERT, which has ``on_conflict_do_update``: SQLite's or PostgreSQL's."""
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        raise ValueError(f"unsupported database {conn.dialect.name!r}: use SQLite or PostgreSQL")
    return insert


def upsert_results(conn: Connection, table: Table, rows: list[dict[str, Any]], run_id: str) -> None:
    """Insert or replace rows on (video_uri, content_version, model_version), in one statement.

    Writing the same rows twice leaves the table as writing them once, so a retried Beam bundle
    never duplicates a row.
    """
    if not rows:
        return
    insert = insert_for(conn)
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
    """Whether this exact content already has a scored or matched row from this model (errors
    do not count)."""
    return has_row(conn, table, uri, content_version, model_version, ("scored", "matched"))


def has_row(
    conn: Connection,
    table: Table,
    uri: str,
    content_version: str,
    model_version: str,
    statuses: tuple[str, ...] | None = None,
) -> bool:
    """Whether this exact content has a row from this model, of one of ``statuses`` (any
    status when None)."""
    query = select(table.c.video_uri).where(
        table.c.video_uri == uri,
        table.c.content_version == content_version,
        table.c.model_version == model_version,
    )
    if statuses is not None:
        query = query.where(table.c.status.in_(statuses))
    return conn.execute(query).first() is not None


def flagged_results(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The rows this run flagged (by its own ledger, whichever run wrote a row last), most
    suspicious first."""
    tables = Tables.reflect(engine)
    results, ledger = tables.results, tables.ledger
    same_video = [results.c[name] == ledger.c[name] for name in RESULT_KEY]
    query = (
        select(results)
        .join(ledger, and_(*same_video))
        .where(ledger.c.run_id == run_id, ledger.c.flagged.is_(True))
        .order_by(results.c.score.desc(), results.c.video_uri)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
