"""Permanent database errors fail at once with a clear message; transient ones are retried."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from pipelines import cli
from pipelines.store import database

SERVER = "postgresql+psycopg://{role}@127.0.0.1:{port}/{name}"
NO_DATABASE = SERVER.format(role="postgres", port=5432, name="no_such_db")
NO_ROLE = SERVER.format(role="no_such_role", port=5432, name="test")
NOTHING_LISTENS = SERVER.format(role="postgres", port=1, name="test")
PATIENT = database.Retry(attempts=4, backoff_s=0)


@pytest.fixture
def attempts() -> Iterator[list[str]]:
    """Every connection attempt of any engine, as the URL's database name."""
    tried: list[str] = []

    def count(dialect, conn_rec, cargs, cparams) -> None:
        tried.append(str(cparams.get("dbname") or cparams.get("database")))

    event.listen(Engine, "do_connect", count)
    yield tried
    event.remove(Engine, "do_connect", count)


def select_one(url: str, retry: database.Retry) -> None:
    engine = database.connect(url)
    try:
        database.transaction(engine, lambda conn: conn.execute(text("SELECT 1")), retry)
    finally:
        engine.dispose()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("url", "says"),
    [(NO_DATABASE, 'database "no_such_db" does not exist'), (NO_ROLE, 'role "no_such_role"')],
    ids=["unknown-database", "unknown-role"],
)
def test_a_permanent_refusal_is_tried_once_and_says_why(url, says, attempts):
    with pytest.raises(database.DatabaseRefused) as refused:
        select_one(url, PATIENT)

    assert len(attempts) == 1
    assert says in str(refused.value)
    assert "not retried" in str(refused.value)


@pytest.mark.component
def test_a_refused_connection_is_still_retried(attempts):
    with pytest.raises(OperationalError):
        select_one(NOTHING_LISTENS, PATIENT)

    assert len(attempts) == PATIENT.attempts


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.unit
@pytest.mark.parametrize(
    ("message", "sqlstate", "permanent"),
    [
        ("FATAL: password authentication failed for user", None, True),
        ('FATAL: no pg_hba.conf entry for host "10.0.0.1"', None, True),
        ("the server said no", "28P01", True),
        ("the server said no", "3D000", True),
        ("server closed the connection unexpectedly", None, False),
        ("terminating connection due to administrator command", "57P01", False),
        ("database is locked", None, False),
    ],
)
def test_errors_are_told_apart_by_sqlstate_or_message(message, sqlstate, permanent):
    err = OperationalError("SELECT 1", {}, _DriverError(message, sqlstate))

    assert (database.refusal(err) is not None) == permanent


@pytest.mark.e2e
@pytest.mark.parametrize("url", [NO_DATABASE, NO_ROLE], ids=["unknown-database", "unknown-role"])
def test_db_upgrade_on_a_wrong_database_fails_at_once(url, attempts, capsys):
    assert cli.main(["db", "upgrade", "--db", url]) == cli.EXIT_FAILED

    out, err = capsys.readouterr()
    assert out == ""
    assert "deeptrust db upgrade: the database failed: DatabaseRefused" in err
    assert "does not exist" in err
    assert len(attempts) == 1


@pytest.mark.e2e
def test_a_scan_on_an_unknown_database_fails_after_one_attempt(corpus, bundle, attempts, capsys):
    argv = ["scan", "--input", str(corpus), "--model", str(bundle), "--db", NO_DATABASE]

    code = cli.main([*argv, "--db_attempts", "5", "--db_retry_backoff_s", "0"])

    assert code == cli.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert "the run could not start: DatabaseRefused: " in err
    assert 'database "no_such_db" does not exist' in err
    assert attempts == ["no_such_db"]
