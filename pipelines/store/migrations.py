"""The moderation schema, run by Alembic from the revisions shipped in ``alembic/versions/``.

``migrate(engine)`` brings a database to the newest revision. It needs no ``alembic.ini``: the
configuration is built here and Alembic runs on a connection handed over through
``config.attributes``. Every upgrade holds a lock for its whole transaction (PostgreSQL's
transaction-level advisory lock, keyed by the schema; SQLite's write lock, ``BEGIN IMMEDIATE``),
so scans starting together wait for each other's upgrade instead of failing in it.

A database made by the hand-written migrator of earlier releases has a ``schema_version`` table
and no ``alembic_version``: its version is stamped as the matching revision, the newer revisions
run, and ``schema_version`` is dropped, all in the same transaction, keeping every row.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from pipelines.store.database import refusal

SCRIPTS = Path(__file__).resolve().parent / "alembic"
LEGACY_TABLE = "schema_version"
# The hand-written migrator's schema versions, as the revisions that make the same schema.
LEGACY_REVISIONS = {1: "0001_initial", 2: "0002_scan_metrics_push", 3: "0003_reviews"}
# Alembic's ``op`` and ``context`` are process-wide proxies: one upgrade at a time per process.
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class Upgrade:
    """What ``migrate`` did: the revision before and after, and any legacy version adopted."""

    before: str | None
    after: str | None
    legacy_version: int | None = None


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped revisions, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _advisory_key(connection: Connection) -> int:
    """A signed 64-bit key for this schema, so upgrades of other schemas do not wait."""
    schema = connection.execute(text("SELECT current_schema()")).scalar() or ""
    digest = hashlib.sha256(f"deeptrust.migrations:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock until it commits."""
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
    try:
        conn = engine.connect()
    except DBAPIError as err:
        refused = refusal(err)
        if refused is not None:
            raise refused from err
        raise
    with conn:
        if dialect == "sqlite":
            # The driver would begin transactions lazily and leave DDL outside them; in
            # autocommit mode it sends nothing of its own, and BEGIN IMMEDIATE takes the write
            # lock up front (waiting up to the engine's busy timeout for another writer).
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
        else:
            with conn.begin():
                key = _advisory_key(conn)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield conn


def _legacy_version(connection: Connection) -> int | None:
    """The hand-written migrator's schema version, or None where it never ran."""
    if not inspect(connection).has_table(LEGACY_TABLE):
        return None
    version = connection.execute(text("SELECT MAX(version) FROM schema_version")).scalar()
    if version is not None and version not in LEGACY_REVISIONS:
        raise ValueError(
            f"{LEGACY_TABLE} is at version {version}, newer than this release knows "
            f"({max(LEGACY_REVISIONS)}): upgrade DeepTrust first"
        )
    return version or 0


def migrate(engine: Engine) -> Upgrade:
    """Upgrade the database to the newest revision, under the migration lock."""
    with _IN_PROCESS, locked_transaction(engine) as conn:
        config = alembic_config(conn)
        before = current_revision(conn)
        legacy = _legacy_version(conn)
        if before is None and legacy:
            before = LEGACY_REVISIONS[legacy]
            command.stamp(config, before)
        command.upgrade(config, "head")
        if legacy is not None:
            conn.execute(text("DROP TABLE schema_version"))
        return Upgrade(before, current_revision(conn), legacy)
