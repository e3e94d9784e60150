"""The same scan against PostgreSQL, against S3 (a moto server over HTTP) and on Dask."""

from __future__ import annotations

import boto3
import pytest
from scanning import assert_summary_matches_table, scan, table

pytestmark = pytest.mark.e2e


def test_scan_into_postgresql_is_incremental(corpus, bundle, pg_url):
    first = scan(corpus, bundle, pg_url)
    assert (first["status"], first["videos_seen"], first["skipped"]) == ("succeeded", 12, 0)
    assert first["scored"] + first["errors"] == 12
    assert len(table(pg_url)) == 12
    assert_summary_matches_table(first, pg_url)

    again = scan(corpus, bundle, pg_url)
    assert (again["skipped"], again["scored"], again["errors"]) == (12, 0, 0)
    assert len(table(pg_url)) == 12
    assert_summary_matches_table(again, pg_url)


def test_scan_from_s3(corpus, bundle, s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    client = boto3.client("s3")
    client.create_bucket(Bucket="uploads")
    client.create_bucket(Bucket="models")
    videos = sorted(corpus.rglob("*.mp4"))[:4]
    for video in videos:
        client.upload_file(str(video), "uploads", f"2024-06-01/{video.parent.name}/{video.name}")
    client.put_object(Bucket="uploads", Key="2024-06-01/manifest.csv", Body=b"path,label\n")
    for part in bundle.iterdir():
        client.upload_file(str(part), "models", f"detector/{part.name}")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    first = scan("s3://uploads/2024-06-01/", "s3://models/detector", db_url)
    assert (first["status"], first["videos_seen"], first["scored"]) == ("succeeded", 4, 4)
    rows = table(db_url)
    assert sorted(r["video_uri"] for r in rows) == sorted(
        f"s3://uploads/2024-06-01/{v.parent.name}/{v.name}" for v in videos
    )
    for row in rows:
        key = row["video_uri"].removeprefix("s3://uploads/")
        head = client.head_object(Bucket="uploads", Key=key)
        etag = head["ETag"].strip('"')
        assert row["content_version"] == f"etag:{etag}:size:{head['ContentLength']}"
    assert_summary_matches_table(first, db_url)

    again = scan("s3://uploads/2024-06-01/", "s3://models/detector", db_url)
    assert (again["videos_seen"], again["skipped"], again["scored"]) == (4, 4, 0)
    assert len(table(db_url)) == 4


def test_dask_run_gives_the_same_rows_as_the_local_run(corpus, bundle, tmp_path):
    from dask.distributed import LocalCluster

    local_db = f"sqlite:///{tmp_path / 'local.db'}"
    dask_db = f"sqlite:///{tmp_path / 'dask.db'}"
    local = scan(corpus, bundle, local_db)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        on_dask = scan(
            corpus,
            bundle,
            dask_db,
            "--runner=DaskRunner",
            f"--dask_client_address={cluster.scheduler_address}",
        )

    # Rows in against rows out: every listed video has its row, none was dropped.
    assert on_dask["status"] == "succeeded"
    assert on_dask["videos_seen"] == 12
    assert on_dask["scored"] + on_dask["errors"] == 12
    assert_summary_matches_table(on_dask, dask_db)

    def by_video(db_url):
        return {r["video_uri"]: r for r in table(db_url)}

    local_rows, dask_rows = by_video(local_db), by_video(dask_db)
    assert dask_rows.keys() == local_rows.keys()
    same = ("content_version", "model_version", "status", "flagged", "frames_analyzed", "width")
    for uri, row in dask_rows.items():
        assert {k: row[k] for k in same} == {k: local_rows[uri][k] for k in same}
        assert row["score"] == pytest.approx(local_rows[uri]["score"], abs=1e-4)
    assert (local["scored"], local["flagged"]) == (on_dask["scored"], on_dask["flagged"])
