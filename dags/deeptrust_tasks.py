"""Building blocks of the DeepTrust DAGs: the scan operator, the uploads sensor, task defaults.

Only Airflow is imported here. ``pipelines`` is imported when a task runs, so parsing a DAG
imports neither Beam nor TensorFlow. ``.airflowignore`` keeps the DAG processor from parsing this
file as a DAG file; the DAG files import it from their bundle folder.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.apache.beam.hooks.beam import BeamRunnerType
from airflow.providers.apache.beam.operators.beam import (
    GOOGLE_PROVIDER,
    BeamDataflowMixin,
    BeamRunPythonPipelineOperator,
)
from airflow.sdk import Asset, Connection, Context, Variable
from airflow.sdk.exceptions import AirflowFailException

S3_CONN_ID = "deeptrust_s3"
DB_CONN_ID = "deeptrust_db"
# Downstream DAGs (reports, dashboards) schedule on this: every scan that finishes updates it.
MODERATION_RESULTS = Asset(name="deeptrust_moderation_results")

log = logging.getLogger(__name__)


def alert_on_failure(context: Context) -> None:
    """Log a task that failed for good at ERROR, with what on-call needs to find its run."""
    ti = context["ti"]
    log.error(
        "DeepTrust task failed: dag=%s task=%s map_index=%s run=%s try=%s: %s",
        ti.dag_id,
        ti.task_id,
        ti.map_index,
        ti.run_id,
        ti.try_number,
        context.get("exception"),
    )


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "deeptrust",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=1),
    "on_failure_callback": alert_on_failure,
}


@contextmanager
def failing_fast() -> Iterator[None]:
    """Turn a settings error into a failure that skips the retries: retrying cannot fix it."""
    from pipelines.orchestration.plans import SettingsError

    try:
        yield
    except SettingsError as err:
        raise AirflowFailException(str(err)) from err


def read_settings(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The scan settings: a run's params over the Variable over defaults."""
    from pipelines.orchestration.plans import SETTINGS_VARIABLE, scan_settings

    variable = Variable.get(SETTINGS_VARIABLE, default={}, deserialize_json=True)
    with failing_fast():
        return scan_settings(variable, overrides, python=sys.executable)


def plan_nightly(context: Context) -> dict[str, Any]:
    """The nightly run's partition, rendered for its logical date, and how to scan it."""
    from pipelines.orchestration.plans import nightly_plan

    params = context["params"]
    settings = read_settings({"input": params["input"], "model": params["model"]})
    render = context["task"].render_template
    with failing_fast():
        return nightly_plan(settings, lambda layout: render(layout, context))


def plan_backfill(context: Context) -> list[dict[str, Any]]:
    """One scan per non-empty shard of the objects under the run's prefix."""
    from pipelines.orchestration.plans import as_prefix, backfill_plan

    params = context["params"]
    settings = read_settings({"model": params["model"]})
    with failing_fast():
        prefix = as_prefix(params["prefix"])
        bucket, key_prefix = S3Hook.parse_s3_url(prefix)
        keys = S3Hook(aws_conn_id=S3_CONN_ID).list_keys(bucket_name=bucket, prefix=key_prefix)
        uris = (f"s3://{bucket}/{key}" for key in keys)
        return backfill_plan(settings, prefix, int(params["shards"]), uris)


class _WithoutDataflow(BeamDataflowMixin):
    """Skips the Dataflow mixin's constructor, which refuses to run without the Google provider.

    Airflow 3's operators chain ``__init__`` through every base, so the Beam provider (6.3.1)
    reaches that check even for local runners, and no Beam operator can be built without the
    Google provider. Dataflow itself still needs it.
    """

    def __init__(self) -> None:
        super(BeamDataflowMixin, self).__init__()


class ScanPipelineOperator(BeamRunPythonPipelineOperator, _WithoutDataflow):
    """``python -m pipelines.scan`` on Beam, with S3 and the moderation database taken from
    Airflow connections when the task runs.

    The database URL becomes ``--db``; secrets go to the scan's environment, never to its command
    line, which the Beam operator logs. A finished scan updates the task's outlet assets with the
    input it scanned.
    """

    template_fields = (
        *BeamRunPythonPipelineOperator.template_fields,
        "py_interpreter",
        "s3_conn_id",
        "db_conn_id",
    )

    def __init__(
        self,
        *,
        s3_conn_id: str = S3_CONN_ID,
        db_conn_id: str = DB_CONN_ID,
        py_interpreter: str = sys.executable,
        **kwargs: Any,
    ) -> None:
        # Never deferred: a deferred Beam run starts in the triggerer, without this environment.
        super().__init__(
            py_file="pipelines.scan",
            py_options=["-m"],
            py_interpreter=py_interpreter,
            deferrable=False,
            **kwargs,
        )
        self.s3_conn_id = s3_conn_id
        self.db_conn_id = db_conn_id

    def execute(self, context: Context) -> None:
        from pipelines.orchestration.plans import database_url, environment, s3_environment

        with failing_fast():
            db_url, env = database_url(Connection.get(self.db_conn_id).to_dict())
            env |= s3_environment(Connection.get(self.s3_conn_id).to_dict())
        self.pipeline_options = {**self.pipeline_options, "db": db_url}
        with environment(env):
            super().execute(context)
        scanned = {
            key: self.pipeline_options[key]
            for key in ("input", "model", "shard")
            if key in self.pipeline_options
        }
        for asset in self.outlets:
            context["outlet_events"][asset].extra = scanned

    def _cast_dataflow_config(self) -> None:
        # The provider builds the Google provider's DataflowConfiguration on every run, even for
        # local runners; without that provider there is nothing to build, nor a Dataflow to use.
        if GOOGLE_PROVIDER:
            super()._cast_dataflow_config()
        elif self.runner.lower() == BeamRunnerType.DataflowRunner.lower():
            raise AirflowFailException("the DataflowRunner needs apache-airflow-providers-google")


class UploadsSensor(S3KeySensor):
    """S3KeySensor whose deferred wait polls with boto3 (see ``S3KeyPollTrigger``)."""

    def _defer(self) -> None:
        from pipelines.orchestration.s3_wait import S3KeyPollTrigger

        self.defer(
            timeout=timedelta(seconds=self.timeout),
            trigger=S3KeyPollTrigger(
                bucket_name=self.bucket_name,
                bucket_key=self.bucket_key,
                wildcard_match=self.wildcard_match,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )
