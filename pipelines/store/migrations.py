"""Apply the versioned SQL files in ``infra/migrations/`` to a database.

Each file is named ``NNNN_what.sql``; ``NNNN`` is its schema version. The ``schema_version``
table records what has been applied, so running the migrator again applies only newer files.
The SQL is kept to what SQLite and PostgreSQL both accept, so one set of files serves both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "migrations"
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        """The file's statements, split on ``;`` after dropping ``--`` comment lines."""
        lines = [
            line for line in self.path.read_text().splitlines() if not line.strip().startswith("--")
        ]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def find_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, ordered by version; refuses stray or duplicate files."""
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations folder {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named NNNN_what.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version}: {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def applied_versions(engine: Engine) -> set[int]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
        )
        return {row[0] for row in conn.execute(text("SELECT version FROM schema_version"))}


def migrate(engine: Engine, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every migration newer than the database's schema; returns the versions applied."""
    done = applied_versions(engine)
    applied = []
    for migration in find_migrations(directory):
        if migration.version in done:
            continue
        with engine.begin() as conn:
            for statement in migration.statements():
                conn.exec_driver_sql(statement)
            conn.execute(
                text("INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)"),
                {
                    "v": migration.version,
                    "n": migration.name,
                    "t": datetime.now(UTC).replace(tzinfo=None),
                },
            )
        applied.append(migration.version)
    return applied
