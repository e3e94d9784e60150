"""Check one video (``/check``): a moderator uploads a file and gets the detector's verdict.

The upload is written to a temporary file as it arrives and refused once it passes
``max_upload_bytes``. It is then decoded and scored exactly as the scan would do it
(``pipelines.scan.one_video``): the scan's size limit, its decoder in an isolated child process
under its decode time limit, and its verdict. Nothing is stored unless the moderator asks: the
file is deleted when the verdict and its face crops are made, and no table is written. Where the
app keeps uploads (``--keep-uploads DIR``) a moderator may ask to keep a scored video: it is
copied to ``DIR/<sha256><suffix>`` and its row written as a scan of its own writes one (a
``scan_runs`` row with runner ``deeptrust serve /check``), so a flagged one joins the queue.

The detector loads on the first check and stays loaded; checks run one at a time.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from model.errors import VideoError
from model.hashing import sha256_file
from pipelines.moderation.frames import Pictures
from pipelines.moderation.report import most_suspicious
from pipelines.scan.limits import DecodeLimits
from pipelines.scan.writing import scored_row
from pipelines.store import database, runs

KEEPER = "deeptrust serve /check"

# Uploads keep a suffix decoders go by, when it is one of these; others become ``.bin``.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class TooLarge(ValueError):
    """The upload passed the size cap; nothing of it was kept."""


@dataclass(frozen=True)
class CheckResult:
    """A verdict (``scored``) or the reason the video could not be scored (``error``)."""

    file_name: str
    model_version: str
    status: str
    verdict: dict[str, Any] | None = None
    error_reason: str | None = None
    error_detail: str | None = None
    faces: tuple[tuple[float, bytes], ...] = ()
    faces_problem: str | None = None
    kept_as: str | None = None  # the kept video's URI, when the moderator asked to keep it

    def as_json(self) -> dict[str, Any]:
        found = {k: v for k, v in vars(self).items() if k not in ("faces",)}
        return found | {"faces": len(self.faces)}


class Checker:
    """Scores uploaded videos with one bundle, the scan's way."""

    def __init__(self, bundle: str, limits: DecodeLimits, max_upload_bytes: int) -> None:
        self.bundle = bundle
        self.limits = limits
        self.max_upload_bytes = max_upload_bytes
        self._detector = None
        self._manifest: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _load(self):
        if self._detector is None:
            from model.bundle import load_bundle

            self._detector, self._manifest = load_bundle(self.bundle, precision="float32")
        return self._detector, self._manifest

    async def receive(self, chunks: AsyncIterator[bytes], suffix: str, into: Path) -> Path:
        """Write the upload's chunks to a file under ``into``; TooLarge past the cap."""
        path = into / f"upload{suffix if suffix.lower() in VIDEO_SUFFIXES else '.bin'}"
        size = 0
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_upload_bytes:
                    raise TooLarge(
                        f"the upload is over {self.max_upload_bytes:,} bytes, the most this "
                        "app checks; nothing was kept"
                    )
                out.write(chunk)
        if size == 0:
            raise ValueError("the upload is empty: choose a video file")
        return path

    def check(self, path: Path, file_name: str, pictures: Pictures) -> CheckResult:
        """The verdict for the video at ``path`` (deleted by the caller afterwards)."""
        from pipelines.scan.decoders import ChildDecoders
        from pipelines.scan.one_video import local_ref, score_video
        from pipelines.scan.outcomes import Failed

        with self._lock:
            detector, manifest = self._load()
            with ChildDecoders().open(detector.config, self.limits.timeout_s) as sampler:
                outcome = score_video(
                    local_ref(path),
                    sampler,
                    detector,
                    self.limits.max_bytes,
                    detector.config.decision,
                )
        version = str(manifest["model_version"])
        if isinstance(outcome, Failed):
            return CheckResult(
                file_name,
                version,
                "error",
                error_reason=outcome.reason,
                error_detail=outcome.detail,
            )
        verdict = outcome.verdict
        faces: tuple[tuple[float, bytes], ...] = ()
        problem = None
        if verdict["segments"]:
            top = most_suspicious(verdict["segments"])
            try:
                faces = tuple(pictures.faces_of_file(str(path), top["start_s"], top["end_s"]))
            except VideoError as err:
                problem = f"{err.code}: {err.detail}"
        return CheckResult(
            file_name, version, "scored", verdict=verdict, faces=faces, faces_problem=problem
        )


def upload_dir() -> tempfile.TemporaryDirectory:
    """A private temporary folder for one upload, removed with everything in it."""
    return tempfile.TemporaryDirectory(prefix="deeptrust-check-")


def keep(engine: Engine, result: CheckResult, path: Path, folder: Path) -> CheckResult:
    """Copy a scored upload into ``folder`` and write its row as a scan of its own; returns the
    result with ``kept_as``. A video already kept (the same bytes) is kept once."""
    if result.status != "scored" or result.verdict is None:
        raise ValueError("only a scored video is kept")
    digest = sha256_file(path)
    kept = folder / f"{digest}{path.suffix}"
    if not kept.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(f".{kept.name}.{uuid.uuid4().hex}")
        shutil.copyfile(path, partial)
        partial.replace(kept)  # whole or not at all
    run_id = f"check-{uuid.uuid4().hex[:12]}"
    tables = database.Tables.reflect(engine)
    runs.start_run(engine, tables, run_id, str(kept), result.model_version, KEEPER)
    row = scored_row(str(kept), f"sha256:{digest}", result.model_version, result.verdict)
    with engine.begin() as conn:
        runs.write_rows(conn, tables, [row], run_id)
        runs.record_listing(conn, tables.runs, run_id, 1, 0)
    runs.finish_run(engine, tables, run_id)
    return CheckResult(**(vars(result) | {"kept_as": str(kept)}))
