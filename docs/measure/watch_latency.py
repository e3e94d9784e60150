"""Upload-to-row latency of ``deeptrust watch``: one upload every few seconds, p50 and p95.

Reproduces the watcher's figures in docs/performance.md. A moto server on 127.0.0.1 stands in
for S3 and SQS (the bucket notifies the queue as on AWS); the watcher runs as a user runs it, in
a process of its own, with its defaults but the model. Latency is from the moment an upload's
PUT returned to its row's ``scanned_at``. Then the watcher idles with an empty queue, and the
CPU its process uses meanwhile is measured (its decoder children, idle too, are not counted).
From the checkout, with the dev requirements::

    deeptrust synth /tmp/corpus --videos 16 --seed 1
    deeptrust train /tmp/corpus --out /tmp/bundle --backbone-weights random
    python docs/measure/watch_latency.py /tmp/corpus /tmp/bundle --uploads 40 --every 5 \
        -- --precision mixed_bfloat16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the watcher's test harness: moto, bucket, process

from moto.server import ThreadedMotoServer  # noqa: E402
from watching import Watcher, notifying_bucket, wait_for  # noqa: E402

from pipelines.store import database  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) that process ``pid`` and its waited-for children used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def scanned_at(db_url: str) -> dict[str, float]:
    engine = database.connect(db_url)
    try:
        results = database.Tables.reflect(engine).results
        with engine.connect() as conn:
            rows = conn.execute(results.select()).mappings().all()
    except Exception:  # no tables yet
        return {}
    finally:
        engine.dispose()
    return {r["video_uri"]: r["scanned_at"].replace(tzinfo=UTC).timestamp() for r in rows}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("corpus", type=Path)
    args.add_argument("bundle", type=Path)
    args.add_argument("--uploads", type=int, default=40)
    args.add_argument("--every", type=float, default=5.0, help="seconds between uploads")
    args.add_argument("--idle-s", type=float, default=30.0, help="idle time to measure CPU")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    options = args.parse_args(argv[:split])
    options.watch_options = argv[split + 1 :]  # after --: options for deeptrust watch
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    work = Path(tempfile.mkdtemp(prefix="watch-latency-"))
    db_url = f"sqlite:///{work / 'watch.db'}"
    uploads = notifying_bucket(f"http://{host}:{port}")
    videos = sorted(options.corpus.rglob("*.mp4"))
    watcher = Watcher(uploads, options.bundle.resolve(), db_url, work, *options.watch_options)
    try:
        watcher.wait_until_alive()
        s3, sent = uploads.s3, {}
        for number in range(options.uploads):
            started = time.monotonic()
            key = f"latency/{number:04d}{videos[number % len(videos)].suffix}"
            s3.upload_file(str(videos[number % len(videos)]), uploads.bucket, key)
            sent[f"s3://{uploads.bucket}/{key}"] = time.time()
            time.sleep(max(0.0, options.every - (time.monotonic() - started)))
        rows = wait_for(
            lambda: (found := scanned_at(db_url)).keys() >= sent.keys() and found,
            300,
            "every row",
        )
        idle_cpu = cpu_seconds(watcher.process.pid)
        time.sleep(options.idle_s)  # an idle watcher: nothing in the queue
        idle_cpu = cpu_seconds(watcher.process.pid) - idle_cpu
        assert watcher.stop() == 0, watcher.log
    finally:
        watcher.close()
        server.stop()
    latencies = [rows[uri] - at for uri, at in sent.items()]
    print(
        json.dumps(
            {
                "uploads": options.uploads,
                "watch_options": options.watch_options,
                "every_s": options.every,
                "p50_s": round(statistics.median(latencies), 2),
                "p95_s": round(percentile(latencies, 0.95), 2),
                "max_s": round(max(latencies), 2),
                "min_s": round(min(latencies), 2),
                "idle_cpu_percent": round(100 * idle_cpu / options.idle_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
