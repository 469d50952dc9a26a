//! Refresh tokens encoded by the documented format (README, "Token format"), independently of
//! the library: `asr2_` and base64url (no padding) of user (16) | session (16) | generation
//! (u32 BE) | key id (u16 BE) | chain (16) | tag (32) | check (4), where the tag is
//! HMAC-SHA256(key, "auth-sessions refresh token v2\0" | the 54 bytes before it) and the check
//! the first 4 bytes of SHA-256 over the prefix and the 86 bytes before it.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use auth_sessions::TOKEN_PREFIX;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The fields of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub user: Uuid,
    pub session: Uuid,
    pub generation: u32,
    pub key_id: u16,
    pub chain: [u8; 16],
    pub tag: [u8; 32],
}

impl Fields {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(54);
        bytes.extend_from_slice(self.user.as_bytes());
        bytes.extend_from_slice(self.session.as_bytes());
        bytes.extend_from_slice(&self.generation.to_be_bytes());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.chain);
        bytes
    }

    /// These fields with the tag `key` gives them: a genuine token of that key.
    pub fn signed(self, key: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(b"auth-sessions refresh token v2\0");
        mac.update(&self.signed_bytes());
        Self {
            tag: mac.finalize().into_bytes().into(),
            ..self
        }
    }

    /// The token's text, with its check.
    pub fn encode(&self) -> String {
        let mut body = self.signed_bytes();
        body.extend_from_slice(&self.tag);
        let digest = Sha256::new()
            .chain_update(TOKEN_PREFIX.as_bytes())
            .chain_update(&body)
            .finalize();
        body.extend_from_slice(&digest[..4]);
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&body))
    }

    /// The fields of a token's text (which must be well formed).
    pub fn decode(text: &str) -> Self {
        let body = URL_SAFE_NO_PAD
            .decode(&text[TOKEN_PREFIX.len()..])
            .expect("base64url");
        Self {
            user: Uuid::from_slice(&body[0..16]).unwrap(),
            session: Uuid::from_slice(&body[16..32]).unwrap(),
            generation: u32::from_be_bytes(body[32..36].try_into().unwrap()),
            key_id: u16::from_be_bytes(body[36..38].try_into().unwrap()),
            chain: body[38..54].try_into().unwrap(),
            tag: body[54..86].try_into().unwrap(),
        }
    }
}

/// A forged token: these ids and generation, key 1, with a tag no key gave.
pub fn forged(user: Uuid, session: Uuid, generation: u32) -> String {
    Fields {
        user,
        session,
        generation,
        key_id: 1,
        chain: [0x5a; 16],
        tag: [0xa5; 32],
    }
    .encode()
}

/// `text` with its user id replaced by `user` and the check recomputed: well formed, and
/// otherwise identical (session id, generation, key id, chain, tag), so its tag no longer
/// verifies.
pub fn with_user_id(text: &str, user: Uuid) -> String {
    Fields {
        user,
        ..Fields::decode(text)
    }
    .encode()
}

/// `token` with its user id replaced by `user` and the check recomputed: well formed, and
/// otherwise identical (session id, generation, chain, tag), so its tag no longer verifies.
/// The library's parser confirms that only the user id moved.
pub fn with_other_user(token: &auth_sessions::RefreshToken, user: Uuid) -> String {
    let altered = with_user_id(token.expose_secret(), user);
    let parsed =
        auth_sessions::RefreshToken::parse(&altered).expect("an altered token is well formed");
    assert_eq!(parsed.user_id(), user);
    assert_eq!(parsed.session_id(), token.session_id());
    assert_eq!(parsed.generation(), token.generation());
    altered
}
