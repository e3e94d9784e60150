"""`deeptrust serve` as moderators meet it: the command on uvicorn at 127.0.0.1 over a scanned
database (SQLite and PostgreSQL), driven in Debian's Chromium through Playwright.

The test plays the authenticating proxy: it names the moderator in ``X-Forwarded-User`` from
127.0.0.1, the one trusted address. With ``DEEPTRUST_SCREENSHOTS=docs/img`` the queue and video
screenshots that the README shows are written there.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import pytest
from sqlalchemy import text

from pipelines.moderation.queue import video_id
from pipelines.store import database
from tests.media import make_clip
from tests.rows import finished_run
from tests.scanning import flag_everything, scan, table

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
TRICKY = '<img src=x onerror="window.pwned=1">.mp4'
PASSWORD = "pw-Not-For-Pages-7731"
DEADLINE_S = 120.0


@dataclass(frozen=True)
class Server:
    url: str
    db_url: str
    log: Path
    tmp: Path  # the server's temporary folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, what: str, deadline_s: float = DEADLINE_S):
    """Poll ``check`` until it returns something true, or fail after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@contextmanager
def serving(db_url: str, bundle: Path, work: Path, *extra: str) -> Iterator[Server]:
    """``deeptrust serve`` in a process of its own, until the block ends."""
    port = free_port()
    log, tmp = work / "serve.log", work / "serve-tmp"
    tmp.mkdir()
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--db", db_url, "--port", str(port)]
    command += ["--trusted-proxy", "127.0.0.1", "--model", str(bundle), *extra]
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert server.poll() is None, f"deeptrust serve exited:\n{log.read_text()}"
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, "deeptrust serve to answer")
        yield Server(url, db_url, log, tmp)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def clips(tmp_path_factory, bundle) -> tuple[Path, Path]:
    """Four H.264 clips of different lengths (one named with markup), and a bundle that flags
    every scored video."""
    folder = tmp_path_factory.mktemp("serve-clips")
    for seconds, name in [(2.0, "ana.mp4"), (3.0, "ben.mp4"), (4.0, "cho.mp4"), (2.5, TRICKY)]:
        make_clip(folder / name, width=160, height=120, seconds=seconds, fps=15)
    model = flag_everything(bundle, tmp_path_factory.mktemp("serve-bundle") / "model")
    return folder, model


@pytest.fixture(params=["sqlite", "postgresql"])
def scanned(request, tmp_path, clips) -> tuple[str, Path]:
    """A database the scan wrote, and the bundle it used. The PostgreSQL URL carries a password
    (its trust auth ignores it), which must never reach a page or the log."""
    folder, model = clips
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'scan.db'}"
    else:
        url = request.getfixturevalue("pg_url").replace("postgres@", f"postgres:{PASSWORD}@")
    return scanned_into(url, folder, model), model


def scanned_into(url: str, folder: Path, model: Path) -> str:
    summary = scan(folder, model, url)
    assert (summary["scored"], summary["flagged"]) == (4, 4)
    return url


def decisions(db_url: str) -> tuple[list, list]:
    engine = database.connect(db_url)
    try:
        with engine.connect() as conn:
            statuses = conn.execute(
                text("SELECT video_uri, review_status FROM moderation_results ORDER BY 1")
            ).all()
            reviews = conn.execute(
                text("SELECT video_uri, decision, note, reviewer FROM reviews ORDER BY 1")
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in statuses], [tuple(r) for r in reviews]


def shoot(page, name: str, tmp_path: Path) -> Path:
    """A screenshot, in $DEEPTRUST_SCREENSHOTS when set (the README's pictures), else in tmp."""
    folder = Path(os.environ.get("DEEPTRUST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=False)
    image = cv2.imread(str(path))
    assert image is not None and image.std() > 20, f"{name} shows more than a blank page"
    return path


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def as_moderator(browser, name: str):
    context = browser.new_context(
        extra_http_headers={"X-Forwarded-User": name}, viewport={"width": 1280, "height": 900}
    )
    return context.new_page()


def names_on(page) -> list[str]:
    return page.locator("table.queue a.name").all_inner_texts()


def test_moderators_work_the_queue_in_a_browser(scanned, browser, tmp_path):
    db_url, model = scanned
    rows = sorted(table(db_url), key=lambda r: (-r["score"], r["video_uri"]))
    by_score = [Path(r["video_uri"]).name for r in rows]
    oldest = [
        Path(r["video_uri"]).name
        for r in sorted(rows, key=lambda r: (r["scanned_at"], r["video_uri"]))
    ]

    with serving(db_url, model, tmp_path) as server:
        alice = as_moderator(browser, "alice")
        alice.goto(server.url)
        assert names_on(alice) == by_score
        assert alice.locator(".tabs a.active .count").inner_text() == "4"
        assert alice.evaluate("window.pwned") is None, "the markup in a file name stayed text"

        alice.select_option("select[name=sort]", "oldest")
        alice.click("form.filters button[type=submit]")
        alice.wait_for_url("**sort=oldest**")
        assert names_on(alice) == oldest
        cut = math.floor(rows[1]["score"] * 100) / 100
        alice.fill("input[name=score_min]", f"{cut:.2f}")
        alice.click("form.filters button[type=submit]")
        alice.wait_for_url("**score_min=**")
        assert sorted(names_on(alice)) == sorted(
            Path(r["video_uri"]).name for r in rows if r["score"] >= cut
        )

        alice.goto(server.url)
        thumb = alice.locator("img.thumb").first
        wait_until(
            lambda: alice.evaluate(
                "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
            ),
            "thumbnails",
        )
        assert "blur" in thumb.evaluate("i => getComputedStyle(i).filter")
        thumb.click()
        assert thumb.evaluate("i => getComputedStyle(i).filter") == "none"
        thumb.click()
        shoot(alice, "serve-queue.png", tmp_path)

        top = rows[0]
        alice.click(f"a.name >> text={Path(top['video_uri']).name}")
        alice.wait_for_url(f"**/videos/{video_id(top['video_uri'])}")
        duration = wait_until(
            lambda: alice.evaluate("(v => v.readyState >= 1 && v.duration)(player)"),
            "the player to load the video",
        )
        assert abs(duration - top["duration_s"]) < 0.5
        windows = alice.locator(".timeline .window")
        assert windows.count() == len(json.loads(top["segments"]))
        last = windows.nth(windows.count() - 1)
        start = float(last.get_attribute("data-seek"))
        assert start > 0
        last.click()
        seeked = f"(v => !v.seeking && Math.abs(v.currentTime - {start}) < 0.1)(player)"
        wait_until(lambda: alice.evaluate(seeked), "the player to seek to the window")
        wait_until(
            lambda: (
                alice.locator("#faces img").count() > 0
                or alice.locator("#faces .placeholder").count()
            ),
            "face crops",
        )
        assert alice.locator("#faces img").count() > 0, alice.locator("#faces").inner_text()
        shoot(alice, "serve-video.png", tmp_path)

        bob = as_moderator(browser, "bob")
        bob.goto(alice.url)
        assert bob.locator("button.claim").is_visible()

        alice.keyboard.press("k")
        alice.wait_for_selector("textarea#note")
        alice.keyboard.press("c")
        assert alice.locator("input[value=confirmed]").is_checked()
        assert alice.evaluate("document.activeElement.id") == "note"
        alice.keyboard.type("face swap, worst at the last window")
        alice.keyboard.press("Control+Enter")
        alice.locator(".message.done", has_text="Recorded").wait_for()
        assert alice.locator(".message.done").inner_text() == "Recorded: confirmed."
        assert "face swap, worst at the last window" in alice.locator("#history").inner_text()

        with bob.expect_response(lambda r: r.url.endswith("/claim")) as answer:
            bob.click("button.claim")
        assert answer.value.status == 409
        bob.wait_for_selector(".decision .message.error")
        assert "it is confirmed now, not pending" in bob.locator(".decision .message").inner_text()

        statuses, reviews = decisions(db_url)
        assert (top["video_uri"], "confirmed") in statuses
        assert sum(s == "confirmed" for _, s in statuses) == 1
        assert reviews == [
            (top["video_uri"], "confirmed", "face swap, worst at the last window", "alice")
        ]

        for page in (alice, bob):
            assert PASSWORD not in page.content()
    assert PASSWORD not in server.log.read_text()
    assert "GET /videos/" in server.log.read_text(), "the log holds the requests"


def test_a_moderator_checks_uploads_kept_only_when_asked(browser, tmp_path, clips):
    folder, model = clips
    db_url = scanned_into(f"sqlite:///{tmp_path / 'scan.db'}", folder, model)
    before = decisions(db_url), table(db_url)
    not_a_video = tmp_path / "holiday.mp4"
    not_a_video.write_bytes(b"this is a letter, not a video\n" * 100)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 << 20))

    kept = tmp_path / "kept"
    extra = ("--max-upload-mb", "2", "--keep-uploads", str(kept))
    with serving(db_url, model, tmp_path, *extra) as server:
        page = as_moderator(browser, "alice")
        page.goto(f"{server.url}/check")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.set_input_files("input[name=video]", str(not_a_video))
            page.click("form.upload button")
        assert answer.value.status == 422
        assert "could not be checked" in page.locator(".verdict").inner_text()

        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.set_input_files("input[name=video]", str(big))
            page.click("form.upload button")
        assert answer.value.status == 413
        assert "nothing was kept" in page.content()

        page.goto(f"{server.url}/check")
        clip = clips[0] / "cho.mp4"
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.set_input_files("input[name=video]", str(clip))
            page.click("form.upload button")
        assert answer.value.status == 200
        verdict = page.locator(".verdict")
        assert "flagged as a likely deepfake" in verdict.inner_text()  # threshold 0: all flagged
        assert page.locator(".verdict .timeline .window").count() > 0
        assert page.locator(".verdict .faces img").count() > 0

        forged = httpx.post(
            f"{server.url}/check",
            headers={"X-Forwarded-User": "alice"},
            files={"video": ("cho.mp4", clip.read_bytes(), "video/mp4")},
        )
        assert forged.status_code == 403
        assert list(server.tmp.glob("deeptrust-check-*")) == [], "uploads are deleted"
        assert (decisions(db_url), table(db_url)) == before
        assert not kept.exists()

        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.set_input_files("input[name=video]", str(clip))
            page.check("input[name=keep]")
            page.click("form.upload button")
        assert answer.value.status == 200
        (copy,) = kept.iterdir()
        assert copy.read_bytes() == clip.read_bytes() and copy.suffix == ".mp4"
        (row,) = [r for r in table(db_url) if r["video_uri"] == str(copy)]
        assert (row["flagged"], row["review_status"]) == (True, "pending")
        page.click("text=its page in the queue")
        page.wait_for_url(f"**/videos/{video_id(str(copy))}")
        assert page.locator("h1 .name").inner_text() == copy.name


def test_serve_exits_with_codes_scripts_can_trust(tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--dev-user", "me"]

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    refused = serve("--db", empty)
    assert refused.returncode == 2 and "holds no moderation table" in refused.stderr
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    finished_run(db_url, "run-1", "m1", [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = serve("--db", db_url, "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 1 and "could not serve on 127.0.0.1" in busy.stderr
