"""Alembic's own command line on the revisions this package ships, with no ``alembic.ini``.

For DBAs who want Alembic's commands rather than ``deeptrust db upgrade``::

    python -m pipelines.store.dba --db postgresql+psycopg://... current
    python -m pipelines.store.dba --db postgresql+psycopg://... history
    python -m pipelines.store.dba --db postgresql+psycopg://... upgrade head --sql > upgrade.sql
    python -m pipelines.store.dba --db postgresql+psycopg://... downgrade 0002_scan_metrics_push

``--db`` defaults to ``$DEEPTRUST_DB``. Commands that touch the database hold the same migration
lock as ``deeptrust db upgrade``. A database still carrying the earlier migrator's
``schema_version`` table is adopted only by ``deeptrust db upgrade``: run that once first.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from alembic.config import CommandLine

from pipelines.store.migrations import alembic_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run one Alembic command; returns its exit status."""
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--db", default=os.environ.get("DEEPTRUST_DB"))
    known, rest = ours.parse_known_args(argv)
    alembic = CommandLine(prog="python -m pipelines.store.dba [--db URL]")
    options = alembic.parser.parse_args(rest)
    if not hasattr(options, "cmd"):
        alembic.parser.error("name a command")
    config = alembic_config()
    config.cmd_opts = options
    if known.db:
        # The configuration interpolates %-signs; a URL may hold escaped characters.
        config.set_main_option("sqlalchemy.url", known.db.replace("%", "%%"))
    alembic.run_cmd(config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
