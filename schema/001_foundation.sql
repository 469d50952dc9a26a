-- Foundation: the `auth` schema and the minimal user table that sessions reference.

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    email      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email)
);

COMMENT ON TABLE auth.users IS 'Accounts that can own login sessions.';
COMMENT ON COLUMN auth.users.id IS 'Stable user identifier.';
COMMENT ON COLUMN auth.users.email IS 'Login e-mail address, unique across users.';
COMMENT ON COLUMN auth.users.created_at IS 'When the account was created (database clock).';
