//! Plain data: migrations, tenants, the fleet, run policies and what a run did. No I/O,
//! no async.

pub mod bounds;
pub mod catalog;
pub mod check;
pub mod db_error;
pub mod drift;
pub mod fleet;
pub mod foreign;
pub mod lint;
pub mod migration;
pub mod notify;
pub mod policy;
pub mod record;
pub mod refusal;
pub mod run;
pub mod secret;
pub mod selector;
pub mod sets;
pub mod text;
pub mod window;
