"""The schema under Alembic: fresh and legacy databases reach the newest revision, once, without
losing a row, and starts that race wait for each other; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from conftest import BACKENDS
from sqlalchemy import Engine, inspect, text

from pipelines import cli
from pipelines.store.database import connect
from pipelines.store.migrations import (
    LEGACY_REVISIONS,
    SCRIPTS,
    Upgrade,
    alembic_config,
    migrate,
    revisions,
)

# The SQL files of the hand-written migrator, as earlier releases shipped them.
LEGACY_SQL = Path(__file__).resolve().parent / "legacy_migrations"
HEAD = revisions()[-1]
SCHEMA_TABLES = {
    "moderation_results",
    "scan_runs",
    "reviews",
    "video_claims",
    "run_results",
    "review_claims",
    "known_fakes",
}
KEY = {"video_uri": "s3://b/a.mp4", "content_version": "etag:1", "model_version": "m1"}
WHEN = datetime(2026, 11, 30, 12, 0, 0)


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(url):
    engine = connect(url)
    yield engine
    engine.dispose()


def make_legacy(engine: Engine, version: int) -> None:
    """The database the hand-written migrator left at ``version``: its files and its table."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE schema_version ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
        )
    for path in sorted(LEGACY_SQL.glob("*.sql"))[:version]:
        lines = [s for s in path.read_text().splitlines() if not s.strip().startswith("--")]
        with engine.begin() as conn:
            for statement in filter(None, (s.strip() for s in "\n".join(lines).split(";"))):
                conn.exec_driver_sql(statement)
            number, name = path.stem.split("_", 1)
            conn.execute(
                text("INSERT INTO schema_version VALUES (:v, :n, :t)"),
                {"v": int(number), "n": name, "t": WHEN},
            )


def add_rows(engine: Engine, version: int) -> None:
    """A scan, its flagged row and, from version 3, a moderator's decision on it."""
    review = "confirmed" if version >= 3 else "pending"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scan_runs (run_id, started_at, input_uri, model_version, runner,"
                " status, videos_seen, scored, flagged)"
                " VALUES ('run-1', :t, 's3://b/', 'm1', 'DirectRunner', 'succeeded', 1, 1, 1)"
            ),
            {"t": WHEN},
        )
        conn.execute(
            text(
                "INSERT INTO moderation_results (video_uri, content_version, model_version,"
                " run_id, scanned_at, status, score, flagged, review_status)"
                " VALUES (:video_uri, :content_version, :model_version, 'run-1', :t, 'scored',"
                " 0.9, :flagged, :review)"
            ),
            KEY | {"t": WHEN, "flagged": True, "review": review},
        )
        if version >= 3:
            conn.execute(
                text(
                    "INSERT INTO reviews VALUES ('r-1', :video_uri, :content_version,"
                    " :model_version, 'confirmed', 'a note', 'ana', :t)"
                ),
                KEY | {"t": WHEN},
            )


def table_rows(engine: Engine) -> dict[str, list[tuple]]:
    names = SCHEMA_TABLES & set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY 1"))]
            for name in names
        }


def schema(engine: Engine) -> dict[str, dict]:
    """What the tables are: columns, keys, indexes and checks, as the database reports them."""
    found = inspect(engine)
    return {
        name: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in found.get_columns(name)
            ],
            "primary_key": found.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": [
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in found.get_foreign_keys(name)
            ],
            "indexes": sorted((i["name"], i["column_names"]) for i in found.get_indexes(name)),
            "checks": sorted(c["sqltext"] for c in found.get_check_constraints(name)),
            "constraint_names": sorted(
                filter(None, (c["name"] for c in found.get_check_constraints(name)))
            )
            if engine.dialect.name == "postgresql"
            else None,
        }
        for name in sorted(SCHEMA_TABLES)
    }


def test_a_fresh_database_reaches_the_newest_revision_once(engine):
    assert revisions() == [
        *LEGACY_REVISIONS.values(),
        "0004_run_lifecycle",
        "0005_review_claims",
        "0006_known_fakes",
    ]
    assert migrate(engine) == Upgrade(before=None, after=HEAD)
    assert migrate(engine) == Upgrade(before=HEAD, after=HEAD)
    tables = set(inspect(engine).get_table_names())
    assert tables == SCHEMA_TABLES | {"alembic_version"}
    columns = {c["name"] for c in inspect(engine).get_columns("scan_runs")}
    assert {"metrics_push", "metrics_push_error", "heartbeat_at"} <= columns


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_legacy_database_upgrades_in_place_keeping_every_row(engine, version):
    make_legacy(engine, version)
    add_rows(engine, version)
    before = table_rows(engine)

    upgraded = migrate(engine)

    assert upgraded == Upgrade(before=LEGACY_REVISIONS[version], after=HEAD, legacy_version=version)
    assert set(inspect(engine).get_table_names()) == SCHEMA_TABLES | {"alembic_version"}
    after = table_rows(engine)
    # Columns added by the upgrade come last, so each old row is the start of its new row.
    for name, rows in before.items():
        assert [row[: len(rows[0])] for row in after[name]] == rows
    assert len(after["moderation_results"]) == 1
    assert len(after["reviews"]) == (1 if version >= 3 else 0)
    assert migrate(engine) == Upgrade(before=HEAD, after=HEAD)


def test_a_legacy_database_ends_with_the_schema_a_fresh_one_gets(engine):
    make_legacy(engine, 3)
    migrate(engine)
    upgraded = schema(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    migrate(engine)

    assert schema(engine) == upgraded


def test_a_newer_legacy_version_is_refused_untouched(engine):
    make_legacy(engine, 3)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (4, 'later', :t)"), {"t": WHEN})

    with pytest.raises(ValueError, match="version 4, newer than this release knows"):
        migrate(engine)

    assert "alembic_version" not in inspect(engine).get_table_names()
    assert "schema_version" in inspect(engine).get_table_names()


# A start of its own process: it says it is ready, waits for "go", upgrades and prints the result.
STARTER = """
import json, sys
from pipelines import cli
from pipelines.store.database import connect
from pipelines.store.migrations import migrate
engine = connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(migrate(engine).__dict__), flush=True)
"""


@pytest.mark.parametrize("legacy", [None, 2], ids=["fresh", "legacy-v2"])
def test_concurrent_starts_wait_for_each_others_upgrade(url, legacy):
    if legacy is not None:
        setup = connect(url)
        make_legacy(setup, legacy)
        setup.dispose()
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        for _ in range(2)
    ]
    for start in starts:
        assert start.stdout.readline() == "ready\n"
    for start in starts:
        start.stdin.write("go\n")
        start.stdin.flush()
    outputs = [start.communicate(timeout=120)[0] for start in starts]

    assert [start.returncode for start in starts] == [0, 0], outputs
    results = [Upgrade(**json.loads(out)) for out in outputs]
    first = Upgrade(LEGACY_REVISIONS[legacy], HEAD, legacy) if legacy else Upgrade(None, HEAD)
    # One start did the upgrade; the other waited for it and found the newest schema.
    assert sorted(results, key=repr) == sorted([first, Upgrade(HEAD, HEAD)], key=repr)


@pytest.mark.e2e
def test_an_installed_copy_finds_its_revisions(tmp_path):
    # A wheel built from a copy of the sources (so nothing is built inside the checkout),
    # installed into a folder of its own and imported from there, away from the checkout.
    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("model", "pipelines"):
        shutil.copytree(root / part, source / part, ignore=skip)
    shutil.copy(root / "setup.py", source)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, cwd=source, timeout=300)
    install = [*pip, "install", "--no-deps", "--target", str(site), *map(str, wheels.glob("*.whl"))]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    upgrade = (
        "import sys; from pipelines.store import migrations as m;"
        " from pipelines.store.database import connect;"
        " print(m.SCRIPTS); print(*m.revisions()); print(m.migrate(connect(sys.argv[1])).after)"
    )
    db_url = f"sqlite:///{tmp_path / 'installed.db'}"
    scripts, found, after = subprocess.run(
        [sys.executable, "-c", upgrade, db_url],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.splitlines()
    assert Path(scripts).is_relative_to(site)
    pages = site / "pipelines" / "moderation"
    assert (pages / "templates" / "queue.html").is_file(), "the review app's pages are installed"
    assert (pages / "static" / "htmx.min.js").is_file()
    assert Path(scripts) != SCRIPTS
    assert found.split() == revisions()
    assert after == HEAD


def test_db_upgrade_adopts_a_legacy_database_and_prints_both_revisions(url, engine, capsys):
    make_legacy(engine, 3)
    add_rows(engine, 3)
    rows = table_rows(engine)

    assert cli.main(["db", "upgrade", "--db", url]) == cli.EXIT_OK

    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1]) == {
        "before": LEGACY_REVISIONS[3],
        "after": HEAD,
        "legacy_schema_version": 3,
    }
    assert "dropped the schema_version table" in err
    after = table_rows(engine)
    # Columns added by the upgrade come last, so each old row is the start of its new row.
    for name, before in rows.items():
        assert [row[: len(before[0])] for row in after[name]] == before
    assert cli.main(["db", "upgrade", "--db", url]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {
        "before": HEAD,
        "after": HEAD,
        "legacy_schema_version": None,
    }


@pytest.mark.unit
def test_db_upgrade_refuses_what_is_not_a_database_url(capsys):
    assert cli.main(["db", "upgrade", "--db", "not a url"]) == cli.EXIT_USAGE
    assert "--db is not a database URL" in capsys.readouterr().err


def test_alembic_commands_run_on_the_shipped_revisions_with_no_ini_file(url, engine, tmp_path):
    def dba(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.store.dba", "--db", url, *args],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            cwd=tmp_path,  # no alembic.ini here, nor in any folder above
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    dba("upgrade", "head")
    assert dba("current").split() == [HEAD, "(head)"]
    dba("downgrade", LEGACY_REVISIONS[2])
    assert "reviews" not in inspect(engine).get_table_names()
    assert dba("current").split() == [LEGACY_REVISIONS[2]]
    assert migrate(engine) == Upgrade(before=LEGACY_REVISIONS[2], after=HEAD)
