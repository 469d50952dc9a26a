-- Session lifecycle: refresh-token rotation with reuse detection, revocation with a reason,
-- idle and absolute lifetimes, a per-user cap, and room for HOT activity updates.

-- Revocation keeps the row (a tombstone) until cleanup, so a revoked token is reported as
-- revoked rather than unknown. `rotated_at` is the time of the last rotation.
ALTER TABLE auth.user_sessions
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text,
    ADD COLUMN rotated_at     timestamptz,
    ADD CONSTRAINT user_sessions_revoked_reason_check
        CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)
               AND revoked_reason IN ('user', 'token_reused', 'evicted'));

-- Leave free space in every page so that activity updates (which touch no indexed column)
-- stay on the same page: heap-only tuple (HOT) updates, with no index writes.
ALTER TABLE auth.user_sessions SET (fillfactor = 80);

COMMENT ON COLUMN auth.user_sessions.revoked_at IS
    'When the session was revoked (database clock); NULL while it is usable.';
COMMENT ON COLUMN auth.user_sessions.revoked_reason IS
    'Why it was revoked: user (logout), token_reused (theft suspected) or evicted (per-user cap).';
COMMENT ON COLUMN auth.user_sessions.rotated_at IS 'When the refresh token was last rotated.';

-- Every refresh token a session has replaced, so that presenting one again is recognised:
-- inside the grace window it yields the same successor, after it the session is revoked.
CREATE TABLE auth.session_token_history (
    token_hash     varchar(64) NOT NULL,
    session_id     uuid        NOT NULL,
    successor_hash varchar(64) NOT NULL,
    replaced_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_token_history_pkey PRIMARY KEY (token_hash),
    CONSTRAINT session_token_history_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES auth.user_sessions (id) ON DELETE CASCADE,
    CONSTRAINT session_token_history_token_hash_check
        CHECK (token_hash ~ '^[0-9a-f]{64}$' AND successor_hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX session_token_history_session_id_idx
    ON auth.session_token_history (session_id);

COMMENT ON TABLE auth.session_token_history IS
    'Refresh token hashes a session has rotated away from. Deleted with the session.';
COMMENT ON COLUMN auth.session_token_history.token_hash IS 'SHA-256 hex of the replaced token.';
COMMENT ON COLUMN auth.session_token_history.session_id IS 'The session that used the token.';
COMMENT ON COLUMN auth.session_token_history.successor_hash IS
    'SHA-256 hex of the token that replaced it.';
COMMENT ON COLUMN auth.session_token_history.replaced_at IS 'When it was replaced (database clock).';

-- The state of a session on the database clock: live, revoked, expired or idle_timed_out.
-- `idle_seconds` NULL means no idle timeout.
CREATE FUNCTION auth.session_state(s auth.user_sessions, idle_seconds bigint)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN s.revoked_at IS NOT NULL THEN 'revoked'
        WHEN s.expires_at <= now() THEN 'expired'
        WHEN s.last_active_at <= now() - make_interval(secs => idle_seconds) THEN 'idle_timed_out'
        ELSE 'live'
    END
$$;

COMMENT ON FUNCTION auth.session_state(auth.user_sessions, bigint) IS
    'live, revoked, expired or idle_timed_out, on the database clock.';

-- Creates a session, holding the user's live sessions to `max_sessions` (NULL: no cap).
-- At the cap it revokes the least recently active sessions (`evict`) or raises a check
-- violation named user_sessions_per_user_cap. The user's row is locked first, so concurrent
-- logins of one user are counted one after another and the cap holds.
CREATE FUNCTION auth.create_session(
    p_user_id uuid,
    p_refresh_token_hash varchar,
    p_device_info text,
    p_ip_address inet,
    p_user_agent text,
    p_ttl_seconds bigint,
    p_idle_seconds bigint,
    p_max_sessions integer,
    p_evict boolean
)
RETURNS SETOF auth.user_sessions
LANGUAGE plpgsql
AS $$
DECLARE
    live_count bigint;
BEGIN
    IF p_max_sessions IS NOT NULL THEN
        -- No such user: nothing to lock, and the INSERT below reports the foreign key.
        PERFORM 1 FROM auth.users WHERE id = p_user_id FOR NO KEY UPDATE;
        SELECT count(*) INTO live_count
        FROM auth.user_sessions s
        WHERE s.user_id = p_user_id AND auth.session_state(s, p_idle_seconds) = 'live';
        IF live_count >= p_max_sessions THEN
            IF NOT p_evict THEN
                RAISE EXCEPTION 'user has reached the session cap'
                    USING ERRCODE = 'check_violation',
                          CONSTRAINT = 'user_sessions_per_user_cap';
            END IF;
            UPDATE auth.user_sessions
            SET revoked_at = now(), revoked_reason = 'evicted'
            WHERE id IN (
                SELECT s.id FROM auth.user_sessions s
                WHERE s.user_id = p_user_id AND auth.session_state(s, p_idle_seconds) = 'live'
                ORDER BY s.last_active_at, s.created_at, s.id
                LIMIT live_count - p_max_sessions + 1
            );
        END IF;
    END IF;
    RETURN QUERY
    INSERT INTO auth.user_sessions
        (user_id, refresh_token_hash, device_info, ip_address, user_agent, expires_at)
    VALUES
        (p_user_id, p_refresh_token_hash, p_device_info, p_ip_address, p_user_agent,
         now() + make_interval(secs => p_ttl_seconds))
    RETURNING *;
END
$$;

COMMENT ON FUNCTION auth.create_session(uuid, varchar, text, inet, text, bigint, bigint, integer, boolean) IS
    'Creates a session within the per-user cap (evicting or refusing at the cap).';

-- Rotates a refresh token in one atomic step. The caller derives the successor token from the
-- presented one (HMAC under a server key), so every caller presenting the same token brings
-- the same successor hash. Outcomes:
--   rotated         the presented token was current (or was replaced by this same successor
--                   less than `p_grace_seconds` ago): the successor is now current;
--   token_reused    the presented token was replaced earlier, or by another successor: the
--                   session is revoked (RFC 9700, 4.14.2);
--   revoked, expired, idle_timed_out: the session cannot be used;
-- and no row when no session ever held the token (unknown).
-- Concurrent callers with the same token queue on the session's row lock; each statement of
-- this function takes a new snapshot, so the ones that wait see the first one's rotation.
CREATE FUNCTION auth.rotate_session(
    p_presented_hash varchar,
    p_successor_hash varchar,
    p_idle_seconds bigint,
    p_grace_seconds bigint
)
RETURNS TABLE (outcome text, session auth.user_sessions)
LANGUAGE plpgsql
AS $$
DECLARE
    s auth.user_sessions;
    h auth.session_token_history;
BEGIN
    UPDATE auth.user_sessions u
    SET refresh_token_hash = p_successor_hash, rotated_at = now(), last_active_at = now()
    WHERE u.refresh_token_hash = p_presented_hash
      AND auth.session_state(u, p_idle_seconds) = 'live'
    RETURNING * INTO s;
    IF FOUND THEN
        INSERT INTO auth.session_token_history (token_hash, session_id, successor_hash)
        VALUES (p_presented_hash, s.id, p_successor_hash);
        RETURN QUERY SELECT 'rotated'::text, s;
        RETURN;
    END IF;

    SELECT * INTO s FROM auth.user_sessions u WHERE u.refresh_token_hash = p_presented_hash;
    IF FOUND THEN
        RETURN QUERY SELECT auth.session_state(s, p_idle_seconds), s;
        RETURN;
    END IF;

    SELECT * INTO h FROM auth.session_token_history t WHERE t.token_hash = p_presented_hash;
    IF NOT FOUND THEN
        RETURN; -- unknown: no row
    END IF;

    SELECT * INTO s FROM auth.user_sessions u WHERE u.id = h.session_id FOR UPDATE;
    IF auth.session_state(s, p_idle_seconds) <> 'live' THEN
        RETURN QUERY SELECT auth.session_state(s, p_idle_seconds), s;
    ELSIF h.successor_hash = p_successor_hash
          AND s.refresh_token_hash = p_successor_hash
          AND h.replaced_at > now() - make_interval(secs => p_grace_seconds) THEN
        RETURN QUERY SELECT 'rotated'::text, s;
    ELSE
        UPDATE auth.user_sessions u
        SET revoked_at = now(), revoked_reason = 'token_reused'
        WHERE u.id = s.id
        RETURNING * INTO s;
        RETURN QUERY SELECT 'token_reused'::text, s;
    END IF;
END
$$;

COMMENT ON FUNCTION auth.rotate_session(varchar, varchar, bigint, bigint) IS
    'Rotates a refresh token atomically, with a grace window and reuse detection.';

-- Classifies a presented token without changing anything: the read-only counterpart of
-- rotate_session (a replaced token inside the grace window counts as live).
CREATE FUNCTION auth.validate_session(
    p_presented_hash varchar,
    p_idle_seconds bigint,
    p_grace_seconds bigint
)
RETURNS TABLE (outcome text, session auth.user_sessions)
LANGUAGE sql STABLE
AS $$
    SELECT auth.session_state(s, p_idle_seconds), s
    FROM auth.user_sessions s
    WHERE s.refresh_token_hash = p_presented_hash
    UNION ALL
    SELECT CASE
               WHEN auth.session_state(s, p_idle_seconds) <> 'live'
                   THEN auth.session_state(s, p_idle_seconds)
               WHEN s.refresh_token_hash = h.successor_hash
                    AND h.replaced_at > now() - make_interval(secs => p_grace_seconds)
                   THEN 'live'
               ELSE 'token_reused'
           END,
           s
    FROM auth.session_token_history h
    JOIN auth.user_sessions s ON s.id = h.session_id
    WHERE h.token_hash = p_presented_hash
    LIMIT 1
$$;

COMMENT ON FUNCTION auth.validate_session(varchar, bigint, bigint) IS
    'Classifies a presented token (live, revoked, expired, idle_timed_out, token_reused); no row if unknown.';
