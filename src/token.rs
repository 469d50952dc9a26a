//! Refresh tokens, their hashes and the rotation key.
//!
//! # Format
//!
//! A refresh token is `asr1_` followed by 96 characters of unpadded URL-safe base64 encoding 72
//! bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 16 | user id: the routing key (the distribution column on Citus) |
//! | 16 | session id |
//! | 4 | generation, big-endian: 0 at login, +1 at every rotation |
//! | 32 | secret: 256 bits from the operating system (login) or HMAC-SHA256 (rotation) |
//! | 4 | check: the first 4 bytes of SHA-256 over the prefix and the 68 bytes before it |
//!
//! The prefix names the format and its version and lets secret scanners recognise a leaked
//! token. The check rejects garbage, truncation and typos before any query; it is not a MAC and
//! does not need to be: the database stores SHA-256 of the *whole* text, so a token whose ids
//! were altered (and check recomputed) matches no stored hash and is simply unknown.
//!
//! The ids are in clear (encoded, not encrypted): whoever holds a token can read its user and
//! session ids. See the README's "Token format" section for what that means and how to hide them.
//!
//! Only the [`TokenHash`] (SHA-256 of the token text, 64 lowercase hex characters) is stored.
//! Neither type prints its value through `Debug`; neither implements `Display`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Error, InputProblem, SessionKey};

/// The text every refresh token starts with: format `asr` (auth-sessions refresh), version 1.
pub const TOKEN_PREFIX: &str = "asr1_";
/// Number of secret bytes in a refresh token (256 bits).
const SECRET_BYTES: usize = 32;
/// Bytes before the check: user id, session id, generation, secret.
const PAYLOAD_BYTES: usize = 16 + 16 + 4 + SECRET_BYTES;
/// Bytes of the check.
const CHECK_BYTES: usize = 4;
/// Bytes encoded after the prefix.
const BODY_BYTES: usize = PAYLOAD_BYTES + CHECK_BYTES;
/// Length of a refresh token's text: the prefix and 72 bytes in unpadded base64.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + BODY_BYTES * 4 / 3;
/// The highest generation a token can carry (the database stores it as `integer`).
pub const MAX_GENERATION: u32 = i32::MAX as u32;

/// A refresh token: the secret a device presents to get new access tokens.
///
/// Hand it to the device once, with [`RefreshToken::expose_secret`], and never store or log it.
/// The ids it carries ([`RefreshToken::user_id`], [`RefreshToken::session_id`]) are not
/// secret and route the lookup to one shard.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    text: String,
    key: SessionKey,
    generation: u32,
}

impl RefreshToken {
    /// A new token, generation 0, for a new session of `user_id` whose id is drawn at random
    /// with the secret.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes.
    pub fn generate(user_id: Uuid) -> Result<Self, Error> {
        let mut random = [0u8; 16 + SECRET_BYTES];
        getrandom::fill(&mut random).map_err(Error::Randomness)?;
        let (id, secret) = random.split_at(16);
        let session_id =
            uuid::Builder::from_random_bytes(id.try_into().unwrap_or_default()).into_uuid();
        let secret: [u8; SECRET_BYTES] = secret.try_into().unwrap_or_default();
        Ok(Self::encode(
            SessionKey::new(user_id, session_id),
            0,
            &secret,
        ))
    }

    /// Parses a token presented by a device. Runs no database call.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] unless the text is the prefix and exactly 96 characters of
    /// canonical unpadded URL-safe base64 whose check matches and whose generation is at most
    /// [`MAX_GENERATION`].
    pub fn parse(presented: &str) -> Result<Self, Error> {
        if presented.len() != TOKEN_LEN {
            return Err(Error::MalformedToken);
        }
        let body = presented
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(Error::MalformedToken)?;
        let mut bytes = [0u8; BODY_BYTES];
        // The engine rejects padding and non-canonical trailing bits (72 bytes encode with
        // none), so the text round-trips exactly.
        match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
            Ok(BODY_BYTES) => {}
            _ => return Err(Error::MalformedToken),
        }
        let (payload, check) = bytes.split_at(PAYLOAD_BYTES);
        if check != check_of(payload) {
            return Err(Error::MalformedToken);
        }
        let field = |range: std::ops::Range<usize>| &payload[range];
        let user_id = Uuid::from_slice(field(0..16)).map_err(|_| Error::MalformedToken)?;
        let session_id = Uuid::from_slice(field(16..32)).map_err(|_| Error::MalformedToken)?;
        let generation = u32::from_be_bytes(
            field(32..36)
                .try_into()
                .map_err(|_| Error::MalformedToken)?,
        );
        if generation > MAX_GENERATION {
            return Err(Error::MalformedToken);
        }
        Ok(Self {
            text: presented.to_owned(),
            key: SessionKey::new(user_id, session_id),
            generation,
        })
    }

    fn encode(key: SessionKey, generation: u32, secret: &[u8; SECRET_BYTES]) -> Self {
        let mut bytes = [0u8; BODY_BYTES];
        bytes[0..16].copy_from_slice(key.user_id.as_bytes());
        bytes[16..32].copy_from_slice(key.session_id.as_bytes());
        bytes[32..36].copy_from_slice(&generation.to_be_bytes());
        bytes[36..PAYLOAD_BYTES].copy_from_slice(secret);
        let check = check_of(&bytes[..PAYLOAD_BYTES]);
        bytes[PAYLOAD_BYTES..].copy_from_slice(&check);
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
        Self {
            text,
            key,
            generation,
        }
    }

    /// The token's text, to send to the device. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The SHA-256 hash under which the session stores this token (of the whole text, ids
    /// included).
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.text.as_bytes())))
    }

    /// The user the token was issued to: the routing key.
    pub fn user_id(&self) -> Uuid {
        self.key.user_id
    }

    /// The session the token opens.
    pub fn session_id(&self) -> Uuid {
        self.key.session_id
    }

    /// The user and session ids together.
    pub fn session_key(&self) -> SessionKey {
        self.key
    }

    /// 0 for the token issued at login, then one more at every rotation.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// The first [`CHECK_BYTES`] of SHA-256 over the prefix and the payload.
fn check_of(payload: &[u8]) -> [u8; CHECK_BYTES] {
    let digest = Sha256::new()
        .chain_update(TOKEN_PREFIX.as_bytes())
        .chain_update(payload)
        .finalize();
    let mut check = [0u8; CHECK_BYTES];
    check.copy_from_slice(&digest[..CHECK_BYTES]);
    check
}

impl FromStr for RefreshToken {
    type Err = Error;

    fn from_str(presented: &str) -> Result<Self, Error> {
        Self::parse(presented)
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// SHA-256 of a refresh token, as 64 lowercase hex characters: what the database stores.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// The server-side key from which a rotated refresh token's successor is derived: the same
/// user and session ids, the next generation, and the secret
/// `HMAC-SHA256(key, label || presented token text)`.
///
/// Because successors are derived, every caller presenting the same token is handed the same
/// successor (concurrent refreshes never fork a session), and an older token of a session can
/// be proven a true ancestor of its current one by deriving forward, without storing any
/// history. Whoever knows the key and one token of a chain can derive every later token of that
/// chain: keep the key as secret as the database itself. `Debug` prints no key.
#[derive(Clone)]
pub struct RotationKey([u8; 32]);

impl RotationKey {
    /// Least accepted key length, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from secret bytes (at least 32; longer keys are hashed down to 32).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for fewer than [`RotationKey::MIN_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::InvalidInput {
                field: "rotation_key",
                problem: InputProblem::OutOfRange,
            });
        }
        let mut key = [0u8; 32];
        if bytes.len() == 32 {
            key.copy_from_slice(bytes);
        } else {
            key.copy_from_slice(&Sha256::digest(bytes));
        }
        Ok(Self(key))
    }

    /// A random key from the operating system.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes.
    pub fn generate() -> Result<Self, Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(Error::Randomness)?;
        Ok(Self(key))
    }

    /// The key's bytes, to store it (the database keeps one when the service supplies none).
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The successor of `presented`: what rotating it hands out.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `generation`) when `presented` already has generation
    /// [`MAX_GENERATION`].
    pub fn successor(&self, presented: &RefreshToken) -> Result<RefreshToken, Error> {
        if presented.generation >= MAX_GENERATION {
            return Err(Error::InvalidInput {
                field: "generation",
                problem: InputProblem::OutOfRange,
            });
        }
        // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104), so the
        // padded block is the same key, and the fixed-size constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        mac.update(b"auth-sessions refresh token rotation v2\0");
        mac.update(presented.text.as_bytes());
        let secret: [u8; SECRET_BYTES] = mac.finalize().into_bytes().into();
        Ok(RefreshToken::encode(
            presented.key,
            presented.generation + 1,
            &secret,
        ))
    }

    /// Derives forward from `presented` to `generation` and returns that token's hash, or
    /// `None` when `generation` is not after the presented one or more than `max_steps` after
    /// it. This is how an old token is proven an ancestor of a session's current token.
    pub(crate) fn hash_at(
        &self,
        presented: &RefreshToken,
        generation: u32,
        max_steps: u32,
    ) -> Option<TokenHash> {
        let steps = generation.checked_sub(presented.generation)?;
        if steps == 0 || steps > max_steps {
            return None;
        }
        let mut token = self.successor(presented).ok()?;
        while token.generation < generation {
            token = self.successor(&token).ok()?;
        }
        Some(token.hash())
    }
}

impl fmt::Debug for RotationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotationKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Uuid {
        Uuid::from_u128(0x6f1c_2a4e_0d55_4b8e_9a59_2f0c_7c1e_3b11)
    }

    #[test]
    fn generated_tokens_parse_back_carry_their_ids_and_differ() {
        let a = RefreshToken::generate(user()).unwrap();
        let b = RefreshToken::generate(user()).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.session_id(), b.session_id());
        assert_eq!(a.session_id().get_version_num(), 4);
        assert_eq!(a.expose_secret().len(), TOKEN_LEN);
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        let parsed = RefreshToken::parse(a.expose_secret()).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.user_id(), user());
        assert_eq!(parsed.generation(), 0);
    }

    #[test]
    fn hash_is_sha256_lowercase_hex_of_the_whole_text() {
        let token = RefreshToken::generate(user()).unwrap();
        let expected = hex::encode(Sha256::digest(token.expose_secret().as_bytes()));
        assert_eq!(token.hash().as_str(), expected);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = RefreshToken::generate(user()).unwrap();
        let text = good.expose_secret();
        let last = TOKEN_LEN - 1;
        // One character changed anywhere in the body breaks the check.
        let mut flipped = text.as_bytes().to_vec();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            String::new(),
            text[..last].to_owned(),
            format!("{text}A"),
            format!("asr2_{}", &text[5..]),
            format!("{}=", &text[..last]),
            format!("{}+", &text[..last]),
            format!("{}\0", &text[..last]),
            flipped,
            "é".repeat(TOKEN_LEN / 2) + "A",
            // The previous format: 43 characters of base64.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ] {
            assert!(
                matches!(RefreshToken::parse(&bad), Err(Error::MalformedToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_tampered_user_id_with_a_recomputed_check_parses_but_hashes_differently() {
        let token = RefreshToken::generate(user()).unwrap();
        let other = Uuid::from_u128(42);
        let mut body = URL_SAFE_NO_PAD
            .decode(&token.expose_secret()[TOKEN_PREFIX.len()..])
            .unwrap();
        body[..16].copy_from_slice(other.as_bytes());
        let check = check_of(&body[..PAYLOAD_BYTES]);
        body[PAYLOAD_BYTES..].copy_from_slice(&check);
        let forged = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&body));
        let forged = RefreshToken::parse(&forged).unwrap();
        assert_eq!(forged.user_id(), other);
        assert_eq!(forged.session_id(), token.session_id());
        assert_ne!(forged.hash(), token.hash());
    }

    #[test]
    fn successors_keep_the_ids_count_generations_and_depend_on_the_key() {
        let key = RotationKey::from_bytes(&[7; 32]).unwrap();
        let other = RotationKey::from_bytes(&[8; 40]).unwrap();
        let token = RefreshToken::generate(user()).unwrap();
        let next = key.successor(&token).unwrap();
        assert_eq!(next, key.successor(&token).unwrap());
        assert_ne!(next, token);
        assert_ne!(next, other.successor(&token).unwrap());
        assert_eq!(next.session_key(), token.session_key());
        assert_eq!(next.generation(), 1);
        assert_eq!(RefreshToken::parse(next.expose_secret()).unwrap(), next);
        assert!(RotationKey::from_bytes(&[1; 31]).is_err());
        assert_eq!(format!("{key:?}"), "RotationKey(<redacted>)");
    }

    #[test]
    fn deriving_forward_proves_ancestry_within_the_bound_only() {
        let key = RotationKey::from_bytes(&[7; 32]).unwrap();
        let first = RefreshToken::generate(user()).unwrap();
        let mut current = first.clone();
        for _ in 0..5 {
            current = key.successor(&current).unwrap();
        }
        assert_eq!(key.hash_at(&first, 5, 5), Some(current.hash()));
        assert_eq!(key.hash_at(&first, 5, 4), None);
        assert_eq!(key.hash_at(&current, 5, 10), None);
        assert_eq!(key.hash_at(&current, 4, 10), None);
    }

    #[test]
    fn the_last_generation_has_no_successor() {
        let key = RotationKey::from_bytes(&[7; 32]).unwrap();
        let token = RefreshToken::encode(
            SessionKey::new(user(), Uuid::from_u128(1)),
            MAX_GENERATION,
            &[3; 32],
        );
        assert_eq!(RefreshToken::parse(token.expose_secret()).unwrap(), token);
        assert!(matches!(
            key.successor(&token),
            Err(Error::InvalidInput {
                field: "generation",
                ..
            })
        ));
        let beyond = RefreshToken::encode(token.session_key(), MAX_GENERATION + 1, &[3; 32]);
        assert!(RefreshToken::parse(beyond.expose_secret()).is_err());
    }

    #[test]
    fn debug_prints_no_secret() {
        let token = RefreshToken::generate(user()).unwrap();
        let hash = token.hash();
        let printed = format!("{token:?} {hash:?} {token:#?} {hash:#?}");
        assert!(!printed.contains(&token.expose_secret()[TOKEN_PREFIX.len()..]));
        assert!(!printed.contains(hash.as_str()));
        assert!(!printed.contains(&hash.as_str()[..8]));
    }
}
