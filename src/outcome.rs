//! What validating or rotating a presented refresh token found.

use uuid::Uuid;

use crate::{Error, RefreshToken, Session};

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeReason {
    /// Its user (or support, on their behalf) logged it out.
    User,
    /// A replaced refresh token was presented again: theft suspected (RFC 9700, 4.14.2).
    TokenReused,
    /// The per-user cap made room for a newer session.
    Evicted,
}

/// The result of [`crate::SessionRepo::validate`]. Validation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// The token opens this live session (a token replaced by the current one less than the
    /// grace window ago counts too).
    Valid(Session),
    /// The session passed its absolute expiry.
    Expired,
    /// The session was unused for longer than the idle timeout.
    IdleTimedOut,
    /// The session was revoked.
    Revoked(RevokeReason),
    /// The token was replaced by rotation and is being presented again after the grace window
    /// (or after its successor was rotated too): theft suspected. Validation reports it;
    /// [`crate::SessionRepo::rotate`] also revokes the session.
    TokenReused {
        /// The session the token belonged to.
        session_id: Uuid,
        /// Its user.
        user_id: Uuid,
    },
    /// No session ever held this token, or it was cleaned up.
    Unknown,
}

/// The result of [`crate::SessionRepo::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The session now answers to `token` only; hand it to the device. Concurrent callers
    /// presenting the same token within the grace window all receive this same token.
    Rotated {
        /// The session, with its new activity time.
        session: Session,
        /// The new refresh token.
        token: RefreshToken,
    },
    /// The session passed its absolute expiry.
    Expired,
    /// The session was unused for longer than the idle timeout.
    IdleTimedOut,
    /// The session was revoked before this call.
    Revoked(RevokeReason),
    /// A replaced token was presented after the grace window: the session is now revoked
    /// (RFC 9700, 4.14.2). Log or alert on it.
    TokenReused {
        /// The session, now revoked.
        session_id: Uuid,
        /// Its user.
        user_id: Uuid,
    },
    /// No session ever held this token, or it was cleaned up.
    Unknown,
}

/// Why the database refused a token's session: every state but live.
pub(crate) enum Refusal {
    Expired,
    IdleTimedOut,
    Revoked(RevokeReason),
}

impl Refusal {
    /// A session state as the database names it (`state` or a refusing `outcome`): `None`
    /// when the session is live.
    pub(crate) fn parse(state: &str, reason: Option<&str>) -> Result<Option<Self>, Error> {
        Ok(Some(match state {
            "live" | "rotated" => return Ok(None),
            "expired" => Self::Expired,
            "idle_timed_out" => Self::IdleTimedOut,
            "revoked" => Self::Revoked(match reason {
                Some("user") => RevokeReason::User,
                Some("token_reused") => RevokeReason::TokenReused,
                Some("evicted") => RevokeReason::Evicted,
                _ => return Err(Error::UnexpectedResponse("unknown revocation reason")),
            }),
            _ => return Err(Error::UnexpectedResponse("unknown session outcome")),
        }))
    }
}

impl From<Refusal> for Validation {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Expired => Self::Expired,
            Refusal::IdleTimedOut => Self::IdleTimedOut,
            Refusal::Revoked(reason) => Self::Revoked(reason),
        }
    }
}

impl From<Refusal> for Rotation {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Expired => Self::Expired,
            Refusal::IdleTimedOut => Self::IdleTimedOut,
            Refusal::Revoked(reason) => Self::Revoked(reason),
        }
    }
}
