"""`deeptrust review`: record a moderator's decision on a flagged video, and keep its history.

A decision is about a video's bytes, not about a model: it applies to every flagged row of the
video's most recently scanned content version, whichever model versions flagged it. Rows of older
content versions (the object has since been overwritten) keep their own status. Each row decided
gets a row in ``reviews``, so the history survives later decisions; a re-scan of the same bytes
by the same model keeps the decision (see ``database.upsert_results``).

A decision checks what it replaces: it names the statuses its decider read (``ReviewState``), and
the rows are updated only where they still hold them, in the same transaction as the history, so
of two moderators deciding the same video at once one succeeds and the other is refused
(``ReviewConflict``). Notes are capped at ``MAX_NOTE_CHARS``, checked before anything is written.

A moderator may **claim** a video first (``claim_video``), as the review app makes them do: a
claim lasts until it expires or its holder decides, and meanwhile nobody else may claim or decide
the video, through the app or ``deeptrust review`` alike (``ReviewConflict``).

A decision also keeps the bank of known fakes (``pipelines.store.bank``) in step, in the same
transaction: confirming banks the video's bytes from the perceptual hashes its flagged row kept,
so the next scan matches copies of it without a model call; dismissing takes them out again, so a
video confirmed by mistake stops matching.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select

from pipelines.store import bank, database
from pipelines.store.migrations import migrate

DECISIONS = ("confirmed", "dismissed", "escalated")
# What a decider may expect a video's flagged rows to hold: undecided, or an earlier decision.
STATUSES = ("pending", *DECISIONS)
MAX_NOTE_CHARS = 10_000


class NotFlagged(ValueError):
    """The video has no flagged row to decide on."""


class ReviewConflict(ValueError):
    """The video's rows no longer hold what its decider read: someone else decided since."""


@dataclass(frozen=True)
class Review:
    video_uri: str
    decision: str
    reviewer: str
    note: str | None


@dataclass(frozen=True)
class Claim:
    """A moderator's hold on a video until ``expires_at`` (UTC)."""

    video_uri: str
    reviewer: str
    claimed_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ReviewState:
    """What a decider read of a video: its latest flagged bytes and each flagged row's status."""

    video_uri: str
    content_version: str
    statuses: dict[str, str | None]  # model_version -> review_status

    @property
    def status(self) -> str:
        """The rows' one status, or the distinct statuses joined with ``+`` when they differ."""
        return "+".join(sorted({str(status) for status in self.statuses.values()}))


def check_review(review: Review) -> None:
    """Raise ValueError for a review that cannot be recorded; nothing is read or written."""
    if review.decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {review.decision!r}")
    if review.note is not None and len(review.note) > MAX_NOTE_CHARS:
        raise ValueError(
            f"the note has {len(review.note)} characters; at most {MAX_NOTE_CHARS} are kept"
        )


def open_database(url: str) -> Engine:
    """An engine on an existing moderation database, migrated to the current schema."""
    engine = database.connect(url)
    if not inspect(engine).has_table("moderation_results"):
        engine.dispose()
        raise ValueError(f"{url} holds no moderation table: is --db the scan's database?")
    migrate(engine)
    return engine


_REFLECTED: weakref.WeakKeyDictionary[Engine, tuple[Table, Table, Table]] = (
    weakref.WeakKeyDictionary()
)


def tables(engine: Engine) -> tuple[Table, Table, Table]:
    """``moderation_results``, ``reviews`` and ``review_claims``, reflected once per engine."""
    if engine not in _REFLECTED:
        metadata = MetaData()
        metadata.reflect(engine, only=["moderation_results", "reviews", "review_claims"])
        tables = metadata.tables
        _REFLECTED[engine] = (
            tables["moderation_results"],
            tables["reviews"],
            tables["review_claims"],
        )
    return _REFLECTED[engine]


def latest_flagged(conn: Connection, results: Table, video_uri: str) -> str | None:
    """The content version of the video's most recently scanned flagged row: the bytes a
    decision is about. None when no row of the video is flagged."""
    return conn.execute(
        select(results.c.content_version)
        .where(results.c.video_uri == video_uri, results.c.flagged.is_(True))
        .order_by(results.c.scanned_at.desc())
        .limit(1)
    ).scalar()


def _read_state(conn: Connection, results: Table, video_uri: str) -> ReviewState:
    flagged = (results.c.video_uri == video_uri, results.c.flagged.is_(True))
    latest = latest_flagged(conn, results, video_uri)
    if latest is None:
        rows = conn.execute(select(func.count()).where(results.c.video_uri == video_uri)).scalar()
        state = f"its {rows} rows are not flagged" if rows else "it was never scanned"
        raise NotFlagged(f"no flagged row for {video_uri}: {state}")
    statuses = conn.execute(
        select(results.c.model_version, results.c.review_status)
        .where(*flagged, results.c.content_version == latest)
        .order_by(results.c.model_version)
    ).all()
    return ReviewState(video_uri, latest, dict(statuses))


def read_state(engine: Engine, video_uri: str) -> ReviewState:
    """The video's latest flagged bytes and their rows' statuses; NotFlagged when it has none."""
    results, _, _ = tables(engine)
    with engine.connect() as conn:
        return _read_state(conn, results, video_uri)


def _live_claim(conn: Connection, claims: Table, video_uri: str, now: datetime) -> Claim | None:
    row = conn.execute(
        select(claims).where(claims.c.video_uri == video_uri, claims.c.expires_at > now)
    ).first()
    return None if row is None else Claim(**row._mapping)


def current_claim(engine: Engine, video_uri: str) -> Claim | None:
    """The video's claim while it lasts, else None."""
    _, _, claims = tables(engine)
    with engine.connect() as conn:
        return _live_claim(conn, claims, video_uri, database.utc_now())


def _claimed_by_other(video_uri: str, claim: Claim) -> ReviewConflict:
    return ReviewConflict(
        f"{video_uri} is claimed by {claim.reviewer} until {claim.expires_at:%Y-%m-%d %H:%M:%S} "
        "UTC; nothing was recorded. Wait until they decide or their claim expires"
    )


def _decided_since(conn: Connection, reviews: Table, seen: ReviewState, now: str) -> ReviewConflict:
    return ReviewConflict(
        f"{seen.video_uri} was decided by someone else since it was read: it is "
        f"{now} now, not {seen.status}{_last_review(conn, reviews, seen.video_uri)}; "
        f"nothing was recorded. Read it again before deciding (deeptrust review: --expect {now} "
        "replaces that decision)"
    )


def claim_video(
    engine: Engine, video_uri: str, reviewer: str, ttl_s: float, seen: ReviewState | None = None
) -> Claim:
    """Hold the video for ``reviewer`` for ``ttl_s`` seconds (a claim of theirs is renewed).

    Refused with ReviewConflict while someone else holds a live claim, or when ``seen`` (what the
    claimer read) no longer matches the video's rows; NotFlagged when it has no flagged row.
    """
    if ttl_s <= 0:
        raise ValueError(f"a claim must last some time, not {ttl_s} s")
    results, reviews, claims = tables(engine)
    now = database.utc_now()
    with engine.begin() as conn:
        state = _read_state(conn, results, video_uri)
        if seen is not None and state != seen:
            raise _decided_since(conn, reviews, seen, state.status)
        conn.execute(
            claims.delete().where(claims.c.video_uri == video_uri, claims.c.expires_at <= now)
        )
        insert = database.insert_for(conn)(claims)
        held = {"claimed_at": now, "expires_at": now + timedelta(seconds=ttl_s)}
        conn.execute(
            insert.values(video_uri=video_uri, reviewer=reviewer, **held).on_conflict_do_update(
                index_elements=["video_uri"], set_=held, where=claims.c.reviewer == reviewer
            )
        )
        claim = _live_claim(conn, claims, video_uri, now)
        if claim is None or claim.reviewer != reviewer:
            raise (
                _claimed_by_other(video_uri, claim)
                if claim
                else ReviewConflict(f"{video_uri} could not be claimed; try again")
            )
        return claim


def release_claim(engine: Engine, video_uri: str, reviewer: str) -> bool:
    """Give up ``reviewer``'s claim on the video; whether they held one."""
    _, _, claims = tables(engine)
    with engine.begin() as conn:
        done = conn.execute(
            claims.delete().where(claims.c.video_uri == video_uri, claims.c.reviewer == reviewer)
        )
    return done.rowcount > 0


def _last_review(conn: Connection, reviews: Table, video_uri: str) -> str:
    """Who decided the video last, and when, for a refusal's message."""
    last = conn.execute(
        select(reviews.c.reviewer, reviews.c.decision, reviews.c.reviewed_at)
        .where(reviews.c.video_uri == video_uri)
        .order_by(reviews.c.reviewed_at.desc())
        .limit(1)
    ).first()
    return "" if last is None else f" ({last.reviewer}: {last.decision} at {last.reviewed_at})"


def record_review(
    engine: Engine,
    review: Review,
    seen: ReviewState | None = None,
    *,
    require_claim: bool = False,
) -> list[dict[str, Any]]:
    """Set ``review_status`` on the video's flagged rows and append them to ``reviews``.

    ``seen`` is what the decider read (default: read here, in the same transaction). Rows are
    updated only where they still hold the status read, in one transaction with the history:
    should any have changed, nothing is written and ReviewConflict is raised. A live claim of
    someone else's refuses the decision too, and with ``require_claim`` so does the lack of the
    decider's own claim; the decider's claim ends with the decision. Returns the keys of the
    rows decided. Raises NotFlagged when the video has no flagged row.
    """
    check_review(review)
    results, reviews, claims = tables(engine)
    with engine.begin() as conn:
        if seen is None:
            seen = _read_state(conn, results, review.video_uri)
        claim = _live_claim(conn, claims, review.video_uri, database.utc_now())
        if claim is not None and claim.reviewer != review.reviewer:
            raise _claimed_by_other(review.video_uri, claim)
        if require_claim and claim is None:
            raise ReviewConflict(
                f"{review.video_uri} is not claimed by {review.reviewer} (never claimed, or the "
                "claim expired); nothing was recorded. Claim it, then decide"
            )
        chosen = (
            results.c.video_uri == review.video_uri,
            results.c.flagged.is_(True),
            results.c.content_version == seen.content_version,
        )
        updated = 0
        for status in set(seen.statuses.values()):
            versions = [v for v, was in seen.statuses.items() if was == status]
            held = (
                results.c.review_status.is_(None)
                if status is None
                else (results.c.review_status == status)
            )
            done = conn.execute(
                results.update()
                .where(*chosen, results.c.model_version.in_(versions), held)
                .values(review_status=review.decision)
            )
            updated += done.rowcount
        if updated != len(seen.statuses):
            now = _read_state(conn, results, review.video_uri).status
            raise _decided_since(conn, reviews, seen, now)
        decided = [
            {"content_version": seen.content_version, "model_version": version}
            for version in sorted(seen.statuses)
        ]
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
        conn.execute(
            claims.delete().where(
                claims.c.video_uri == review.video_uri, claims.c.reviewer == review.reviewer
            )
        )
        _keep_bank(conn, results, review.video_uri, seen.content_version, review.decision)
    return decided


def _keep_bank(
    conn: Connection, results: Table, video_uri: str, content_version: str, decision: str
) -> None:
    """Bank the decided bytes when confirmed, from a flagged row's hashes; unbank them when
    dismissed; any other decision leaves the bank alone. A row scanned before rows kept hashes
    has none: nothing is banked."""
    known = bank.bank_table(conn)
    if decision == "dismissed":
        bank.unbank_video(conn, known, video_uri, content_version)
    if decision != "confirmed":
        return
    hashes = conn.execute(
        select(results.c.frame_hashes)
        .where(
            results.c.video_uri == video_uri,
            results.c.content_version == content_version,
            results.c.flagged.is_(True),
            results.c.frame_hashes.is_not(None),
        )
        .order_by(results.c.scanned_at.desc())
        .limit(1)
    ).scalar()
    if hashes is not None:
        bank.bank_video(conn, known, video_uri, content_version, hashes)


def banked_frames(engine: Engine, video_uri: str, content_version: str) -> int:
    """How many of the video's hashed frames the bank holds (each counted once, not mirrored)."""
    known = bank.bank_table(engine)
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                known.c.video_uri == video_uri,
                known.c.content_version == content_version,
                known.c.mirrored.is_(False),
            )
        ).scalar_one()


def expect_status(seen: ReviewState, expected: str) -> None:
    """Raise ReviewConflict unless every row the decider read holds ``expected``."""
    if seen.status != expected:
        raise ReviewConflict(
            f"{seen.video_uri} is {seen.status}, not {expected} (--expect); nothing was recorded"
        )
