-- The rotation key kept by the database, for deployments that configure none: every instance
-- of the service reads the same key, so concurrent or retried refreshes handled by different
-- instances (or by one instance before and after a restart) derive the same successor.
--
-- The first instance that needs it stores a key drawn from its operating system's random
-- generator; the others read that one. Threat model: whoever can read this table and also
-- holds one refresh token of a session can derive every later token of that session, which
-- defeats reuse detection for that session; a database dump alone reveals no token (only
-- hashes are stored). A service that keeps secrets elsewhere supplies its own key
-- (`SessionPolicy::rotation_key`) and this table stays empty.

CREATE TABLE auth.rotation_keys (
    id         smallint    NOT NULL,
    key        bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rotation_keys_pkey PRIMARY KEY (id),
    CONSTRAINT rotation_keys_key_check CHECK (octet_length(key) = 32)
);

REVOKE ALL ON auth.rotation_keys FROM PUBLIC;

COMMENT ON TABLE auth.rotation_keys IS
    'The HMAC key that derives rotated refresh tokens, when the service supplies none. Secret.';
COMMENT ON COLUMN auth.rotation_keys.id IS 'Key number; 1 is the key in use.';
COMMENT ON COLUMN auth.rotation_keys.key IS '32 random bytes.';
COMMENT ON COLUMN auth.rotation_keys.created_at IS 'When the key was stored (database clock).';
