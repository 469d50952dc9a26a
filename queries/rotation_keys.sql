--: StoredKey(nonce?)

--! list_rotation_keys : StoredKey
--- Every stored rotation key, lowest id first. Read-only: works on a hot standby.
SELECT id, key, nonce FROM auth.rotation_keys ORDER BY id;

--! insert_rotation_key (nonce?)
--- Stores key `key_id` (sealed, with its `nonce`, or in clear without) unless that id is taken.
--- Returns the id, or no row when another instance stored that id first.
INSERT INTO auth.rotation_keys (id, key, nonce)
VALUES (:key_id::smallint, :key, :nonce)
ON CONFLICT (id) DO NOTHING
RETURNING id;

--! delete_rotation_key
--- Deletes key `key_id` unless it is the highest (the active one). Returns the id, or no row.
DELETE FROM auth.rotation_keys
WHERE id = :key_id::smallint
  AND id < (SELECT max(id) FROM auth.rotation_keys)
RETURNING id;
