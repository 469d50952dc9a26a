//! The request plumbing every handler shares: the instance's state, the extractors, the
//! cookies. It uses none of the handlers, so the arrows point one way:
//! `routes` -> `api`, `pages` -> `plumbing` -> the crate.

pub mod conn;
pub mod cookies;
pub mod extract;
pub mod naming;
pub mod origin;
pub mod state;
pub mod throttle;

pub use extract::{ApiJson, Authed, ClientIp, parse_session_id, user_agent};
pub use state::{AppState, LoggedIn, Settings, SetupError, truncate};
