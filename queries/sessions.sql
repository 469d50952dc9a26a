--: AuthUserSession(device_info?, ip_address?, user_agent?, revoked_at?, revoked_reason?, rotated_at?)
--: UserDevice(device_info?, ip_address?)
--: LiveSession(device_info?, ip_address?, user_agent?)
--: SessionOutcome(device_info?, ip_address?, user_agent?, revoked_at?, revoked_reason?, rotated_at?)
--: SessionActivity()
--: SessionStats()

--! create_session (device_info?, ip_address?, user_agent?, idle_seconds?, max_sessions?) : AuthUserSession
--- Creates a session that expires `ttl_seconds` after now (database clock), storing only the hash
--- of its refresh token. With `max_sessions`, the user's live sessions are held to that cap:
--- at the cap the least recently active are revoked (`evict`) or the call fails with a check
--- violation named `user_sessions_per_user_cap`. Returns the full row.
SELECT id, user_id, refresh_token_hash, device_info, ip_address, user_agent,
    last_active_at, expires_at, created_at, revoked_at, revoked_reason, rotated_at
FROM auth.create_session(:user_id, :refresh_token_hash, :device_info, :ip_address, :user_agent,
    :ttl_seconds::bigint, :idle_seconds::bigint, :max_sessions::integer, :evict::boolean);

--! get_session_by_token_hash (idle_seconds?) : LiveSession
--- Finds the live session holding this refresh token hash: not revoked, `expires_at > now()`,
--- and (with `idle_seconds`) active within that many seconds. The hot path: returns only what
--- the caller uses (no hash, no revocation columns, which are NULL for a live session).
SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE refresh_token_hash = :refresh_token_hash
  AND expires_at > now()
  AND revoked_at IS NULL
  AND (last_active_at > now() - make_interval(secs => :idle_seconds::bigint)) IS NOT FALSE;

--! get_user_sessions (idle_seconds?) : UserDevice
--- Lists a user's live sessions, most recently active first. Never returns the token hash or the
--- raw user agent.
SELECT id, device_info, ip_address, last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE user_id = :user_id
  AND expires_at > now()
  AND revoked_at IS NULL
  AND (last_active_at > now() - make_interval(secs => :idle_seconds::bigint)) IS NOT FALSE
ORDER BY last_active_at DESC, id;

--! update_session_activity (ip_address?, idle_seconds?) : SessionActivity
--- Records activity on a live session, writing only when `last_active_at` is at least
--- `min_interval_seconds` old or the client's address changed; most calls write nothing.
--- Returns the activity time and whether it was written, or no row when the session is not live.
WITH live AS (
    SELECT id, last_active_at, ip_address
    FROM auth.user_sessions
    WHERE id = :id
      AND expires_at > now()
      AND revoked_at IS NULL
      AND (last_active_at > now() - make_interval(secs => :idle_seconds::bigint)) IS NOT FALSE
), touched AS (
    UPDATE auth.user_sessions s
    SET last_active_at = now(),
        ip_address = coalesce(:ip_address, live.ip_address)
    FROM live
    WHERE s.id = live.id
      AND (live.last_active_at <= now() - make_interval(secs => :min_interval_seconds::bigint)
           OR live.ip_address IS DISTINCT FROM coalesce(:ip_address, live.ip_address))
    RETURNING s.last_active_at
)
SELECT coalesce((SELECT last_active_at FROM touched), live.last_active_at) AS last_active_at,
    EXISTS (SELECT 1 FROM touched) AS written
FROM live;

--! revoke_session
--- Revokes one session, only when it belongs to the given user. Returns its id, or no row when
--- there is no such unrevoked session of that user.
UPDATE auth.user_sessions
SET revoked_at = now(), revoked_reason = 'user'
WHERE id = :id
  AND user_id = :user_id
  AND revoked_at IS NULL
RETURNING id;

--! revoke_all_sessions_except_current
--- Revokes every session of a user except the current one. Returns how many were revoked.
WITH revoked AS (
    UPDATE auth.user_sessions
    SET revoked_at = now(), revoked_reason = 'user'
    WHERE user_id = :user_id
      AND id <> :current_id
      AND revoked_at IS NULL
    RETURNING 1
)
SELECT count(*) AS revoked FROM revoked;

--! revoke_all_user_sessions
--- Revokes every session of a user. Returns how many were revoked.
WITH revoked AS (
    UPDATE auth.user_sessions
    SET revoked_at = now(), revoked_reason = 'user'
    WHERE user_id = :user_id
      AND revoked_at IS NULL
    RETURNING 1
)
SELECT count(*) AS revoked FROM revoked;

--! delete_expired_sessions (idle_seconds?)
--- Deletes every session that is past `expires_at` or (with `idle_seconds`) idle for longer.
--- Revoked sessions stay, as tombstones that report "revoked", until they expire. Returns how
--- many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE expires_at <= now()
       OR last_active_at <= now() - make_interval(secs => :idle_seconds::bigint)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_expired_sessions_batch
--- Deletes up to `batch_size` sessions past `expires_at`, oldest expiry first (walking the expiry
--- index), skipping rows another cleaner holds, and re-checking the expiry inside the delete.
--- Several cleaners can run at once without deadlock; lookups never wait for them. Returns how
--- many were deleted.
WITH doomed AS (
    SELECT id
    FROM auth.user_sessions
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT :batch_size::bigint
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM auth.user_sessions s
    USING doomed
    WHERE s.id = doomed.id
      AND s.expires_at <= now()
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_idle_sessions_batch
--- Deletes up to `batch_size` unexpired sessions idle for at least `idle_seconds`, skipping rows
--- another cleaner holds and re-checking idleness inside the delete. `last_active_at` is in no
--- index (to keep activity updates HOT), so this scans. Returns how many were deleted.
WITH doomed AS (
    SELECT id
    FROM auth.user_sessions
    WHERE last_active_at <= now() - make_interval(secs => :idle_seconds::bigint)
    LIMIT :batch_size::bigint
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM auth.user_sessions s
    USING doomed
    WHERE s.id = doomed.id
      AND s.last_active_at <= now() - make_interval(secs => :idle_seconds::bigint)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! session_stats (idle_seconds?) : SessionStats
--- Sessions in total, live, expired, revoked; users with sessions; the largest per-user count of
--- live sessions; table and index sizes in bytes (the token history included).
WITH per_user AS (
    SELECT user_id,
        count(*) FILTER (
            WHERE expires_at > now() AND revoked_at IS NULL
              AND (last_active_at > now() - make_interval(secs => :idle_seconds::bigint)) IS NOT FALSE
        ) AS live,
        count(*) FILTER (WHERE expires_at <= now()) AS expired,
        count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked,
        count(*) AS total
    FROM auth.user_sessions
    GROUP BY user_id
)
SELECT coalesce(sum(total), 0)::bigint AS total,
    coalesce(sum(live), 0)::bigint AS live,
    coalesce(sum(expired), 0)::bigint AS expired,
    coalesce(sum(revoked), 0)::bigint AS revoked,
    count(*) AS users,
    coalesce(max(live), 0)::bigint AS max_live_per_user,
    (pg_table_size('auth.user_sessions') + pg_table_size('auth.session_token_history'))::bigint
        AS table_bytes,
    (pg_indexes_size('auth.user_sessions') + pg_indexes_size('auth.session_token_history'))::bigint
        AS index_bytes
FROM per_user;

--! count_user_sessions (idle_seconds?)
--- Counts a user's live sessions (not revoked, not expired, not idle).
SELECT count(*) AS live
FROM auth.user_sessions
WHERE user_id = :user_id
  AND expires_at > now()
  AND revoked_at IS NULL
  AND (last_active_at > now() - make_interval(secs => :idle_seconds::bigint)) IS NOT FALSE;

--! rotate_session (idle_seconds?) : SessionOutcome
--- Rotates a refresh token in one atomic step (see auth.rotate_session): `outcome` is rotated,
--- token_reused (the session is now revoked), revoked, expired or idle_timed_out; no row when
--- no session ever held the token.
SELECT r.outcome, (r.session).id, (r.session).user_id, (r.session).refresh_token_hash,
    (r.session).device_info, (r.session).ip_address, (r.session).user_agent,
    (r.session).last_active_at, (r.session).expires_at, (r.session).created_at,
    (r.session).revoked_at, (r.session).revoked_reason, (r.session).rotated_at
FROM auth.rotate_session(:presented_hash, :successor_hash, :idle_seconds::bigint,
    :grace_seconds::bigint) r;

--! validate_session (idle_seconds?) : SessionOutcome
--- Classifies a presented token without changing anything: live (a token replaced less than
--- `grace_seconds` ago by the current one counts as live), token_reused, revoked, expired or
--- idle_timed_out; no row when no session ever held the token.
SELECT r.outcome, (r.session).id, (r.session).user_id, (r.session).refresh_token_hash,
    (r.session).device_info, (r.session).ip_address, (r.session).user_agent,
    (r.session).last_active_at, (r.session).expires_at, (r.session).created_at,
    (r.session).revoked_at, (r.session).revoked_reason, (r.session).rotated_at
FROM auth.validate_session(:presented_hash, :idle_seconds::bigint, :grace_seconds::bigint) r;
