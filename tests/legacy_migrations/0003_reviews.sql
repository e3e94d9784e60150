-- Schema version 3: the history of moderators' decisions. moderation_results.review_status holds
-- the current decision; every decision ever made stays here, one row per moderation row decided.
-- review_id is a UUID made by the application, which SQLite and PostgreSQL both store as text.

CREATE TABLE reviews (
    review_id TEXT PRIMARY KEY,
    video_uri TEXT NOT NULL,
    content_version TEXT NOT NULL,
    model_version TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'dismissed')),
    note TEXT,
    reviewer TEXT NOT NULL,
    reviewed_at TIMESTAMP NOT NULL,
    FOREIGN KEY (video_uri, content_version, model_version)
        REFERENCES moderation_results (video_uri, content_version, model_version)
);

CREATE INDEX reviews_video ON reviews (video_uri, reviewed_at);
