"""Schema version 4: scans that overlap or die are told apart, and replaced bytes leave review.

- ``scan_runs.heartbeat_at``: a running scan's last sign of life; a silent one becomes
  ``abandoned``.
- ``video_claims``: which run is scoring which video now, so two live scans never score the same.
- ``run_results``: what each run wrote for each video, so a run's counts are its own even when
  another run rewrites the row later.
- ``moderation_results.review_status`` gains ``superseded``: a newer content version of the same
  URI replaced the bytes a pending review was about.

Changing a CHECK constraint: see ``pipelines.store.check_constraints``.

Revision ID: 0004_run_lifecycle
Revises: 0003_reviews
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipelines.store.check_constraints import replace_checks as _replace_checks
from pipelines.store.check_constraints import values_in as _in

revision = "0004_run_lifecycle"
down_revision = "0003_reviews"
branch_labels = None
depends_on = None

KEY = ("video_uri", "content_version", "model_version")
RUN_STATUSES = ("running", "succeeded", "incomplete", "failed", "abandoned")
REVIEW_STATUSES = ("pending", "confirmed", "dismissed", "superseded")


def _checks(run_statuses: tuple[str, ...], review_statuses: tuple[str, ...]) -> dict:
    """Every CHECK of the two tables: by table, the checked column and its constraint."""
    return {
        "scan_runs": {
            "status": ("scan_runs_status_check", _in("status", run_statuses), False),
            "metrics_push": (
                "scan_runs_metrics_push_check",
                _in("metrics_push", ("pushed", "failed", "disabled")),
                True,
            ),
        },
        "moderation_results": {
            "status": (
                "moderation_results_status_check",
                _in("status", ("scored", "error")),
                False,
            ),
            "review_status": (
                "moderation_results_review_status_check",
                _in("review_status", review_statuses),
                True,
            ),
        },
    }


def upgrade() -> None:
    checks = _checks(RUN_STATUSES, REVIEW_STATUSES)
    op.add_column("scan_runs", sa.Column("heartbeat_at", sa.TIMESTAMP))
    _replace_checks("scan_runs", checks["scan_runs"], "status")
    _replace_checks("moderation_results", checks["moderation_results"], "review_status")
    op.create_table(
        "video_claims",
        *(sa.Column(name, sa.TEXT, nullable=False) for name in KEY),
        sa.Column("run_id", sa.TEXT, nullable=False),
        sa.Column("claimed_at", sa.TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="video_claims_pkey"),
    )
    op.create_table(
        "run_results",
        sa.Column("run_id", sa.TEXT, nullable=False),
        *(sa.Column(name, sa.TEXT, nullable=False) for name in KEY),
        sa.Column(
            "status",
            sa.TEXT,
            sa.CheckConstraint("status IN ('scored', 'error')", name="run_results_status_check"),
            nullable=False,
        ),
        sa.Column("flagged", sa.BOOLEAN, nullable=False),
        sa.Column("error_reason", sa.TEXT),
        sa.PrimaryKeyConstraint("run_id", *KEY, name="run_results_pkey"),
    )


def downgrade() -> None:
    op.drop_table("run_results")
    op.drop_table("video_claims")
    checks = _checks(RUN_STATUSES[:-1], REVIEW_STATUSES[:-1])
    op.execute(
        "UPDATE moderation_results SET review_status = 'pending' WHERE review_status = 'superseded'"
    )
    op.execute("UPDATE scan_runs SET status = 'failed' WHERE status = 'abandoned'")
    _replace_checks("moderation_results", checks["moderation_results"], "review_status")
    _replace_checks("scan_runs", checks["scan_runs"], "status")
    # Not a batch copy, which would turn the checks just declared on their columns into
    # table-level ones that an earlier revision's DROP COLUMN cannot get past on SQLite.
    op.execute("ALTER TABLE scan_runs DROP COLUMN heartbeat_at")
