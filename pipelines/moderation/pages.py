"""The moderators' pages: the Jinja2 templates and static files that the review app and
``deeptrust report`` share (``templates/``, ``static/``, shipped as package data).

Autoescaping is on for every template, so whatever comes from the tables (file names can hold
markup) reaches a page as text.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
# The one vendored front-end file: https://htmx.org, licence 0BSD (docs/operations.md).
HTMX_VERSION = "2.0.11"


def when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}" if at else "-"


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def row_facts(row: dict[str, Any], top: dict[str, float] | None) -> list[tuple[str, Any]]:
    """A flagged row's facts, as both the report and the app list them."""
    window = f"{top['start_s']:.1f}-{top['end_s']:.1f} s (score {top['score']:.3f})" if top else "-"
    fps = f" at {row['fps']:.1f} fps" if row.get("fps") else ""
    matched = []
    if row.get("status") == "matched":  # flagged as a known fake, without a model call
        matched = [
            ("matches known fake", row["match_video_uri"]),
            (
                "frames matched",
                f"{row['match_share']:.0%} (mean distance {row['match_distance']:.1f})",
            ),
        ]
    return [
        *matched,
        ("score", score(row["score"])),
        ("threshold", score(row["threshold"])),
        ("most suspicious window", window),
        ("review", row["review_status"]),
        ("duration", seconds(row["duration_s"])),
        ("size", f"{row['width']}x{row['height']}{fps}"),
        ("frames analysed", row["frames_analyzed"]),
        ("content version", row["content_version"]),
        ("model version", row["model_version"]),
        ("scanned (UTC)", when(row.get("scanned_at"))),
        ("scan run", row.get("run_id")),
    ]


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, score=score, seconds=seconds)
    env.globals.update(row_facts=row_facts, htmx_version=HTMX_VERSION)
    return env
