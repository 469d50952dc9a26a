//! The reference auth service on `auth-sessions`: log in with e-mail and password, refresh
//! with rotation and reuse detection, log out, list and revoke devices, over a JSON API and a
//! plain HTML "Your devices" page.
//!
//! Authorising a request checks the JWT's signature *and* that its session is still live, in
//! one routed statement per request (`SessionRepo::record_activity`, which writes rarely). There
//! is no per-instance cache: a revocation committed by any instance is refused by every instance
//! at its next request, at the cost of one primary-key lookup per authorised request.

#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod migrate;
pub mod pages;
pub mod password;
pub mod plumbing;
pub mod routes;
pub mod telemetry;
pub mod users;

pub use error::ApiError;
pub use plumbing::{AppState, Settings};
pub use routes::{router, serve};
