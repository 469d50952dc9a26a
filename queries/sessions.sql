--: NewSessionRow(device_info?, ip_address?, user_agent?)
--: LiveSession(device_info?, ip_address?, user_agent?)
--: UserDevice(device_info?, ip_address?)
--: SessionOutcome(current_hash?, device_info?, ip_address?, user_agent?, revoked_reason?)
--: SessionActivity()
--: RevokedOthers()
--: SessionStats()
--: IdleWindow(last_user_id?, last_id?, next_user_id?, next_id?)

-- Every statement but cleanup and stats filters `user_id = :user_id`, so it reaches one shard
-- (Citus) or one partition; tests/partitioned.rs checks each plan.

--! create_session (device_info?, ip_address?, user_agent?, idle_seconds?, max_sessions?) : NewSessionRow
--- Creates session (`user_id`, `id`) at `generation`, expiring `ttl_seconds` after now (database
--- clock) and storing only the hash of its refresh token. With `max_sessions`, the user's live
--- sessions are held to that cap: at the cap the least recently active are revoked (`evict`) or
--- the call fails with SQLSTATE AS001. `evicted` counts the sessions revoked to make room.
SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at,
    evicted
FROM auth.create_session(:user_id, :id, :generation::integer, :refresh_token_hash,
    :device_info, :ip_address, :user_agent, :ttl_seconds::bigint, :idle_seconds::bigint,
    :max_sessions::integer, :evict::boolean);

--! get_session_by_token (idle_seconds?) : LiveSession
--- Finds session (`user_id`, `id`) by its primary key when it holds this refresh token hash and
--- is live: not revoked, `expires_at > now()`, and (with `idle_seconds`) active within that many
--- seconds. The hot path: returns only what the caller uses.
SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE user_id = :user_id
  AND id = :id
  AND refresh_token_hash = :refresh_token_hash
  AND auth.session_is_live(revoked_at, expires_at, last_active_at, :idle_seconds::bigint, now());

--! get_user_sessions (idle_seconds?) : UserDevice
--- Lists a user's live sessions, most recently active first, along the partial index of live
--- rows. Never returns the token hash or the raw user agent.
SELECT id, device_info, ip_address, last_active_at, expires_at, created_at
FROM auth.user_sessions
WHERE user_id = :user_id
  AND revoked_at IS NULL
  AND expires_at > now()
  AND auth.session_is_live(revoked_at, expires_at, last_active_at, :idle_seconds::bigint, now())
ORDER BY last_active_at DESC, id;

--! count_user_sessions (idle_seconds?)
--- Counts a user's live sessions (not revoked, not expired, not idle).
SELECT count(*) AS live
FROM auth.user_sessions
WHERE user_id = :user_id
  AND revoked_at IS NULL
  AND expires_at > now()
  AND auth.session_is_live(revoked_at, expires_at, last_active_at, :idle_seconds::bigint, now());

--! update_session_activity (ip_address?, idle_seconds?) : SessionActivity
--- Records activity on live session (`user_id`, `id`), writing only when `last_active_at` is at
--- least `min_interval_seconds` old or the client's address changed; most calls write nothing.
--- The write re-checks liveness on the newest row version, so it never touches a session
--- revoked meanwhile. Returns the activity time and whether it was written, or no row when the
--- session is not live.
WITH live AS (
    SELECT id, last_active_at, ip_address
    FROM auth.user_sessions
    WHERE user_id = :user_id
      AND id = :id
      AND auth.session_is_live(revoked_at, expires_at, last_active_at, :idle_seconds::bigint, now())
), touched AS (
    UPDATE auth.user_sessions s
    SET last_active_at = now(),
        ip_address = coalesce(:ip_address, s.ip_address)
    WHERE s.user_id = :user_id
      AND s.id = :id
      AND auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at,
                               :idle_seconds::bigint, now())
      AND (s.last_active_at <= now() - make_interval(secs => :min_interval_seconds::bigint)
           OR s.ip_address IS DISTINCT FROM coalesce(:ip_address, s.ip_address))
    RETURNING s.last_active_at
)
SELECT coalesce((SELECT last_active_at FROM touched), live.last_active_at) AS last_active_at,
    EXISTS (SELECT 1 FROM touched) AS written
FROM live;

--! revoke_session
--- Revokes session (`user_id`, `id`): the user is its owner by construction. Returns its id, or
--- no row when that user has no such unrevoked session.
UPDATE auth.user_sessions
SET revoked_at = now(), revoked_reason = 'user'
WHERE user_id = :user_id
  AND id = :id
  AND revoked_at IS NULL
RETURNING id;

--! revoke_all_sessions_except_current : RevokedOthers
--- Revokes every unexpired session of a user except the current one, only when the current one
--- is an unrevoked session of that user (a mistyped id must not log out every device). Returns
--- whether the current session was found and how many were revoked. (Expired rows are left to
--- cleanup, so the two never wait on each other.)
WITH current_session AS (
    SELECT id
    FROM auth.user_sessions
    WHERE user_id = :user_id
      AND id = :current_id
      AND revoked_at IS NULL
), revoked AS (
    UPDATE auth.user_sessions
    SET revoked_at = now(), revoked_reason = 'user'
    WHERE user_id = :user_id
      AND id <> :current_id
      AND revoked_at IS NULL
      AND expires_at > now()
      AND EXISTS (SELECT 1 FROM current_session)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM current_session) AS found, (SELECT count(*) FROM revoked) AS revoked;

--! revoke_all_user_sessions
--- Revokes every unexpired session of a user. Returns how many were revoked.
WITH revoked AS (
    UPDATE auth.user_sessions
    SET revoked_at = now(), revoked_reason = 'user'
    WHERE user_id = :user_id
      AND revoked_at IS NULL
      AND expires_at > now()
    RETURNING 1
)
SELECT count(*) AS revoked FROM revoked;

--! rotate_session (idle_seconds?) : SessionOutcome
--- Rotates the refresh token of session (`user_id`, `id`) in one atomic step (see
--- auth.rotate_session), for a token whose tag the caller verified: `outcome` is rotated, grace
--- (`current_hash` is the successor to hand out), token_reused (the session is now revoked),
--- revoked, expired or idle_timed_out; no row when the token is not one of the session's.
SELECT outcome, state, current_hash, id, user_id, device_info, ip_address, user_agent,
    last_active_at, expires_at, created_at, revoked_reason
FROM auth.rotate_session(:user_id, :id, :generation::integer, :presented_hash,
    :successor_hash, :idle_seconds::bigint, :grace_seconds::bigint);

--! validate_session (idle_seconds?) : SessionOutcome
--- Classifies a presented token of session (`user_id`, `id`), whose tag the caller verified,
--- without changing anything, with the outcomes of rotate_session: the current token gives the
--- session's state; an older one gives the state when the session is not live, else grace (the
--- parent, inside the window) or token_reused; no row when the token is not one of the
--- session's. (Generations are compared as `stored - 1`, which cannot overflow, rather than
--- `presented + 1`, which can.)
SELECT c.outcome, c.state, NULL::varchar AS current_hash, c.id, c.user_id, c.device_info,
    c.ip_address, c.user_agent, c.last_active_at, c.expires_at, c.created_at, c.revoked_reason
FROM (
    SELECT CASE
            WHEN s.generation = :generation::integer
                 AND s.refresh_token_hash = :presented_hash THEN st.state
            WHEN s.generation > :generation::integer THEN
                CASE
                    WHEN st.state <> 'live' THEN st.state
                    WHEN s.generation - 1 = :generation::integer
                         AND s.rotated_at > now() - make_interval(secs => :grace_seconds::bigint)
                        THEN 'grace'
                    ELSE 'token_reused'
                END
        END AS outcome,
        st.state,
        s.id, s.user_id, s.device_info, s.ip_address, s.user_agent, s.last_active_at,
        s.expires_at, s.created_at, s.revoked_reason
    FROM auth.user_sessions s
    CROSS JOIN LATERAL (
        SELECT auth.session_state(s.revoked_at, s.expires_at, s.last_active_at,
                                  :idle_seconds::bigint, now()) AS state
    ) st
    WHERE s.user_id = :user_id
      AND s.id = :id
) c
WHERE c.outcome IS NOT NULL;

--! delete_expired_sessions (idle_seconds?)
--- Deletes every session past `expires_at`, (with `idle_seconds`) unrevoked and idle for longer,
--- or revoked longer than `retention_seconds` ago (a tombstone outlives its idle timeout). Unbounded: prefer the batches below on large tables.
--- Returns how many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE expires_at <= now()
       OR (revoked_at IS NULL
           AND last_active_at <= now() - make_interval(secs => :idle_seconds::bigint))
       OR revoked_at <= now() - make_interval(secs => :retention_seconds::bigint)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_expired_sessions_batch
--- Deletes up to `batch_size` sessions past `expires_at`, oldest expiry first (walking the expiry
--- index), re-checking the expiry inside the delete. Takes no row lock before the delete (Citus
--- supports none across shards): a second cleaner racing for the same rows waits for them and
--- then skips them, in the same index order, so cleaners never deadlock each other. Returns how
--- many were deleted.
WITH doomed AS (
    SELECT user_id, id
    FROM auth.user_sessions
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT :batch_size::bigint
), deleted AS (
    DELETE FROM auth.user_sessions s
    USING doomed
    WHERE s.user_id = doomed.user_id
      AND s.id = doomed.id
      AND s.expires_at <= now()
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! delete_revoked_sessions_batch
--- Deletes up to `batch_size` tombstones revoked at least `retention_seconds` ago, oldest first
--- (walking the partial index of revoked rows). Returns how many were deleted.
WITH doomed AS (
    SELECT user_id, id
    FROM auth.user_sessions
    WHERE revoked_at <= now() - make_interval(secs => :retention_seconds::bigint)
    ORDER BY revoked_at
    LIMIT :batch_size::bigint
), deleted AS (
    DELETE FROM auth.user_sessions s
    USING doomed
    WHERE s.user_id = doomed.user_id
      AND s.id = doomed.id
      AND s.revoked_at <= now() - make_interval(secs => :retention_seconds::bigint)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! find_idle_sessions_in_key_window : IdleWindow
--- One step of the walk that finds idle sessions, changing nothing: reads the next
--- `window_size` sessions in primary-key order, from key (`from_user_id`, `from_id`) on.
--- `last_active_at` is in no index (to keep activity updates HOT), so no index finds idle rows;
--- walking the primary key a window at a time bounds what one statement reads (`window_size`
--- + 1 rows, per shard or partition), however large the table. Returns how many sessions were
--- examined and how many of them are unrevoked and idle for at least `idle_seconds`, the last
--- key examined, and the key the next window starts from: none when the walk reached the end
--- of the table.
WITH walked AS (
    SELECT user_id, id, revoked_at, last_active_at
    FROM auth.user_sessions
    WHERE (user_id, id) >= (:from_user_id, :from_id)
    ORDER BY user_id, id
    LIMIT :window_size::bigint + 1
), examined AS (
    SELECT user_id, id, revoked_at, last_active_at
    FROM walked
    ORDER BY user_id, id
    LIMIT :window_size::bigint
), last_key AS (
    SELECT user_id, id
    FROM examined
    ORDER BY user_id DESC, id DESC
    LIMIT 1
), next_key AS (
    SELECT user_id, id
    FROM walked
    ORDER BY user_id, id
    OFFSET :window_size::bigint
    LIMIT 1
)
SELECT (SELECT count(*) FROM examined) AS examined,
    (SELECT count(*) FROM examined
     WHERE revoked_at IS NULL
       AND last_active_at <= now() - make_interval(secs => :idle_seconds::bigint)) AS idle,
    (SELECT user_id FROM last_key) AS last_user_id,
    (SELECT id FROM last_key) AS last_id,
    (SELECT user_id FROM next_key) AS next_user_id,
    (SELECT id FROM next_key) AS next_id;

--! delete_idle_sessions_in_key_range
--- Deletes the unrevoked sessions idle for at least `idle_seconds` (tombstones go by their
--- retention instead) whose primary key lies from (`from_user_id`, `from_id`) to
--- (`to_user_id`, `to_id`), both included: a window find_idle_sessions_in_key_window has just
--- examined, so this reads about as many rows, along the primary key. The bounds are
--- parameters, not the result of a subquery, so that every shard or partition scans only its
--- part of the range whatever join a planner would choose. Idleness is checked on the newest
--- version of each row. Returns how many were deleted.
WITH deleted AS (
    DELETE FROM auth.user_sessions
    WHERE (user_id, id) >= (:from_user_id, :from_id)
      AND (user_id, id) <= (:to_user_id, :to_id)
      AND revoked_at IS NULL
      AND last_active_at <= now() - make_interval(secs => :idle_seconds::bigint)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

--! session_stats (idle_seconds?) : SessionStats
--- Sessions in total, live, expired, revoked; users with sessions; the largest per-user count of
--- live sessions; table and index sizes in bytes (summed over shards or partitions).
WITH per_user AS (
    SELECT user_id,
        count(*) FILTER (
            WHERE auth.session_is_live(revoked_at, expires_at, last_active_at,
                                       :idle_seconds::bigint, now())
        ) AS live,
        count(*) FILTER (WHERE expires_at <= now()) AS expired,
        count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked,
        count(*) AS total
    FROM auth.user_sessions
    GROUP BY user_id
), totals AS (
    SELECT coalesce(sum(total), 0)::bigint AS total,
        coalesce(sum(live), 0)::bigint AS live,
        coalesce(sum(expired), 0)::bigint AS expired,
        coalesce(sum(revoked), 0)::bigint AS revoked,
        count(*) AS users,
        coalesce(max(live), 0)::bigint AS max_live_per_user
    FROM per_user
)
SELECT totals.total, totals.live, totals.expired, totals.revoked, totals.users,
    totals.max_live_per_user, storage.table_bytes, storage.index_bytes
FROM totals CROSS JOIN auth.session_storage() storage;

--! get_live_session_by_key (idle_seconds?) : LiveSessionByKey(ip_address?)
--- Reads live session (`user_id`, `id`) by its primary key, for a caller that already
--- authenticated the key (an access token it verified): its expiry, last activity and address,
--- with the database clock (`db_now`) the answer was decided at. No row when it is not live.
SELECT user_id, id, expires_at, last_active_at, ip_address, now() AS db_now
FROM auth.user_sessions
WHERE user_id = :user_id
  AND id = :id
  AND auth.session_is_live(revoked_at, expires_at, last_active_at, :idle_seconds::bigint, now());

--! record_activity_batch (idle_seconds?) : BatchActivity()
--- Records activity on many live sessions in one statement: the sessions (`user_ids[i]`,
--- `ids[i]`), each with its client's address as text (`ip_addresses[i]`, empty when unknown).
--- As update_session_activity, a session is written only when its `last_active_at` is at least
--- `min_interval_seconds` old or its address changed, and only while live. Returns every live
--- session of the batch with its activity time (the new one when written) and whether it was
--- written, so the caller learns what is stored even when nothing was due. Callers pass keys
--- sorted, so concurrent batches lock shared rows in one order.
WITH batch AS (
    SELECT b.user_id, b.id, nullif(b.ip, '')::inet AS ip
    FROM unnest(:user_ids::uuid[], :ids::uuid[], :ip_addresses::text[]) AS b(user_id, id, ip)
), touched AS (
    UPDATE auth.user_sessions s
    SET last_active_at = now(),
        ip_address = coalesce(b.ip, s.ip_address)
    FROM batch b
    WHERE s.user_id = b.user_id
      AND s.id = b.id
      AND auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at,
                               :idle_seconds::bigint, now())
      AND (s.last_active_at <= now() - make_interval(secs => :min_interval_seconds::bigint)
           OR s.ip_address IS DISTINCT FROM coalesce(b.ip, s.ip_address))
    RETURNING s.user_id, s.id, s.last_active_at
)
SELECT s.user_id, s.id, coalesce(t.last_active_at, s.last_active_at) AS last_active_at,
    t.id IS NOT NULL AS written
FROM batch b
JOIN auth.user_sessions s ON s.user_id = b.user_id AND s.id = b.id
LEFT JOIN touched t ON t.user_id = s.user_id AND t.id = s.id
WHERE t.id IS NOT NULL
   OR auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at,
                           :idle_seconds::bigint, now());
