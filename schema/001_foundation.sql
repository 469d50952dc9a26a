-- Foundation: the `auth` schema and the minimal user table that sessions reference.
--
-- The auth service owns its users. Sessions need only `auth.users.id` (unique): when the
-- service created `auth.users` already, with whatever other columns, it is left exactly as it
-- is. Otherwise a minimal table is created. Both steps are conditional rather than
-- `IF NOT EXISTS`, which would demand privileges (CREATE on the database) that a
-- least-privilege role owning only schema `auth` does not have.
--
-- The e-mail column of the minimal table is a label for operators and examples; uniqueness of
-- e-mail addresses is the auth service's concern: a unique key that does not contain `id`
-- cannot exist once the table is distributed by `id` (Citus), so a service that needs one
-- keeps a table keyed by e-mail instead (see docs/SCALING.md).

DO $$
BEGIN
    IF to_regnamespace('auth') IS NULL THEN
        CREATE SCHEMA auth;
    END IF;
    IF to_regclass('auth.users') IS NULL THEN
        CREATE TABLE auth.users (
            id         uuid        NOT NULL DEFAULT gen_random_uuid(),
            email      text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT users_pkey PRIMARY KEY (id)
        );
        COMMENT ON TABLE auth.users IS 'Accounts that can own login sessions.';
        COMMENT ON COLUMN auth.users.id IS 'Stable user identifier: the routing key of every session.';
        COMMENT ON COLUMN auth.users.email IS 'Contact e-mail address, a label; not a key.';
        COMMENT ON COLUMN auth.users.created_at IS 'When the account was created (database clock).';
    END IF;
END
$$;
