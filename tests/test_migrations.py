"""The migrator: versioned SQL files applied once each, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKENDS
from sqlalchemy import inspect, text

from pipelines.store.database import connect
from pipelines.store.migrations import MIGRATIONS_DIR, Migration, find_migrations, migrate


@pytest.fixture(params=BACKENDS)
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = connect(url)
    yield engine
    engine.dispose()


def test_a_fresh_database_gets_the_schema_once(engine):
    assert migrate(engine) == [m.version for m in find_migrations()]
    assert migrate(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {"moderation_results", "scan_runs", "schema_version"} <= tables
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version, name FROM schema_version")).all()
    assert versions == [(m.version, m.name) for m in find_migrations()]


def test_only_newer_migrations_are_applied(engine, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    assert migrate(engine, folder) == [m.version for m in find_migrations()]
    (folder / "9999_add_notes.sql").write_text(
        "-- a later change\nALTER TABLE moderation_results ADD COLUMN notes TEXT;\n"
    )
    assert migrate(engine, folder) == [9999]
    columns = {c["name"] for c in inspect(engine).get_columns("moderation_results")}
    assert "notes" in columns
    assert migrate(engine, folder) == []


@pytest.mark.unit
def test_stray_files_in_the_migrations_folder_are_refused(tmp_path):
    (tmp_path / "initial.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"NNNN_what\.sql"):
        find_migrations(tmp_path)


@pytest.mark.unit
def test_statements_split_on_semicolons_without_comments(tmp_path):
    path = tmp_path / "0001_x.sql"
    path.write_text(
        "-- header; with a semicolon\nCREATE TABLE a (x INTEGER);\n\nCREATE TABLE b (y TEXT);\n"
    )
    assert Migration(1, "x", path).statements() == [
        "CREATE TABLE a (x INTEGER)",
        "CREATE TABLE b (y TEXT)",
    ]


@pytest.mark.e2e
def test_an_installed_copy_finds_its_migrations(tmp_path):
    # A wheel built from a copy of the sources (so nothing is built inside the checkout),
    # installed into a folder of its own and imported from there, away from the checkout.
    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("model", "pipelines", "infra/migrations"):
        shutil.copytree(root / part, source / part, ignore=skip)
    shutil.copy(root / "setup.py", source)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, cwd=source, timeout=300)
    install = [*pip, "install", "--no-deps", "--target", str(site), *map(str, wheels.glob("*.whl"))]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    listing = (
        "from pipelines.store.migrations import find_migrations as f; print(*(m.path for m in f()))"
    )
    found = subprocess.run(
        [sys.executable, "-c", listing],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    assert [Path(p).name for p in found] == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert all(Path(p).is_relative_to(site) for p in found)
