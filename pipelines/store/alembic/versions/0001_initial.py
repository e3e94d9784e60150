"""Schema version 1: moderation results and scan runs.

One moderation row per video, content version and model version, and one row per scan. Times
are naive UTC.

Revision ID: 0001_initial
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moderation_results",
        sa.Column("video_uri", sa.TEXT, nullable=False),
        sa.Column("content_version", sa.TEXT, nullable=False),
        sa.Column("model_version", sa.TEXT, nullable=False),
        sa.Column("run_id", sa.TEXT, nullable=False),
        sa.Column("scanned_at", sa.TIMESTAMP, nullable=False),
        sa.Column(
            "status",
            sa.TEXT,
            sa.CheckConstraint(
                "status IN ('scored', 'error')", name="moderation_results_status_check"
            ),
            nullable=False,
        ),
        sa.Column("score", sa.DOUBLE_PRECISION),
        sa.Column("threshold", sa.DOUBLE_PRECISION),
        sa.Column("flagged", sa.BOOLEAN),
        sa.Column("segments", sa.TEXT),
        sa.Column("frames_analyzed", sa.INTEGER),
        sa.Column("duration_s", sa.DOUBLE_PRECISION),
        sa.Column("width", sa.INTEGER),
        sa.Column("height", sa.INTEGER),
        sa.Column("fps", sa.DOUBLE_PRECISION),
        sa.Column("error_reason", sa.TEXT),
        sa.Column("error_detail", sa.TEXT),
        sa.Column(
            "review_status",
            sa.TEXT,
            sa.CheckConstraint(
                "review_status IN ('pending', 'confirmed', 'dismissed')",
                name="moderation_results_review_status_check",
            ),
        ),
        sa.PrimaryKeyConstraint(
            "video_uri", "content_version", "model_version", name="moderation_results_pkey"
        ),
    )
    op.create_index("moderation_results_run", "moderation_results", ["run_id"])
    op.create_index("moderation_results_review", "moderation_results", ["flagged", "review_status"])
    op.create_table(
        "scan_runs",
        # Declared as the first release's SQL declared it, so new and upgraded databases match:
        # PostgreSQL makes a key column NOT NULL anyway; SQLite lets a TEXT key hold NULL.
        sa.Column("run_id", sa.TEXT, primary_key=True, nullable=True),
        sa.Column("started_at", sa.TIMESTAMP, nullable=False),
        sa.Column("finished_at", sa.TIMESTAMP),
        sa.Column("input_uri", sa.TEXT, nullable=False),
        sa.Column("model_version", sa.TEXT, nullable=False),
        sa.Column("runner", sa.TEXT, nullable=False),
        sa.Column(
            "status",
            sa.TEXT,
            sa.CheckConstraint(
                "status IN ('running', 'succeeded', 'incomplete', 'failed')",
                name="scan_runs_status_check",
            ),
            nullable=False,
        ),
        *(
            sa.Column(name, sa.INTEGER, nullable=False, server_default=sa.text("0"))
            for name in ("videos_seen", "skipped", "scored", "flagged", "errors")
        ),
    )


def downgrade() -> None:
    op.drop_table("scan_runs")
    op.drop_index("moderation_results_review", table_name="moderation_results")
    op.drop_index("moderation_results_run", table_name="moderation_results")
    op.drop_table("moderation_results")
