"""Labelled training data: the prototype's ``real/`` and ``fake/`` folders, or a CSV manifest."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

LABELS = ("real", "fake")  # index = training target: fake is the positive class
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class LabelledVideo:
    path: str
    label: str

    @property
    def target(self) -> int:
        return LABELS.index(self.label)


def load_dataset(data: str | Path) -> list[LabelledVideo]:
    """List the videos of ``data``: a folder with ``real/`` and ``fake/``, or a CSV file with
    ``path,label`` columns (paths relative to the CSV's folder unless absolute)."""
    root = Path(data)
    if root.is_file():
        return _from_manifest(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{data} is neither a folder nor a CSV manifest")
    manifest = root / "manifest.csv"
    if not (root / "real").is_dir() and not (root / "fake").is_dir() and manifest.is_file():
        return _from_manifest(manifest)
    videos = []
    for label in LABELS:
        folder = root / label
        if folder.is_dir():
            videos += [
                LabelledVideo(str(p), label)
                for p in sorted(folder.iterdir())
                if p.suffix.lower() in VIDEO_SUFFIXES
            ]
    if not videos:
        raise ValueError(f"{data} has no videos under real/ or fake/")
    return videos


def _from_manifest(path: Path) -> list[LabelledVideo]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path} needs 'path' and 'label' columns")
        videos = []
        for line, row in enumerate(reader, start=2):
            label = row["label"].strip().lower()
            if label not in LABELS:
                raise ValueError(f"{path}:{line}: label must be real or fake, not {label!r}")
            video = Path(row["path"])
            if not video.is_absolute():
                video = path.parent / video
            videos.append(LabelledVideo(str(video), label))
    if not videos:
        raise ValueError(f"{path} lists no videos")
    return videos
