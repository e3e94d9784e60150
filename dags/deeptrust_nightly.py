"""The nightly scan: wait for the day's uploads, score them, update the moderation results.

Each run covers one day, its logical date (``{{ ds }}``), and starts when that day is over.

- Settings: the JSON Variable ``deeptrust_scan``. ``input`` is the partition layout, rendered for
  each run (``s3://BUCKET/uploads/{{ ds }}/``); ``ready_key`` is the key under it that marks the
  partition ready (such as ``_SUCCESS``; default ``*``, the first upload); ``model`` is the bundle;
  ``runner``, ``pipeline_options`` and ``python`` choose where and how the scan runs. The run's
  params ``input`` and ``model`` override the Variable.
- Connections: ``deeptrust_s3`` (aws: keys, region, ``endpoint_url``) and ``deeptrust_db``
  (postgres: the moderation database).
- Environment: ``DEEPTRUST_UPLOADS_TIMEOUT_S`` (default 6 h) and ``DEEPTRUST_UPLOADS_POKE_S``
  (default 5 min) bound the wait for the partition to be ready.

Past days: ``airflow backfill create --dag-id deeptrust_nightly --from-date ... --to-date ...``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from deeptrust_tasks import (
    DEFAULT_ARGS,
    MODERATION_RESULTS,
    S3_CONN_ID,
    ScanPipelineOperator,
    UploadsSensor,
    plan_nightly,
)

UPLOADS_TIMEOUT = timedelta(seconds=float(os.environ.get("DEEPTRUST_UPLOADS_TIMEOUT_S", 6 * 3600)))
UPLOADS_POKE_INTERVAL = timedelta(seconds=float(os.environ.get("DEEPTRUST_UPLOADS_POKE_S", 300)))


@dag(
    dag_id="deeptrust_nightly",
    # A data-interval schedule: the run for a day starts when the day ends, and {{ ds }} is that
    # day (the plain "@daily" of Airflow 3 would start it, and scan it, as the day begins).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "input": Param(
            None,
            type=["null", "string"],
            description="partition layout, such as s3://BUCKET/uploads/{{ ds }}/ "
            "(default: the Variable deeptrust_scan)",
        ),
        "model": Param(
            None,
            type=["null", "string"],
            description="model bundle (default: the Variable deeptrust_scan)",
        ),
    },
    tags=["deeptrust"],
    doc_md=__doc__,
)
def deeptrust_nightly() -> None:
    @task(multiple_outputs=True)
    def plan(**context: Any) -> dict[str, Any]:
        """The day's partition and how to scan it."""
        return plan_nightly(context)

    scan_plan = plan()
    wait = UploadsSensor(
        task_id="wait_for_uploads",
        bucket_key=scan_plan["wait_for"],
        wildcard_match=True,
        aws_conn_id=S3_CONN_ID,
        deferrable=True,
        timeout=UPLOADS_TIMEOUT,
        poke_interval=UPLOADS_POKE_INTERVAL,
    )
    scan = ScanPipelineOperator(
        task_id="scan",
        runner=scan_plan["runner"],
        py_interpreter=scan_plan["python"],
        pipeline_options=scan_plan["pipeline_options"],
        outlets=[MODERATION_RESULTS],
    )
    wait >> scan


deeptrust_nightly()
