//! Password hashing with argon2id (PHC strings), and the dummy hash that makes an unknown
//! e-mail cost the same as a wrong password.

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest password accepted, in bytes: argon2 hashes any length, this bounds the work an
/// anonymous request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords with one set of argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// A hash of a random password with the same parameters: verified when the e-mail is
    /// unknown, so that answer takes as long as a wrong password.
    dummy: String,
    /// argon2id verifications run (shared by clones).
    verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.argon.params())
            .finish_non_exhaustive()
    }
}

/// Hashing failed (parameters the library refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

impl Passwords {
    /// argon2id, version 0x13, with `params`.
    pub fn new(params: Params) -> Result<Self, HashError> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut random);
        let dummy = argon
            .hash_password(&random, &SaltString::generate(&mut OsRng))
            .map_err(|err| HashError(err.to_string()))?
            .to_string();
        Ok(Self {
            argon,
            dummy,
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &Params {
        self.argon.params()
    }

    /// The parameters of the dummy hash (verified for an unknown e-mail): those in use.
    pub fn dummy_params(&self) -> Option<Params> {
        let parsed = PasswordHash::new(&self.dummy).ok()?;
        Params::try_from(&parsed).ok()
    }

    /// How many argon2id verifications this hasher has run: every call of [`Self::verify`]
    /// runs exactly one, whatever the stored hash (the dummy for an unknown e-mail).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// A PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh salt.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        Ok(self
            .argon
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map_err(|err| HashError(err.to_string()))?
            .to_string())
    }

    /// Whether `password` matches `stored`; with no stored hash (unknown user), verifies against
    /// the dummy hash and answers `false`, taking the same time.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let phc = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(phc) else {
            // A corrupt stored hash: still spend the time, then refuse.
            let _ = self.verify(password, None);
            return false;
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::telemetry::PASSWORD_VERIFICATIONS).increment(1);
        let matches = self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && stored.is_some()
    }
}
