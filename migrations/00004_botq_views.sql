-- botq's views: the audit views that botq_auditor reads, and the status view
-- of a bot's own actions that botq_enqueuer reads (granted by botq_roles).
--
-- `running` is derived from River's job state: River's fetch commit is the
-- durable "being worked" marker, so botq does not write it a second time.

-- +goose Up

-- Views for auditors: what was asked, what was tried, what Khoros said, and
-- what operators and botq did.
CREATE VIEW action_history AS
SELECT a.id AS action_id,
       a.app_id,
       a.kind,
       CASE WHEN a.state IN ('queued', 'retrying') AND j.state = 'running' THEN 'running' ELSE a.state END AS state,
       a.lane,
       a.idempotency_key,
       payload_redacted(a.payload) AS payload,
       a.replay_of,
       a.attempt_count,
       a.request_id,
       r.state AS request_state,
       r.details AS request_details,
       a.last_error,
       a.created_at,
       a.created_by,
       a.updated_at,
       a.finished_at,
       a.possibly_sent
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id;

CREATE VIEW attempt_history AS
SELECT t.id AS attempt_id, t.action_id, a.app_id, a.kind, t.number, t.started_at, t.duration_ms,
       t.wire_sent, t.http_status, t.request_id, t.outcome, t.error, t.response_excerpt, t.worker
FROM attempt t
JOIN action a ON a.id = t.action_id;

CREATE VIEW request_history AS
SELECT r.request_id, r.app_id, r.action_id, a.kind, r.origin, r.state, r.details, r.payload, r.http_status,
       r.khoros_created_at, r.khoros_completed_at, r.khoros_updated_at, r.first_seen_at,
       r.last_checked_at, r.check_count, r.finalized_at, r.reason
FROM request r
LEFT JOIN action a ON a.id = r.action_id;

CREATE VIEW event_log AS
SELECT id AS event_id, at, app_id, action_id, kind, actor, reason, before, after
FROM event;

-- action_status is what an enqueuer may read: the status of the actions it
-- inserted itself (created_by defaults to the inserting role and is not among
-- the columns it may set). security_barrier keeps a caller's functions from
-- seeing rows the filter hides. possibly_sent is there because a bot that
-- finds its action cancelled must not take that as "not sent" when it is set.
CREATE VIEW action_status WITH (security_barrier) AS
SELECT a.id AS action_id,
       a.app_id,
       a.kind,
       a.idempotency_key,
       a.lane,
       CASE WHEN a.state IN ('queued', 'retrying') AND j.state = 'running' THEN 'running' ELSE a.state END AS state,
       a.replay_of,
       a.attempt_count,
       a.request_id,
       r.state AS request_state,
       a.last_error,
       a.created_at,
       a.updated_at,
       a.finished_at,
       a.possibly_sent
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id
WHERE a.created_by = current_user;

-- +goose Down
DROP VIEW action_status;
DROP VIEW event_log;
DROP VIEW request_history;
DROP VIEW attempt_history;
DROP VIEW action_history;
