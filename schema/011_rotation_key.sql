-- The rotation keys kept by the database (`KeySource::Database`), for deployments that do not
-- supply their keys from a secret store: every instance reads the same keys, so concurrent or
-- retried refreshes handled by different instances (or by one instance before and after a
-- restart) derive the same successor.
--
-- Keys have ids: the highest signs new tokens, the others still verify the tokens they signed,
-- so adding a key logs nobody out. The first instance that needs a key and finds none stores
-- key 1, drawn from its operating system's random generator.
--
-- A key is stored sealed (AES-256-GCM, `nonce` set) under a wrapping key the service holds
-- outside the database, or in clear (`nonce` NULL) for development. Threat model of the clear
-- form: whoever can read this table and also holds one refresh token of a session can derive
-- that session's current token. A database dump alone reveals no token (only hashes are
-- stored). A service that supplies its keys from a secret store leaves this table empty.

CREATE TABLE auth.rotation_keys (
    id         smallint    NOT NULL,
    key        bytea       NOT NULL,
    nonce      bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rotation_keys_pkey PRIMARY KEY (id),
    CONSTRAINT rotation_keys_id_check CHECK (id > 0),
    CONSTRAINT rotation_keys_key_check CHECK (
        (nonce IS NULL AND octet_length(key) = 32)
        OR (octet_length(nonce) = 12 AND octet_length(key) = 48)
    )
);

REVOKE ALL ON auth.rotation_keys FROM PUBLIC;

COMMENT ON TABLE auth.rotation_keys IS
    'HMAC keys that sign refresh tokens, when the service keeps none of its own. Secret.';
COMMENT ON COLUMN auth.rotation_keys.id IS 'Key id, carried by every token; the highest signs.';
COMMENT ON COLUMN auth.rotation_keys.key IS
    '32 random bytes, or 48: the same sealed with AES-256-GCM under the wrapping key.';
COMMENT ON COLUMN auth.rotation_keys.nonce IS 'The sealing nonce (12 bytes); NULL when in clear.';
COMMENT ON COLUMN auth.rotation_keys.created_at IS 'When the key was stored (database clock).';
