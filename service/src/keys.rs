//! The refresh-token rotation keys, from the service's secret store.
//!
//! The keys reach the service as text, in the variable `AUTH_SERVICE_ROTATION_KEYS` or a file
//! (`--rotation-keys-file`, for a mounted secret): one key per line (or comma-separated), each
//! `ID:BASE64` where ID is from 1 to 32767 and BASE64 (standard alphabet) decodes to at least 32
//! random bytes; blank lines and `#` comments are skipped. The first key signs; the others only
//! verify the tokens they signed. To change keys without logging anybody out, roll out
//! `old, new` (new verifies), then `new, old` (new signs), and drop `old` once every session has
//! rotated or timed out since (the crate's README, "Rotation keys"). The database never holds a
//! key.

use auth_sessions::{KeyRing, RotationKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The ring the text describes. Errors name the entry, never its key.
pub fn parse_rotation_keys(text: &str) -> Result<KeyRing, String> {
    let mut ring: Option<KeyRing> = None;
    let entries = text
        .lines()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty() && !entry.starts_with('#'));
    for (index, entry) in entries.enumerate() {
        let number = index + 1;
        let (id, encoded) = entry
            .split_once(':')
            .ok_or_else(|| format!("rotation key {number}: expected ID:BASE64"))?;
        let id: u16 = id.trim().parse().map_err(|_| {
            format!("rotation key {number}: the id is not a number from 1 to 32767")
        })?;
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("rotation key {id}: not base64"))?;
        let key = RotationKey::new(id, &bytes).map_err(|_| {
            format!("rotation key {id}: needs an id from 1 to 32767 and 32 bytes or more")
        })?;
        ring = Some(match ring {
            None => KeyRing::new(key),
            Some(ring) => ring
                .with_previous(key)
                .map_err(|_| format!("rotation key {id}: a repeated id, or too many keys"))?,
        });
    }
    ring.ok_or_else(|| "no rotation key given".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn the_first_key_signs_and_the_others_verify() {
        let text = format!(
            "# keys\n2:{}\n\n1:{} , 3:{}\n",
            encoded(2),
            encoded(1),
            encoded(3)
        );
        let ring = parse_rotation_keys(&text).unwrap();
        assert_eq!(ring.active().id(), 2);
        assert_eq!(
            ring.keys().map(RotationKey::id).collect::<Vec<_>>(),
            [2, 1, 3]
        );
    }

    #[test]
    fn bad_entries_are_refused_without_printing_a_key() {
        let short = STANDARD.encode([7u8; 31]);
        for (text, expected) in [
            (String::new(), "no rotation key"),
            ("# only a comment".to_owned(), "no rotation key"),
            (encoded(1), "expected ID:BASE64"),
            (format!("x:{}", encoded(1)), "not a number"),
            ("1:not base64!".to_owned(), "not base64"),
            (format!("1:{short}"), "32 bytes"),
            (format!("0:{}", encoded(1)), "from 1 to 32767"),
            (format!("1:{},1:{}", encoded(1), encoded(2)), "repeated id"),
        ] {
            let err = parse_rotation_keys(&text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains(&short) && !err.contains(&encoded(1)), "{err}");
        }
    }
}
