"""The load check's harness: its objects are distinct videos, and its scan case scores them all
in a fresh process and reports that process's peak memory and its decoder child's. The figures
themselves are benchmark output (README "Reliability"), never asserted here."""

from __future__ import annotations

from pipelines.bench.load import scan_peak_rss, write_objects
from pipelines.scan.listing import is_video


def test_the_objects_are_distinct_videos_in_subfolders_of_100(tmp_path):
    folder = write_objects(tmp_path / "objects", 101)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == 101
    assert {p.parent.name for p in files} == {"000", "001"}
    assert all(is_video(str(p), ["mp4"]) for p in files)
    assert len({p.read_bytes() for p in files}) == 101


def test_the_scan_case_scores_every_object_in_a_fresh_process(bundle, tmp_path):
    folder = write_objects(tmp_path / "objects", 4)
    result = scan_peak_rss(str(folder), str(bundle), f"sqlite:///{tmp_path / 'load.db'}")
    assert (result["status"], result["videos"], result["scored"], result["errors"]) == (
        "succeeded",
        4,
        4,
        0,
    )
    # A fresh interpreter that imported TensorFlow and Beam holds well over 100 MB at its peak;
    # the decoder child loaded TensorFlow and MTCNN too.
    assert result["peak_rss_mb"] > 100
    assert result["decoder_peak_rss_mb"] > 100
