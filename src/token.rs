//! Refresh tokens, their hashes and the rotation keys that sign them.
//!
//! # Format
//!
//! A refresh token is `asr2_` followed by 120 characters of unpadded URL-safe base64 encoding 90
//! bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 16 | user id: the routing key (the distribution column on Citus) |
//! | 16 | session id |
//! | 4 | generation, big-endian: 0 at login, +1 at every rotation |
//! | 2 | key id, big-endian: the [`RotationKey`] that signed the token |
//! | 16 | chain: drawn at random at login and kept by every rotation of the session |
//! | 32 | tag: HMAC-SHA256 under that key over a label and the 54 bytes before it |
//! | 4 | check: the first 4 bytes of SHA-256 over the prefix and the 86 bytes before it |
//!
//! The prefix names the format and its version and lets secret scanners recognise a leaked
//! token. The check rejects garbage, truncation and typos before any key is looked up; it is
//! public and proves nothing. The tag is what makes a token genuine: only a holder of the
//! signing key can produce it, so one HMAC tells whether the server issued a token, whatever
//! its generation (see [`crate::SessionRepo::rotate`] for how that bounds the reuse proof).
//! The tag is also the token's secret: an old token of a session reveals its chain, but the
//! current token's tag still needs the key.
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

/// The text every refresh token starts with: format `asr` (auth-sessions refresh), version 2.
pub const TOKEN_PREFIX: &str = "asr2_";
/// Bytes of the chain value every token of a session carries.
const CHAIN_BYTES: usize = 16;
/// Bytes of the tag.
const TAG_BYTES: usize = 32;
/// Bytes the tag covers: user id, session id, generation, key id, chain.
const SIGNED_BYTES: usize = 16 + 16 + 4 + 2 + CHAIN_BYTES;
/// Bytes before the check.
const PAYLOAD_BYTES: usize = SIGNED_BYTES + TAG_BYTES;
/// Bytes of the check.
const CHECK_BYTES: usize = 4;
/// Bytes encoded after the prefix.
const BODY_BYTES: usize = PAYLOAD_BYTES + CHECK_BYTES;
/// Length of a refresh token's text: the prefix and 90 bytes in unpadded base64.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + BODY_BYTES * 4 / 3;
/// The highest generation a token can carry (the database stores it as `integer`).
pub const MAX_GENERATION: u32 = i32::MAX as u32;
/// The highest key id (the database stores it as `smallint`); ids start at 1.
pub const MAX_KEY_ID: u16 = i16::MAX as u16;
/// Most keys a [`KeyRing`] holds: the work of matching a successor is bounded by it.
pub const MAX_KEYS: usize = 16;
/// What the tag's HMAC covers before the token's fields (domain separation).
const TAG_LABEL: &[u8] = b"auth-sessions refresh token v2\0";

/// A refresh token: the secret a device presents to get new access tokens.
///
/// Hand it to the device once, with [`RefreshToken::expose_secret`], and never store or log it.
/// The ids it carries ([`RefreshToken::user_id`], [`RefreshToken::session_id`]) are not
/// secret and route the lookup to one shard. Tokens are minted by a [`RotationKey`]
/// ([`RotationKey::mint`], [`RotationKey::successor`]) or by the repository
/// ([`crate::SessionRepo::create`], [`crate::SessionRepo::mint_token`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The text; the chain and tag are read back from it when needed.
    text: String,
    key: SessionKey,
    generation: u32,
    key_id: u16,
}

impl RefreshToken {
    /// Parses a token presented by a device. Runs no database call and needs no key: whether
    /// the token is genuine is decided by the repository, with its keys.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] unless the text is the prefix and exactly 120 characters of
    /// canonical unpadded URL-safe base64 whose check matches, whose generation is at most
    /// [`MAX_GENERATION`] and whose key id is from 1 to [`MAX_KEY_ID`].
    pub fn parse(presented: &str) -> Result<Self, Error> {
        if presented.len() != TOKEN_LEN {
            return Err(Error::MalformedToken);
        }
        let body = presented
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(Error::MalformedToken)?;
        let mut bytes = [0u8; BODY_BYTES];
        // The engine rejects padding and non-canonical trailing bits (90 bytes encode with
        // none), so the text round-trips exactly.
        match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
            Ok(BODY_BYTES) => {}
            _ => return Err(Error::MalformedToken),
        }
        let (payload, check) = bytes.split_at(PAYLOAD_BYTES);
        if check != check_of(payload) {
            return Err(Error::MalformedToken);
        }
        let fields = Fields::read(payload).ok_or(Error::MalformedToken)?;
        if fields.generation > MAX_GENERATION || !(1..=MAX_KEY_ID).contains(&fields.key_id) {
            return Err(Error::MalformedToken);
        }
        Ok(Self {
            text: presented.to_owned(),
            key: fields.key,
            generation: fields.generation,
            key_id: fields.key_id,
        })
    }

    /// The token of `fields` signed by `key`.
    fn signed(key: &RotationKey, fields: Fields) -> Self {
        let tag = key.tag(&fields.signed_bytes());
        Self::encode(Fields { tag, ..fields })
    }

    fn encode(fields: Fields) -> Self {
        let mut bytes = [0u8; BODY_BYTES];
        bytes[..SIGNED_BYTES].copy_from_slice(&fields.signed_bytes());
        bytes[SIGNED_BYTES..PAYLOAD_BYTES].copy_from_slice(&fields.tag);
        let check = check_of(&bytes[..PAYLOAD_BYTES]);
        bytes[PAYLOAD_BYTES..].copy_from_slice(&check);
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
        Self {
            text,
            key: fields.key,
            generation: fields.generation,
            key_id: fields.key_id,
        }
    }

    /// The fields, read back from the text (which `parse` or `encode` made well formed).
    fn fields(&self) -> Fields {
        let mut bytes = [0u8; BODY_BYTES];
        let decoded = self
            .text
            .get(TOKEN_PREFIX.len()..)
            .and_then(|body| URL_SAFE_NO_PAD.decode_slice(body, &mut bytes).ok());
        match decoded.and_then(|_| Fields::read(&bytes[..PAYLOAD_BYTES])) {
            Some(fields) => fields,
            // Unreachable for a token made by this module; a token that verifies nothing.
            None => Fields {
                key: self.key,
                generation: self.generation,
                key_id: self.key_id,
                chain: [0; CHAIN_BYTES],
                tag: [0; TAG_BYTES],
            },
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

    /// The id of the [`RotationKey`] that signed the token (not secret).
    pub fn key_id(&self) -> u16 {
        self.key_id
    }
}

/// The fields of a token, as encoded.
#[derive(Clone, Copy)]
struct Fields {
    key: SessionKey,
    generation: u32,
    key_id: u16,
    chain: [u8; CHAIN_BYTES],
    tag: [u8; TAG_BYTES],
}

impl Fields {
    fn read(payload: &[u8]) -> Option<Self> {
        let field = |from: usize, len: usize| payload.get(from..from + len);
        Some(Self {
            key: SessionKey::new(
                Uuid::from_slice(field(0, 16)?).ok()?,
                Uuid::from_slice(field(16, 16)?).ok()?,
            ),
            generation: u32::from_be_bytes(field(32, 4)?.try_into().ok()?),
            key_id: u16::from_be_bytes(field(36, 2)?.try_into().ok()?),
            chain: field(38, CHAIN_BYTES)?.try_into().ok()?,
            tag: field(SIGNED_BYTES, TAG_BYTES)?.try_into().ok()?,
        })
    }

    /// The bytes the tag covers.
    fn signed_bytes(&self) -> [u8; SIGNED_BYTES] {
        let mut bytes = [0u8; SIGNED_BYTES];
        bytes[0..16].copy_from_slice(self.key.user_id.as_bytes());
        bytes[16..32].copy_from_slice(self.key.session_id.as_bytes());
        bytes[32..36].copy_from_slice(&self.generation.to_be_bytes());
        bytes[36..38].copy_from_slice(&self.key_id.to_be_bytes());
        bytes[38..].copy_from_slice(&self.chain);
        bytes
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

/// A server-side key that signs refresh tokens, with its id (carried by every token it signs).
///
/// Every token is `HMAC-SHA256(key, label, user id, session id, generation, key id, chain)`
/// (see the module's format table), so:
///
/// - one HMAC proves whether a token of any generation was issued by the server; a forged one
///   is refused before any statement, at a constant cost;
/// - successors are derived, not drawn: every caller presenting the same token is handed the
///   same successor, and concurrent refreshes never fork a session;
/// - whoever knows the key and one token of a session (its chain) can derive every token of
///   that session. Keep the key in the service's secret store (or wrapped, see
///   [`crate::KeySource`]), never beside the data in clear.
///
/// `Debug` prints the id, never the key.
#[derive(Clone)]
pub struct RotationKey {
    id: u16,
    key: [u8; 32],
}

impl RotationKey {
    /// Least accepted key length, in bytes.
    pub const MIN_LEN: usize = 32;

    /// Key 1 from secret bytes (at least 32; longer keys are hashed down to 32).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `rotation_key`) for fewer than [`RotationKey::MIN_LEN`]
    /// bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::new(1, bytes)
    }

    /// Key `id` (1 to [`MAX_KEY_ID`]) from secret bytes (at least 32; longer keys are hashed
    /// down to 32).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `rotation_key`) for fewer than [`RotationKey::MIN_LEN`]
    /// bytes, or (field `key_id`) for an id out of range.
    pub fn new(id: u16, bytes: &[u8]) -> Result<Self, Error> {
        if !(1..=MAX_KEY_ID).contains(&id) {
            return Err(Error::InvalidInput {
                field: "key_id",
                problem: InputProblem::OutOfRange,
            });
        }
        let key = secret_key(bytes, "rotation_key")?;
        Ok(Self { id, key })
    }

    /// Key `id` drawn from the operating system's random generator.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes;
    /// [`Error::InvalidInput`] (field `key_id`) for an id out of range.
    pub fn generate(id: u16) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(Error::Randomness)?;
        Self::new(id, &key)
    }

    /// The key's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The key's bytes, to store or wrap it.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// A new token for a new session of `user_id`, generation 0, signed by this key; its
    /// session id and chain are drawn at random.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes.
    pub fn mint(&self, user_id: Uuid) -> Result<RefreshToken, Error> {
        let mut random = [0u8; 16 + CHAIN_BYTES];
        getrandom::fill(&mut random).map_err(Error::Randomness)?;
        let (id, chain) = random.split_at(16);
        let session_id =
            uuid::Builder::from_random_bytes(id.try_into().unwrap_or_default()).into_uuid();
        Ok(RefreshToken::signed(
            self,
            Fields {
                key: SessionKey::new(user_id, session_id),
                generation: 0,
                key_id: self.id,
                chain: chain.try_into().unwrap_or_default(),
                tag: [0; TAG_BYTES],
            },
        ))
    }

    /// The successor of `presented`, signed by this key: the same ids and chain, the next
    /// generation. It does not check that `presented` is genuine (see
    /// [`RotationKey::verifies`]).
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
        Ok(RefreshToken::signed(
            self,
            Fields {
                generation: presented.generation + 1,
                key_id: self.id,
                ..presented.fields()
            },
        ))
    }

    /// Whether this key signed `token`: its id and the tag (compared in constant time). One
    /// HMAC, whatever the token claims.
    pub fn verifies(&self, token: &RefreshToken) -> bool {
        let fields = token.fields();
        token.key_id == self.id
            && self
                .mac()
                .chain_update(TAG_LABEL)
                .chain_update(fields.signed_bytes())
                .verify_slice(&fields.tag)
                .is_ok()
    }

    fn tag(&self, signed: &[u8; SIGNED_BYTES]) -> [u8; TAG_BYTES] {
        self.mac()
            .chain_update(TAG_LABEL)
            .chain_update(signed)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104), so the
        // padded block is the same key, and the fixed-size constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key);
        <Hmac<Sha256> as KeyInit>::new(&block.into())
    }
}

/// 32 key bytes from secret input of at least 32 bytes: the input itself, or its SHA-256 when
/// longer. [`Error::InvalidInput`] naming `field` for shorter input.
pub(crate) fn secret_key(bytes: &[u8], field: &'static str) -> Result<[u8; 32], Error> {
    if bytes.len() < RotationKey::MIN_LEN {
        return Err(Error::InvalidInput {
            field,
            problem: InputProblem::OutOfRange,
        });
    }
    let mut key = [0u8; 32];
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
    } else {
        key.copy_from_slice(&Sha256::digest(bytes));
    }
    Ok(key)
}

impl fmt::Debug for RotationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RotationKey({}, <redacted>)", self.id)
    }
}

/// The rotation keys a repository knows: one active key that signs new tokens and successors,
/// and previous keys that still verify the tokens they signed, each by its id.
///
/// Changing keys logs nobody out: add the new key to every instance first, then make it
/// active, then drop the old one once no session can still hold a token it signed (README,
/// "Rotation keys").
#[derive(Clone)]
pub struct KeyRing {
    /// Active first, then the others by id.
    keys: Vec<RotationKey>,
}

impl KeyRing {
    /// A ring of one key, active.
    pub fn new(active: RotationKey) -> Self {
        Self { keys: vec![active] }
    }

    /// This ring with `key` added as a previous key: it verifies the tokens it signed but signs
    /// nothing new.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `key_id`) when the ring already has a key with that id,
    /// or (field `rotation_keys`) when it already holds [`MAX_KEYS`].
    pub fn with_previous(mut self, key: RotationKey) -> Result<Self, Error> {
        if self.get(key.id).is_some() {
            return Err(Error::InvalidInput {
                field: "key_id",
                problem: InputProblem::OutOfRange,
            });
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(Error::InvalidInput {
                field: "rotation_keys",
                problem: InputProblem::OutOfRange,
            });
        }
        self.keys.push(key);
        self.keys[1..].sort_by_key(|key| key.id);
        Ok(self)
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &RotationKey {
        &self.keys[0]
    }

    /// The key with this id.
    pub fn get(&self, id: u16) -> Option<&RotationKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// Every key, the active one first.
    pub fn keys(&self) -> impl Iterator<Item = &RotationKey> {
        self.keys.iter()
    }

    /// Whether a key of this ring signed `token` (one HMAC at most).
    pub fn verifies(&self, token: &RefreshToken) -> bool {
        self.get(token.key_id)
            .is_some_and(|key| key.verifies(token))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u16> = self.keys.iter().map(|key| key.id).collect();
        f.debug_struct("KeyRing")
            .field("active", &ids[0])
            .field("ids", &ids)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Uuid {
        Uuid::from_u128(0x6f1c_2a4e_0d55_4b8e_9a59_2f0c_7c1e_3b11)
    }

    fn key() -> RotationKey {
        RotationKey::from_bytes(&[7; 32]).unwrap()
    }

    #[test]
    fn minted_tokens_parse_back_carry_their_ids_and_differ() {
        let a = key().mint(user()).unwrap();
        let b = key().mint(user()).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.session_id(), b.session_id());
        assert_eq!(a.session_id().get_version_num(), 4);
        assert_eq!(a.expose_secret().len(), TOKEN_LEN);
        assert_eq!(TOKEN_LEN, 125);
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        let parsed = RefreshToken::parse(a.expose_secret()).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.user_id(), user());
        assert_eq!(parsed.generation(), 0);
        assert_eq!(parsed.key_id(), 1);
        assert!(key().verifies(&parsed));
    }

    #[test]
    fn hash_is_sha256_lowercase_hex_of_the_whole_text() {
        let token = key().mint(user()).unwrap();
        let expected = hex::encode(Sha256::digest(token.expose_secret().as_bytes()));
        assert_eq!(token.hash().as_str(), expected);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = key().mint(user()).unwrap();
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
            format!("asr1_{}", &text[5..]),
            format!("{}=", &text[..last]),
            format!("{}+", &text[..last]),
            format!("{}\0", &text[..last]),
            flipped,
            "é".repeat(TOKEN_LEN / 2) + "A",
            // The previous format: `asr1_` and 96 characters.
            format!("asr1_{}", "A".repeat(96)),
        ] {
            assert!(
                matches!(RefreshToken::parse(&bad), Err(Error::MalformedToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_key_id_out_of_range_is_malformed() {
        let token = key().mint(user()).unwrap();
        for key_id in [0, MAX_KEY_ID + 1, u16::MAX] {
            let forged = RefreshToken::encode(Fields {
                key_id,
                ..token.fields()
            });
            assert!(
                RefreshToken::parse(forged.expose_secret()).is_err(),
                "{key_id}"
            );
        }
    }

    #[test]
    fn any_altered_field_fails_the_tag_though_the_check_is_recomputed() {
        let token = key().mint(user()).unwrap();
        let fields = token.fields();
        let altered = [
            Fields {
                key: SessionKey::new(Uuid::from_u128(42), token.session_id()),
                ..fields
            },
            Fields {
                key: SessionKey::new(user(), Uuid::from_u128(42)),
                ..fields
            },
            Fields {
                generation: 7,
                ..fields
            },
            Fields {
                key_id: 2,
                ..fields
            },
            Fields {
                chain: [9; CHAIN_BYTES],
                ..fields
            },
            Fields {
                tag: [9; TAG_BYTES],
                ..fields
            },
        ];
        for fields in altered {
            let forged = RefreshToken::parse(RefreshToken::encode(fields).expose_secret())
                .expect("a re-encoded token is well formed");
            assert!(!key().verifies(&forged));
            assert_ne!(forged.hash(), token.hash());
        }
    }

    #[test]
    fn successors_keep_the_ids_and_chain_count_generations_and_depend_on_the_key() {
        let other = RotationKey::new(2, &[8; 40]).unwrap();
        let token = key().mint(user()).unwrap();
        let next = key().successor(&token).unwrap();
        assert_eq!(next, key().successor(&token).unwrap());
        assert_ne!(next, token);
        let signed_by_other = other.successor(&token).unwrap();
        assert_ne!(next, signed_by_other);
        assert_eq!(signed_by_other.key_id(), 2);
        assert!(other.verifies(&signed_by_other) && !key().verifies(&signed_by_other));
        assert_eq!(next.session_key(), token.session_key());
        assert_eq!(next.fields().chain, token.fields().chain);
        assert_eq!(next.generation(), 1);
        assert!(key().verifies(&next));
        assert_eq!(RefreshToken::parse(next.expose_secret()).unwrap(), next);
        assert!(RotationKey::from_bytes(&[1; 31]).is_err());
        assert!(RotationKey::new(0, &[1; 32]).is_err());
        assert!(RotationKey::new(MAX_KEY_ID + 1, &[1; 32]).is_err());
        assert_eq!(format!("{other:?}"), "RotationKey(2, <redacted>)");
    }

    #[test]
    fn a_ring_verifies_with_the_key_a_token_names() {
        let old = key();
        let new = RotationKey::new(2, &[8; 32]).unwrap();
        let ring = KeyRing::new(new.clone())
            .with_previous(old.clone())
            .unwrap();
        assert_eq!(ring.active().id(), 2);
        let by_old = old.mint(user()).unwrap();
        let by_new = new.successor(&by_old).unwrap();
        assert!(ring.verifies(&by_old) && ring.verifies(&by_new));
        assert!(!KeyRing::new(new.clone()).verifies(&by_old));
        assert!(ring.clone().with_previous(old).is_err());
        assert_eq!(format!("{ring:?}"), "KeyRing { active: 2, ids: [2, 1] }");
        let mut full = KeyRing::new(new);
        for id in 3..=(MAX_KEYS as u16 + 1) {
            full = full
                .with_previous(RotationKey::new(id, &[1; 32]).unwrap())
                .unwrap();
        }
        assert!(
            full.with_previous(RotationKey::new(100, &[1; 32]).unwrap())
                .is_err()
        );
    }

    #[test]
    fn the_last_generation_has_no_successor() {
        let token = key().mint(user()).unwrap();
        let last = RefreshToken::signed(
            &key(),
            Fields {
                generation: MAX_GENERATION,
                ..token.fields()
            },
        );
        assert_eq!(RefreshToken::parse(last.expose_secret()).unwrap(), last);
        assert!(matches!(
            key().successor(&last),
            Err(Error::InvalidInput {
                field: "generation",
                ..
            })
        ));
        let beyond = RefreshToken::signed(
            &key(),
            Fields {
                generation: MAX_GENERATION + 1,
                ..token.fields()
            },
        );
        assert!(RefreshToken::parse(beyond.expose_secret()).is_err());
    }

    #[test]
    fn debug_prints_no_secret() {
        let token = key().mint(user()).unwrap();
        let hash = token.hash();
        let printed = format!("{token:?} {hash:?} {token:#?} {hash:#?}");
        assert!(!printed.contains(&token.expose_secret()[TOKEN_PREFIX.len()..]));
        assert!(!printed.contains(hash.as_str()));
        assert!(!printed.contains(&hash.as_str()[..8]));
    }
}
