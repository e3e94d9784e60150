"""Schema version 5: moderators claim a video before deciding, and may escalate it.

- ``review_claims``: which moderator is looking at which video now, until ``expires_at``; one
  claim per video URI, so two moderators never work on the same video at once. A decision
  releases the decider's claim.
- ``escalated`` joins the decisions, in ``reviews.decision`` and in
  ``moderation_results.review_status``: the moderator hands the video on to someone who may
  decide it (legal, trust and safety).

Downgrading turns escalated rows back to ``pending`` and drops the escalations from ``reviews``,
which the older schema cannot hold.

Revision ID: 0005_review_claims
Revises: 0004_run_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipelines.store.check_constraints import Checks, replace_checks, values_in

revision = "0005_review_claims"
down_revision = "0004_run_lifecycle"
branch_labels = None
depends_on = None

DECISIONS = ("confirmed", "dismissed", "escalated")
REVIEW_STATUSES = ("pending", "confirmed", "dismissed", "superseded", "escalated")


def _results_checks(review_statuses: tuple[str, ...]) -> Checks:
    return {
        "status": (
            "moderation_results_status_check",
            values_in("status", ("scored", "error")),
            False,
        ),
        "review_status": (
            "moderation_results_review_status_check",
            values_in("review_status", review_statuses),
            True,
        ),
    }


def _reviews_checks(decisions: tuple[str, ...]) -> Checks:
    return {"decision": ("reviews_decision_check", values_in("decision", decisions), False)}


def upgrade() -> None:
    replace_checks("moderation_results", _results_checks(REVIEW_STATUSES), "review_status")
    replace_checks("reviews", _reviews_checks(DECISIONS), "decision")
    op.create_table(
        "review_claims",
        sa.Column("video_uri", sa.TEXT, nullable=False),
        sa.Column("reviewer", sa.TEXT, nullable=False),
        sa.Column("claimed_at", sa.TIMESTAMP, nullable=False),
        sa.Column("expires_at", sa.TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("video_uri", name="review_claims_pkey"),
    )


def downgrade() -> None:
    op.drop_table("review_claims")
    op.execute("DELETE FROM reviews WHERE decision = 'escalated'")
    op.execute(
        "UPDATE moderation_results SET review_status = 'pending' WHERE review_status = 'escalated'"
    )
    replace_checks("reviews", _reviews_checks(DECISIONS[:-1]), "decision")
    replace_checks("moderation_results", _results_checks(REVIEW_STATUSES[:-1]), "review_status")
