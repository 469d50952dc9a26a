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
-- Citus hides the setting from pg_settings (GUC_NO_SHOW_ALL), so its existence is asked of
-- current_setting, which gives NULL for a setting that does not exist.
SELECT set_config('citus.enable_unsafe_triggers', 'on', true)
WHERE current_setting('citus.enable_unsafe_triggers', true) IS NOT NULL;

-- On Citus a statement that modifies several shards commits them with two-phase commit, and
-- PostgreSQL refuses to PREPARE a transaction that ran NOTIFY ("cannot PREPARE a transaction
-- that has executed LISTEN, UNLISTEN, or NOTIFY"): such a statement would fail if it raised a
-- notification. The multi-shard statements of this library are cleanup's deletes (expired and
-- idle sessions, and tombstones, which raise nothing). So on a shard (where Citus is loaded,
-- a table named `user_sessions_<shard id>`) a deletion made as part of a distributed
-- transaction (the coordinator opened a transaction block on the worker and gave it a
-- distributed transaction number, as it does for every multi-shard modification and inside an
-- explicit transaction block) raises nothing. Sessions deleted as expired or idle have ended
-- by their own times, which every instance decides itself (`LiveSessions::check`); an instance
-- with activity of its own not yet written learns the end when it writes that activity. A
-- deletion by one routed statement (a user deleted, its sessions by cascade) has no such
-- transaction and is still raised, and so is every revocation. A table that is not distributed
-- keeps every notification, on one PostgreSQL with or without Citus loaded.
CREATE FUNCTION auth.notify_session_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME <> 'user_sessions'
       AND current_setting('citus.enable_unsafe_triggers', true) IS NOT NULL THEN
        -- Checked apart: get_current_transaction_id exists only where Citus is installed.
        IF (SELECT transaction_number <> 0 FROM get_current_transaction_id()) THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify('auth_sessions_ended', OLD.user_id::text || ' ' || OLD.id::text);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION auth.notify_session_ended() IS
    'Trigger: NOTIFY auth_sessions_ended, payload "<user_id> <id>", for a session that ended.';

-- Each trigger is created by a statement of its own (EXECUTE): on a table distributed already,
-- Citus copies CREATE TRIGGER onto the shards and the workers by sending the text of the
-- statement it came in, and the migration runner sends this whole file as one text, which a
-- worker refuses ("cannot insert multiple commands into a prepared statement", seen on Citus
-- 13.0).
DO $$
BEGIN
    EXECUTE $sql$
        CREATE TRIGGER user_sessions_revoked_notify
            AFTER UPDATE OF revoked_at ON auth.user_sessions
            FOR EACH ROW
            WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
            EXECUTE FUNCTION auth.notify_session_ended()
    $sql$;
    EXECUTE $sql$
        CREATE TRIGGER user_sessions_deleted_notify
            AFTER DELETE ON auth.user_sessions
            FOR EACH ROW
            WHEN (OLD.revoked_at IS NULL)
            EXECUTE FUNCTION auth.notify_session_ended()
    $sql$;
END
$$;
