"""What the Airflow DAGs in ``dags/`` decide inside their tasks: settings, plans, connections.

Plain functions over plain values: the DAGs read Variables and connections and hand them over, so
this module imports neither Airflow, Beam nor TensorFlow.

Settings come from the JSON Variable ``deeptrust_scan``, and a run's params override them:

- ``input``: the nightly partition, a template rendered for each run (``s3://b/uploads/{{ ds }}/``);
- ``ready_key``: the key, under the partition, whose arrival makes the partition ready to scan: a
  marker such as ``_SUCCESS``, or a glob (default ``*``: the first object);
- ``model``: the model bundle, a local folder or ``s3://`` prefix;
- ``runner`` (default ``DirectRunner``) and ``pipeline_options``: the Beam runner and its options;
- ``python``: the interpreter that runs the scan (default: the Airflow worker's own).

Connections arrive as Airflow's JSON form (``conn_type``, ``host``, ``login``, ``password``,
``schema``, ``port``, ``extra``). Their secrets reach the scan through its environment (boto3's
``AWS_*`` variables, libpq's ``PGPASSWORD``), never through its command line, which the Beam
operator logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.engine import URL

# The DAGs' tasks set a scan's secrets with ``environment``, which they import from here.
from pipelines.environment import environment as environment
from pipelines.scan.sharding import shard_of, shard_spec

SETTINGS_VARIABLE = "deeptrust_scan"
SETTING_KEYS = frozenset({"input", "ready_key", "model", "runner", "pipeline_options", "python"})
# Options the DAGs set themselves: the database comes from a connection, the rest from settings.
RESERVED_OPTIONS = frozenset({"input", "model", "db", "runner", "shard"})
DEFAULT_RUNNER = "DirectRunner"


class SettingsError(ValueError):
    """Settings, params or connections that cannot make a scan: retrying cannot fix them."""


def scan_settings(
    variable: Mapping[str, Any], overrides: Mapping[str, Any], python: str
) -> dict[str, Any]:
    """The scan's settings: ``overrides`` (a run's params) over the Variable over defaults."""
    unknown = set(variable) - SETTING_KEYS
    if unknown:
        raise SettingsError(
            f"Variable {SETTINGS_VARIABLE}: unknown keys {sorted(unknown)}; "
            f"expected some of {sorted(SETTING_KEYS)}"
        )
    settings: dict[str, Any] = {"runner": DEFAULT_RUNNER, "pipeline_options": {}, "python": python}
    settings.update(variable)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    if not settings.get("model"):
        raise SettingsError(
            f"no model bundle: set 'model' in the Variable {SETTINGS_VARIABLE} "
            "or in the run's params"
        )
    reserved = RESERVED_OPTIONS & set(settings["pipeline_options"])
    if reserved:
        raise SettingsError(
            f"Variable {SETTINGS_VARIABLE}: pipeline_options must not set {sorted(reserved)}; "
            "the DAGs set them from params, settings and connections"
        )
    return settings


def as_prefix(uri: str) -> str:
    """``uri`` as an ``s3://bucket/prefix/`` with one trailing slash."""
    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    if not uri.startswith("s3://") or not bucket:
        raise SettingsError(f"expected an s3://bucket/prefix, got {uri!r}")
    return uri.rstrip("/") + "/"


def scan_options(settings: Mapping[str, Any], input_uri: str, **extra: Any) -> dict[str, Any]:
    """The Beam pipeline options of one scan; the database is added when the scan starts."""
    return {**settings["pipeline_options"], "input": input_uri, "model": settings["model"], **extra}


def nightly_plan(settings: Mapping[str, Any], render: Callable[[str], str]) -> dict[str, Any]:
    """The run's partition (``settings["input"]`` rendered for its date) and how to scan it."""
    if not settings.get("input"):
        raise SettingsError(
            "no input layout: set 'input' (such as s3://bucket/uploads/{{ ds }}/) in the "
            f"Variable {SETTINGS_VARIABLE} or in the run's params"
        )
    partition = as_prefix(render(settings["input"]))
    return {
        "partition": partition,
        "wait_for": partition + (settings.get("ready_key") or "*"),
        "runner": settings["runner"],
        "python": settings["python"],
        "pipeline_options": scan_options(settings, partition),
    }


def backfill_plan(
    settings: Mapping[str, Any], prefix: str, shards: int, uris: Iterable[str]
) -> list[dict[str, Any]]:
    """Keyword arguments for one scan per non-empty shard of ``uris`` (the objects under
    ``prefix``)."""
    if shards < 1:
        raise SettingsError(f"shards must be at least 1, got {shards}")
    counts = [0] * shards
    for uri in uris:
        counts[shard_of(uri, shards)] += 1
    if not any(counts):
        raise SettingsError(f"nothing to backfill: no objects under {prefix}")
    return [
        {
            "runner": settings["runner"],
            "py_interpreter": settings["python"],
            "pipeline_options": scan_options(settings, prefix, shard=shard_spec(index, shards)),
        }
        for index, objects in enumerate(counts)
        if objects
    ]


def database_url(conn: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The SQLAlchemy URL of a postgres connection, without its password, and the environment
    that carries the password to libpq (``PGPASSWORD``).

    The connection's extras become libpq parameters (``sslmode``, ``options``, ...).
    """
    if conn.get("conn_type") not in ("postgres", "postgresql"):
        raise SettingsError(
            f"connection {conn.get('conn_id')}: the moderation database must be a postgres "
            f"connection, not {conn.get('conn_type')!r}"
        )
    url = URL.create(
        "postgresql+psycopg",
        username=conn.get("login") or None,
        host=conn.get("host") or None,
        port=conn.get("port") or None,
        database=conn.get("schema") or None,
        query={key: str(value) for key, value in (conn.get("extra") or {}).items()},
    )
    env = {"PGPASSWORD": conn["password"]} if conn.get("password") else {}
    return url.render_as_string(hide_password=False), env


def s3_environment(conn: Mapping[str, Any]) -> dict[str, str]:
    """boto3's environment for an aws connection: keys, region and S3 endpoint, where set.

    With no keys in the connection the scan uses its own credential chain (an IAM role).
    """
    extra = conn.get("extra") or {}
    if extra.get("role_arn"):
        raise SettingsError(
            f"connection {conn.get('conn_id')}: role_arn is not passed on to the scan; give the "
            "worker that role instead, or put keys in the connection"
        )
    s3_config = (extra.get("service_config") or {}).get("s3") or {}
    env = {
        "AWS_ACCESS_KEY_ID": conn.get("login"),
        "AWS_SECRET_ACCESS_KEY": conn.get("password"),
        "AWS_SESSION_TOKEN": extra.get("aws_session_token"),
        "AWS_DEFAULT_REGION": extra.get("region_name"),
        "AWS_ENDPOINT_URL_S3": s3_config.get("endpoint_url") or extra.get("endpoint_url"),
    }
    return {key: value for key, value in env.items() if value}
