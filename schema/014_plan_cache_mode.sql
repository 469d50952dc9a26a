-- The session functions plan their statements as PostgreSQL does by default
-- (`plan_cache_mode = auto`), whatever the caller, the role or the database asks for.
--
-- Why: on Citus a statement whose distribution column is compared to a parameter is routed by
-- a generic plan only in its simplest shape (one table, no CTE, no subquery). The cap's
-- eviction in auth.create_session (an UPDATE with an IN subquery) is not that shape: under
-- `force_generic_plan` Citus cannot plan it ("could not create distributed plan", SQLSTATE
-- 0A000), also on a worker the call was delegated to, where the worker's own setting applies.
-- Under `auto` Citus prices the plans it cannot make out of reach, so PostgreSQL picks custom
-- plans for those, and generic plans where they work. A SET clause does not stop Citus from
-- delegating the call, and Citus passes it on to the workers.
--
-- No argument list: the names are unique in the schema, and the SET survives a later change
-- of a function's arguments only if the migration that changes it sets it again.

ALTER FUNCTION auth.create_session SET plan_cache_mode = auto;
ALTER FUNCTION auth.rotate_session SET plan_cache_mode = auto;
