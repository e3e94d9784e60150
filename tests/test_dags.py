"""The Airflow DAGs: they parse cheaply, the nightly DAG scans exactly its day, the backfill DAG
scans an archive in shards and resumes, and ``airflow backfill create`` accepts the nightly DAG.

Airflow runs in subprocesses (``airflow_runner.py`` and the ``airflow`` command) against a SQLite
metadata database; the scans write to PostgreSQL and read a moto S3 server over HTTP. The S3
credentials and endpoint reach the scans only through the ``deeptrust_s3`` connection: the
subprocesses get no ``AWS_*`` variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from scanning import scan_runs, table
from sqlalchemy import make_url

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
RUNNER = Path(__file__).with_name("airflow_runner.py")
AIRFLOW = Path(sys.executable).with_name("airflow")
BUCKET = "platform"
DAY = "2026-11-23"
# Distinctive secrets, so the tests can show that no log prints them.
S3_SECRET = "s3-secret-7f3a9c"
DB_PASSWORD = "db-password-52e1b0"


def airflow_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory) -> Path:
    """An Airflow metadata database, migrated once; each test gets its own copy."""
    home = tmp_path_factory.mktemp("airflow_template")
    run([str(AIRFLOW), "db", "migrate"], airflow_environment(home))
    return home / "airflow.db"


@pytest.fixture
def airflow_env(airflow_db, tmp_path) -> dict[str, str]:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow_db, home / "airflow.db")
    return airflow_environment(home)


@pytest.fixture(scope="session")
def uploads_corpus(tmp_path_factory) -> list[Path]:
    """10 synthetic videos: 6 uploaded on DAY, 2 the day before and 2 the day after."""
    from model.synth import write_corpus

    out = tmp_path_factory.mktemp("uploads_corpus")
    write_corpus(out, 10, seed=4)
    return sorted(out.rglob("*.mp4"))


@pytest.fixture
def uploads(uploads_corpus, s3_server) -> dict[str, list[str]]:
    """The corpus in moto under ``s3://platform/uploads/<day>/``: the video URIs of each day."""
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=BUCKET)
    days = {
        "2026-11-22": uploads_corpus[:2],
        DAY: uploads_corpus[2:8],
        "2026-11-24": uploads_corpus[8:],
    }
    uris: dict[str, list[str]] = {}
    for day, videos in days.items():
        for video in videos:
            key = f"uploads/{day}/{video.parent.name}/{video.name}"
            client.upload_file(str(video), BUCKET, key)
            uris.setdefault(day, []).append(f"s3://{BUCKET}/{key}")
    client.put_object(Bucket=BUCKET, Key=f"uploads/{DAY}/manifest.csv", Body=b"path,label\n")
    return uris


@pytest.fixture
def deployment(airflow_env, s3_server, pg_url, bundle) -> dict[str, str]:
    """The environment of an Airflow deployment: connections, the Variable, sensor timing."""
    db = make_url(pg_url)
    airflow_env.update(
        AIRFLOW_CONN_DEEPTRUST_S3=json.dumps(
            {
                "conn_type": "aws",
                "login": "deeptrust-key",
                "password": S3_SECRET,
                "extra": {"region_name": "us-east-1", "endpoint_url": s3_server},
            }
        ),
        AIRFLOW_CONN_DEEPTRUST_DB=json.dumps(
            {
                "conn_type": "postgres",
                "host": db.host,
                "port": db.port,
                "login": db.username,
                "password": DB_PASSWORD,  # trust auth ignores it; it must still stay unlogged
                "schema": db.database,
                "extra": dict(db.query),
            }
        ),
        AIRFLOW_VAR_DEEPTRUST_SCAN=json.dumps(
            {
                "input": f"s3://{BUCKET}/uploads/{{{{ ds }}}}/",
                "ready_key": "_SUCCESS",
                "model": str(bundle),
            }
        ),
        DEEPTRUST_UPLOADS_POKE_S="0.2",
    )
    return airflow_env


def run_dag(env: dict[str, str], dag_id: str, *options: str) -> tuple[dict[str, Any], str]:
    done = run([sys.executable, str(RUNNER), "run", str(DAGS), dag_id, *options], env)
    return report(done), done.stdout + done.stderr


def test_dags_parse_fast_without_tensorflow_or_beam(airflow_env):
    parsed = report(run([sys.executable, str(RUNNER), "parse", str(DAGS)], airflow_env))

    assert parsed["import_errors"] == {}
    assert parsed["heavy_modules"] == []
    assert all(seconds < 3 for seconds in parsed["file_seconds"].values()), parsed["file_seconds"]
    nightly, backfill = parsed["dags"]["deeptrust_nightly"], parsed["dags"]["deeptrust_backfill"]
    assert set(parsed["dags"]) == {"deeptrust_nightly", "deeptrust_backfill"}
    assert nightly["schedule"].startswith("CronDataIntervalTimetable(expression='0 0 * * *'")
    assert nightly["catchup"] is False
    tasks = nightly["tasks"]
    assert tasks["wait_for_uploads"]["deferrable"] is True
    assert tasks["wait_for_uploads"]["timeout"] == 6 * 3600
    assert tasks["scan"]["upstream"] == ["plan", "wait_for_uploads"]
    assert tasks["scan"]["outlets"] == ["deeptrust_moderation_results"]
    assert backfill["params"] == ["model", "prefix", "shards"]
    assert backfill["tasks"]["scan_shard"]["outlets"] == ["deeptrust_moderation_results"]
    for task in [*tasks.values(), *backfill["tasks"].values()]:
        assert task["retries"] > 0
        assert task["retry_exponential_backoff"] > 1
        assert task["on_failure_callback"]


def test_nightly_run_waits_for_its_day_then_scans_exactly_it(
    deployment, uploads, s3_server, pg_url, bundle
):
    partition = f"s3://{BUCKET}/uploads/{DAY}/"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    command = [sys.executable, str(RUNNER), "run", str(DAGS), "deeptrust_nightly"]
    with subprocess.Popen(
        [*command, "--logical-date", DAY],
        env=deployment,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as airflow:
        logs: list[str] = []
        marked = False
        for line in airflow.stdout:
            logs.append(line)
            # The sensor has deferred and its trigger polls: now the partition becomes ready.
            if not marked and f"No {partition}_SUCCESS yet" in line:
                s3.put_object(Bucket=BUCKET, Key=f"uploads/{DAY}/_SUCCESS", Body=b"")
                marked = True
        assert airflow.wait() == 0, "".join(logs)[-5000:]
    assert marked, "the sensor never deferred"
    logs = "".join(logs)
    result = json.loads(logs.strip().splitlines()[-1])

    assert result["state"] == "success", result
    assert set(result["tasks"].values()) == {"success"}
    assert "[DAG TEST] running trigger in line" in logs
    rows = table(pg_url)
    assert sorted(r["video_uri"] for r in rows) == sorted(uploads[DAY])
    assert all(r["status"] == "scored" for r in rows)
    (scan,) = scan_runs(pg_url)
    assert (scan["status"], scan["videos_seen"], scan["scored"]) == ("succeeded", 6, 6)
    assert scan["input_uri"] == partition
    assert result["asset_events"] == [
        {
            "asset": "deeptrust_moderation_results",
            "task": "scan",
            "extra": {"input": partition, "model": str(bundle)},
        }
    ]
    assert S3_SECRET not in logs
    assert DB_PASSWORD not in logs


def test_nightly_run_without_a_model_fails_at_once_and_alerts(deployment, uploads):
    deployment["AIRFLOW_VAR_DEEPTRUST_SCAN"] = json.dumps(
        {"input": f"s3://{BUCKET}/uploads/{{{{ ds }}}}/"}
    )

    # A failure that retried would wait out the retry delay; this one ends the run at once.
    result, logs = run_dag(deployment, "deeptrust_nightly", "--logical-date", DAY)

    assert result["state"] == "failed"
    assert result["tasks"] == {
        "plan": "failed",
        "wait_for_uploads": "upstream_failed",
        "scan": "upstream_failed",
    }
    assert "no model bundle" in logs
    assert "DeepTrust task failed: dag=deeptrust_nightly task=plan" in logs
    assert result["asset_events"] == []


def test_backfill_in_three_shards_scores_each_video_once_then_none(deployment, uploads, pg_url):
    conf = json.dumps({"prefix": f"s3://{BUCKET}/uploads", "shards": 3})
    videos = sorted(uri for day in uploads.values() for uri in day)

    first, _ = run_dag(deployment, "deeptrust_backfill", "--conf", conf)

    assert first["state"] == "success", first
    assert first["tasks"] == {
        "plan_shards": "success",
        "scan_shard[0/3]": "success",
        "scan_shard[1/3]": "success",
        "scan_shard[2/3]": "success",
    }
    rows = table(pg_url)
    assert sorted(r["video_uri"] for r in rows) == videos
    runs = scan_runs(pg_url)
    assert len(runs) == 3
    assert sum(r["videos_seen"] for r in runs) == len(videos)  # no video in two shards
    assert sum(r["scored"] for r in runs) == len(videos)
    assert len(first["asset_events"]) == 3

    again, _ = run_dag(deployment, "deeptrust_backfill", "--conf", conf)

    assert again["state"] == "success", again
    new_runs = [r for r in scan_runs(pg_url) if r["run_id"] not in {r["run_id"] for r in runs}]
    assert len(new_runs) == 3
    assert sum(r["skipped"] for r in new_runs) == len(videos)
    assert sum(r["scored"] + r["errors"] for r in new_runs) == 0
    assert table(pg_url) == rows


def test_backfill_create_accepts_the_nightly_dag(airflow_env):
    run([str(AIRFLOW), "dags", "reserialize"], airflow_env)
    done = run(
        [
            str(AIRFLOW),
            "backfill",
            "create",
            "--dag-id",
            "deeptrust_nightly",
            "--from-date",
            "2026-11-20",
            "--to-date",
            "2026-11-23",
            "--dry-run",
        ],
        airflow_env,
    )
    planned = [line for line in done.stdout.splitlines() if line.startswith("| 2026-")]
    assert [line.split()[1] for line in planned] == [f"2026-11-{d}" for d in (20, 21, 22, 23)]
