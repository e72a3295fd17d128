-- ANALYZE skips the bodies (issue 12). No query filters or joins on an
-- action's payload, a request's payload or details, or an attempt's response
-- excerpt, so their statistics were never used, but ANALYZE (autovacuum's, or
-- the benchmark's) read and sorted every sampled jsonb payload: 45% of an
-- ANALYZE of 50,000 actions (414-535 ms -> 288-290 ms), which the drain of
-- 50,000 ran six times.

-- +goose Up
ALTER TABLE action ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE request ALTER COLUMN payload SET STATISTICS 0, ALTER COLUMN details SET STATISTICS 0;
ALTER TABLE attempt ALTER COLUMN response_excerpt SET STATISTICS 0;

-- +goose Down
ALTER TABLE action ALTER COLUMN payload SET STATISTICS -1;
ALTER TABLE request ALTER COLUMN payload SET STATISTICS -1, ALTER COLUMN details SET STATISTICS -1;
ALTER TABLE attempt ALTER COLUMN response_excerpt SET STATISTICS -1;
