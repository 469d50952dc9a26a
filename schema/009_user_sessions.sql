-- Multi-device login sessions. Only a SHA-256 hash of each refresh token is stored.

CREATE TABLE auth.user_sessions (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id            uuid        NOT NULL,
    refresh_token_hash varchar(64) NOT NULL,
    device_info        text,
    ip_address         inet,
    user_agent         text,
    last_active_at     timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT user_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT user_sessions_refresh_token_hash_check
        CHECK (refresh_token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT user_sessions_device_info_check
        CHECK (char_length(device_info) <= 256),
    CONSTRAINT user_sessions_user_agent_check
        CHECK (char_length(user_agent) <= 1024),
    CONSTRAINT user_sessions_expires_at_check
        CHECK (expires_at > created_at)
);

-- Token validation: one session per refresh token hash.
CREATE UNIQUE INDEX user_sessions_refresh_token_hash_key
    ON auth.user_sessions (refresh_token_hash);

-- A user's devices, and counting the live ones. `expires_at` never changes after creation,
-- and `last_active_at` stays out of every index, so activity updates are HOT updates.
CREATE INDEX user_sessions_user_id_expires_at_idx
    ON auth.user_sessions (user_id, expires_at);

-- Expired-session cleanup.
CREATE INDEX user_sessions_expires_at_idx
    ON auth.user_sessions (expires_at);

COMMENT ON TABLE auth.user_sessions IS
    'One row per logged-in device. Stores a hash of the refresh token, never the token.';
COMMENT ON COLUMN auth.user_sessions.id IS 'Session identifier, safe to show to the user.';
COMMENT ON COLUMN auth.user_sessions.user_id IS 'Owner of the session; every delete is authorized by it.';
COMMENT ON COLUMN auth.user_sessions.refresh_token_hash IS
    'SHA-256 of the refresh token as 64 lowercase hex characters. Never listed.';
COMMENT ON COLUMN auth.user_sessions.device_info IS 'Human-readable device label, at most 256 characters.';
COMMENT ON COLUMN auth.user_sessions.ip_address IS 'Client IP address (IPv4 or IPv6) at login or last activity.';
COMMENT ON COLUMN auth.user_sessions.user_agent IS 'Raw User-Agent header, at most 1024 characters. Never listed.';
COMMENT ON COLUMN auth.user_sessions.last_active_at IS 'Last recorded activity (database clock).';
COMMENT ON COLUMN auth.user_sessions.expires_at IS 'Absolute expiry (database clock); fixed at creation.';
COMMENT ON COLUMN auth.user_sessions.created_at IS 'When the session was created (database clock).';
