--! ensure_rotation_key
--- Stores `candidate` as rotation key 1 unless a key is stored already, and returns the stored
--- key. Under a concurrent first store the statement may see neither row: run it again.
WITH inserted AS (
    INSERT INTO auth.rotation_keys (id, key)
    VALUES (1, :candidate)
    ON CONFLICT (id) DO NOTHING
    RETURNING key
)
SELECT key FROM inserted
UNION ALL
SELECT key FROM auth.rotation_keys WHERE id = 1
LIMIT 1;
