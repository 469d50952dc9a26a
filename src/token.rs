//! Refresh tokens and their hashes.
//!
//! A [`RefreshToken`] is 256 bits from the operating system's CSPRNG, written as 43 characters of
//! unpadded URL-safe base64. Only its [`TokenHash`] (SHA-256 of the token text, 64 lowercase hex
//! characters) is ever stored. Neither type prints its value through `Debug`; neither implements
//! `Display`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Error;

/// Number of random bytes in a refresh token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a refresh token's text: 32 bytes in unpadded base64.
pub const TOKEN_LEN: usize = 43;
/// Length of a token hash's text: SHA-256 in hex.
pub const TOKEN_HASH_LEN: usize = 64;

/// A refresh token: the secret a device presents to get new access tokens.
///
/// Hand it to the device once, with [`RefreshToken::expose_secret`], and never store or log it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// Draws a new token from the operating system's random number generator.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(Error::Randomness)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Parses a token presented by a device. Runs no database call.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] unless the text is exactly 43 characters of canonical unpadded
    /// URL-safe base64 (32 bytes).
    pub fn parse(presented: &str) -> Result<Self, Error> {
        if presented.len() != TOKEN_LEN {
            return Err(Error::MalformedToken);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(presented, &mut bytes) {
            // The engine rejects non-canonical trailing bits, so the text round-trips exactly.
            Ok(TOKEN_BYTES) => Ok(Self(presented.to_owned())),
            _ => Err(Error::MalformedToken),
        }
    }

    /// The token's text, to send to the device. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The SHA-256 hash under which the session stores this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
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
    /// Parses a hash computed elsewhere.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] unless the text is exactly 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let well_formed = text.len() == TOKEN_HASH_LEN
            && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::MalformedToken)
        }
    }

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

/// The server-side key from which a rotated refresh token's successor is derived:
/// `successor = HMAC-SHA256(key, presented token)`. Any caller presenting the same token is
/// handed the same successor, so concurrent refreshes never fork a session into several live
/// tokens. `Debug` prints no key.
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
                problem: crate::InputProblem::OutOfRange,
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

    /// The successor of `presented`: what rotating it hands out.
    pub fn successor(&self, presented: &RefreshToken) -> RefreshToken {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104), so the
        // padded block is the same key, and the fixed-size constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        mac.update(b"auth-sessions refresh token rotation v1\0");
        mac.update(presented.expose_secret().as_bytes());
        RefreshToken(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
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

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        let a = RefreshToken::generate().unwrap();
        let b = RefreshToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose_secret().len(), TOKEN_LEN);
        assert_eq!(RefreshToken::parse(a.expose_secret()).unwrap(), a);
    }

    #[test]
    fn hash_is_sha256_lowercase_hex_of_the_token_text() {
        let token = RefreshToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // sha256 of the 43 'A' characters, computed independently.
        let expected = hex::encode(Sha256::digest([b'A'; 43]));
        assert_eq!(token.hash().as_str(), expected);
        assert_eq!(TokenHash::from_hex(&expected).unwrap(), token.hash());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = RefreshToken::generate().unwrap();
        let text = good.expose_secret();
        for bad in [
            String::new(),
            text[..42].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[..42]),
            format!("{}+", &text[..42]),
            format!("{}\0", &text[..42]),
            // Last character with non-zero trailing bits: not canonical.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB".to_owned(),
            "é".repeat(21) + "A",
        ] {
            assert!(
                matches!(RefreshToken::parse(&bad), Err(Error::MalformedToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        let upper = "A".repeat(64);
        let short = "a".repeat(63);
        let non_hex = format!("{}g", "a".repeat(63));
        for bad in [upper.as_str(), short.as_str(), non_hex.as_str(), ""] {
            assert!(matches!(
                TokenHash::from_hex(bad),
                Err(Error::MalformedToken)
            ));
        }
    }

    #[test]
    fn successors_are_deterministic_per_key_and_well_formed() {
        let key = RotationKey::from_bytes(&[7; 32]).unwrap();
        let other = RotationKey::from_bytes(&[8; 40]).unwrap();
        let token = RefreshToken::generate().unwrap();
        let next = key.successor(&token);
        assert_eq!(next, key.successor(&token));
        assert_ne!(next, token);
        assert_ne!(next, other.successor(&token));
        assert_eq!(RefreshToken::parse(next.expose_secret()).unwrap(), next);
        assert!(RotationKey::from_bytes(&[1; 31]).is_err());
        assert_eq!(format!("{key:?}"), "RotationKey(<redacted>)");
    }

    #[test]
    fn debug_prints_no_secret() {
        let token = RefreshToken::generate().unwrap();
        let hash = token.hash();
        let printed = format!("{token:?} {hash:?} {token:#?} {hash:#?}");
        assert!(!printed.contains(token.expose_secret()));
        assert!(!printed.contains(hash.as_str()));
        assert!(!printed.contains(&hash.as_str()[..8]));
    }
}
