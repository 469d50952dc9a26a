--: AuthUserSession(device_info?, ip_address?, user_agent?)
--: UserDevice(device_info?, ip_address?)

--! create_session (device_info?, ip_address?, user_agent?) : AuthUserSession
--- Creates a session that expires `ttl_seconds` after now (database clock). Stores only the hash
--- of the refresh token. Returns the full row.
INSERT INTO auth.user_sessions
    (user_id, refresh_token_hash, device_info, ip_address, user_agent, expires_at)
VALUES
    (:user_id, :refresh_token_hash, :device_info, :ip_address, :user_agent,
     now() + make_interval(secs => :ttl_seconds::bigint))
RETURNING id, user_id, refresh_token_hash, device_info, ip_address, user_agent,
    last_active_at, expires_at, created_at;

--! get_session_by_token_hash : AuthUserSession
--- Finds the live session holding this refresh token hash. Expired sessions are never returned.
SELECT id, user_id, refresh_token_hash, device_info, ip_address, user_agent,
    last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE refresh_token_hash = :refresh_token_hash
  AND expires_at > now();

--! get_user_sessions : UserDevice
--- Lists a user's live sessions, most recently active first. Never returns the token hash or the
--- raw user agent.
SELECT id, device_info, ip_address, last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE user_id = :user_id
  AND expires_at > now()
ORDER BY last_active_at DESC, id;

--! update_session_activity (ip_address?)
--- Records activity on a live session: sets `last_active_at` to now and, when given, the client's
--- current IP address. Returns the new activity time, or no row when the session is gone or expired.
UPDATE auth.user_sessions
SET last_active_at = now(),
    ip_address = coalesce(:ip_address, ip_address)
WHERE id = :id
  AND expires_at > now()
RETURNING last_active_at;

--! delete_session
--- Deletes one session, only when it belongs to the given user. Returns the deleted id, or no row.
DELETE FROM auth.user_sessions
WHERE id = :id
  AND user_id = :user_id
RETURNING id;

--! delete_all_sessions_except_current
--- Deletes every session of a user except the current one. Returns how many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE user_id = :user_id
      AND id <> :current_id
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_all_user_sessions
--- Deletes every session of a user. Returns how many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE user_id = :user_id
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_expired_sessions
--- Deletes every expired session. Returns how many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE expires_at <= now()
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! count_user_sessions
--- Counts a user's live (unexpired) sessions.
SELECT count(*) AS live
FROM auth.user_sessions
WHERE user_id = :user_id
  AND expires_at > now();
