"""What every command shares at the terminal: exit codes, progress lines and the JSON result.

Progress goes to stderr; a command's result goes to stdout, and where a command prints JSON the
last stdout line is one JSON object, so scripts can read it with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# The moderation database of commands run without --db: a SQLite file in the working directory.
DEFAULT_DB_URL = "sqlite:///deeptrust.db"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def add_precision_option(parser: argparse.ArgumentParser, default: str) -> None:
    from model.runtime import AUTO, PRECISIONS

    parser.add_argument(
        "--precision",
        choices=(AUTO, *PRECISIONS),
        default=default,
        help="how the backbone computes (a runtime choice; the bundle is unchanged): "
        "mixed_bfloat16 on CPUs with AVX512_BF16/AMX, mixed_float16 on GPUs, auto picks "
        "(default: %(default)s)",
    )
