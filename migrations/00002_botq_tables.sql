-- botq's tables, with their constraints, indexes and the rows botq needs.
--
-- This and the next three files are botq's baseline schema: its tables
-- here, then its functions and triggers (botq_functions), its views
-- (botq_views) and its roles' grants (botq_roles).
-- Everything is created unqualified in the schema goose runs in (search_path
-- is "<schema>, pg_temp"; see migrations.go). River's tables (river_job etc.)
-- already exist here (version 1).

-- +goose Up

-- app: one row per Bot v3 appId.
CREATE TABLE app (
    id                 text PRIMARY KEY
                       CONSTRAINT app_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'),
    region             text NOT NULL DEFAULT 'US'
                       CONSTRAINT app_region_valid CHECK (region IN ('US', 'EMEA', 'APAC', 'CUSTOM')),
    -- base_url is set for region CUSTOM only (the simulator, a proxy). Plain
    -- http is accepted for loopback addresses only: tokens travel in headers.
    base_url           text
                       CONSTRAINT app_base_url_valid CHECK (
                           (region = 'CUSTOM') = (base_url IS NOT NULL)
                           AND (base_url IS NULL
                                OR base_url ~ '^https://[^/\s]+'
                                OR base_url ~ '^http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/.*)?$')),
    company_key        text NOT NULL DEFAULT '',
    -- The token is AES-GCM ciphertext (nonce || sealed) under the key named by
    -- token_key_id; the key itself lives only in the environment.
    token_ciphertext   bytea,
    token_key_id       text,
    token_expires_at   timestamptz,
    token_refreshed_at timestamptz,
    token_version      integer NOT NULL DEFAULT 0,
    -- Fleet-wide limits (every botq process shares them through this row).
    rate_limit         double precision CONSTRAINT app_rate_limit_positive CHECK (rate_limit IS NULL OR rate_limit > 0),
    rate_burst         integer NOT NULL DEFAULT 1 CONSTRAINT app_rate_burst_positive CHECK (rate_burst >= 1),
    rate_tat           timestamptz, -- GCRA theoretical arrival time of the next call
    concurrency_limit  integer CONSTRAINT app_concurrency_limit_positive CHECK (concurrency_limit IS NULL OR concurrency_limit > 0),
    paused_until       timestamptz,
    pause_reason       text,
    throttled_until    timestamptz,
    lane_on_failure    text NOT NULL DEFAULT 'continue'
                       CONSTRAINT app_lane_on_failure_valid CHECK (lane_on_failure IN ('continue', 'block')),
    health_status      text CONSTRAINT app_health_status_valid CHECK (health_status IN ('HEALTHY', 'DEGRADED', 'DOWN')),
    health_checked_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- kind_config: the action kinds botq executes, with the River settings the SQL
-- enqueue path needs (it cannot read botq's config file). `botq serve` writes
-- the configured values here at start-up.
CREATE TABLE kind_config (
    kind         text PRIMARY KEY,
    max_attempts smallint NOT NULL DEFAULT 25 CONSTRAINT kind_config_max_attempts_positive CHECK (max_attempts > 0),
    queue        text NOT NULL DEFAULT 'botq'
                 CONSTRAINT kind_config_queue_valid CHECK (queue ~ '^[a-z0-9]+([_|-]?[a-z0-9]+)*$'),
    priority     smallint NOT NULL DEFAULT 1 CONSTRAINT kind_config_priority_valid CHECK (priority BETWEEN 1 AND 4),
    -- idempotent: a blind resend is harmless. The others (a second customer
    -- message, a second note) are reconciled before any resend.
    idempotent   boolean NOT NULL,
    -- conversation: the payload addresses a conversation (coordinate + author).
    conversation boolean NOT NULL
);

INSERT INTO kind_config (kind, idempotent, conversation) VALUES
    ('respond', false, true),
    ('form', false, true),
    ('note', false, true),
    ('control', true, true),
    ('priority', true, true),
    ('tag', true, true),
    ('tag_remove', true, true),
    ('workqueue', true, true),
    ('resolve', true, true),
    ('author_attributes', true, true),
    ('author_update', true, true),
    ('registration_create', true, false),
    ('registration_update', true, false),
    ('registration_delete', true, false),
    ('mode', true, false),
    -- A refresh whose answer was lost left us without the new token; the old
    -- one works for the 10-minute grace, so refreshing again is the only
    -- recovery and is safe.
    ('token_refresh', true, false),
    ('token_revoke', true, false);

-- channel_limit: the longest text botq accepts per network, checked at
-- enqueue. These are botq's assumptions (Khoros documents none); edit the rows
-- to suit. '*' applies to networks without a row.
CREATE TABLE channel_limit (
    network_key    text PRIMARY KEY,
    max_text_chars integer NOT NULL CONSTRAINT channel_limit_positive CHECK (max_text_chars > 0)
);

INSERT INTO channel_limit (network_key, max_text_chars) VALUES
    ('*', 10000),
    ('twitter', 10000),
    ('facebook', 2000),
    ('instagram', 1000),
    ('whatsapp', 4096),
    ('sms', 1600),
    ('apple', 10000),
    ('googlemessages', 3072),
    ('wechat', 2048),
    ('smooch', 4096),
    ('brandmessenger', 10000),
    ('lia', 10000);

-- action: what a bot asked for. The columns up to created_by are what was
-- enqueued, which never changes (action_history_guard); the others are its
-- outcome, written by botq.
CREATE TABLE action (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          text NOT NULL REFERENCES app (id),
    kind            text NOT NULL REFERENCES kind_config (kind),
    payload         jsonb NOT NULL DEFAULT '{}',
    -- The default, chr(1), is a key no bot can give (keys with control
    -- characters are refused): it tells the insert trigger that no key was
    -- given, so it makes a random one and skips the lookup a given key
    -- needs. A random default made here could not be told from a bot's key.
    -- NULL stays refused: a bot's key expression that is NULL by mistake must
    -- not silently lose its idempotency.
    idempotency_key text NOT NULL DEFAULT chr(1),
    lane            text,
    state           text NOT NULL DEFAULT 'queued'
                    CONSTRAINT action_state_valid CHECK (state IN ('queued', 'retrying', 'sent', 'succeeded', 'failed', 'unknown', 'cancelled')),
    -- The River job's id is taken from River's own sequence by the BEFORE
    -- INSERT trigger (never from the caller), so the AFTER INSERT trigger can
    -- create the job without a second write to this row.
    river_job_id    bigint NOT NULL UNIQUE,
    -- replay_of is the id of the action a replay was made from, kept as it
    -- was enqueued, and not a foreign key: retention may delete the original
    -- while the replay is kept (a key's ON DELETE SET NULL would be a change
    -- to what was enqueued, which action_history_guard refuses, and keeping
    -- the original until its replays go would keep message text past the
    -- retention period; the replay holds the same payload). Only botq's
    -- replay sets it (the enqueuer role may not), and it locks the original
    -- in the transaction that inserts the replay, while retention skips
    -- locked rows, so a replay never names an action that did not exist when
    -- it was made.
    replay_of       bigint,
    attempt_count   integer NOT NULL DEFAULT 0,
    release_count   integer NOT NULL DEFAULT 0,
    request_id      text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL DEFAULT current_user,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- possibly_sent marks an action cancelled while its send's fate was
    -- unknown: the message may have reached Khoros (a cancel of an unknown
    -- action asks Khoros first; this is what it sets when Khoros could not
    -- answer). A replay of it needs the operator's explicit
    -- allow_possibly_sent. It is set only together with the move into
    -- cancelled and never cleared (action_possibly_sent_guard): clearing it
    -- would let a plain replay send the message again. It is not among the
    -- enqueued columns action_history_guard keeps, and no statement of the
    -- result writer sets it, so that trigger's UPDATE OF list keeps it off
    -- the hot path.
    possibly_sent   boolean NOT NULL DEFAULT false,
    CONSTRAINT action_idempotency_key_unique UNIQUE (app_id, idempotency_key),
    CONSTRAINT action_finished_at_terminal CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'cancelled'))),
    CONSTRAINT action_possibly_sent_cancelled CHECK (NOT possibly_sent OR state = 'cancelled')
);

COMMENT ON COLUMN action.idempotency_key IS
    'unique per app; the default chr(1) means none given: the insert trigger makes a random key';

CREATE INDEX action_app_created_idx ON action (app_id, created_at);
CREATE INDEX action_state_created_idx ON action (state, created_at);
CREATE INDEX action_created_idx ON action (created_at);
CREATE INDEX action_replay_of_idx ON action (replay_of) WHERE replay_of IS NOT NULL;
-- The next action of a lane: the oldest queued one.
CREATE INDEX action_lane_queued_idx ON action (app_id, lane, id) WHERE state = 'queued' AND lane IS NOT NULL;
-- Ambiguous sends waiting for the reconciler.
CREATE INDEX action_unknown_idx ON action (app_id, updated_at) WHERE state = 'unknown';

-- action_transition: the action state machine. The guard trigger
-- action_state_guard, built from these rows (botq_functions), refuses every
-- state change not listed here, whoever makes it.
CREATE TABLE action_transition (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);

INSERT INTO action_transition (from_state, to_state) VALUES
    ('queued', 'retrying'), ('queued', 'sent'), ('queued', 'succeeded'), ('queued', 'failed'),
    ('queued', 'unknown'), ('queued', 'cancelled'),
    ('retrying', 'queued'), ('retrying', 'sent'), ('retrying', 'succeeded'), ('retrying', 'failed'),
    ('retrying', 'unknown'), ('retrying', 'cancelled'),
    ('unknown', 'queued'), ('unknown', 'sent'), ('unknown', 'succeeded'), ('unknown', 'failed'),
    ('unknown', 'cancelled'),
    ('sent', 'succeeded'), ('sent', 'failed');

CREATE TABLE attempt (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id        bigint NOT NULL REFERENCES action (id) ON DELETE CASCADE,
    number           integer NOT NULL,
    river_job_id     bigint NOT NULL,
    job_attempt      integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL CONSTRAINT attempt_duration_nonnegative CHECK (duration_ms >= 0),
    wire_sent        boolean NOT NULL,
    http_status      integer,
    request_id       text,
    outcome          text NOT NULL CONSTRAINT attempt_outcome_valid CHECK (outcome IN ('ok', 'retry', 'snooze', 'cancel', 'unknown')),
    error            text,
    response_excerpt text CONSTRAINT attempt_response_excerpt_bounded CHECK (length(response_excerpt) <= 2048),
    worker           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attempt_number_unique UNIQUE (action_id, number)
);

CREATE INDEX attempt_created_idx ON attempt (created_at);
CREATE INDEX attempt_request_idx ON attempt (request_id) WHERE request_id IS NOT NULL;

-- request: what botq knows of a Bot v3 request record. A record ends ABSENT
-- when Khoros keeps no record under its id: an answer Khoros did not accept
-- (a gateway 5xx, 429, 401, 409, or a body that is not one of Bot v3's)
-- carries a request id for which Bot v3 keeps none, and a refusal by Bot v3
-- itself stays PENDING until a listing that covers its time shows it or does
-- not. reason says why botq, not Khoros, ended a record (ABSENT, EXPIRED).
CREATE TABLE request (
    request_id           text PRIMARY KEY,
    app_id               text NOT NULL REFERENCES app (id),
    action_id            bigint REFERENCES action (id) ON DELETE SET NULL,
    origin               text NOT NULL DEFAULT 'BOT' CONSTRAINT request_origin_valid CHECK (origin IN ('BOT', 'KHOROS')),
    state                text NOT NULL CONSTRAINT request_state_valid CHECK (state IN ('PENDING', 'SUCCESS', 'ERROR', 'EXPIRED', 'ABSENT')),
    details              jsonb,
    -- payload is kept for KHOROS-origin records (what Khoros delivered to the
    -- bot); for BOT-origin ones the action holds what was sent.
    payload              jsonb,
    http_status          integer,
    khoros_created_at    timestamptz,
    khoros_completed_at  timestamptz,
    khoros_updated_at    timestamptz,
    first_seen_at        timestamptz NOT NULL DEFAULT now(),
    last_checked_at      timestamptz,
    next_check_at        timestamptz,
    check_count          integer NOT NULL DEFAULT 0,
    finalized_at         timestamptz,
    reason               text CONSTRAINT request_reason_bounded CHECK (length(reason) <= 4096),
    CONSTRAINT request_finalized_iff_final CHECK ((state = 'PENDING') = (finalized_at IS NULL))
);

CREATE INDEX request_pending_idx ON request (app_id, next_check_at) WHERE state = 'PENDING';
CREATE INDEX request_app_seen_idx ON request (app_id, first_seen_at);
CREATE INDEX request_state_seen_idx ON request (state, first_seen_at);
CREATE INDEX request_seen_idx ON request (first_seen_at);
CREATE INDEX request_action_idx ON request (action_id) WHERE action_id IS NOT NULL;

-- No query filters or joins on these bodies, so ANALYZE keeps no statistics
-- of them: it would read and sort every sampled jsonb value, the largest
-- part of an ANALYZE of action, for statistics no plan uses.
ALTER TABLE action ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE request ALTER COLUMN payload SET STATISTICS 0, ALTER COLUMN details SET STATISTICS 0;
ALTER TABLE attempt ALTER COLUMN response_excerpt SET STATISTICS 0;

-- event: operators' and botq's own writes, for the audit log. riverui is an
-- operator's write through River UI (cancel, retry or delete jobs; pause or
-- resume queues).
CREATE TABLE event (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    app_id    text,
    action_id bigint,
    kind      text NOT NULL CONSTRAINT event_kind_valid CHECK (kind IN (
                  'replay', 'cancel', 'pause', 'resume', 'throttle',
                  'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
                  'registration', 'mode_change', 'health_change',
                  'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
                  'app_upsert', 'retention', 'riverui', 'grant', 'grant_revoke')),
    actor     text NOT NULL,
    reason    text,
    before    jsonb,
    after     jsonb
);

CREATE INDEX event_at_idx ON event (at);
CREATE INDEX event_app_at_idx ON event (app_id, at);
CREATE INDEX event_action_idx ON event (action_id) WHERE action_id IS NOT NULL;

-- lane: one row per lane that has unfinished actions. head_action_id is the one
-- action of the lane whose River job may run; the others wait in River's
-- `pending` state. The row lock serialises concurrent inserts into one lane.
CREATE TABLE lane (
    app_id         text NOT NULL,
    lane           text NOT NULL,
    head_action_id bigint,
    blocked_by     bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, lane)
);

-- app_slot: leases for the per-app concurrency limit, one row per allowed
-- in-flight call. A lease expires, so a killed process never holds a slot for
-- ever.
CREATE TABLE app_slot (
    app_id      text NOT NULL REFERENCES app (id) ON DELETE CASCADE,
    slot        integer NOT NULL,
    holder      bigint,
    lease_until timestamptz,
    PRIMARY KEY (app_id, slot)
);

-- app_slot_wait: jobs parked because their app's slots were all taken.
--
-- River fetches jobs in (priority, scheduled_at, id) order. A job that
-- snoozed briefly to wait for a slot would get a scheduled_at later than
-- every job already queued: in a backlog, an app at its limit would go to the
-- back of the whole queue after its first turn, and its free slots would
-- stand idle until the other apps' backlog was worked off. Such a job parks
-- instead: it records itself here with the scheduled_at it had, and snoozes
-- for long (River's completer makes it scheduled, without using an attempt).
-- A freed slot makes the oldest parked job available again with its old
-- scheduled_at (app_slot_wake): it comes back at the head of the queue, where
-- it was. If nothing wakes it, the long snooze ends anyway.
CREATE TABLE app_slot_wait (
    app_id       text NOT NULL REFERENCES app (id) ON DELETE CASCADE,
    river_job_id bigint NOT NULL,
    scheduled_at timestamptz NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, river_job_id)
);

-- inbound_cursor: per app, the time up to which Khoros' listings of
-- KHOROS-origin records (the webhook deliveries it made to the bot) have been
-- read and stored, so that records created during a pause, a restart, a
-- leader change or any longer gap are read too. It is advanced in the
-- transaction that stores the records, so a crash between the listing and
-- the commit reads them again (they are upserted). A table of its own, not a
-- column of app: the app row is updated by every call (the rate limiter), and
-- the cursor's update must not hold that row's lock while a large listing is
-- stored.
CREATE TABLE inbound_cursor (
    app_id     text PRIMARY KEY REFERENCES app (id) ON DELETE CASCADE,
    -- When the last listing whose records are stored was asked for (by
    -- botq's clock); the next one reads from there, less a clock-skew
    -- margin.
    read_until timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- principal_grant holds the apps each principal may enqueue for (see
-- "Trust boundaries" in 00003_botq_functions.sql): deny by default.
CREATE TABLE principal_grant (
    principal  text NOT NULL CONSTRAINT principal_grant_principal_valid
               CHECK (char_length(principal) BETWEEN 1 AND 200 AND principal !~ '[[:cntrl:]]'),
    -- '*' grants every app (operators' API keys).
    app_id     text NOT NULL,
    scope      text NOT NULL DEFAULT 'conversation' CONSTRAINT principal_grant_scope_valid
               CHECK (scope IN ('conversation', 'all')),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, app_id)
);

-- console_session holds the web console's sign-in sessions.
--
-- A person signs in to the console (served at / by `botq serve`) with an
-- API key of role auditor or operator and gets a session: a random token in
-- an HttpOnly cookie. Only the token's SHA-256 is kept here, so whoever
-- reads this table cannot take over a session. Sessions live in the
-- database rather than in one process so that any process with the API
-- role serves them (behind a load balancer), and a sign-out ends the
-- session everywhere.
--
-- key_fingerprint is the SHA-256 of the SHA-256 of the API key the session
-- was opened with. On every request botq checks that a configured key still
-- has that fingerprint and a role that may sign in: a key removed, replaced
-- or demoted ends its sessions at once. It is not something that can be
-- presented as a key, nor the hash botq compares keys with.
--
-- The runtime role writes sessions only through console_session_start and
-- console_session_end, which run as the schema's owner, as retention does:
-- grant_roles grants every function of the schema to botq_runtime (and
-- SELECT on every table).
CREATE TABLE console_session (
    token_hash      bytea PRIMARY KEY CONSTRAINT console_session_token_hash_sha256 CHECK (octet_length(token_hash) = 32),
    principal       text NOT NULL CONSTRAINT console_session_principal_valid
                    CHECK (char_length(principal) BETWEEN 1 AND 200 AND principal !~ '[[:cntrl:]]'),
    role            text NOT NULL CONSTRAINT console_session_role_valid CHECK (role IN ('auditor', 'operator')),
    key_fingerprint bytea NOT NULL CONSTRAINT console_session_key_fingerprint_sha256 CHECK (octet_length(key_fingerprint) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CONSTRAINT console_session_expires_after_created CHECK (expires_at > created_at)
);

-- Expired sessions are deleted by the next sign-in.
CREATE INDEX console_session_expires_idx ON console_session (expires_at);

-- The console's overview counts each app's actions that failed in the last
-- hour. The state index has them by creation, not by end, so without this
-- index that read every failed action ever kept, growing with the history;
-- with it, the last hour's failures only, from the index alone. Only failed
-- actions have an entry, so nothing else pays for it: the move into failed
-- already updates the state index.
CREATE INDEX action_failed_idx ON action (finished_at) INCLUDE (app_id) WHERE state = 'failed';

-- notify_bucket remembers the last 10 ms bucket in which an insert NOTIFY was
-- sent. setval is not transactional, so it works as a lock-free register:
-- per-row NOTIFY serialises commits (river-notes 2.2.1) and a debounce keeps
-- the latency without that cost; River's poll interval covers the rare wake-up
-- a debounced insert misses. See notify_due and notify_insert.
CREATE SEQUENCE notify_bucket MINVALUE 0 START WITH 0;

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
-- See docs/operations.md (Postgres for the churn).
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
DROP TABLE console_session;
DROP TABLE principal_grant;
DROP SEQUENCE notify_bucket;
DROP TABLE inbound_cursor;
DROP TABLE app_slot_wait;
DROP TABLE app_slot;
DROP TABLE lane;
DROP TABLE event;
DROP TABLE request;
DROP TABLE attempt;
DROP TABLE action_transition;
DROP TABLE action;
DROP TABLE channel_limit;
DROP TABLE kind_config;
DROP TABLE app;
