"""`deeptrust review`: a moderator's decision on a flagged video, with its history kept."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import BACKENDS
from sqlalchemy import select

from pipelines import cli
from pipelines.moderation.review import (
    MAX_NOTE_CHARS,
    Review,
    ReviewConflict,
    open_database,
    read_state,
    record_review,
)
from pipelines.scan import writing
from pipelines.store import database
from pipelines.store.migrations import migrate
from tests.rows import finished_run, verdict


def statuses(db_url: str) -> dict[tuple[str, str, str], str | None]:
    engine = database.connect(db_url)
    try:
        results = database.Tables.reflect(engine).results
        with engine.connect() as conn:
            rows = conn.execute(select(results)).mappings().all()
    finally:
        engine.dispose()
    return {
        (r["video_uri"], r["content_version"], r["model_version"]): r["review_status"] for r in rows
    }


def history(db_url: str) -> list[dict]:
    engine = open_database(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT video_uri, content_version, model_version, decision, note, reviewer "
                "FROM reviews ORDER BY reviewed_at, model_version"
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A database where a.mp4 was flagged in its old bytes (c1) and, by two models, in its new
    bytes (c2), which a third model did not flag; b.mp4 was scored and not flagged."""
    url = (
        f"sqlite:///{tmp_path / 'scan.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    a, b = "s3://uploads/a.mp4", "s3://uploads/b.mp4"
    finished_run(url, "run-1", "m1", [writing.scored_row(a, "c1", "m1", verdict(0.9, True))])
    finished_run(
        url,
        "run-2",
        "m1",
        [
            writing.scored_row(a, "c2", "m1", verdict(0.8, True)),
            writing.scored_row(a, "c2", "m2", verdict(0.7, True)),
            writing.scored_row(a, "c2", "m3", verdict(0.3, False)),
            writing.scored_row(b, "c1", "m1", verdict(0.1, False)),
        ],
    )
    return url


def review(db_url: str, *args: str, capsys) -> tuple[int, dict | None, str]:
    code = cli.main(["review", *args, "--db", db_url])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None, captured.err


def test_a_decision_applies_to_the_latest_bytes_and_keeps_its_history(db_url, capsys, monkeypatch):
    a = "s3://uploads/a.mp4"
    monkeypatch.setenv("USER", "alice")
    code, result, _ = review(db_url, a, "--confirm", "--note", "face swap at 0:01", capsys=capsys)
    assert code == cli.EXIT_OK
    assert result["decision"] == "confirmed" and result["reviewer"] == "alice"
    assert result["rows"] == [
        {"content_version": "c2", "model_version": "m1"},
        {"content_version": "c2", "model_version": "m2"},
    ]
    assert statuses(db_url) == {
        (a, "c1", "m1"): "superseded",  # the bytes run-2 found replaced the ones run-1 flagged
        (a, "c2", "m1"): "confirmed",
        (a, "c2", "m2"): "confirmed",
        (a, "c2", "m3"): None,
        ("s3://uploads/b.mp4", "c1", "m1"): None,
    }

    code, _, _ = review(db_url, a, "--dismiss", "--reviewer", "bob", capsys=capsys)
    assert code == cli.EXIT_OK
    assert statuses(db_url)[a, "c2", "m1"] == "dismissed"
    assert [
        (h["model_version"], h["decision"], h["reviewer"], h["note"]) for h in history(db_url)
    ] == [
        ("m1", "confirmed", "alice", "face swap at 0:01"),
        ("m2", "confirmed", "alice", "face swap at 0:01"),
        ("m1", "dismissed", "bob", None),
        ("m2", "dismissed", "bob", None),
    ]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://uploads/b.mp4", "no flagged row for s3://uploads/b.mp4: its 1 rows are not flagged"),
        ("s3://uploads/c.mp4", "no flagged row for s3://uploads/c.mp4: it was never scanned"),
    ],
    ids=["not-flagged", "never-scanned"],
)
def test_a_video_without_a_flagged_row_is_refused(db_url, uri, message, capsys):
    code, result, err = review(db_url, uri, "--confirm", "--reviewer", "alice", capsys=capsys)
    assert (code, result) == (cli.EXIT_USAGE, None)
    assert message in err
    assert history(db_url) == []


def test_a_review_needs_a_reviewer_and_one_decision(db_url, capsys, monkeypatch):
    monkeypatch.delenv("USER", raising=False)
    code, _, err = review(db_url, "s3://uploads/a.mp4", "--confirm", capsys=capsys)
    assert code == cli.EXIT_USAGE
    assert "--reviewer" in err
    with pytest.raises(SystemExit) as exited:
        cli.main(["review", "s3://uploads/a.mp4", "--confirm", "--dismiss", "--db", db_url])
    assert exited.value.code == cli.EXIT_USAGE
    assert history(db_url) == []


@pytest.mark.component
def test_a_database_without_scans_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no moderation table"):
        open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    engine = database.connect(f"sqlite:///{tmp_path / 'scan.db'}")
    migrate(engine)
    with pytest.raises(ValueError, match="decision must be one of"):
        record_review(engine, Review("s3://uploads/a.mp4", "approved", "alice", None))
    engine.dispose()


def test_of_two_moderators_deciding_at_once_one_succeeds_and_the_other_is_refused(db_url):
    """Both read the video as pending before either writes; only one decision may land."""
    a = "s3://uploads/a.mp4"
    both_read = threading.Barrier(2)

    def decide(reviewer: str, decision: str) -> str:
        engine = open_database(db_url)
        try:
            seen = read_state(engine, a)
            both_read.wait(timeout=60)
            try:
                record_review(engine, Review(a, decision, reviewer, None), seen)
            except ReviewConflict as refused:
                return f"refused: {refused}"
            return "recorded"
        finally:
            engine.dispose()

    with ThreadPoolExecutor(max_workers=2) as pool:
        alice = pool.submit(decide, "alice", "confirmed")
        bob = pool.submit(decide, "bob", "dismissed")
        outcomes = {"alice": alice.result(timeout=120), "bob": bob.result(timeout=120)}

    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["recorded", "refused"]
    winner = next(name for name, o in outcomes.items() if o == "recorded")
    loser = next(o for o in outcomes.values() if o != "recorded")
    decision = {"alice": "confirmed", "bob": "dismissed"}[winner]
    assert f"it is {decision} now, not pending ({winner}: {decision} at " in loser
    assert {s for (uri, c, _), s in statuses(db_url).items() if (uri, c) == (a, "c2")} == {
        decision,
        None,  # m3 did not flag the video: not decided
    }
    assert [(h["reviewer"], h["decision"]) for h in history(db_url)] == [(winner, decision)] * 2


def test_a_decision_expecting_another_status_is_refused_and_records_nothing(
    db_url, capsys, monkeypatch
):
    a = "s3://uploads/a.mp4"
    monkeypatch.setenv("USER", "alice")
    code, _, _ = review(db_url, a, "--confirm", "--expect", "pending", capsys=capsys)
    assert code == cli.EXIT_OK
    before = statuses(db_url), history(db_url)

    code, result, err = review(db_url, a, "--dismiss", "--expect", "pending", capsys=capsys)

    assert (code, result) == (cli.EXIT_USAGE, None)
    assert f"{a} is confirmed, not pending (--expect); nothing was recorded" in err
    assert (statuses(db_url), history(db_url)) == before
    code, _, _ = review(db_url, a, "--dismiss", "--expect", "confirmed", capsys=capsys)
    assert code == cli.EXIT_OK
    assert statuses(db_url)[a, "c2", "m1"] == "dismissed"


def test_a_note_over_the_cap_is_refused_before_anything_is_written(db_url, capsys):
    a = "s3://uploads/a.mp4"
    before = statuses(db_url), history(db_url)
    long_note = "x" * (MAX_NOTE_CHARS + 1)

    code, result, err = review(
        db_url, a, "--confirm", "--reviewer", "alice", "--note", long_note, capsys=capsys
    )

    assert (code, result) == (cli.EXIT_USAGE, None)
    assert f"the note has {MAX_NOTE_CHARS + 1} characters; at most {MAX_NOTE_CHARS}" in err
    assert (statuses(db_url), history(db_url)) == before
    code, result, _ = review(
        db_url, a, "--confirm", "--reviewer", "alice", "--note", long_note[:-1], capsys=capsys
    )
    assert code == cli.EXIT_OK
    assert [len(h["note"]) for h in history(db_url)] == [MAX_NOTE_CHARS] * 2


def test_escalate_is_a_decision_kept_in_the_history(db_url, capsys):
    a = "s3://uploads/a.mp4"
    code, result, _ = review(
        db_url, a, "--escalate", "--note", "legal", "--reviewer", "carol", capsys=capsys
    )
    assert (code, result["decision"]) == (cli.EXIT_OK, "escalated")
    assert statuses(db_url)[(a, "c2", "m1")] == "escalated"
    assert [h["decision"] for h in history(db_url)] == ["escalated", "escalated"]


def test_a_claim_holds_a_video_for_its_moderator_until_they_decide(db_url, capsys):
    from pipelines.moderation.review import claim_video, current_claim

    a = "s3://uploads/a.mp4"
    engine = open_database(db_url)
    try:
        with pytest.raises(ReviewConflict, match="not claimed by bob"):
            record_review(engine, Review(a, "dismissed", "bob", None), require_claim=True)
        claim = claim_video(engine, a, "alice", ttl_s=600)
        assert (claim.reviewer, current_claim(engine, a)) == ("alice", claim)
        with pytest.raises(ReviewConflict, match="claimed by alice"):
            claim_video(engine, a, "bob", ttl_s=600)
        code, _, err = review(db_url, a, "--confirm", "--reviewer", "bob", capsys=capsys)
        assert code == cli.EXIT_USAGE and "claimed by alice" in err
        assert history(db_url) == []
        record_review(engine, Review(a, "confirmed", "alice", "seen"), require_claim=True)
        assert current_claim(engine, a) is None  # the decision ended the claim
        assert {h["reviewer"] for h in history(db_url)} == {"alice"}
    finally:
        engine.dispose()


def test_an_expired_claim_no_longer_holds_the_video(db_url):
    from pipelines.moderation.review import claim_video, current_claim

    a = "s3://uploads/a.mp4"
    engine = open_database(db_url)
    try:
        claim_video(engine, a, "alice", ttl_s=600)
        with engine.begin() as conn:  # the claim's time runs out
            conn.exec_driver_sql("UPDATE review_claims SET expires_at = claimed_at")
        assert current_claim(engine, a) is None
        assert claim_video(engine, a, "bob", ttl_s=600).reviewer == "bob"
    finally:
        engine.dispose()
