"""Schema version 2: whether each scan's metrics reached the Pushgateway.

``metrics_push`` is NULL while the run is going, then 'pushed', 'failed' (``metrics_push_error``
says why; the scan's rows are unaffected) or 'disabled' (no Pushgateway was configured).

Revision ID: 0002_scan_metrics_push
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_scan_metrics_push"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A column with its own CHECK: SQLite adds one only in the column's definition, which
    # PostgreSQL accepts too, so both get the same statement.
    op.execute(
        "ALTER TABLE scan_runs ADD COLUMN metrics_push TEXT"
        " CONSTRAINT scan_runs_metrics_push_check"
        " CHECK (metrics_push IN ('pushed', 'failed', 'disabled'))"
    )
    op.add_column("scan_runs", sa.Column("metrics_push_error", sa.TEXT))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35 and later) keeps the table's other, unnamed checks, which
    # a batch table copy would lose.
    op.execute("ALTER TABLE scan_runs DROP COLUMN metrics_push_error")
    op.execute("ALTER TABLE scan_runs DROP COLUMN metrics_push")
