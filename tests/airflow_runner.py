"""Airflow for the DAG tests, in a process of its own: parse the DAG folder, or run one DAG.

Importing Airflow configures its settings, logging and warnings for the whole process, so the
tests keep it out of theirs and read this script's report, the last stdout line (JSON)::

    python tests/airflow_runner.py parse DAGS_FOLDER
    python tests/airflow_runner.py run DAGS_FOLDER DAG_ID [--logical-date ISO] [--conf JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HEAVY = ("tensorflow", "keras", "apache_beam", "pipelines", "model")


def load(dags: Path):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(dags), bundle_path=dags)


def describe_task(task) -> dict[str, Any]:
    return {
        "type": type(task).__name__,
        "retries": task.retries,
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "on_failure_callback": bool(task.on_failure_callback),
        "deferrable": getattr(task, "deferrable", None),
        "timeout": getattr(task, "timeout", None),
        "outlets": [asset.name for asset in task.outlets],
        "upstream": sorted(task.upstream_task_ids),
    }


def parse(dags: Path) -> dict[str, Any]:
    bag = load(dags)
    return {
        "file_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
        "import_errors": bag.import_errors,
        "heavy_modules": sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY)),
        "dags": {
            dag_id: {
                "schedule": str(dag.schedule),
                "catchup": dag.catchup,
                "params": sorted(dag.params),
                "tasks": {task.task_id: describe_task(task) for task in dag.tasks},
            }
            for dag_id, dag in bag.dags.items()
        },
    }


def asset_events(run_id: str) -> list[dict[str, Any]]:
    from airflow import settings
    from airflow.models.asset import AssetEvent
    from sqlalchemy import select

    with settings.Session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id))
        return [
            {"asset": event.asset.name, "task": event.source_task_id, "extra": event.extra}
            for event in events
        ]


def task_name(ti) -> str:
    """``task_id``, or ``task_id[rendered map index]`` for a mapped task."""
    return f"{ti.task_id}[{ti.rendered_map_index}]" if ti.map_index >= 0 else ti.task_id


def run(dags: Path, dag_id: str, logical_date: str | None, conf: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk import timezone

    dag = load(dags).get_dag(dag_id)
    date = timezone.parse(logical_date) if logical_date else None
    dag_run = dag.test(logical_date=date, run_conf=conf)
    return {
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "tasks": {task_name(ti): str(ti.state) for ti in dag_run.get_task_instances()},
        "asset_events": asset_events(dag_run.run_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse")
    p.add_argument("dags", type=Path)
    p = sub.add_parser("run")
    p.add_argument("dags", type=Path)
    p.add_argument("dag_id")
    p.add_argument("--logical-date")
    p.add_argument("--conf", type=json.loads, default={})
    args = parser.parse_args()
    if args.command == "parse":
        report = parse(args.dags)
    else:
        report = run(args.dags, args.dag_id, args.logical_date, args.conf)
    print(json.dumps(report, default=str), flush=True)


if __name__ == "__main__":
    main()
