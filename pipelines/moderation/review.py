"""`deeptrust review`: record a moderator's decision on a flagged video, and keep its history.

A decision is about a video's bytes, not about a model: it applies to every flagged row of the
video's most recently scanned content version, whichever model versions flagged it. Rows of older
content versions (the object has since been overwritten) keep their own status. Each row decided
gets a row in ``reviews``, so the history survives later decisions; a re-scan of the same bytes
by the same model keeps the decision (see ``database.upsert_results``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, MetaData, func, inspect, select

from pipelines.store import database
from pipelines.store.migrations import migrate

DECISIONS = ("confirmed", "dismissed")


class NotFlagged(ValueError):
    """The video has no flagged row to decide on."""


@dataclass(frozen=True)
class Review:
    video_uri: str
    decision: str
    reviewer: str
    note: str | None


def open_database(url: str) -> Engine:
    """An engine on an existing moderation database, migrated to the current schema."""
    engine = database.connect(url)
    if not inspect(engine).has_table("moderation_results"):
        engine.dispose()
        raise ValueError(f"{url} holds no moderation table: is --db the scan's database?")
    migrate(engine)
    return engine


def record_review(engine: Engine, review: Review) -> list[dict[str, Any]]:
    """Set ``review_status`` on the video's flagged rows and append them to ``reviews``.

    Returns the keys of the rows decided. Raises NotFlagged when the video has no flagged row.
    """
    if review.decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {review.decision!r}")
    metadata = MetaData()
    metadata.reflect(engine, only=["moderation_results", "reviews"])
    results, reviews = metadata.tables["moderation_results"], metadata.tables["reviews"]
    flagged = (results.c.video_uri == review.video_uri, results.c.flagged.is_(True))
    with engine.begin() as conn:
        latest = conn.execute(
            select(results.c.content_version)
            .where(*flagged)
            .order_by(results.c.scanned_at.desc())
            .limit(1)
        ).scalar()
        if latest is None:
            rows = conn.execute(
                select(func.count()).where(results.c.video_uri == review.video_uri)
            ).scalar()
            state = f"its {rows} rows are not flagged" if rows else "it was never scanned"
            raise NotFlagged(f"no flagged row for {review.video_uri}: {state}")
        chosen = (*flagged, results.c.content_version == latest)
        versions = conn.execute(
            select(results.c.model_version).where(*chosen).order_by(results.c.model_version)
        ).scalars()
        decided = [{"content_version": latest, "model_version": version} for version in versions]
        conn.execute(results.update().where(*chosen).values(review_status=review.decision))
        reviewed_at = database.utc_now()
        conn.execute(
            reviews.insert(),
            [
                {
                    "review_id": str(uuid.uuid4()),
                    "video_uri": review.video_uri,
                    "decision": review.decision,
                    "note": review.note,
                    "reviewer": review.reviewer,
                    "reviewed_at": reviewed_at,
                    **row,
                }
                for row in decided
            ],
        )
    return decided
