//! placeholder
pub use db;
