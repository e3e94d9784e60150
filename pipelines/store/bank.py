"""The bank of known fakes (``known_fakes``): what goes in, what comes out, and CSV exchange.

A banked video is its perceptual fingerprint (``model.fingerprint``): one row per hashed frame
and orientation, the hash as 64 hex digits, named by the video's URI and content version. A
moderator's confirmation banks a flagged video from the hashes its row kept (``frame_hashes``);
dismissing it takes it out again. ``deeptrust bank export|import`` moves banks between
platforms as CSV (``CSV_COLUMNS``); an import checks every line before it writes any, and writes
them in one transaction, so a bad file changes nothing.

Ids only grow, so ``stamp`` (how many rows, and the largest id) changes with every change to
the bank: scan workers compare it between bundles and reload only a bank that changed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, select

from model.fingerprint import HASH_BYTES, Fingerprint, from_hex, to_hex
from pipelines.store import database

TABLE = "known_fakes"
CSV_COLUMNS = ("video_uri", "content_version", "time_s", "quality", "mirrored", "pdq")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class BankFileError(ValueError):
    """A bank CSV that cannot be imported; nothing was written."""


@dataclass(frozen=True)
class BankedFrames:
    """The bank's rows as arrays: ``hashes`` [N, 32] packed bits, and per row the banked
    video's index into ``videos`` (uri, content version), the frame's time and quality."""

    hashes: np.ndarray
    video: np.ndarray
    time_s: np.ndarray
    quality: np.ndarray
    videos: list[tuple[str, str]]


def bank_table(engine_or_conn: Engine | Connection) -> Table:
    metadata = MetaData()
    metadata.reflect(engine_or_conn, only=[TABLE])
    return metadata.tables[TABLE]


# --- a flagged row's hashes, kept in moderation_results.frame_hashes ---


def encode_frame_hashes(fingerprint: Fingerprint) -> str:
    """JSON ``[[time_s, quality, pdq, mirrored pdq], ...]``, for a flagged row."""
    return json.dumps(
        [
            [round(float(t), 3), int(q), to_hex(h), to_hex(m)]
            for h, m, q, t in zip(
                fingerprint.hashes,
                fingerprint.mirrored,
                fingerprint.quality,
                fingerprint.times,
                strict=True,
            )
        ]
    )


def frame_rows(encoded: str) -> Iterator[dict[str, Any]]:
    """A row's ``frame_hashes`` as bank rows (without the video's key): each frame twice, as
    seen and mirrored."""
    for time_s, quality, pdq, mirrored in json.loads(encoded):
        yield {"time_s": time_s, "quality": quality, "mirrored": False, "pdq": pdq}
        yield {"time_s": time_s, "quality": quality, "mirrored": True, "pdq": mirrored}


# --- writing ---


def add_frames(conn: Connection, table: Table, rows: Iterable[dict[str, Any]], source: str) -> int:
    """Insert bank rows (each with the ``CSV_COLUMNS``); rows already banked are left as they
    are. Returns how many rows were new."""
    now = database.utc_now()
    values = [{**row, "source": source, "banked_at": now} for row in rows]
    if not values:
        return 0
    before = conn.execute(select(func.count()).select_from(table)).scalar_one()
    insert = database.insert_for(conn)(table)
    conn.execute(insert.on_conflict_do_nothing(index_elements=_FRAME_KEY), values)
    return conn.execute(select(func.count()).select_from(table)).scalar_one() - before


_FRAME_KEY = ("video_uri", "content_version", "time_s", "mirrored")


def bank_video(
    conn: Connection, table: Table, video_uri: str, content_version: str, encoded: str
) -> int:
    """Bank one video from its row's ``frame_hashes``; returns the rows added."""
    key = {"video_uri": video_uri, "content_version": content_version}
    return add_frames(conn, table, ({**key, **row} for row in frame_rows(encoded)), "review")


def unbank_video(conn: Connection, table: Table, video_uri: str, content_version: str) -> int:
    """Take one video out of the bank; returns the rows removed."""
    done = conn.execute(
        delete(table).where(
            table.c.video_uri == video_uri, table.c.content_version == content_version
        )
    )
    return done.rowcount


# --- reading ---


def stamp(conn: Connection, table: Table) -> tuple[int, int | None]:
    """(rows, largest id): changes whenever the bank does."""
    rows, largest = conn.execute(select(func.count(), func.max(table.c.entry_id))).one()
    return int(rows), largest


def load_frames(conn: Connection, table: Table, min_quality: int) -> BankedFrames:
    """Every banked frame of at least ``min_quality``, as arrays."""
    query = select(
        table.c.video_uri, table.c.content_version, table.c.time_s, table.c.quality, table.c.pdq
    ).where(table.c.quality >= min_quality)
    videos: dict[tuple[str, str], int] = {}
    hashes, owner, times, quality = [], [], [], []
    for uri, version, time_s, q, pdq in conn.execute(query):
        owner.append(videos.setdefault((uri, version), len(videos)))
        hashes.append(bytes.fromhex(pdq))
        times.append(time_s)
        quality.append(q)
    packed = np.frombuffer(b"".join(hashes), np.uint8).reshape(-1, HASH_BYTES)
    return BankedFrames(
        hashes=packed,
        video=np.array(owner, np.int64),
        time_s=np.array(times, np.float64),
        quality=np.array(quality, np.int64),
        videos=list(videos),
    )


# --- CSV exchange ---


def export_csv(engine: Engine, out: TextIO) -> int:
    """Write the whole bank as CSV (``CSV_COLUMNS``); returns the rows written."""
    table = bank_table(engine)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    query = select(*(table.c[name] for name in CSV_COLUMNS)).order_by(
        table.c.video_uri, table.c.content_version, table.c.time_s, table.c.mirrored
    )
    written = 0
    with engine.connect() as conn:
        for row in conn.execute(query):
            uri, version, time_s, quality, mirrored, pdq = row
            writer.writerow(
                [uri, version, repr(float(time_s)), quality, str(mirrored).lower(), pdq]
            )
            written += 1
    return written


def read_csv(handle: TextIO, name: str) -> list[dict[str, Any]]:
    """Every line of a bank CSV, checked; BankFileError names the first bad line and why."""
    reader = csv.DictReader(handle)
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BankFileError(f"{name}: not a bank CSV: no column {', '.join(missing)}")
    rows = []
    try:
        for line, record in enumerate(reader, start=2):
            rows.append(_checked_row(record, f"{name}:{line}"))
    except csv.Error as err:
        raise BankFileError(f"{name}: not a readable CSV: {err}") from err
    return rows


def _checked_row(record: dict[str | None, Any], where: str) -> dict[str, Any]:
    if None in record or any(record.get(c) is None for c in CSV_COLUMNS):
        raise BankFileError(
            f"{where}: expected {len(CSV_COLUMNS)} fields ({', '.join(CSV_COLUMNS)})"
        )
    uri, version = record["video_uri"].strip(), record["content_version"].strip()
    if not uri or not version:
        raise BankFileError(f"{where}: video_uri and content_version must not be empty")
    try:
        time_s = float(record["time_s"])
        quality = int(record["quality"])
        pdq = to_hex(from_hex(record["pdq"].strip().lower()))
    except ValueError as err:
        raise BankFileError(f"{where}: {err}") from err
    if not math.isfinite(time_s) or time_s < 0:
        raise BankFileError(f"{where}: time_s must be a time in seconds, not {record['time_s']!r}")
    if not 0 <= quality <= 100:
        raise BankFileError(f"{where}: quality must be 0..100, not {quality}")
    mirrored = _BOOLEANS.get(record["mirrored"].strip().lower())
    if mirrored is None:
        raise BankFileError(f"{where}: mirrored must be true or false, not {record['mirrored']!r}")
    return {
        "video_uri": uri,
        "content_version": version,
        "time_s": time_s,
        "quality": quality,
        "mirrored": mirrored,
        "pdq": pdq,
    }


def import_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Bank checked CSV rows in one transaction; returns the rows that were new."""
    table = bank_table(engine)
    with engine.begin() as conn:
        return add_frames(conn, table, rows, "import")
