// This file was generated with `cornucopia`. Do not modify.

pub mod rotation_keys;
pub mod sessions;
