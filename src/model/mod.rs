//! Plain data: migrations, tenants and the fleet. No I/O, no async.

pub mod bounds;
pub mod fleet;
pub mod migration;
pub mod secret;
pub mod text;
