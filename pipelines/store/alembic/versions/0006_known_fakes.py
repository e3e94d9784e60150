"""Schema version 6: a bank of known fakes, and rows for videos matched against it.

- ``known_fakes``: the perceptual hashes of videos that moderators confirmed (or that a bank
  import brought in), one row per hashed frame and orientation (``mirrored``), as 64 hex digits.
  It names the banked video by URI and content version but has no foreign key: an imported
  entry's video was never scanned here, and a banked video stays banked when its rows go.
- ``moderation_results.status`` gains ``matched`` (a known fake, flagged without a model call),
  with the match's evidence in ``match_video_uri``, ``match_content_version``, ``match_share``
  and ``match_distance``; ``frame_hashes`` keeps a flagged video's hashes for the bank.
- ``run_results.status`` gains ``matched``, and ``scan_runs`` counts them in ``matched``.

CHECK constraints change as revision 4 changed them: by name on PostgreSQL, by a copy of the
table on SQLite that declares the table's named checks again on their columns, each as the
database holds it but for the one that changes.

Revision ID: 0006_known_fakes
Revises: 0004_run_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_known_fakes"
down_revision = "0005_review_claims"
branch_labels = None
depends_on = None

MATCH_COLUMNS = (
    ("match_video_uri", sa.TEXT),
    ("match_content_version", sa.TEXT),
    ("match_share", sa.DOUBLE_PRECISION),
    ("match_distance", sa.DOUBLE_PRECISION),
    ("frame_hashes", sa.TEXT),
)


def _set_status_check(table: str, statuses: tuple[str, ...]) -> None:
    """Make ``table``'s named check on ``status`` allow exactly ``statuses``."""
    name = f"{table}_status_check"
    condition = f"status IN ({', '.join(repr(s) for s in statuses)})"
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, condition)
        return
    inspector = sa.inspect(bind)
    nullable = {c["name"]: c["nullable"] for c in inspector.get_columns(table)}
    existing = {
        c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table) if c["name"]
    }
    checks = existing | {name: condition}
    prefix, suffix = f"{table}_", "_check"
    columns = [
        sa.Column(
            check[len(prefix) : -len(suffix)],
            sa.TEXT,
            sa.CheckConstraint(text, name=check),
            nullable=nullable[check[len(prefix) : -len(suffix)]],
        )
        for check, text in checks.items()
    ]
    with op.batch_alter_table(table, recreate="always", reflect_args=columns) as batch:
        for check in existing:
            batch.drop_constraint(check, type_="check")


def upgrade() -> None:
    op.create_table(
        "known_fakes",
        sa.Column("entry_id", sa.INTEGER, primary_key=True, autoincrement=True),
        sa.Column("video_uri", sa.TEXT, nullable=False),
        sa.Column("content_version", sa.TEXT, nullable=False),
        sa.Column("time_s", sa.DOUBLE_PRECISION, nullable=False),
        sa.Column("quality", sa.INTEGER, nullable=False),
        sa.Column("mirrored", sa.BOOLEAN, nullable=False),
        sa.Column("pdq", sa.TEXT, nullable=False),
        sa.Column(
            "source",
            sa.TEXT,
            sa.CheckConstraint("source IN ('review', 'import')", name="known_fakes_source_check"),
            nullable=False,
        ),
        sa.Column("banked_at", sa.TIMESTAMP, nullable=False),
        sa.UniqueConstraint(
            "video_uri", "content_version", "time_s", "mirrored", name="known_fakes_frame"
        ),
        # Ids only grow, so (count, largest id) changes with every change to the bank.
        sqlite_autoincrement=True,
    )
    for name, kind in MATCH_COLUMNS:
        op.add_column("moderation_results", sa.Column(name, kind))
    op.add_column(
        "scan_runs", sa.Column("matched", sa.INTEGER, nullable=False, server_default=sa.text("0"))
    )
    _set_status_check("moderation_results", ("scored", "error", "matched"))
    _set_status_check("run_results", ("scored", "error", "matched"))


def downgrade() -> None:
    # An older release knows no matched rows: they become errors, which it scans again.
    op.execute(
        "UPDATE moderation_results SET status = 'error', error_reason = 'matched_known_fake' "
        "WHERE status = 'matched'"
    )
    op.execute("UPDATE run_results SET status = 'error' WHERE status = 'matched'")
    _set_status_check("run_results", ("scored", "error"))
    _set_status_check("moderation_results", ("scored", "error"))
    # Plain statements, not batch copies, as revision 4's downgrade drops its column.
    op.execute("ALTER TABLE scan_runs DROP COLUMN matched")
    op.execute("ALTER TABLE moderation_results DROP COLUMN frame_hashes")
    op.execute("ALTER TABLE moderation_results DROP COLUMN match_distance")
    op.execute("ALTER TABLE moderation_results DROP COLUMN match_share")
    op.execute("ALTER TABLE moderation_results DROP COLUMN match_content_version")
    op.execute("ALTER TABLE moderation_results DROP COLUMN match_video_uri")
    op.drop_table("known_fakes")
