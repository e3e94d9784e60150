"""`deeptrust report`: the moderators' HTML page of a scan's flagged videos."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import cv2
import numpy as np
import pytest
from markupsafe import escape

from pipelines import cli
from pipelines.moderation.report import window_frames
from pipelines.scan import writing
from tests.rows import finished_run, verdict
from tests.scanning import flag_everything, scan, table

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRICKY_NAME = '<b onclick="x">swap & co.mp4'


def report(db_url: str, out: Path, *args: str, capsys) -> tuple[int, dict | None, str]:
    code = cli.main(["report", "--db", db_url, "--out", str(out), *args])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None, captured.err


def windows(*scores: float) -> list[dict]:
    return [
        {"start_s": float(i), "end_s": i + 1.0, "score": score} for i, score in enumerate(scores)
    ]


@pytest.mark.e2e
def test_the_page_lists_flagged_videos_escaped_with_plots_or_placeholders(
    corpus, tmp_path, s3_server, monkeypatch, capsys
):
    source = sorted(corpus.rglob("*.mp4"))[0]
    local = tmp_path / "videos" / TRICKY_NAME
    local.parent.mkdir()
    shutil.copy(source, local)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    client = boto3.client("s3")
    client.create_bucket(Bucket="uploads")
    client.upload_file(str(source), "uploads", "day/remote.mp4")
    missing = str(tmp_path / "videos" / "gone.mp4")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    finished_run(db_url, "run-1", "v1", [])
    rows = [
        scored(str(local), 0.7, windows(0.2, 0.9, 0.4)),
        scored("s3://uploads/day/remote.mp4", 0.95, windows(0.95, 0.6)),
        scored(missing, 0.6, windows(0.6)),
        scored(str(tmp_path / "videos" / "fine.mp4"), 0.1, windows(0.1), flagged=False),
    ]
    finished_run(db_url, "run-2", "v1", rows)

    out = tmp_path / "report"
    code, result, _ = report(db_url, out, capsys=capsys)
    assert code == cli.EXIT_OK
    assert result["run_id"] == "run-2"
    assert (result["flagged"], result["frames_unavailable"]) == (3, 1)
    page = (out / "index.html").read_text()
    assert TRICKY_NAME not in page and "<b " not in page
    names = [escape(n) for n in ("remote.mp4", TRICKY_NAME, "gone.mp4")]  # as the templates escape
    positions = [page.index(f'<span class="name">{name}</span>') for name in names]
    assert positions == sorted(positions), "highest score first"
    assert "fine.mp4" not in page
    assert "Frames unavailable: not_found" in page
    assert page.count('class="faces"') == 2 and page.count('class="scores"') == 3
    for plot in sorted((out / "plots").iterdir()):
        image = cv2.imread(str(plot))
        assert image is not None and image.std() > 5, plot.name
    strip = cv2.imread(str(out / "plots" / "video-001-faces.png"))
    assert strip.shape[1] > 4 * strip.shape[0], "a strip of several crops"


def scored(uri: str, score: float, segments: list[dict], flagged: bool = True) -> dict:
    return writing.scored_row(uri, "sha256:x", "v1", verdict(score, flagged, segments))


@pytest.mark.component
@pytest.mark.parametrize(("start_s", "end_s"), [(1.0, 2.0), (0.0, 0.5), (3.0, 99.0)])
def test_the_strip_frames_come_from_the_window(corpus, start_s, end_s):
    video = sorted(corpus.rglob("*.mp4"))[0]
    frames = window_frames(str(video), start_s, end_s, 6)
    times = [at for at, _ in frames]
    assert 1 < len(frames) <= 6
    assert times == sorted(set(times))
    assert start_s <= times[0] and times[-1] < end_s
    assert all(frame.ndim == 3 and frame.shape[2] == 3 for _, frame in frames)


@pytest.mark.component
def test_the_run_is_the_latest_unless_named(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    code, _, err = report(db_url, tmp_path / "r0", capsys=capsys)
    assert code == cli.EXIT_USAGE and "no scan_runs table" in err
    finished_run(db_url, "run-1", "v1", [scored("/videos/old.mp4", 0.9, windows(0.9))])
    finished_run(db_url, "run-2", "v1", [])

    code, result, _ = report(db_url, tmp_path / "r1", capsys=capsys)
    assert (code, result["run_id"], result["flagged"]) == (cli.EXIT_OK, "run-2", 0)
    assert "This scan flagged no video." in (tmp_path / "r1" / "index.html").read_text()
    code, result, _ = report(db_url, tmp_path / "r2", "--run", "run-1", capsys=capsys)
    assert (code, result["run_id"], result["flagged"]) == (cli.EXIT_OK, "run-1", 1)
    code, _, err = report(db_url, tmp_path / "r3", "--run", "run-9", capsys=capsys)
    assert code == cli.EXIT_USAGE and "no scan run run-9" in err


def chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is missing: apt-get install chromium")
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.e2e
def test_the_report_of_a_scan_renders_in_chromium(corpus, bundle, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for source in sorted(corpus.rglob("*.mp4"))[:3]:
        shutil.copy(source, videos / f"{source.parent.name}-{source.name}")
    model = flag_everything(bundle, tmp_path / "bundle")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    summary = scan(videos, model, db_url)
    assert (summary["scored"], summary["flagged"]) == (3, 3)

    out = tmp_path / "report"
    code, result, _ = report(db_url, out, "--model", str(model), capsys=capsys)
    assert (code, result["flagged"], result["frames_unavailable"]) == (cli.EXIT_OK, 3, 0)
    page = (out / "index.html").resolve().as_uri()
    dom = chromium("--dump-dom", page, user_data=tmp_path / "chromium-dom").stdout
    for row in table(db_url):
        assert Path(row["video_uri"]).name in dom
    shot = tmp_path / "report.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", page, user_data=tmp_path / "chromium"
    )
    image = cv2.imread(str(shot))
    assert image.shape == (2000, 1280, 3)
    assert (image < 200).any(axis=2).mean() > 0.02, "the page shows more than a blank sheet"
    red = (image[:, :, 2] > 180) & (image[:, :, 1] < 80) & (image[:, :, 0] < 80)
    assert red.sum() > 200, "the score plots (red window lines) rendered"
    assert np.unique(image.reshape(-1, 3), axis=0).shape[0] > 1000, "face crops rendered"
