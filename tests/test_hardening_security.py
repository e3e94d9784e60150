"""Security: credentials never reach the output, SQL is never built from strings, and object
keys never decide where anything is written. (Tampered bundles and code in a bundle's head are
refused in tests/test_bundle.py and tests/test_scan.py.)"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
from scanning import scan, table

from pipelines import cli

ROOT = Path(__file__).resolve().parent.parent
SQL_CALLS = {"text", "execute", "executemany", "exec_driver_sql"}


@pytest.mark.e2e
def test_a_scan_never_logs_its_credentials(corpus, bundle, s3_server, pg_url):
    secrets = {
        "AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        "AWS_SECRET_ACCESS_KEY": f"aws-secret-{uuid.uuid4().hex}",
        "PGPASSWORD": f"pg-env-secret-{uuid.uuid4().hex}",
    }
    url_password = f"pg-url-secret-{uuid.uuid4().hex}"  # PostgreSQL here trusts any password
    db_url = pg_url.replace("postgres@", f"postgres:{url_password}@")
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="credentials")
    client.upload_file(str(sorted(corpus.rglob("*.mp4"))[0]), "credentials", "day/good.mp4")
    client.put_object(Bucket="credentials", Key="day/notes.mp4", Body=b"not a video")
    for part in bundle.iterdir():
        client.upload_file(str(part), "credentials", f"model/{part.name}")
    env = os.environ | secrets | {"AWS_ENDPOINT_URL_S3": s3_server}
    command = [sys.executable, "-m", "pipelines.scan", "--input", "s3://credentials/day/"]
    command += ["--model", "s3://credentials/model", "--db", db_url]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    assert done.returncode == cli.EXIT_OK, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["scored"], summary["errors"]) == (1, 1)  # error paths logged too
    assert len(table(pg_url)) == 2
    output = done.stdout + done.stderr
    for secret in [*secrets.values(), url_password]:
        assert secret not in output


@pytest.mark.e2e
def test_a_refused_database_connection_does_not_echo_its_password(corpus, bundle, capsys):
    password = f"pg-url-secret-{uuid.uuid4().hex}"
    db_url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:1/test"
    argv = ["scan", "--input", str(corpus), "--model", str(bundle), "--db", db_url]

    assert cli.main([*argv, "--db_attempts", "2", "--db_retry_backoff_s", "0"]) == 1

    err = capsys.readouterr().err
    assert "the run could not start" in err
    assert password not in err


@pytest.mark.e2e
def test_object_keys_are_kept_exactly_and_never_choose_a_path(
    corpus, bundle, s3_server, monkeypatch, tmp_path
):
    keys = ["../up.mp4", "a/../b.mp4", "with space.mp4", "ünïcødé/视频 1.mp4"]
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="keys")
    video = str(sorted(corpus.rglob("*.mp4"))[0])
    for key in keys:
        client.upload_file(video, "keys", key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    for folder in ("tmp", "cwd", "db"):
        (tmp_path / folder).mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.chdir(tmp_path / "cwd")
    db_url = f"sqlite:///{tmp_path / 'db' / 'scan.db'}"

    summary = scan("s3://keys/", bundle, db_url)

    assert (summary["status"], summary["scored"]) == ("succeeded", len(keys))
    assert sorted(r["video_uri"] for r in table(db_url)) == sorted(f"s3://keys/{k}" for k in keys)
    # Downloads went to temporary files named apart from the keys, and were removed.
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["cwd", "db", "db/scan.db", "tmp"]


def sql_built_from_strings(source: str) -> list[int]:
    """Lines that hand SQL an f-string, a ``%`` or ``+`` expression, or ``.format()``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        first = node.args[0]
        built = isinstance(first, ast.JoinedStr | ast.BinOp) or (
            isinstance(first, ast.Call) and getattr(first.func, "attr", None) == "format"
        )
        if name in SQL_CALLS and built:
            found.append(node.lineno)
    return sorted(found)


@pytest.mark.unit
def test_sql_is_parameterized_and_never_built_from_strings():
    unsafe = (
        "conn.execute(f\"SELECT * FROM t WHERE uri = '{uri}'\")\n"
        "conn.execute(text('DELETE FROM t WHERE uri = ' + uri))\n"
        "conn.exec_driver_sql('DROP TABLE {}'.format(name))\n"
        "conn.execute(text('SELECT 1 WHERE :a = 1'), {'a': 1})\n"
    )
    assert sql_built_from_strings(unsafe) == [1, 2, 3]  # the check sees what it refuses
    sources = sorted((ROOT / "pipelines").rglob("*.py")) + sorted((ROOT / "model").rglob("*.py"))
    assert len(sources) > 20
    built = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if (lines := sql_built_from_strings(path.read_text()))
    }
    assert built == {}
