"""The bank of known fakes: its index, decisions that bank and unbank, CSV exchange, reloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given, settings
from hypothesis import strategies as st

from model.fingerprint import Fingerprint, from_hex, to_hex
from pipelines import cli
from pipelines.moderation.review import Review, record_review
from pipelines.scan import writing
from pipelines.scan.matching import Bank, HashIndex, KnownFakes, MatchSettings
from pipelines.store import bank, database
from tests.rows import finished_run, verdict

URI = "s3://uploads/day1/fake.mp4"


def random_hashes(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, (count, 32), dtype=np.uint8)


def flipped(hashes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Each hash with ``bits`` of its 256 bits flipped, at random places."""
    unpacked = np.unpackbits(hashes, axis=1)
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def brute_force(queries: np.ndarray, banked: np.ndarray, distance: int) -> set:
    found = set()
    for q, query in enumerate(np.unpackbits(queries, axis=1)):
        distances = (np.unpackbits(banked, axis=1) != query).sum(axis=1)
        found |= {(q, int(b), int(distances[b])) for b in np.nonzero(distances <= distance)[0]}
    return found


@pytest.mark.unit
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), distance=st.sampled_from([0, 15, 16, 31, 32, 40]))
def test_the_index_finds_exactly_what_a_scan_over_every_hash_finds(seed, distance):
    rng = np.random.default_rng(seed)
    banked = random_hashes(rng, 2000)
    near = [flipped(banked[i : i + 1], bits, rng) for i, bits in enumerate(range(0, 48, 2))]
    queries = np.concatenate([*near, random_hashes(rng, 5)])
    rows, entries, distances = HashIndex(banked, distance).near(queries)
    found = set(zip(rows.tolist(), entries.tolist(), distances.tolist(), strict=True))
    assert found == brute_force(queries, banked, distance)


def fingerprint_of(hashes: np.ndarray, rng: np.random.Generator, quality: int = 100) -> Fingerprint:
    return Fingerprint(
        hashes,
        flipped(hashes, 128, rng),
        np.full(len(hashes), quality),
        np.arange(len(hashes), dtype=float),
    )


def banked(videos: dict[tuple[str, str], Fingerprint]) -> bank.BankedFrames:
    """BankedFrames as ``load_frames`` reads them for these videos."""
    parts = [(i, f) for i, f in enumerate(videos.values())]
    return bank.BankedFrames(
        hashes=np.concatenate([np.concatenate([f.hashes, f.mirrored]) for _, f in parts]),
        video=np.concatenate([np.full(2 * len(f), i) for i, f in parts]),
        time_s=np.concatenate([np.tile(f.times, 2) for _, f in parts]),
        quality=np.concatenate([np.tile(f.quality, 2) for _, f in parts]),
        videos=list(videos),
    )


@pytest.mark.unit
def test_a_video_matches_when_enough_of_its_good_frames_match_a_banked_one():
    rng = np.random.default_rng(0)
    known = fingerprint_of(random_hashes(rng, 10), rng)
    other = fingerprint_of(random_hashes(rng, 10), rng)
    shelf = Bank(banked({("a", "v1"): known, ("b", "v1"): other}), MatchSettings())

    # 8 of 10 frames close to a's (80 %), the rest unrelated: a match, with their distance.
    copy = np.concatenate([flipped(known.hashes[:8], 20, rng), random_hashes(rng, 2)])
    found = shelf.match(fingerprint_of(copy, rng))
    assert (found.video_uri, found.share, found.distance) == ("a", 0.8, 20.0)
    # 7 of 10 is under vPDQ's 80 %.
    fewer = np.concatenate([flipped(known.hashes[:7], 20, rng), random_hashes(rng, 3)])
    assert shelf.match(fingerprint_of(fewer, rng)) is None
    # Frames past the distance do not match; the mirror images of a's frames do.
    assert shelf.match(fingerprint_of(flipped(known.hashes, 32, rng), rng)) is None
    assert shelf.match(fingerprint_of(known.mirrored, rng)).video_uri == "a"
    # Frames under the quality floor are left out, so a dull copy matches nothing.
    assert shelf.match(fingerprint_of(known.hashes, rng, quality=49)) is None
    # The share of the banked video's frames can be required too: half of a's is too few here.
    half = Bank(banked({("a", "v1"): known}), MatchSettings(bank_share=0.6))
    assert half.match(fingerprint_of(known.hashes[:5], rng)) is None


def flagged_row(rng: np.random.Generator, uri: str = URI, version: str = "etag:1:size:9") -> dict:
    row = writing.scored_row(
        uri, version, "m1", verdict(0.9, True), fingerprint_of(random_hashes(rng, 4), rng)
    )
    assert len(json.loads(row["frame_hashes"])) == 4
    return row


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scan.db'}"
    return request.getfixturevalue("pg_url")


def bank_rows(db_url: str) -> list[tuple]:
    engine = database.connect(db_url)
    try:
        table = bank.bank_table(engine)
        with engine.connect() as conn:
            query = table.select().order_by(table.c.time_s, table.c.mirrored)
            return [
                (r.video_uri, r.time_s, r.mirrored, r.pdq, r.source) for r in conn.execute(query)
            ]
    finally:
        engine.dispose()


def test_confirming_banks_a_video_and_dismissing_takes_it_out(db_url):
    rng = np.random.default_rng(1)
    row = flagged_row(rng)
    finished_run(db_url, "run-1", "m1", [row])
    engine = database.connect(db_url)
    fakes = KnownFakes(db_url)
    empty = fakes.current(engine)
    assert len(empty) == 0

    record_review(engine, Review(URI, "confirmed", "mod", None))
    rows = bank_rows(db_url)
    assert len(rows) == 8 and {r[4] for r in rows} == {"review"}
    frames = json.loads(row["frame_hashes"])
    assert [r[3] for r in rows if not r[2]] == [f[2] for f in frames]
    assert [r[3] for r in rows if r[2]] == [f[3] for f in frames]
    loaded = fakes.current(engine)
    assert len(loaded) == 8 and loaded is not empty
    assert fakes.current(engine) is loaded  # unchanged bank: the same one, not read again

    record_review(engine, Review(URI, "dismissed", "mod", "a mistake"))
    assert bank_rows(db_url) == []
    assert len(fakes.current(engine)) == 0
    engine.dispose()


def write_csv(path, lines: list[str]) -> str:
    path.write_text("\n".join([",".join(bank.CSV_COLUMNS), *lines]) + "\n")
    return str(path)


def test_a_bank_moves_between_databases_as_csv(db_url, tmp_path, capsys):
    rng = np.random.default_rng(2)
    finished_run(db_url, "run-1", "m1", [flagged_row(rng)])
    engine = database.connect(db_url)
    record_review(engine, Review(URI, "confirmed", "mod", None))
    engine.dispose()
    exported = tmp_path / "bank.csv"

    assert cli.main(["bank", "export", "--db", db_url, "--out", str(exported)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["rows"] == 8
    other = f"sqlite:///{tmp_path / 'other.db'}"
    finished_run(other, "run-0", "m1", [])
    assert cli.main(["bank", "import", str(exported), "--db", other]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {
        "file": str(exported),
        "rows": 8,
        "added": 8,
    }
    # The video was never scanned there, and need not exist anywhere: its hashes are the entry.
    assert [r[:4] for r in bank_rows(other)] == [r[:4] for r in bank_rows(db_url)]
    assert {r[4] for r in bank_rows(other)} == {"import"}
    # Importing again adds nothing.
    assert cli.main(["bank", "import", str(exported), "--db", other]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["added"] == 0


GOOD = f"{URI},etag:1,1.0,90,false,{'ab' * 32}"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([GOOD, f"{URI},etag:1,2.0,90,false,{'ab' * 31}"], "bank.csv:3: a PDQ hash has 64 hex"),
        ([GOOD, f"{URI},etag:1,2.0,90,false,{'zz' * 32}"], "bank.csv:3: a PDQ hash is hex"),
        ([GOOD, f"{URI},etag:1,2.0,90,false"], "bank.csv:3: expected 6 fields"),
        ([GOOD, f"{URI},etag:1,2.0,190,false,{'ab' * 32}"], "bank.csv:3: quality must be 0..100"),
        ([GOOD, f"{URI},etag:1,-1,90,false,{'ab' * 32}"], "bank.csv:3: time_s must be"),
        ([GOOD, f"{URI},etag:1,2.0,90,maybe,{'ab' * 32}"], "bank.csv:3: mirrored must be"),
        ([GOOD, f",etag:1,2.0,90,false,{'ab' * 32}"], "bank.csv:3: video_uri and content_version"),
    ],
)
def test_a_bad_bank_csv_is_refused_whole(db_url, tmp_path, capsys, lines, message):
    finished_run(db_url, "run-0", "m1", [])
    path = write_csv(tmp_path / "bank.csv", lines)
    assert cli.main(["bank", "import", path, "--db", db_url]) == 2
    assert message in capsys.readouterr().err
    assert bank_rows(db_url) == []  # not even the good first line


@pytest.mark.component
def test_a_file_that_is_no_bank_csv_is_refused(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    finished_run(db_url, "run-0", "m1", [])
    path = tmp_path / "manifest.csv"
    path.write_text("path,label\na.mp4,fake\n")
    assert cli.main(["bank", "import", str(path), "--db", db_url]) == 2
    assert "not a bank CSV: no column video_uri" in capsys.readouterr().err


@pytest.mark.unit
@pytest.mark.parametrize("text", ["ab" * 31, "ab" * 33, "ab " * 21 + "a", "g" * 64, ""])
def test_a_hash_must_be_64_hex_digits(text):
    with pytest.raises(ValueError, match="PDQ hash"):
        from_hex(text)


@pytest.mark.unit
def test_hashes_read_back_as_written():
    bits = np.random.default_rng(3).integers(0, 256, 32, dtype=np.uint8)
    assert np.array_equal(from_hex(to_hex(bits)), bits)


@pytest.mark.unit
def test_the_bank_benchmark_times_matching_and_tells_copies_from_strangers(capsys):
    argv = ["bench", "--bank", "--bank-hashes", "2400", "--bank-queries", "6", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (result["bank_hashes"], result["bank_videos"], result["queries"]) == (2400, 20, 6)
    assert result["correct"] == 6
    assert 0 < result["match_ms_median"] <= result["match_ms_p95"] <= result["match_ms_max"]


@pytest.mark.unit
def test_matched_videos_count_apart_and_leave_the_models_flagged_ratio_alone():
    from pipelines.scan.metrics import RunMetrics

    run = RunMetrics(
        model_version="v1",
        duration_s=1.0,
        videos={"listed": 10, "skipped": 0, "scored": 8, "matched": 2, "flagged": 4, "error": 0},
        errors_by_reason={},
        last_success=None,
    )
    assert run.flagged_ratio == 2 / 8
