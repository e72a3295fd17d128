-- An enqueue no longer locks its app's and its kind's rows.
--
-- action's foreign keys to app and kind_config made every INSERT take a
-- KEY SHARE lock on both rows. Concurrent enqueues of one app share those
-- locks, so Postgres records each row's lockers as a multixact: WAL and
-- work on every enqueue, for a check that cannot fail. action_before_insert
-- already refuses an unknown app or kind (with the column and a hint), and
-- action_history_guard refuses to change an action's app or kind. What the
-- keys added is that an app or kind with history cannot be deleted or
-- renamed; that is now a rule of its own: apps and kinds are never deleted
-- or renamed (the audit history names them; pause an app instead). The
-- rule has no exception, so that it needs no lock: an exception for rows
-- without history would race with an enqueue that has not committed yet.
--
-- request keeps its key to app: its records are written by botq's result
-- writer a batch at a time, not row by row by bots.

-- +goose Up
ALTER TABLE action DROP CONSTRAINT action_app_id_fkey;
ALTER TABLE action DROP CONSTRAINT action_kind_fkey;

-- +goose StatementBegin
CREATE FUNCTION history_key_kept() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_TABLE_NAME = 'app' THEN
        RAISE EXCEPTION 'botq: app % is named by the audit history and is never deleted or renamed',
            quote_literal(OLD.id) USING ERRCODE = '23503', HINT = 'pause the app instead (botq app pause)';
    END IF;
    RAISE EXCEPTION 'botq: kind % is named by the audit history and is never deleted or renamed',
        quote_literal(to_jsonb(OLD) ->> 'kind') USING ERRCODE = '23503';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER app_kept BEFORE DELETE ON app
    FOR EACH ROW EXECUTE FUNCTION history_key_kept();
CREATE TRIGGER app_id_kept BEFORE UPDATE OF id ON app
    FOR EACH ROW WHEN (NEW.id <> OLD.id) EXECUTE FUNCTION history_key_kept();
CREATE TRIGGER kind_config_kept BEFORE DELETE ON kind_config
    FOR EACH ROW EXECUTE FUNCTION history_key_kept();
CREATE TRIGGER kind_config_kind_kept BEFORE UPDATE OF kind ON kind_config
    FOR EACH ROW WHEN (NEW.kind <> OLD.kind) EXECUTE FUNCTION history_key_kept();

-- +goose Down
DROP TRIGGER kind_config_kind_kept ON kind_config;
DROP TRIGGER kind_config_kept ON kind_config;
DROP TRIGGER app_id_kept ON app;
DROP TRIGGER app_kept ON app;
DROP FUNCTION history_key_kept();
ALTER TABLE action ADD CONSTRAINT action_kind_fkey FOREIGN KEY (kind) REFERENCES kind_config (kind);
ALTER TABLE action ADD CONSTRAINT action_app_id_fkey FOREIGN KEY (app_id) REFERENCES app (id);
