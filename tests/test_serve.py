"""`deeptrust serve`: the review app's queue, pages, claims, decisions and refusals, through its
HTTP interface in process (Starlette's test client) over SQLite and PostgreSQL.

The browser, uvicorn and uploads: tests/test_serve_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from conftest import BACKENDS
from sqlalchemy import text
from starlette.testclient import TestClient

from pipelines import cli
from pipelines.moderation.app import ServeSettings
from pipelines.moderation.identity import IdentityRules, parse_networks
from pipelines.moderation.queue import QueueFilter, video_id, video_uri
from pipelines.moderation.review import MAX_NOTE_CHARS
from pipelines.moderation.serve import build, safe_url
from pipelines.scan import writing
from pipelines.store import database
from tests.rows import finished_run, verdict

PROXY = "10.1.2.3"
TRICKY = '<img src=x onerror="window.pwned=1">.mp4'


def windows(*scores: float) -> list[dict]:
    return [{"start_s": i * 0.5, "end_s": i * 0.5 + 0.5, "score": s} for i, s in enumerate(scores)]


@pytest.fixture(params=BACKENDS)
def scanned(request, tmp_path, corpus):
    """Two runs over real video files: four flagged videos (one with markup in its name, one
    flagged by two models) and one that was not flagged. Returns (db_url, {name: uri})."""
    url = (
        f"sqlite:///{tmp_path / 'scan.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    sources = sorted(corpus.rglob("*.mp4"))
    names = ["alpha.mp4", "bravo.mp4", TRICKY, "delta.mp4", "fine.mp4"]
    uris = {}
    for name, source in zip(names, sources, strict=False):
        shutil.copy(source, tmp_path / name)
        uris[name] = str(tmp_path / name)

    def row(name: str, score: float, model: str = "m1", flagged: bool = True) -> dict:
        body = verdict(score, flagged, windows(score / 2, score))
        return writing.scored_row(uris[name], "sha256:" + name[:5], model, body)

    finished_run(url, "run-1", "m1", [row("alpha.mp4", 0.91), row("bravo.mp4", 0.62)])
    finished_run(
        url,
        "run-2",
        "m2",
        [
            row(TRICKY, 0.75, "m2"),
            row("delta.mp4", 0.55, "m2"),
            row("delta.mp4", 0.83, "m3"),
            row("fine.mp4", 0.1, "m2", flagged=False),
        ],
    )
    return url, uris


def client_for(db_url: str, peer: str = PROXY, user: str | None = "alice", **rules) -> TestClient:
    identity = IdentityRules(trusted=parse_networks([PROXY, "127.0.0.0/8"]), **rules)
    app = build(db_url, ServeSettings(identity=identity), upload_bytes=1 << 20)
    headers = {"X-Forwarded-User": user} if user else {}
    return TestClient(app, client=(peer, 40000), headers=headers, follow_redirects=False)


def history(db_url: str) -> list[dict]:
    engine = database.connect(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT video_uri, decision, note, reviewer FROM reviews ORDER BY reviewed_at")
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def state(db_url: str) -> tuple[list, list, list]:
    """Everything a refused request must leave alone: statuses, history and claims."""
    engine = database.connect(db_url)
    try:
        with engine.connect() as conn:
            return tuple(
                sorted(tuple(r) for r in conn.execute(text(sql)))
                for sql in (
                    "SELECT video_uri, model_version, review_status FROM moderation_results",
                    "SELECT video_uri, decision, note, reviewer FROM reviews",
                    "SELECT video_uri, reviewer FROM review_claims",
                )
            )
    finally:
        engine.dispose()


def names(items: list[dict]) -> list[str]:
    return [item["video_uri"].rsplit("/", 1)[-1] for item in items]


@pytest.mark.unit
@pytest.mark.parametrize("uri", ["s3://b/a b/c.mp4", "/v/x.mp4", TRICKY, "s3://b/ü?.mp4"])
def test_a_video_id_is_one_url_segment_that_gives_back_its_uri(uri):
    vid = video_id(uri)
    assert "/" not in vid and "?" not in vid and "=" not in vid
    assert video_uri(vid) == uri


@pytest.mark.unit
@pytest.mark.parametrize("vid", ["!!", "L3Rtc", "a" * 5])
def test_an_id_no_uri_makes_is_refused(vid):
    with pytest.raises(ValueError, match="not a video id"):
        video_uri(vid)


@pytest.mark.unit
def test_the_log_names_the_database_without_its_password():
    shown = safe_url("postgresql+psycopg://mod:hunter2-secret@db:5432/deeptrust")
    assert "hunter2-secret" not in shown and "db:5432/deeptrust" in shown


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        QueueFilter(status="everything"),
        QueueFilter(sort="random"),
        QueueFilter(score_min=1.5),
        QueueFilter(score_max=float("nan")),
        QueueFilter(page=0),
        QueueFilter(per_page=1000),
    ],
)
def test_queue_filters_a_moderator_cannot_mean_are_refused(bad):
    with pytest.raises(ValueError):
        bad.checked()


def test_the_queue_orders_filters_counts_and_pages(scanned):
    db_url, _ = scanned
    api = client_for(db_url)

    page = api.get("/api/queue").json()
    assert names(page["items"]) == ["alpha.mp4", "delta.mp4", TRICKY, "bravo.mp4"]
    assert [i["score"] for i in page["items"]] == [0.91, 0.83, 0.75, 0.62]
    delta = page["items"][1]
    assert delta["models"] == 2, "one item per video, whichever models flagged it"
    assert (page["total"], page["counts"]) == (4, {"pending": 4, "all": 4})

    oldest = api.get("/api/queue", params={"sort": "oldest"}).json()
    assert names(oldest["items"])[:2] == ["alpha.mp4", "bravo.mp4"], "run-1 came first"

    def listed(**params) -> list[str]:
        return names(api.get("/api/queue", params=params).json()["items"])

    assert listed(score_min=0.7, score_max=0.9) == ["delta.mp4", TRICKY]
    assert listed(run_id="run-1") == ["alpha.mp4", "bravo.mp4"]
    assert listed(model_version="m2") == [TRICKY, "delta.mp4"]
    today = page["items"][0]["scanned_at"][:10]
    assert len(listed(since=today, until=today)) == 4
    assert listed(until="2000-01-01") == []

    first = api.get("/api/queue", params={"per_page": 3}).json()
    second = api.get("/api/queue", params={"per_page": 3, "page": 2}).json()
    assert (first["pages"], names(second["items"])) == (2, ["bravo.mp4"])

    refused = api.get("/api/queue", params={"score_min": "lots"})
    assert refused.status_code == 400 and "score_min" in refused.json()["error"]


def test_pages_escape_what_comes_from_the_table(scanned):
    db_url, uris = scanned
    api = client_for(db_url)
    for path in ("/", f"/videos/{video_id(uris[TRICKY])}"):
        page = api.get(path)
        assert page.status_code == 200
        assert "<img src=x" not in page.text
        assert "&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;.mp4" in page.text


def test_a_video_page_has_its_player_timeline_facts_and_history(scanned):
    db_url, uris = scanned
    api = client_for(db_url)
    vid = video_id(uris["delta.mp4"])
    page = api.get(f"/videos/{vid}").text
    assert f'src="/videos/{vid}/media"' in page
    assert page.count('class="window') == 2 and 'data-seek="0.5"' in page
    assert "0.830" in page and "m3" in page, "the most suspicious model's row leads"
    assert "Also flagged by 1 other model version" in page
    media = api.get(f"/videos/{vid}/media", headers={"Range": "bytes=0-99"})
    assert media.status_code == 206 and len(media.content) == 100
    thumb = api.get(f"/videos/{vid}/thumbnail.jpg")
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    assert api.get(f"/videos/{video_id('/etc/passwd')}/media").status_code == 404
    assert api.get(f"/videos/{video_id(uris['fine.mp4'])}").status_code == 404


def test_a_claimed_video_is_decided_once_and_kept_in_the_history(scanned):
    db_url, uris = scanned
    alice, bob = client_for(db_url, user="alice"), client_for(db_url, user="bob")
    vid = video_id(uris["alpha.mp4"])
    decide = {"decision": "confirmed", "note": "face swap at 0.5 s"}

    early = alice.post(f"/api/videos/{vid}/decision", json=decide)
    assert early.status_code == 409 and "Claim it, then decide" in early.json()["error"]
    # Both claim at once: exactly one holds the video.
    start = threading.Barrier(2)

    def claim(client: TestClient):
        start.wait()
        return client.post(f"/api/videos/{vid}/claim", json={"expect": "pending"})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(claim, [alice, bob]))
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner, loser = (alice, bob) if answers[0].status_code == 200 else (bob, alice)
    lost = next(a for a in answers if a.status_code == 409).json()["error"]
    assert "is claimed by" in lost and "nothing was recorded" in lost

    refused = loser.post(f"/api/videos/{vid}/decision", json=decide | {"decision": "dismissed"})
    assert refused.status_code == 409 and "is claimed by" in refused.json()["error"]
    done = winner.post(f"/api/videos/{vid}/decision", json=decide | {"expect": "pending"})
    assert done.status_code == 200
    assert done.json()["review_status"] == "confirmed" and done.json()["claim"] is None
    late = loser.post(f"/api/videos/{vid}/claim", json={"expect": "pending"})
    assert late.status_code == 409 and "it is confirmed now, not pending" in late.json()["error"]

    assert len(history(db_url)) == 1
    (row,) = history(db_url)
    assert row["note"] == decide["note"] and row["decision"] == "confirmed"
    assert loser.get(f"/api/videos/{vid}").json()["history"][0]["reviewer"] == row["reviewer"]


def test_the_pages_claim_and_decide_with_their_form_token(scanned):
    db_url, uris = scanned
    alice = client_for(db_url)
    vid = video_id(uris["bravo.mp4"])
    page = alice.get(f"/videos/{vid}").text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    htmx = {"HX-Request": "true"}
    form = {"csrf": token, "expect": "pending"}

    claimed = alice.post(f"/videos/{vid}/claim", data=form, headers=htmx)
    assert claimed.status_code == 200 and "Claimed" in claimed.text and "<textarea" in claimed.text
    empty = alice.post(
        f"/videos/{vid}/decision", data=form | {"decision": "escalated", "note": " "}, headers=htmx
    )
    assert empty.status_code == 400 and "say why in the note" in empty.text
    done = alice.post(
        f"/videos/{vid}/decision",
        data=form | {"decision": "escalated", "note": "for legal"},
        headers=htmx,
    )
    assert done.status_code == 200 and "Recorded: escalated." in done.text
    assert (
        'id="history" class="history" hx-swap-oob="true"' in done.text and "for legal" in done.text
    )
    assert history(db_url) == [
        {
            "video_uri": uris["bravo.mp4"],
            "decision": "escalated",
            "note": "for legal",
            "reviewer": "alice",
        }
    ]
    plain = alice.post(f"/videos/{vid}/claim", data=form)  # no script: the page again
    assert plain.status_code == 409 and "it is escalated now" in plain.text


def test_hostile_requests_are_refused_and_change_nothing(scanned):
    db_url, uris = scanned
    vid = video_id(uris["alpha.mp4"])
    alice = client_for(db_url)
    assert alice.post(f"/api/videos/{vid}/claim", json={}).status_code == 200
    before = state(db_url)

    no_header = client_for(db_url, user=None).get("/")
    assert no_header.status_code == 401 and "missing" in no_header.text
    untrusted = client_for(db_url, peer="192.0.2.7").post(
        f"/api/videos/{vid}/decision", json={"decision": "confirmed", "note": "x"}
    )
    assert untrusted.status_code == 401 and "not believed" in untrusted.json()["error"]
    forged = alice.post(f"/videos/{vid}/decision", data={"decision": "confirmed", "note": "forged"})
    assert forged.status_code == 403 and "security token" in forged.text
    wrong_token = alice.post(
        f"/videos/{vid}/decision", data={"csrf": "0" * 64, "decision": "confirmed", "note": "x"}
    )
    assert wrong_token.status_code == 403
    as_form = alice.post(f"/api/videos/{vid}/decision", data={"decision": "confirmed", "note": "x"})
    assert as_form.status_code == 415
    long_note = alice.post(
        f"/api/videos/{vid}/decision", json={"decision": "confirmed", "note": "x" * (1 << 20)}
    )
    assert long_note.status_code == 400
    assert (
        f"the note has {1 << 20} characters; at most {MAX_NOTE_CHARS}" in long_note.json()["error"]
    )
    huge = alice.post(
        f"/api/videos/{vid}/decision", json={"decision": "confirmed", "note": "x" * (5 << 20)}
    )
    assert huge.status_code == 413 and "nothing was kept" in huge.json()["error"]
    odd = alice.post(f"/api/videos/{vid}/decision", json={"decision": "deleted", "note": "x"})
    assert odd.status_code == 400 and "decision must be one of" in odd.json()["error"]
    assert alice.get("/api/videos/not-an-id").status_code == 404

    assert state(db_url) == before


def test_a_dev_user_needs_no_proxy(scanned):
    db_url, _ = scanned
    local = client_for(db_url, peer="198.51.100.1", user=None, dev_user="dana")
    assert "signed in as <b>dana</b>" in local.get("/").text


@pytest.mark.unit
def test_serve_refuses_options_that_could_name_no_moderator(capsys):
    assert cli.main(["serve", "--db", "sqlite:///unused.db"]) == cli.EXIT_USAGE
    assert "--trusted-proxy ADDRESS" in capsys.readouterr().err
    assert cli.main(["serve", "--trusted-proxy", "proxy.local"]) == cli.EXIT_USAGE
    assert "not an IP address or network" in capsys.readouterr().err
    assert cli.main(["serve", "--dev-user", "me", "--keep-uploads", "kept"]) == cli.EXIT_USAGE
    assert "give --model too" in capsys.readouterr().err


@pytest.mark.unit
def test_the_dashboard_and_the_alerts_link_to_a_queue_the_app_shows():

    infra = Path(__file__).resolve().parent.parent / "infra"
    dashboard = json.loads((infra / "grafana" / "dashboards" / "deeptrust-scan.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    alerts = (infra / "prometheus" / "alerts.yml").read_text()
    prometheus = yaml.safe_load((infra / "prometheus" / "prometheus.yml").read_text())
    labels = prometheus["global"]["external_labels"]
    (annotation,) = re.findall(r"review_queue: '\{\{ \$externalLabels\.(\w+) \}\}(\S+)'", alerts)
    links = [link["url"] for link in dashboard["links"]]
    assert links and annotation[0] in labels
    for base, rest in [re.match(r"\$\{(\w+)\}(.*)", url).groups() for url in links] + [annotation]:
        assert base in variables | set(labels)
        query = dict(parse_qsl(urlsplit(rest).query))
        assert urlsplit(rest).path == "/" and QueueFilter(**query).checked().status == "pending"


@pytest.mark.unit
def test_the_serve_extra_pins_what_requirements_serve_pins():

    root = Path(__file__).resolve().parent.parent
    extra = re.search(r"SERVE_REQUIREMENTS = \[(.*?)\]", (root / "setup.py").read_text(), re.S)
    pinned = re.findall(r'"([^"]+==[^"]+)"', extra.group(1))
    listed = [
        line.split("#")[0].strip()
        for line in (root / "requirements-serve.txt").read_text().splitlines()
        if "==" in line
    ]
    assert pinned and pinned == listed


@pytest.mark.e2e
def test_an_s3_video_plays_through_a_short_lived_presigned_url(
    tmp_path, corpus, s3_server, monkeypatch
):
    import boto3
    import httpx

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    source = sorted(corpus.rglob("*.mp4"))[0]
    client = boto3.client("s3")
    client.create_bucket(Bucket="uploads")
    client.upload_file(str(source), "uploads", "day/clip.mp4")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    uri = "s3://uploads/day/clip.mp4"
    body = verdict(0.9, True, windows(0.4, 0.9))
    finished_run(db_url, "run-1", "m1", [writing.scored_row(uri, "etag:1", "m1", body)])
    api = client_for(db_url)

    media = api.get(f"/videos/{video_id(uri)}/media")
    assert media.status_code == 307 and media.headers["cache-control"] == "no-store"
    presigned = media.headers["location"]
    assert presigned.startswith(f"{s3_server}/uploads/day/clip.mp4?")
    assert dict(parse_qsl(urlsplit(presigned).query))["X-Amz-Expires"] == "600"
    assert httpx.get(presigned).content == source.read_bytes()
    thumb = api.get(f"/videos/{video_id(uri)}/thumbnail.jpg")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
