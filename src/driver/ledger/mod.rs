//! The run ledger: every run, its plan, and every tenant's outcome, in SQLite (a file beside
//! the fleet file, by default) or PostgreSQL (shared by a team).

mod error;
mod handle;
mod lease;
mod records;
mod schema;
pub mod status;
mod views;

pub use error::LedgerError;
pub use handle::{Ledger, MIN_ANSWER};
pub use lease::{Claimed, SharedRun};
pub use records::{RecordedPolicy, RunPlan, default_ledger_path, runner};

#[cfg(test)]
mod tests;
