"""The moderators' queue: flagged videos awaiting a decision, and everything known of one video.

A queue item is a video (its URI) at its most recently flagged bytes, as ``deeptrust review``
decides it: the flagged rows of that content version, one per model version that flagged it,
count as one item with the highest of their scores. Older bytes of the same URI are history.

Every value a moderator types (filters, page) is checked here before any SQL is built, and every
statement is parameterized.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, exists, func, select
from sqlalchemy.sql.elements import ColumnElement

from pipelines.moderation.review import STATUSES, Claim, current_claim, latest_flagged, tables
from pipelines.store import database

# What the queue can show: a status, or every status at once.
STATUS_FILTERS = (*STATUSES, "all")
SORTS = ("score", "oldest")
MAX_PER_PAGE = 100


def video_id(uri: str) -> str:
    """The video's id in URLs: its URI in URL-safe base64, so any URI makes a one-segment path."""
    return base64.urlsafe_b64encode(uri.encode()).decode().rstrip("=")


def video_uri(vid: str) -> str:
    """The URI a ``video_id`` stands for; ValueError for an id no URI makes."""
    try:
        uri = base64.urlsafe_b64decode(vid + "=" * (-len(vid) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{vid!r} is not a video id") from err
    if video_id(uri) != vid:
        raise ValueError(f"{vid!r} is not a video id")
    return uri


def video_name(uri: str) -> str:
    """The file name at the end of a URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


class NamedVideo:
    """A video's id in URLs and its file name, from its ``video_uri``."""

    video_uri: str

    @property
    def id(self) -> str:
        return video_id(self.video_uri)

    @property
    def name(self) -> str:
        return video_name(self.video_uri)


@dataclass(frozen=True)
class QueueFilter:
    """What a moderator asked the queue for; ``checked`` refuses values it cannot mean."""

    status: str = "pending"
    sort: str = "score"
    score_min: float | None = None
    score_max: float | None = None
    run_id: str | None = None
    model_version: str | None = None
    since: date | None = None  # scanned on or after this day (UTC)
    until: date | None = None  # scanned on or before this day (UTC)
    page: int = 1
    per_page: int = 25

    def checked(self) -> QueueFilter:
        if self.status not in STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}")
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        for name in ("score_min", "score_max"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a score between 0 and 1")
        if self.page < 1 or not 1 <= self.per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be 1 or more, per_page between 1 and {MAX_PER_PAGE}")
        return replace(self, run_id=self.run_id or None, model_version=self.model_version or None)

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as URL query parameters (defaults left out), with ``changes`` applied."""
        chosen = replace(self, **changes)
        defaults = QueueFilter()
        return {
            name: str(value)
            for name, value in vars(chosen).items()
            if value is not None and value != getattr(defaults, name)
        }


@dataclass(frozen=True)
class QueueItem(NamedVideo):
    video_uri: str
    content_version: str
    score: float
    threshold: float
    review_status: str | None
    models: int
    scanned_at: datetime
    first_scanned_at: datetime
    duration_s: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "video_uri": self.video_uri,
            "content_version": self.content_version,
            "score": self.score,
            "threshold": self.threshold,
            "review_status": self.review_status,
            "models": self.models,
            "scanned_at": self.scanned_at.isoformat(),
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class QueuePage:
    filter: QueueFilter
    items: list[QueueItem]
    total: int  # items matching the filter, on every page
    counts: dict[str, int] = field(default_factory=dict)  # videos per status, other filters kept

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.filter.per_page))


def _row_conditions(tables: database.Tables, chosen: QueueFilter) -> list[ColumnElement]:
    """Flagged rows of each video's latest flagged bytes, within the filter (status aside)."""
    results, ledger = tables.results, tables.ledger
    newer = results.alias("newer")
    latest = (
        select(newer.c.content_version)
        .where(newer.c.video_uri == results.c.video_uri, newer.c.flagged.is_(True))
        .order_by(newer.c.scanned_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    conditions = [results.c.flagged.is_(True), results.c.content_version == latest]
    if chosen.score_min is not None:
        conditions.append(results.c.score >= chosen.score_min)
    if chosen.score_max is not None:
        conditions.append(results.c.score <= chosen.score_max)
    if chosen.model_version:
        conditions.append(results.c.model_version == chosen.model_version)
    if chosen.since:
        conditions.append(
            results.c.scanned_at >= datetime.combine(chosen.since, datetime.min.time())
        )
    if chosen.until:
        end = datetime.combine(chosen.until + timedelta(days=1), datetime.min.time())
        conditions.append(results.c.scanned_at < end)
    if chosen.run_id:
        # By the run's own ledger: a later scan that rewrote the row does not hide it.
        same = [results.c[name] == ledger.c[name] for name in database.RESULT_KEY]
        conditions.append(
            exists().where(*same, ledger.c.run_id == chosen.run_id, ledger.c.flagged.is_(True))
        )
    return conditions


def list_queue(engine: Engine, wanted: QueueFilter) -> QueuePage:
    """One page of the queue, with the number of matching videos and the counts per status."""
    chosen = wanted.checked()
    tables = database.Tables.reflect(engine)
    results = tables.results
    conditions = _row_conditions(tables, chosen)
    status = [] if chosen.status == "all" else [results.c.review_status == chosen.status]
    grouped = (
        select(
            results.c.video_uri,
            results.c.content_version,
            func.max(results.c.score).label("score"),
            func.max(results.c.threshold).label("threshold"),
            func.min(results.c.review_status).label("review_status"),
            func.count().label("models"),
            func.max(results.c.scanned_at).label("scanned_at"),
            func.min(results.c.scanned_at).label("first_scanned_at"),
            func.max(results.c.duration_s).label("duration_s"),
        )
        .where(and_(*conditions, *status))
        .group_by(results.c.video_uri, results.c.content_version)
    )
    order = (
        ("score", "desc") if chosen.sort == "score" else ("first_scanned_at", "asc"),
        ("video_uri", "asc"),
    )
    listed = grouped.subquery()
    page = (
        select(listed)
        .order_by(*(getattr(listed.c[name], way)() for name, way in order))
        .limit(chosen.per_page)
        .offset((chosen.page - 1) * chosen.per_page)
    )
    per_status = (
        select(results.c.review_status, func.count(func.distinct(results.c.video_uri)))
        .where(*conditions)
        .group_by(results.c.review_status)
    )
    with engine.connect() as conn:
        items = [QueueItem(**row._mapping) for row in conn.execute(page)]
        total = conn.execute(select(func.count()).select_from(listed)).scalar_one()
        counts = {str(s): n for s, n in conn.execute(per_status)}
    counts["all"] = sum(counts.values())
    return QueuePage(chosen, items, total, counts)


@dataclass(frozen=True)
class VideoDetail(NamedVideo):
    """A video at its latest flagged bytes: its rows (highest score first), decisions and claim."""

    video_uri: str
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]]
    claim: Claim | None

    @property
    def row(self) -> dict[str, Any]:
        """The most suspicious row: its score, windows and facts lead the page."""
        return self.rows[0]

    @property
    def segments(self) -> list[dict[str, float]]:
        return json.loads(self.row["segments"] or "[]")

    @property
    def status(self) -> str:
        """The rows' one status, or their distinct statuses joined with ``+``."""
        return "+".join(sorted({str(r["review_status"]) for r in self.rows}))

    def as_json(self) -> dict[str, Any]:
        claim = self.claim
        return {
            "id": self.id,
            "video_uri": self.video_uri,
            "review_status": self.status,
            "rows": [
                _plain(row | {"segments": json.loads(row["segments"] or "[]")}) for row in self.rows
            ],
            "history": [_plain(h) for h in self.history],
            "claim": None if claim is None else _plain(vars(claim)),
        }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def video_detail(engine: Engine, uri: str) -> VideoDetail | None:
    """The video's flagged rows of its latest flagged bytes and its whole review history; None
    when the video has no flagged row."""
    results, reviews, _ = tables(engine)
    with engine.connect() as conn:
        latest = latest_flagged(conn, results, uri)
        if latest is None:
            return None
        rows = conn.execute(
            select(results)
            .where(
                results.c.video_uri == uri,
                results.c.flagged.is_(True),
                results.c.content_version == latest,
            )
            .order_by(results.c.score.desc(), results.c.model_version)
        ).mappings()
        rows = [dict(r) for r in rows]
        history = conn.execute(
            select(reviews)
            .where(reviews.c.video_uri == uri)
            .order_by(reviews.c.reviewed_at.desc(), reviews.c.model_version)
        ).mappings()
        history = [dict(h) for h in history]
    return VideoDetail(uri, rows, history, current_claim(engine, uri))
