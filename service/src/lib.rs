//! The reference auth service on `auth-sessions`: log in with e-mail and password, refresh
//! with rotation and reuse detection, log out, list and revoke devices, over a JSON API and a
//! plain HTML "Your devices" page.
//!
//! Authorising a request checks the JWT's signature *and* that its session is still live:
//! from memory by default (`SessionRepo::live_sessions`: every ending of a session pushed by
//! the database to every instance, within a configured staleness bound whatever fails, activity
//! written in batches), or with one routed statement per request
//! (`SessionRepo::record_activity`). Either way a revocation committed by any instance is
//! refused by every instance.

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
