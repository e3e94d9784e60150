"""What the DAGs decide in their tasks: settings, nightly and backfill plans, connections."""

from __future__ import annotations

import os

import jinja2
import pytest
from sqlalchemy import create_engine, make_url, text

from pipelines.orchestration.plans import (
    SettingsError,
    backfill_plan,
    database_url,
    environment,
    nightly_plan,
    s3_environment,
    scan_settings,
)
from pipelines.scan.sharding import parse_shard, shard_of

PYTHON = "/opt/worker/bin/python"


def settings(**variable):
    return scan_settings({"model": "s3://models/v7", **variable}, {}, PYTHON)


@pytest.mark.unit
def test_run_params_override_the_variable_which_overrides_defaults():
    variable = {"model": "s3://models/v7", "runner": "DaskRunner", "pipeline_options": {"a": 1}}

    merged = scan_settings(variable, {"model": "s3://models/v8", "input": None}, PYTHON)

    assert merged == {
        "model": "s3://models/v8",
        "runner": "DaskRunner",
        "pipeline_options": {"a": 1},
        "python": PYTHON,
    }
    assert scan_settings({"model": "m"}, {}, PYTHON)["runner"] == "DirectRunner"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ({}, "no model bundle"),
        ({"model": "m", "modle": "typo"}, "unknown keys \\['modle'\\]"),
        ({"model": "m", "pipeline_options": {"db": "sqlite://"}}, "must not set \\['db'\\]"),
    ],
)
def test_unusable_settings_are_refused(variable, message):
    with pytest.raises(SettingsError, match=message):
        scan_settings(variable, {}, PYTHON)


@pytest.mark.unit
def test_the_nightly_plan_renders_the_days_partition():
    def render(template: str) -> str:
        return jinja2.Template(template).render(ds="2026-11-23")

    plan = nightly_plan(settings(input="s3://platform/uploads/{{ ds }}"), render)

    assert plan["partition"] == "s3://platform/uploads/2026-11-23/"
    assert plan["wait_for"] == "s3://platform/uploads/2026-11-23/*"
    assert plan["pipeline_options"] == {
        "input": "s3://platform/uploads/2026-11-23/",
        "model": "s3://models/v7",
    }
    marked = nightly_plan(settings(input="s3://b/{{ ds }}/", ready_key="_SUCCESS"), render)
    assert marked["wait_for"] == "s3://b/2026-11-23/_SUCCESS"


@pytest.mark.unit
@pytest.mark.parametrize("layout", [None, "/local/uploads/{{ ds }}", "s3:///uploads"])
def test_the_nightly_plan_needs_an_s3_layout(layout):
    with pytest.raises(SettingsError):
        nightly_plan(settings(input=layout), lambda template: template)


@pytest.mark.unit
def test_a_backfill_plan_maps_one_scan_to_each_nonempty_shard():
    uris = [f"s3://archive/videos/{n}.mp4" for n in range(5)]
    prefix = "s3://archive/videos/"

    plan = backfill_plan(settings(runner="DaskRunner"), prefix, 8, uris)

    planned = {parse_shard(scan["pipeline_options"]["shard"]) for scan in plan}
    assert planned == {(shard_of(uri, 8), 8) for uri in uris}
    assert len(planned) < 8, "5 objects leave some of 8 shards empty"
    for scan in plan:
        assert scan["runner"] == "DaskRunner"
        assert scan["py_interpreter"] == PYTHON
        assert scan["pipeline_options"]["input"] == prefix
        assert scan["pipeline_options"]["model"] == "s3://models/v7"


@pytest.mark.unit
def test_an_empty_backfill_is_refused():
    with pytest.raises(SettingsError, match="no objects under s3://archive/none/"):
        backfill_plan(settings(), "s3://archive/none/", 3, [])
    with pytest.raises(SettingsError, match="shards must be at least 1"):
        backfill_plan(settings(), "s3://archive/videos/", 0, ["s3://archive/videos/a.mp4"])


@pytest.mark.e2e
def test_the_database_password_goes_to_the_environment_not_the_url(pg_url):
    pg = make_url(pg_url)
    conn = {
        "conn_id": "deeptrust_db",
        "conn_type": "postgres",
        "host": pg.host,
        "port": pg.port,
        "login": pg.username,
        "password": "s3cr3t",
        "schema": pg.database,
        "extra": dict(pg.query),
    }

    url, env = database_url(conn)

    assert "s3cr3t" not in url
    assert env == {"PGPASSWORD": "s3cr3t"}
    engine = create_engine(url)
    try:
        with environment(env), engine.connect() as db:
            search_path = db.execute(text("SHOW search_path")).scalar()
    finally:
        engine.dispose()
    assert search_path == pg.query["options"].removeprefix("-csearch_path=")


@pytest.mark.unit
def test_only_postgres_connections_hold_the_moderation_table():
    with pytest.raises(SettingsError, match="must be a postgres connection"):
        database_url({"conn_id": "deeptrust_db", "conn_type": "mysql", "host": "db"})


@pytest.mark.unit
def test_an_aws_connection_becomes_boto3_environment():
    conn = {
        "conn_type": "aws",
        "login": "AKIA",
        "password": "secret",
        "extra": {
            "region_name": "eu-west-1",
            "endpoint_url": "http://minio:9000",
            "service_config": {"s3": {"endpoint_url": "http://s3.internal:9000"}},
        },
    }

    assert s3_environment(conn) == {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://s3.internal:9000",
    }
    # No keys: the scan falls back to its own credential chain (an IAM role).
    assert s3_environment({"conn_type": "aws", "extra": {}}) == {}
    with pytest.raises(SettingsError, match="role_arn"):
        s3_environment({"conn_type": "aws", "extra": {"role_arn": "arn:aws:iam::1:role/x"}})


@pytest.mark.unit
def test_environment_is_restored_after_the_block(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("PGPASSWORD", raising=False)

    with environment({"AWS_DEFAULT_REGION": "eu-west-1", "PGPASSWORD": "pw"}):
        assert (os.environ["AWS_DEFAULT_REGION"], os.environ["PGPASSWORD"]) == ("eu-west-1", "pw")

    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "PGPASSWORD" not in os.environ
