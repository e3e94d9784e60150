-- Schema version 1: one moderation row per video, content version and model version, and one
-- row per scan. Plain SQL that SQLite and PostgreSQL both run unchanged; times are UTC.

CREATE TABLE moderation_results (
    video_uri TEXT NOT NULL,
    content_version TEXT NOT NULL,
    model_version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    scanned_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scored', 'error')),
    score DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    flagged BOOLEAN,
    segments TEXT,
    frames_analyzed INTEGER,
    duration_s DOUBLE PRECISION,
    width INTEGER,
    height INTEGER,
    fps DOUBLE PRECISION,
    error_reason TEXT,
    error_detail TEXT,
    review_status TEXT CHECK (review_status IN ('pending', 'confirmed', 'dismissed')),
    PRIMARY KEY (video_uri, content_version, model_version)
);

CREATE INDEX moderation_results_run ON moderation_results (run_id);

CREATE INDEX moderation_results_review ON moderation_results (flagged, review_status);

CREATE TABLE scan_runs (
    run_id TEXT PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    input_uri TEXT NOT NULL,
    model_version TEXT NOT NULL,
    runner TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'incomplete', 'failed')),
    videos_seen INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    scored INTEGER NOT NULL DEFAULT 0,
    flagged INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0
);
