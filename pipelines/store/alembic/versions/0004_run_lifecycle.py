"""Schema version 4: scans that overlap or die are told apart, and replaced bytes leave review.

- ``scan_runs.heartbeat_at``: a running scan's last sign of life; a silent one becomes
  ``abandoned``.
- ``video_claims``: which run is scoring which video now, so two live scans never score the same.
- ``run_results``: what each run wrote for each video, so a run's counts are its own even when
  another run rewrites the row later.
- ``moderation_results.review_status`` gains ``superseded``: a newer content version of the same
  URI replaced the bytes a pending review was about.

Changing a CHECK constraint: PostgreSQL drops and adds it by name. SQLite cannot alter one, so
the table is copied (Alembic's batch mode). Databases from the hand-written migrator hold unnamed
checks there, which a copy drops; named ones are copied. So every named check of the table is
dropped and the table's whole set is declared again, named, and both kinds of database end alike.

Revision ID: 0004_run_lifecycle
Revises: 0003_reviews
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004_run_lifecycle"
down_revision = "0003_reviews"
branch_labels = None
depends_on = None

KEY = ("video_uri", "content_version", "model_version")
RUN_STATUSES = ("running", "succeeded", "incomplete", "failed", "abandoned")
REVIEW_STATUSES = ("pending", "confirmed", "dismissed", "superseded")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


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


def _replace_checks(table: str, checks: dict, changed: str) -> None:
    """Make ``checks`` the table's CHECK constraints, of which the one on column ``changed`` is
    new. On SQLite each is declared on its column, as the earlier revisions declared them, so a
    later downgrade can still drop a column with its check."""
    name, condition, _ = checks[changed]
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, condition)
        return
    existing = [c["name"] for c in sa.inspect(op.get_bind()).get_check_constraints(table)]
    columns = [
        sa.Column(column, sa.TEXT, sa.CheckConstraint(text, name=check), nullable=nullable)
        for column, (check, text, nullable) in checks.items()
    ]
    with warnings.catch_warnings():
        # Alembic warns that it leaves out the legacy unnamed checks: that is the point here.
        warnings.filterwarnings("ignore", message="Unnamed CHECK constraint")
        with op.batch_alter_table(table, recreate="always", reflect_args=columns) as batch:
            for check in existing:
                if check:
                    batch.drop_constraint(check, type_="check")


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
