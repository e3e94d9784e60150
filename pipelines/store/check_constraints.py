"""Changing a table's CHECK constraints inside an Alembic revision, on PostgreSQL and SQLite.

PostgreSQL drops and adds a check by name. SQLite cannot alter one, so the table is copied
(Alembic's batch mode). Databases from the hand-written migrator hold unnamed checks there, which
a copy drops; named ones are copied. So every named check of the table is dropped and the table's
whole set is declared again, named, and both kinds of database end alike.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

# A table's checks: checked column -> (constraint name, condition, whether the column is nullable)
Checks = dict[str, tuple[str, str, bool]]


def values_in(column: str, values: tuple[str, ...]) -> str:
    """The SQL condition ``column IN ('a', 'b')``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def replace_checks(table: str, checks: Checks, changed: str) -> None:
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
