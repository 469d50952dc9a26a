//! Short-lived access tokens: HS256 JWTs naming the user (`sub`) and the session (`sid`).

use std::time::Duration;

use auth_sessions::SessionKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The issuer and the audience written into and required of every access token.
const ISSUER: &str = "auth-service";
const AUDIENCE: &str = "auth-service";

/// Clock skew tolerated between instances, for `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    sid: Uuid,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Issues and checks access tokens with one secret.
#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// HS256 with `secret`; tokens live `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// How long a token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `session`.
    pub fn issue(&self, session: SessionKey) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: session.user_id,
            sid: session.session_id,
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The session a token names, if its signature, issuer, audience, expiry, `nbf` and `iat`
    /// (not in the future, give or take the leeway) check out. Says nothing about whether the
    /// session is still live: the caller asks the database.
    pub fn verify(&self, token: &str) -> Option<SessionKey> {
        if token.len() > 2048 {
            return None;
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        if data.claims.iat > jsonwebtoken::get_current_timestamp() + LEEWAY_SECS {
            return None;
        }
        Some(SessionKey::new(data.claims.sub, data.claims.sid))
    }
}
