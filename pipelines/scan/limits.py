"""What one video may cost the scan or ``deeptrust score``: its size and its decode time.

Light on purpose (no Beam): the command line declares these options without importing the scan.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeLimits:
    """What one video may cost: its size (from the listing, before download) and decode time."""

    max_bytes: int = 4 << 30
    timeout_s: float = 120.0


def add_decode_limit_options(parser: argparse.ArgumentParser) -> None:
    """``--max_video_bytes`` and ``--decode_timeout_s``, with DecodeLimits' defaults."""
    parser.add_argument(
        "--max_video_bytes",
        type=int,
        default=DecodeLimits.max_bytes,
        help="larger videos are not downloaded or decoded but get an error row "
        "too_large (default: %(default)s)",
    )
    parser.add_argument(
        "--decode_timeout_s",
        type=float,
        default=DecodeLimits.timeout_s,
        help="seconds one video may take to decode before its decoder is stopped and it "
        "gets an error row decode_timeout (default: %(default)s)",
    )
