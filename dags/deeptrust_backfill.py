"""Backfill an archive that is not partitioned by date: scan every video under a prefix.

Params: ``prefix`` (``s3://bucket/archive/``), ``model`` (default: the Variable
``deeptrust_scan``) and ``shards``. A first task lists the prefix and splits its objects into
shards by a stable hash of their URIs; each non-empty shard is a mapped scan
(``--shard INDEX/COUNT``). Videos already scored by the same model are skipped, so a failed shard
is simply cleared and run again, and a second backfill of the same archive scores nothing.

Runner, pipeline options and connections are those of the nightly DAG (``deeptrust_nightly``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from deeptrust_tasks import DEFAULT_ARGS, MODERATION_RESULTS, ScanPipelineOperator, plan_backfill


@dag(
    dag_id="deeptrust_backfill",
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    params={
        "prefix": Param(
            type="string",
            pattern="^s3://[^/]+",
            description="the archive to scan, such as s3://archive/videos/",
        ),
        "model": Param(
            None,
            type=["null", "string"],
            description="model bundle (default: the Variable deeptrust_scan)",
        ),
        "shards": Param(4, type="integer", minimum=1, description="parallel scans"),
    },
    tags=["deeptrust"],
    doc_md=__doc__,
)
def deeptrust_backfill() -> None:
    @task
    def plan_shards(**context: Any) -> list[dict[str, Any]]:
        """One scan per non-empty shard of the prefix's listing."""
        return plan_backfill(context)

    ScanPipelineOperator.partial(
        task_id="scan_shard",
        outlets=[MODERATION_RESULTS],
        map_index_template="{{ task.pipeline_options['shard'] }}",
    ).expand_kwargs(plan_shards())


deeptrust_backfill()
