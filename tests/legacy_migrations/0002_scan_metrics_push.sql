-- Schema version 2: whether each scan's metrics reached the Prometheus Pushgateway.
-- metrics_push is NULL while the run is going, then 'pushed', 'failed' (metrics_push_error says
-- why; the scan's rows are unaffected) or 'disabled' (no Pushgateway was configured).

ALTER TABLE scan_runs ADD COLUMN metrics_push TEXT
    CHECK (metrics_push IN ('pushed', 'failed', 'disabled'));

ALTER TABLE scan_runs ADD COLUMN metrics_push_error TEXT;
