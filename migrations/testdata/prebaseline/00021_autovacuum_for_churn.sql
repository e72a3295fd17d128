-- Autovacuum for the tables every action churns.
--
-- Each action inserts a River job and updates it twice (running, then
-- completed or parked), is itself updated two or three times (sent, then
-- succeeded), and leaves a request record updated once when it settles:
-- river_job, action and request gather dead tuples at about the rate of
-- actions. Postgres' default is to vacuum a table once its dead tuples pass
-- 20% of its rows (autovacuum_vacuum_scale_factor 0.2), so the longer botq
-- keeps its history, the longer each table waits: at 60 actions/s with a
-- day of River jobs kept (5 million rows), river_job would gather a million
-- dead tuples, hours of churn, before a vacuum, and River's fetch and
-- botq's lane and pending-record scans would wade through them. Here each
-- is vacuumed once its dead tuples pass 1% (river_job) or 2% of its rows
-- plus 1,000, and analyzed as often, so the cost of a vacuum follows the
-- churn, not the size of the history. attempt is only inserted into:
-- vacuuming it after 5% new rows keeps its visibility map current, so
-- index-only scans stay index-only.
--
-- Storage parameters take a SHARE UPDATE EXCLUSIVE lock, which blocks no
-- read or write. See docs/operations.md (Postgres for the churn).

-- +goose Up
ALTER TABLE river_job SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
ALTER TABLE action SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE request SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE attempt SET (autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_insert_threshold = 1000);

-- +goose Down
ALTER TABLE river_job RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE action RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE request RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE attempt RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold);
