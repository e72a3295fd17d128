-- A request record can end ABSENT: Khoros keeps no record under its id.
-- An answer Khoros did not accept (a gateway 5xx, 429, 401, 409, or an
-- answer whose body is not one of Bot v3's) carries an x-amzn-RequestId for
-- which Bot v3 keeps no record, so such a record was PENDING for ever: the
-- reconciler kept looking for it, and its listing window grew with it. Such a
-- record is now ABSENT at once; a refusal by Bot v3 itself (its own error
-- body, which may come with an ERROR record) stays PENDING until a listing
-- that covers its time shows it or does not (then ABSENT). reason says why
-- botq, not Khoros, ended a record (ABSENT, EXPIRED).

-- +goose Up
ALTER TABLE request DROP CONSTRAINT request_state_valid,
    ADD CONSTRAINT request_state_valid CHECK (state IN ('PENDING', 'SUCCESS', 'ERROR', 'EXPIRED', 'ABSENT'));
ALTER TABLE request ADD COLUMN reason text CONSTRAINT request_reason_bounded CHECK (length(reason) <= 4096);

CREATE OR REPLACE VIEW request_history AS
SELECT r.request_id, r.app_id, r.action_id, a.kind, r.origin, r.state, r.details, r.payload, r.http_status,
       r.khoros_created_at, r.khoros_completed_at, r.khoros_updated_at, r.first_seen_at,
       r.last_checked_at, r.check_count, r.finalized_at, r.reason
FROM request r
LEFT JOIN action a ON a.id = r.action_id;

-- +goose Down
DROP VIEW request_history;
CREATE VIEW request_history AS
SELECT r.request_id, r.app_id, r.action_id, a.kind, r.origin, r.state, r.details, r.payload, r.http_status,
       r.khoros_created_at, r.khoros_completed_at, r.khoros_updated_at, r.first_seen_at,
       r.last_checked_at, r.check_count, r.finalized_at
FROM request r
LEFT JOIN action a ON a.id = r.action_id;
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_auditor') THEN
        GRANT SELECT ON request_history TO botq_auditor;
    END IF;
END $$;
-- +goose StatementEnd
UPDATE request SET state = 'EXPIRED' WHERE state = 'ABSENT';
ALTER TABLE request DROP COLUMN reason;
ALTER TABLE request DROP CONSTRAINT request_state_valid,
    ADD CONSTRAINT request_state_valid CHECK (state IN ('PENDING', 'SUCCESS', 'ERROR', 'EXPIRED'));
