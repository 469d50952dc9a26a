-- Pushes the end of every session to the instances that keep live sessions in memory
-- (`SessionRepo::live_sessions`), with NOTIFY raised in the transaction that ends it: a change
-- that commits is pushed, one that rolls back is not.
--
-- A session ends when its row is revoked (`revoked_at` set: logout, revocation of one, all or
-- all but one, revocation by reuse detection inside auth.rotate_session, eviction at the
-- per-user cap) or deleted while unrevoked (cleanup of expired and idle sessions, deletion of
-- the user through the foreign key's cascade). Deleting a tombstone ends nothing and is not
-- pushed. A session never comes back once ended, so a listener may remember it as ended.
--
-- One notification per ended row, payload `<user_id> <id>` (73 bytes, far below NOTIFY's 8000
-- byte limit whatever the statement touches). PostgreSQL delivers a transaction's
-- notifications together at its commit, so revoking every session of a user is one burst that
-- a listener reads in one pass. Row triggers, rather than one statement trigger with
-- transition tables, because they also fire on the partitions of a partitioned table and on
-- the shards of a distributed one (Citus runs them on the worker holding the shard, whose own
-- listeners hear them: listen on every node).

-- On Citus 11 and later, a trigger on a distributed table (a database distributed before this
-- migration) is created, and copied onto every shard, only with citus.enable_unsafe_triggers
-- on; for this transaction only. Elsewhere the setting does not exist and nothing is set.
SELECT set_config(name, 'on', true) FROM pg_settings
WHERE name = 'citus.enable_unsafe_triggers';

CREATE FUNCTION auth.notify_session_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_sessions_ended', OLD.user_id::text || ' ' || OLD.id::text);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION auth.notify_session_ended() IS
    'Trigger: NOTIFY auth_sessions_ended, payload "<user_id> <id>", for a session that ended.';

CREATE TRIGGER user_sessions_revoked_notify
    AFTER UPDATE OF revoked_at ON auth.user_sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth.notify_session_ended();

CREATE TRIGGER user_sessions_deleted_notify
    AFTER DELETE ON auth.user_sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION auth.notify_session_ended();
