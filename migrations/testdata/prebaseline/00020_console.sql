-- The web console's sign-in sessions, and the index of its overview's
-- failures.
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
-- SELECT on every table), so no grant changes here.

-- +goose Up
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

-- console_session_start opens a session for p_ttl and deletes the expired
-- ones; it returns when the new one expires.
-- +goose StatementBegin
CREATE FUNCTION console_session_start(p_token_hash bytea, p_principal text, p_role text, p_key_fingerprint bytea, p_ttl interval)
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    DELETE FROM console_session WHERE expires_at <= now();
    INSERT INTO console_session (token_hash, principal, role, key_fingerprint, expires_at)
    VALUES (p_token_hash, p_principal, p_role, p_key_fingerprint, now() + p_ttl)
    RETURNING expires_at;
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION console_session_start(bytea, text, text, bytea, interval) FROM PUBLIC;

-- console_session_end ends a session (sign-out); it says whether there was
-- one.
-- +goose StatementBegin
CREATE FUNCTION console_session_end(p_token_hash bytea) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH d AS (DELETE FROM console_session WHERE token_hash = p_token_hash RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d);
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION console_session_end(bytea) FROM PUBLIC;

-- The overview counts each app's actions that failed in the last hour.
-- Without this index that read every failed action ever kept (the state
-- index has them by creation, not by end: 270 ms at a million actions,
-- growing with history); with it, the last hour's failures only, from the
-- index alone. Only failed actions have an entry, so nothing else pays
-- for it: the move into failed already updates the state index.
CREATE INDEX action_failed_idx ON action (finished_at) INCLUDE (app_id) WHERE state = 'failed';

SELECT grant_roles();

-- +goose Down
DROP INDEX action_failed_idx;
DROP FUNCTION console_session_end(bytea);
DROP FUNCTION console_session_start(bytea, text, text, bytea, interval);
DROP TABLE console_session;
