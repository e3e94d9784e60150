"""`deeptrust`: the command line of the DeepTrust moderation worker.

Progress goes to stderr; a command's result goes to stdout, and where a command prints JSON the
last stdout line is one JSON object, so scripts can read it with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence

from model.errors import BundleError
from pipelines.console import (
    DEFAULT_DB_URL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Bar,
    adaptive_sampling,
    add_precision_option,
    add_sampling_options,
    emit,
    progress,
    progress_bars,
    quiet,
)
from pipelines.scan.limits import add_decode_limit_options
from pipelines.store.runs import Liveness


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_synth(args: argparse.Namespace) -> int:
    from model.synth import write_corpus

    with progress_bars(Bar("wrote ", "synth", args.videos)) as report:
        made = write_corpus(args.out, args.videos, seed=args.seed, progress=report)
    fake = sum(v.label == "fake" for v in made)
    emit({"out": args.out, "videos": len(made), "real": len(made) - fake, "fake": fake})
    return EXIT_OK


def detector_config_from(args: argparse.Namespace):
    from model.config import (
        BackboneConfig,
        DecisionConfig,
        DetectorConfig,
        FaceCropConfig,
        SamplingConfig,
    )

    return DetectorConfig(
        sampling=SamplingConfig(
            frames_per_window=args.frames_per_window,
            sample_fps=args.sample_fps,
            max_windows=args.max_windows,
        ),
        face=FaceCropConfig(enabled=not args.no_face_crop),
        backbone=BackboneConfig(input_size=args.image_size),
        decision=DecisionConfig(target_fpr=args.target_fpr),
    )


def cmd_train(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from model.backbone import describe_source
    from model.train import TrainOptions, train

    options = TrainOptions(epochs=args.epochs, val_fraction=args.val_fraction, seed=args.seed)
    self_blend = self_blend_options(args)
    progress(f"train: backbone weights: {describe_source(args.backbone_weights)}")
    bars = (
        Bar("features: ", "features"),
        Bar("tuning frames: ", "tuning frames"),
        Bar("fine-tune: epoch ", "fine-tune"),
        Bar("pairs: ", "self-blend pairs"),
        Bar("train: epoch ", "epochs", args.epochs),
    )
    with tempfile.TemporaryDirectory(prefix="deeptrust-reviewed-") as workdir:
        reviewed = from_reviews(args.from_reviews, workdir)
        with progress_bars(*bars) as report:
            manifest = train(
                args.data,
                args.out,
                weights=args.backbone_weights,
                config=detector_config_from(args),
                options=options,
                self_blend=self_blend,
                cache_dir=args.cache_dir,
                progress=report,
                reviewed=reviewed.videos,
            )
    emit(
        {
            "bundle": args.out,
            "model_version": manifest["model_version"],
            "backbone_weights": manifest["backbone"]["weights_label"],
            "threshold": manifest["decision"]["threshold"],
            "validation": manifest["metrics"]["validation"],
            "from_reviews": manifest["training"]["from_reviews"],
            "reviews_left_out": len(reviewed.skipped),
        }
    )
    return EXIT_OK


def from_reviews(db_url: str | None, workdir: str):
    """The decided videos of the moderation database ``db_url`` (none without it)."""
    from pipelines.moderation.reviewed import ReviewedVideos, reviewed_videos

    if db_url is None:
        return ReviewedVideos([], [])
    from pipelines.moderation.review import open_database

    engine = open_database(db_url)
    try:
        return reviewed_videos(engine, workdir, progress)
    finally:
        engine.dispose()


def self_blend_options(args: argparse.Namespace):
    """The self-blend recipe the command line asks for, or None for labelled training."""
    if not args.self_blend:
        if args.fine_tune_from or args.self_blend_ratio is not None:
            raise ValueError("--fine-tune-from and --self-blend-ratio need --self-blend")
        return None
    from model.finetune import FineTuneOptions
    from model.train import SelfBlendOptions

    fine_tune = None
    if args.fine_tune_from:
        fine_tune = FineTuneOptions(
            args.fine_tune_from, epochs=args.fine_tune_epochs, seed=args.seed
        )
    ratio = 0.5 if args.self_blend_ratio is None else args.self_blend_ratio
    return SelfBlendOptions(variants=args.self_blend_variants, ratio=ratio, fine_tune=fine_tune)


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from model.evaluate import evaluate

    with progress_bars(Bar("features: ", "features")) as report:
        result = evaluate(
            args.data, args.model, report_dir=args.report, cache_dir=args.cache_dir, progress=report
        )
        baseline = None
        if args.baseline:
            baseline = evaluate(args.data, args.baseline, cache_dir=args.cache_dir, progress=report)
    if args.json:
        emit(result if baseline is None else result | {"baseline": baseline})
        return EXIT_OK
    shown = [result] if baseline is None else [result, baseline]
    print(f"{'model':>10}: " + "  ".join(f"{r['model_version'][:16]:>16}" for r in shown))
    print(f"{'weights':>10}: " + "  ".join(f"{r['backbone_weights'][:16]:>16}" for r in shown))
    keys = ("n", "auc", "window_auc", "frame_auc", "accuracy", "eer", "log_loss", "ap")
    for key in (*keys, "threshold"):
        cells = [
            f"{r[key]:>16.4f}" if isinstance(r[key], float) else f"{r[key]!s:>16}" for r in shown
        ]
        print(f"{key:>10}: " + "  ".join(cells))
    for r in shown:
        print(f"{'confusion':>10}: {r['confusion']} ({r['model_version'][:16]})")
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from model.bundle import load_bundle
    from model.runtime import scored_version
    from model.storage import fetch, is_s3
    from pipelines.scan.decoders import ChildDecoders
    from pipelines.scan.one_video import local_ref, score_video
    from pipelines.scan.outcomes import Failed

    adaptive = adaptive_sampling(args)
    detector, manifest = load_bundle(args.model, precision=args.precision)
    identity = {
        "video": args.video,
        "model_version": scored_version(manifest["model_version"], args.precision),
        "backbone_weights": manifest["backbone"]["weights_label"],
    }
    local = fetch(args.video)
    try:
        # Decoded as the scan decodes: in a child process, under the same limits.
        with ChildDecoders().open(detector.config, args.decode_timeout_s) as sampler:
            outcome = score_video(
                local_ref(local),
                sampler,
                detector,
                args.max_video_bytes,
                detector.config.decision,
                adaptive,
            )
    finally:
        if is_s3(args.video):
            local.unlink()
    if isinstance(outcome, Failed):
        emit(
            {
                **identity,
                "status": "error",
                "error_reason": outcome.reason,
                "error_detail": outcome.detail,
            }
        )
        return EXIT_FAILED
    emit({**identity, "status": "scored", **outcome.verdict})
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from model.export import export_bundle

    progress(
        f"export: {args.bundle} as {args.format} ({'int8' if args.int8 else 'float32'} backbone)"
    )
    emit({"out": args.out, **export_bundle(args.bundle, args.out, int8=args.int8)})
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from pipelines.scan.run import main as scan_main

    return scan_main(args.options)


def cmd_watch(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from pipelines.watch.run import main as watch_main

    return watch_main(args.options)


def cmd_demo(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from pipelines.demo import demo_bars, run_demo
    from pipelines.scan.run import ScanFailed

    try:
        with progress_bars(*demo_bars(args.videos)) as report:
            summary = run_demo(args.out, videos=args.videos, seed=args.seed, progress=report)
    except ScanFailed as err:
        progress(f"deeptrust demo: {err}")
        emit(err.summary)
        return EXIT_FAILED
    emit(summary)
    return EXIT_OK if summary["status"] == "succeeded" else EXIT_FAILED


def cmd_bench(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    if args.load:
        return load_check(args)
    if args.bank:
        return bank_bench(args)
    from pipelines.bench.suite import format_report, run_bench
    from pipelines.bench.throughput import BenchSettings

    settings = BenchSettings(
        videos=args.videos,
        video_seconds=args.video_seconds,
        image_size=args.image_size,
        precision=args.precision,
        model=args.model,
        corpus=args.corpus,
        short_seconds=args.short_seconds,
        long_seconds=args.long_seconds,
        seed=args.seed,
    )
    result = run_bench(settings, progress, with_options=args.compare_options)
    if args.json:
        emit(result)
    else:
        print(format_report(result), flush=True)
    return EXIT_OK


def bank_bench(args: argparse.Namespace) -> int:
    """``deeptrust bench --bank``: matching one video against a bank of known fakes."""
    from pipelines.bench.matching import run_bank_bench

    if args.compare_options:
        raise ValueError("--bank and --options measure different things: choose one")
    if args.bank_hashes < 1 or args.bank_queries < 1 or args.query_frames < 1:
        raise ValueError("--bank-hashes, --bank-queries and --query-frames must be at least 1")
    result = run_bank_bench(
        args.bank_hashes, args.bank_queries, args.query_frames, args.seed, progress
    )
    if args.json:
        emit(result)
    else:
        print(json.dumps(result, indent=2), flush=True)
    return EXIT_OK


def load_check(args: argparse.Namespace) -> int:
    """``deeptrust bench --load``: peak memory under load instead of throughput."""
    from pipelines.bench.load import run_load

    if args.compare_options:
        raise ValueError("--load and --options measure different things: choose one")
    result = run_load(
        args.model, args.objects, args.baseline_objects, args.work, args.image_size, progress
    )
    if args.json:
        emit(result)
    else:
        print(json.dumps(result, indent=2), flush=True)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from sqlalchemy.exc import SQLAlchemyError

    from model.bundle import detector_config, read_bundle_manifest
    from model.config import FaceCropConfig
    from pipelines.moderation.report import write_report
    from pipelines.store.database import connect

    face = FaceCropConfig()
    if args.model:
        face = detector_config(read_bundle_manifest(args.model)).face
    engine = connect(args.db)
    try:
        summary = write_report(engine, args.out, args.run, face, progress)
    except SQLAlchemyError as err:
        progress(f"deeptrust report: the database failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    finally:
        engine.dispose()
    emit(summary)
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from pipelines.moderation.review import (
        Review,
        banked_frames,
        check_review,
        expect_status,
        open_database,
        read_state,
        record_review,
    )

    reviewer = args.reviewer or os.environ.get("USER")
    if not reviewer:
        raise ValueError("who is deciding? pass --reviewer NAME (or set $USER)")
    review = Review(args.video_uri, args.decision, reviewer, args.note)
    check_review(review)
    try:
        engine = open_database(args.db)
        try:
            seen = read_state(engine, review.video_uri)
            if args.expect:
                expect_status(seen, args.expect)
            rows = record_review(engine, review, seen)
            banked = banked_frames(engine, review.video_uri, seen.content_version)
        finally:
            engine.dispose()
    except SQLAlchemyError as err:
        progress(f"deeptrust review: the database failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    if review.decision == "confirmed" and not banked:
        progress(
            f"deeptrust review: {review.video_uri} is confirmed but not banked: its rows keep no "
            "perceptual hashes (scanned before the bank existed); scan it again with --rescan "
            "and confirm it then, so copies of it are matched"
        )
    emit({**vars(review), "rows": rows, "banked_frames": banked})
    return EXIT_OK


def cmd_bank(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from pipelines.moderation.review import open_database
    from pipelines.store import bank

    rows = None
    if args.bank_command == "import":
        with open(args.file, newline="", encoding="utf-8") as handle:
            rows = bank.read_csv(handle, args.file)  # every line checked before any is written
    try:
        engine = open_database(args.db)
        try:
            if rows is not None:
                added = bank.import_rows(engine, rows)
                result = {"file": args.file, "rows": len(rows), "added": added}
            elif args.out == "-":
                written = bank.export_csv(engine, sys.stdout)
                sys.stdout.flush()
                progress(f"deeptrust bank export: {written} rows")
                return EXIT_OK
            else:
                with open(args.out, "w", newline="", encoding="utf-8") as out:
                    result = {"file": args.out, "rows": bank.export_csv(engine, out)}
        finally:
            engine.dispose()
    except SQLAlchemyError as err:
        progress(f"deeptrust bank: the database failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    emit(result)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from model.config import FaceCropConfig
    from pipelines.moderation import serve
    from pipelines.moderation.app import ServeSettings
    from pipelines.moderation.check import Checker
    from pipelines.moderation.identity import IdentityRules, parse_networks
    from pipelines.scan.limits import DecodeLimits

    if args.port < 0 or args.port > 65535:
        raise ValueError(f"--port {args.port} is not a TCP port")
    if args.claim_minutes <= 0 or args.max_upload_mb <= 0:
        raise ValueError("--claim-minutes and --max-upload-mb must be positive")
    identity = IdentityRules(
        header=args.identity_header,
        trusted=parse_networks(args.trusted_proxy),
        dev_user=args.dev_user,
    ).check()
    face, checker = FaceCropConfig(), None
    upload_bytes = int(args.max_upload_mb * (1 << 20))
    if args.model:
        _quiet_tensorflow()
        from model.bundle import detector_config, read_bundle_manifest

        face = detector_config(read_bundle_manifest(args.model)).face
        limits = DecodeLimits(max_bytes=upload_bytes, timeout_s=args.decode_timeout_s)
        checker = Checker(args.model, limits, upload_bytes)
    settings = ServeSettings(
        identity=identity,
        tokens=serve.form_tokens(),
        claim_ttl_s=args.claim_minutes * 60,
        face=face,
        checker=checker,
        keep_uploads=Path(args.keep_uploads).resolve() if args.keep_uploads else None,
    )
    if args.keep_uploads and checker is None:
        raise ValueError("--keep-uploads keeps checked videos: give --model too")
    try:
        serve.run(args.db, args.host, args.port, settings, upload_bytes)
    except SystemExit as stop:  # uvicorn's own exit when it cannot start (a taken port)
        if stop.code in (0, None):
            return EXIT_OK
        progress(f"deeptrust serve: could not serve on {args.host}:{args.port} (see above)")
        return EXIT_FAILED
    except ArgumentError as err:
        raise ValueError(f"--db is not a database URL: {err}") from err
    except SQLAlchemyError as err:
        progress(f"deeptrust serve: the database failed: {type(err).__name__}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from pipelines.store.database import connect
    from pipelines.store.migrations import migrate

    try:
        engine = connect(args.db)
    except ArgumentError as err:
        raise ValueError(f"--db is not a database URL: {err}") from err
    try:
        done = migrate(engine)
    except SQLAlchemyError as err:
        progress(f"deeptrust db upgrade: the database failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    finally:
        engine.dispose()
    if done.legacy_version is not None:
        progress(
            f"deeptrust db upgrade: adopted schema_version {done.legacy_version} "
            f"as revision {done.before} and dropped the schema_version table"
        )
    emit({"before": done.before, "after": done.after, "legacy_schema_version": done.legacy_version})
    return EXIT_OK


def cmd_runs_reap(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from pipelines.store import database, runs
    from pipelines.store.migrations import migrate

    if args.stale_after_s < 0:
        raise ValueError("--stale-after-s must not be negative")
    liveness = Liveness(stale_after_s=args.stale_after_s)
    engine = database.connect(args.db)
    try:
        migrate(engine)
        reaped = runs.reap(engine, database.Tables.reflect(engine).runs, liveness, database.ONCE)
    except SQLAlchemyError as err:
        progress(f"deeptrust runs reap: the database failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    finally:
        engine.dispose()
    emit({"abandoned": reaped})
    return EXIT_OK


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB_URL,
        help="SQLAlchemy URL of the moderation database (default: %(default)s)",
    )


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    from model.config import DecisionConfig, SamplingConfig

    defaults = SamplingConfig()
    group = parser.add_argument_group("how videos are sampled (recorded in the bundle)")
    group.add_argument("--frames-per-window", type=int, default=defaults.frames_per_window)
    group.add_argument(
        "--sample-fps",
        type=float,
        default=defaults.sample_fps,
        help="frames sampled per second of video (default: %(default)s)",
    )
    group.add_argument(
        "--max-windows",
        type=int,
        default=defaults.max_windows,
        help="cap on windows per video; long videos spread them out",
    )
    group.add_argument(
        "--image-size", type=int, default=224, help="backbone input size in pixels (at least 75)"
    )
    group.add_argument(
        "--no-face-crop",
        action="store_true",
        help="use the centre of the frame instead of MTCNN face boxes",
    )
    group.add_argument(
        "--target-fpr",
        type=float,
        default=DecisionConfig().target_fpr,
        help="false-positive rate the threshold is chosen for on validation",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeptrust",
        description="Find deepfake videos in a platform's uploads, for moderators to review.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="let TensorFlow's, absl's and Beam's start-up messages and warnings through",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "synth", help="write a labelled synthetic corpus (a fixture, not a benchmark)"
    )
    p.add_argument("out", help="output folder; gets real/*.mp4, fake/*.mp4 and manifest.csv")
    p.add_argument("--videos", type=int, required=True, help="number of videos")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train the detector and write a model bundle")
    p.add_argument("data", help="folder with real/ and fake/, or a CSV manifest (path,label)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="imagenet (download, connected machines), random (tests/demos), "
        "or a local or s3:// InceptionV3 weights file (default: %(default)s)",
    )
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cache-dir", default=default_cache_dir(), help="feature cache (default: %(default)s)"
    )
    p.add_argument(
        "--from-reviews",
        metavar="DB",
        help="also train on the moderation database's decided videos: confirmed as fakes, "
        "dismissed as reals, each only while its object still holds the bytes decided on",
    )
    blend = p.add_argument_group(
        "self-blended fakes",
        "train from real videos alone: fakes are made from the real faces themselves "
        "(DATA may hold only real/); a stopped run resumes from OUT/.checkpoint",
    )
    blend.add_argument(
        "--self-blend", action="store_true", help="make training fakes by self-blending reals"
    )
    blend.add_argument(
        "--self-blend-ratio",
        type=float,
        metavar="R",
        help="share of the fake training windows that are self-blended when DATA also has "
        "labelled fakes (default 0.5; 1 trains on self-blended fakes only)",
    )
    blend.add_argument(
        "--self-blend-variants",
        type=int,
        metavar="N",
        default=2,
        help="self-blended fakes per real window (default: %(default)s)",
    )
    blend.add_argument(
        "--fine-tune-from",
        metavar="LAYER",
        help="train the backbone from this Inception block on (mixed1..mixed10, or all) "
        "before the head; default: the backbone stays frozen",
    )
    blend.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=4,
        metavar="N",
        help="backbone epochs (default: %(default)s)",
    )
    add_detector_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="video-level metrics of a bundle on labelled videos")
    p.add_argument("data", help="folder with real/ and fake/, or a CSV manifest (path,label)")
    p.add_argument("--model", required=True, help="bundle directory or s3:// prefix")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--report", help="folder for roc.png and scores.png")
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument(
        "--baseline",
        metavar="OLD",
        help="another bundle, evaluated on the same videos and shown beside --model "
        "(JSON: under 'baseline')",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "export",
        help="the detector as LiteRT files for edge devices, checked against the bundle's scores",
    )
    p.add_argument("bundle", help="bundle directory or s3:// prefix")
    p.add_argument("--format", choices=("litert",), default="litert", help="(default: %(default)s)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantize the backbone to int8 with the bundle's calibration frames (the head "
        "stays float32)",
    )
    p.add_argument("--out", required=True, help="folder for the exported files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="a JSON verdict for one video")
    p.add_argument("video", help="local path or s3:// URI")
    p.add_argument("--model", required=True, help="bundle directory or s3:// prefix")
    add_precision_option(p, default="float32")
    add_sampling_options(p)
    add_decode_limit_options(p)
    p.set_defaults(func=cmd_score)

    # The scan's own parser (pipelines.scan) reads its options and `--help`; Beam options such as
    # --runner and --s3_endpoint_url pass through to the pipeline untouched.
    p = sub.add_parser(
        "scan",
        add_help=False,
        help="score new videos into the moderation table (a Beam pipeline; "
        "see `deeptrust scan --help`)",
    )
    p.set_defaults(func=cmd_scan, passes_options=True)

    # The watcher's own parser (pipelines.watch) reads its options and `--help`, as the scan's.
    p = sub.add_parser(
        "watch",
        add_help=False,
        help="score uploads within seconds of their arrival, from the bucket's SQS events "
        "(a streaming Beam pipeline; see `deeptrust watch --help`)",
    )
    p.set_defaults(func=cmd_watch, passes_options=True)

    p = sub.add_parser(
        "demo",
        help="the whole job offline: synthetic corpus, small model, scan into SQLite",
    )
    p.add_argument("--out", default="deeptrust-demo", help="working folder (default: %(default)s)")
    p.add_argument("--videos", type=int, default=16, help="corpus size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "bench",
        help="throughput of decoding, the model, the prototype's loop and the scan "
        "(--load: peak memory under load)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument(
        "--model", help="bundle to measure (default: one with a random backbone, made on the fly)"
    )
    p.add_argument(
        "--corpus", help="folder of videos (default: a synthetic corpus, made on the fly)"
    )
    p.add_argument(
        "--videos", type=int, default=16, help="synthetic corpus size (default: %(default)s)"
    )
    p.add_argument(
        "--video-seconds",
        type=float,
        default=30.0,
        help="length the synthetic videos are looped to (default: %(default)s)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="backbone input size of the random bundle (default: %(default)s)",
    )
    add_precision_option(p, default="auto")
    p.add_argument(
        "--short-seconds",
        type=float,
        default=10.0,
        help="length of the short video of the memory check (default: %(default)s)",
    )
    p.add_argument(
        "--long-seconds",
        type=float,
        default=600.0,
        help="length of the long video of the memory check (default: %(default)s)",
    )
    p.add_argument(
        "--options",
        dest="compare_options",  # args.options holds the scan's pass-through arguments
        action="store_true",
        help="also measure each fast-path option against its alternative (minutes more)",
    )
    p.add_argument("--seed", type=int, default=0)
    load = p.add_argument_group("--load: peak memory under load instead of throughput")
    load.add_argument(
        "--load",
        action="store_true",
        help="peak memory of the scan against the number of objects, and of decoding against "
        "a video's length and resolution, each case in a fresh process (tens of minutes)",
    )
    load.add_argument(
        "--objects", type=int, default=2000, help="objects of the large scan (default: %(default)s)"
    )
    load.add_argument(
        "--baseline-objects",
        type=int,
        default=200,
        help="objects of the baseline scan (default: %(default)s)",
    )
    load.add_argument("--work", help="folder for the inputs (default: a temporary folder)")
    matching = p.add_argument_group("--bank: matching against the bank of known fakes")
    matching.add_argument(
        "--bank",
        action="store_true",
        help="time matching one video against a synthetic bank, instead of throughput",
    )
    matching.add_argument(
        "--bank-hashes",
        type=int,
        default=100_000,
        help="hashes in the bank, frames and their mirror images (default: %(default)s)",
    )
    matching.add_argument(
        "--bank-queries", type=int, default=50, help="videos matched (default: %(default)s)"
    )
    matching.add_argument(
        "--query-frames",
        type=int,
        default=60,
        help="hashed frames per matched video, one a second (default: %(default)s)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="an HTML page of a scan's flagged videos, for moderators")
    p.add_argument("--db", required=True, help="SQLAlchemy URL of the moderation database")
    p.add_argument("--run", help="the scan's run id (default: the latest scan)")
    p.add_argument("--out", required=True, help="folder for index.html and its plots")
    p.add_argument(
        "--model",
        help="bundle whose face-crop settings the face strips use (default: the defaults)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "review",
        help="record a moderator's decision on a flagged video (refused while another moderator "
        "has claimed it in the review app)",
    )
    p.add_argument("video_uri", help="the video's URI, as the moderation table holds it")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument(
        "--confirm",
        dest="decision",
        action="store_const",
        const="confirmed",
        help="it is a deepfake",
    )
    decision.add_argument(
        "--dismiss",
        dest="decision",
        action="store_const",
        const="dismissed",
        help="it is not a deepfake",
    )
    decision.add_argument(
        "--escalate",
        dest="decision",
        action="store_const",
        const="escalated",
        help="hand it on to someone who may decide it (legal, trust and safety)",
    )
    p.add_argument("--note", help="a note kept in the review history (at most 10,000 characters)")
    p.add_argument("--reviewer", help="who decides (default: $USER)")
    p.add_argument(
        "--expect",
        choices=("pending", "confirmed", "dismissed", "escalated"),
        help="the status the decision replaces; refused (exit 2) if the video holds another "
        "(default: the status read when the command starts, so a decision made by someone "
        "else meanwhile is never overwritten)",
    )
    add_db_option(p)
    p.set_defaults(func=cmd_review)

    about = (
        "the moderators' review app and its JSON API: the queue of flagged videos, each "
        "video's player, window scores and face crops, claims and decisions (as `deeptrust "
        "review` records them), and a check of one uploaded video"
    )
    p = sub.add_parser(
        "serve",
        help="the moderators' review app (a web server)",
        description=about,
        epilog="Exit codes: 0 stopped (Ctrl+C, SIGTERM); 1 the database failed or the port is "
        "taken; 2 bad options, or --db holds no moderation table.",
    )
    add_db_option(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default: %(default)s)"
    )
    who = p.add_argument_group(
        "who the moderator is (one of --trusted-proxy or --dev-user is needed; a request "
        "naming no moderator gets 401)"
    )
    who.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="address or network (10.0.0.0/8) of the authenticating proxy; only requests from "
        "there may name the moderator (repeatable)",
    )
    who.add_argument(
        "--identity-header",
        default="X-Forwarded-User",
        help="header in which the proxy names the moderator (default: %(default)s)",
    )
    who.add_argument(
        "--dev-user",
        metavar="NAME",
        help="for a local run: every request is this moderator, and no proxy is asked",
    )
    p.add_argument(
        "--claim-minutes",
        type=float,
        default=30.0,
        help="how long a claim holds a video for its moderator (default: %(default)s)",
    )
    check = p.add_argument_group("checking one uploaded video (/check)")
    check.add_argument(
        "--model",
        help="bundle that scores uploads (without it /check is off); its face-crop settings "
        "also make the face crops",
    )
    check.add_argument(
        "--max-upload-mb",
        type=float,
        default=256.0,
        help="largest upload checked, in MiB; larger ones get 413 (default: %(default)s)",
    )
    check.add_argument(
        "--keep-uploads",
        metavar="DIR",
        help="folder where a checked video is kept when its moderator asks, with its row in the "
        "moderation table (default: uploads are never kept)",
    )
    check.add_argument(
        "--decode-timeout-s",
        type=float,
        default=120.0,
        help="seconds an upload may take to decode, as in the scan (default: %(default)s)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bank", help="the bank of known fakes: move it between platforms as CSV")
    bank_sub = p.add_subparsers(dest="bank_command", required=True, metavar="ACTION")
    p = bank_sub.add_parser(
        "export",
        help="write the bank as CSV (video_uri, content_version, time_s, quality, mirrored, pdq)",
    )
    p.add_argument("--out", default="-", help="CSV file to write (default: stdout)")
    add_db_option(p)
    p.set_defaults(func=cmd_bank)
    p = bank_sub.add_parser(
        "import",
        help="add a bank CSV's entries (every line is checked first; all or nothing)",
    )
    p.add_argument("file", help="a CSV written by `deeptrust bank export`")
    add_db_option(p)
    p.set_defaults(func=cmd_bank)

    p = sub.add_parser("db", help="operate on the moderation database's schema")
    db = p.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    about = (
        "migrate the schema to the newest revision (waits for a concurrent upgrade); "
        "prints the revision before and after"
    )
    p = db.add_parser("upgrade", help=about, description=about)
    add_db_option(p)
    p.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("runs", help="the scans recorded in scan_runs")
    runs_sub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    p = runs_sub.add_parser(
        "reap",
        help="mark running scans whose heartbeat went silent as abandoned (each scan also "
        "does this when it starts)",
    )
    add_db_option(p)
    p.add_argument(
        "--stale-after-s",
        type=float,
        default=Liveness.stale_after_s,
        help="seconds without a heartbeat after which a running scan is abandoned "
        "(default: %(default)s, the scan's --stale_after_s default)",
    )
    p.set_defaults(func=cmd_runs_reap)
    return parser


def default_cache_dir() -> str:
    from model.storage import user_cache_dir

    return str(user_cache_dir("features"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.options = rest
    if not args.verbose:
        quiet()
    try:
        return args.func(args)
    except BundleError as err:
        print(f"deeptrust {args.command}: refused model bundle: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (FileNotFoundError, ValueError) as err:
        print(f"deeptrust {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
