-- Session lifecycle: login within a per-user cap, refresh-token rotation with reuse
-- detection, and the liveness rule every statement shares.
--
-- Rules that keep every function distributable (Citus) and every statement routable to one
-- shard or partition: each statement filters `user_id = <argument>`; liveness is an IMMUTABLE
-- function of scalar columns and an explicit time (no whole-row arguments, no STABLE calls
-- with column arguments); no LANGUAGE sql function reads these tables.

-- The state of a session at time `p_at`: live, revoked, expired or idle_timed_out.
-- `p_idle_seconds` NULL means no idle timeout.
CREATE FUNCTION auth.session_state(
    p_revoked_at timestamptz,
    p_expires_at timestamptz,
    p_last_active_at timestamptz,
    p_idle_seconds bigint,
    p_at timestamptz
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_revoked_at IS NOT NULL THEN 'revoked'
        WHEN p_expires_at <= p_at THEN 'expired'
        WHEN p_at - p_last_active_at >= make_interval(secs => p_idle_seconds) THEN 'idle_timed_out'
        ELSE 'live'
    END
$$;

COMMENT ON FUNCTION auth.session_state(timestamptz, timestamptz, timestamptz, bigint, timestamptz) IS
    'live, revoked, expired or idle_timed_out at the given time.';

-- Whether a session is live at time `p_at`: the same rule as session_state, as a predicate the
-- planner inlines into WHERE clauses.
CREATE FUNCTION auth.session_is_live(
    p_revoked_at timestamptz,
    p_expires_at timestamptz,
    p_last_active_at timestamptz,
    p_idle_seconds bigint,
    p_at timestamptz
)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_revoked_at IS NULL
       AND p_expires_at > p_at
       AND (p_at - p_last_active_at < make_interval(secs => p_idle_seconds)) IS NOT FALSE
$$;

COMMENT ON FUNCTION auth.session_is_live(timestamptz, timestamptz, timestamptz, bigint, timestamptz) IS
    'True when session_state(...) would say live.';

-- Creates a session, holding the user's live sessions to `p_max_sessions` (NULL: no cap).
-- At the cap it revokes the least recently active sessions (`p_evict`; `evicted` says how
-- many) or raises SQLSTATE AS001. The user's row is locked first, so concurrent logins of one user are counted one
-- after another and the cap holds.
CREATE FUNCTION auth.create_session(
    p_user_id uuid,
    p_id uuid,
    p_generation integer,
    p_refresh_token_hash varchar,
    p_device_info text,
    p_ip_address inet,
    p_user_agent text,
    p_ttl_seconds bigint,
    p_idle_seconds bigint,
    p_max_sessions integer,
    p_evict boolean
)
RETURNS TABLE (
    id uuid,
    user_id uuid,
    device_info text,
    ip_address inet,
    user_agent text,
    last_active_at timestamptz,
    expires_at timestamptz,
    created_at timestamptz,
    evicted bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := now();
    v_live bigint;
    v_evicted bigint := 0;
BEGIN
    IF p_max_sessions IS NOT NULL THEN
        -- No such user: nothing to lock, and the INSERT below reports the foreign key.
        PERFORM 1 FROM auth.users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
        SELECT count(*) INTO v_live
        FROM auth.user_sessions s
        WHERE s.user_id = p_user_id
          AND s.revoked_at IS NULL
          AND auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at, p_idle_seconds, v_now);
        IF v_live >= p_max_sessions THEN
            IF NOT p_evict THEN
                RAISE EXCEPTION 'user has reached the session cap'
                    USING ERRCODE = 'AS001';
            END IF;
            -- `revoked_at IS NULL` is checked again on the newest version of each row, so a
            -- logout that commits while this waits for the row keeps its reason.
            UPDATE auth.user_sessions s
            SET revoked_at = v_now, revoked_reason = 'evicted'
            WHERE s.user_id = p_user_id
              AND s.revoked_at IS NULL
              AND s.id IN (
                  SELECT e.id FROM auth.user_sessions e
                  WHERE e.user_id = p_user_id
                    AND e.revoked_at IS NULL
                    AND auth.session_is_live(e.revoked_at, e.expires_at, e.last_active_at,
                                             p_idle_seconds, v_now)
                  ORDER BY e.last_active_at, e.created_at, e.id
                  LIMIT v_live - p_max_sessions + 1
              );
            GET DIAGNOSTICS v_evicted = ROW_COUNT;
        END IF;
    END IF;
    RETURN QUERY
    INSERT INTO auth.user_sessions AS s
        (user_id, id, generation, refresh_token_hash, device_info, ip_address, user_agent,
         last_active_at, expires_at, created_at)
    VALUES
        (p_user_id, p_id, p_generation, p_refresh_token_hash, p_device_info, p_ip_address,
         p_user_agent, v_now, v_now + make_interval(secs => p_ttl_seconds), v_now)
    RETURNING s.id, s.user_id, s.device_info, s.ip_address, s.user_agent, s.last_active_at,
              s.expires_at, s.created_at, v_evicted;
END
$$;

COMMENT ON FUNCTION auth.create_session(uuid, uuid, integer, varchar, text, inet, text, bigint, bigint, integer, boolean) IS
    'Creates a session within the per-user cap (evicting, or refusing with SQLSTATE AS001).';

-- Rotates the refresh token of session (`p_user_id`, `p_id`) in one atomic step, with one
-- row written (a HOT update: no indexed column changes) and no history kept. The caller has
-- verified the presented token's tag (an HMAC under a server key, over the ids, generation,
-- key id and chain), so the token is genuine: one the server issued for this session. The
-- caller derives the successor from it, so every caller presenting the same token under the
-- same key brings the same successor. `outcome`:
--   rotated         the presented token (generation `p_generation`) was current: the
--                   successor is now current;
--   grace           the presented token is the parent of the current one, replaced less than
--                   `p_grace_seconds` ago (a concurrent or retried refresh): `current_hash`
--                   is the current token's hash, for the caller to hand out the same successor
--                   (it was signed by the active key of whichever instance rotated first);
--   token_reused    the presented token is an older one of this session (the parent after the
--                   grace window, or any earlier generation) and the session was live: it is
--                   now revoked (RFC 9700, 4.14.2), also when a logout or a deletion committed
--                   while this waited for the row (the reuse is reported all the same);
--   revoked, expired, idle_timed_out: the session cannot be used (and, for an older token,
--                   can no longer be revoked);
-- and no row when the session does not exist, or the token claims the current generation
-- with another hash or a later one (not a token of this session's chain).
-- `state` is the session's state after the call ('revoked' when it was deleted meanwhile); the
-- ids are always the arguments. No branch depends on how many generations back the presented
-- token is: the cost of a call is one row read and at most one row written.
-- Concurrent callers queue on the row lock; each statement of this function takes a new
-- snapshot, so the ones that waited see the first one's rotation.
CREATE FUNCTION auth.rotate_session(
    p_user_id uuid,
    p_id uuid,
    p_generation integer,
    p_presented_hash varchar,
    p_successor_hash varchar,
    p_idle_seconds bigint,
    p_grace_seconds bigint
)
RETURNS TABLE (
    outcome text,
    state text,
    current_hash varchar,
    id uuid,
    user_id uuid,
    device_info text,
    ip_address inet,
    user_agent text,
    last_active_at timestamptz,
    expires_at timestamptz,
    created_at timestamptz,
    revoked_reason text
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := now();
    s record;
    v_revoked record;
BEGIN
    UPDATE auth.user_sessions u
    SET refresh_token_hash = p_successor_hash,
        generation = u.generation + 1,
        rotated_at = v_now,
        last_active_at = v_now
    WHERE u.user_id = p_user_id
      AND u.id = p_id
      AND u.generation = p_generation
      AND u.refresh_token_hash = p_presented_hash
      AND auth.session_is_live(u.revoked_at, u.expires_at, u.last_active_at, p_idle_seconds, v_now)
    RETURNING u.* INTO s;
    IF FOUND THEN
        outcome := 'rotated';
        state := auth.session_state(s.revoked_at, s.expires_at, s.last_active_at,
                                    p_idle_seconds, v_now);
    ELSE
        SELECT u.* INTO s FROM auth.user_sessions u WHERE u.user_id = p_user_id AND u.id = p_id;
        IF NOT FOUND THEN
            RETURN; -- unknown session
        END IF;
        state := auth.session_state(s.revoked_at, s.expires_at, s.last_active_at,
                                    p_idle_seconds, v_now);
        IF s.generation = p_generation THEN
            IF s.refresh_token_hash IS DISTINCT FROM p_presented_hash THEN
                RETURN; -- the current generation with another hash: not this chain's token
            END IF;
            outcome := state;
        ELSIF s.generation > p_generation THEN
            IF state <> 'live' THEN
                outcome := state;
            ELSIF s.generation - 1 = p_generation
                  AND s.rotated_at > v_now - make_interval(secs => p_grace_seconds) THEN
                outcome := 'grace';
                current_hash := s.refresh_token_hash;
            ELSE
                outcome := 'token_reused';
                UPDATE auth.user_sessions u
                SET revoked_at = v_now, revoked_reason = 'token_reused'
                WHERE u.user_id = p_user_id AND u.id = p_id AND u.revoked_at IS NULL
                RETURNING u.* INTO v_revoked;
                IF NOT FOUND THEN
                    -- Revoked or deleted while this waited for the row: its newest version.
                    SELECT u.* INTO v_revoked
                    FROM auth.user_sessions u WHERE u.user_id = p_user_id AND u.id = p_id;
                END IF;
                IF v_revoked.id IS NULL THEN
                    state := 'revoked'; -- deleted meanwhile: s is the version read above
                ELSE
                    s := v_revoked;
                    state := auth.session_state(s.revoked_at, s.expires_at, s.last_active_at,
                                                p_idle_seconds, v_now);
                END IF;
            END IF;
        ELSE
            RETURN; -- a later generation than the session's: not a token it issued
        END IF;
    END IF;
    id := p_id;
    user_id := p_user_id;
    device_info := s.device_info;
    ip_address := s.ip_address;
    user_agent := s.user_agent;
    last_active_at := s.last_active_at;
    expires_at := s.expires_at;
    created_at := s.created_at;
    revoked_reason := s.revoked_reason;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION auth.rotate_session(uuid, uuid, integer, varchar, varchar, bigint, bigint) IS
    'Rotates a verified refresh token atomically, with a grace window and reuse detection.';

-- Sizes of the session table and its indexes in bytes, whatever its layout: distributed by
-- Citus (summed over shards), hash-partitioned (summed over partitions) or a plain table.
CREATE FUNCTION auth.session_storage(OUT table_bytes bigint, OUT index_bytes bigint)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE $citus$
            SELECT citus_table_size(p.logicalrelid)::bigint,
                   (citus_total_relation_size(p.logicalrelid) - citus_table_size(p.logicalrelid))::bigint
            FROM pg_catalog.pg_dist_partition p
            WHERE p.logicalrelid = 'auth.user_sessions'::regclass
        $citus$ INTO table_bytes, index_bytes;
        IF table_bytes IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint,
           coalesce(sum(pg_indexes_size(t.relid)), 0)::bigint
    INTO table_bytes, index_bytes
    FROM pg_partition_tree('auth.user_sessions') t;
END
$$;

COMMENT ON FUNCTION auth.session_storage() IS
    'Heap and index bytes of auth.user_sessions, on one node, partitioned, or on Citus.';
