"""Schema version 3: the history of moderators' decisions.

``moderation_results.review_status`` holds the current decision; every decision ever made stays
in ``reviews``, one row per moderation row decided. ``review_id`` is a UUID made by the
application, stored as text.

Revision ID: 0003_reviews
Revises: 0002_scan_metrics_push
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reviews"
down_revision = "0002_scan_metrics_push"
branch_labels = None
depends_on = None

KEY = ("video_uri", "content_version", "model_version")


def upgrade() -> None:
    op.create_table(
        "reviews",
        # Declared as the first release's SQL declared it, so new and upgraded databases match:
        # PostgreSQL makes a key column NOT NULL anyway; SQLite lets a TEXT key hold NULL.
        sa.Column("review_id", sa.TEXT, primary_key=True, nullable=True),
        sa.Column("video_uri", sa.TEXT, nullable=False),
        sa.Column("content_version", sa.TEXT, nullable=False),
        sa.Column("model_version", sa.TEXT, nullable=False),
        sa.Column(
            "decision",
            sa.TEXT,
            sa.CheckConstraint(
                "decision IN ('confirmed', 'dismissed')", name="reviews_decision_check"
            ),
            nullable=False,
        ),
        sa.Column("note", sa.TEXT),
        sa.Column("reviewer", sa.TEXT, nullable=False),
        sa.Column("reviewed_at", sa.TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            list(KEY),
            [f"moderation_results.{c}" for c in KEY],
            name="reviews_video_uri_content_version_model_version_fkey",
        ),
    )
    op.create_index("reviews_video", "reviews", ["video_uri", "reviewed_at"])


def downgrade() -> None:
    op.drop_index("reviews_video", table_name="reviews")
    op.drop_table("reviews")
