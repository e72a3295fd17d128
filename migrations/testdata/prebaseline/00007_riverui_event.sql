-- Operators' writes through River UI (cancel, retry, delete jobs; pause or
-- resume queues) are recorded as events of kind riverui, like every other
-- operator write.

-- +goose Up
ALTER TABLE event DROP CONSTRAINT event_kind_valid;
ALTER TABLE event ADD CONSTRAINT event_kind_valid CHECK (kind IN (
    'replay', 'cancel', 'pause', 'resume', 'throttle',
    'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
    'registration', 'mode_change', 'health_change',
    'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
    'app_upsert', 'retention', 'riverui'));

-- +goose Down
-- The older schema has no such kind: its events go with it.
DELETE FROM event WHERE kind = 'riverui';
ALTER TABLE event DROP CONSTRAINT event_kind_valid;
ALTER TABLE event ADD CONSTRAINT event_kind_valid CHECK (kind IN (
    'replay', 'cancel', 'pause', 'resume', 'throttle',
    'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
    'registration', 'mode_change', 'health_change',
    'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
    'app_upsert', 'retention'));
