-- Multi-device login sessions. Only a SHA-256 hash of each refresh token is stored.
--
-- Every key contains `user_id`, the routing key the refresh token carries, so the table can be
-- distributed (or hash-partitioned) by user and every per-session statement reaches one shard.
-- A token is found by its primary key (`user_id`, `id`, both read from the token) and its hash
-- compared there: the hash needs no index of its own.

CREATE TABLE auth.user_sessions (
    user_id            uuid        NOT NULL,
    id                 uuid        NOT NULL,
    generation         integer     NOT NULL DEFAULT 0,
    refresh_token_hash varchar(64) NOT NULL,
    device_info        text,
    ip_address         inet,
    user_agent         text,
    last_active_at     timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz,
    revoked_at         timestamptz,
    revoked_reason     text,
    CONSTRAINT user_sessions_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT user_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT user_sessions_generation_check CHECK (generation >= 0),
    CONSTRAINT user_sessions_refresh_token_hash_check
        CHECK (refresh_token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT user_sessions_device_info_check
        CHECK (char_length(device_info) <= 256),
    CONSTRAINT user_sessions_user_agent_check
        CHECK (char_length(user_agent) <= 1024),
    CONSTRAINT user_sessions_expires_at_check
        CHECK (expires_at > created_at),
    CONSTRAINT user_sessions_revoked_reason_check
        CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)
               AND revoked_reason IN ('user', 'token_reused', 'evicted'))
)
-- Free space in every page, so that the frequent updates (activity, rotation), which touch no
-- indexed column, stay on their page: heap-only tuple (HOT) updates, with no index writes.
WITH (fillfactor = 80);

-- A user's live sessions: listing, counting, the per-user cap. Partial, so that revoked rows
-- (tombstones) cost the live path nothing. Revocation changes `revoked_at` and so is not HOT;
-- activity and rotation change no column named here and are.
CREATE INDEX user_sessions_live_user_id_idx
    ON auth.user_sessions (user_id, expires_at)
    WHERE revoked_at IS NULL;

-- Cleanup of expired sessions, oldest expiry first. `expires_at` never changes.
CREATE INDEX user_sessions_expires_at_idx
    ON auth.user_sessions (expires_at);

-- Cleanup of tombstones past their retention, oldest revocation first.
CREATE INDEX user_sessions_revoked_at_idx
    ON auth.user_sessions (revoked_at)
    WHERE revoked_at IS NOT NULL;

COMMENT ON TABLE auth.user_sessions IS
    'One row per logged-in device. Stores a hash of the refresh token, never the token.';
COMMENT ON COLUMN auth.user_sessions.user_id IS
    'Owner of the session and routing key; every statement is authorized and routed by it.';
COMMENT ON COLUMN auth.user_sessions.id IS 'Session identifier, safe to show to the user.';
COMMENT ON COLUMN auth.user_sessions.generation IS
    'Rotations so far: the generation of the current refresh token.';
COMMENT ON COLUMN auth.user_sessions.refresh_token_hash IS
    'SHA-256 of the current refresh token as 64 lowercase hex characters. Never listed.';
COMMENT ON COLUMN auth.user_sessions.device_info IS 'Human-readable device label, at most 256 characters.';
COMMENT ON COLUMN auth.user_sessions.ip_address IS 'Client IP address (IPv4 or IPv6) at login or last activity.';
COMMENT ON COLUMN auth.user_sessions.user_agent IS 'Raw User-Agent header, at most 1024 characters. Never listed.';
COMMENT ON COLUMN auth.user_sessions.last_active_at IS 'Last recorded activity (database clock).';
COMMENT ON COLUMN auth.user_sessions.expires_at IS 'Absolute expiry (database clock); fixed at creation.';
COMMENT ON COLUMN auth.user_sessions.created_at IS 'When the session was created (database clock).';
COMMENT ON COLUMN auth.user_sessions.rotated_at IS 'When the refresh token was last rotated.';
COMMENT ON COLUMN auth.user_sessions.revoked_at IS
    'When the session was revoked (database clock); NULL while it is usable.';
COMMENT ON COLUMN auth.user_sessions.revoked_reason IS
    'Why it was revoked: user (logout), token_reused (theft suspected) or evicted (per-user cap).';
