//! fleetmig applies one set of versioned SQL migrations across a fleet of tenant
//! databases or schemas (PostgreSQL, MySQL/MariaDB, SQLite).
//!
//! The library's surface is [`api`] (load a fleet and its migrations, `up`, `status`,
//! `wait_for`), the data it takes and returns in [`model`], and [`error`]. Inside, `load`
//! reads the fleet file and the migrations folder into the model, `plan` decides purely
//! what each tenant needs, `exec` runs it across tenants and emits events, `report` turns
//! events into text or JSON, and only `driver` speaks SQL (see ARCHITECTURE.md).
//!
//! # Library use
//!
//! A service can wait at start-up until its tenants' schema is there, the way
//! `fleetmig wait` does, or migrate its tenants itself, the way `fleetmig up` does.
//! The calls in [`api`] take the fleet file and migrations folder the command line uses:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use fleetmig::api::{self, Options, UpOptions, WaitOptions};
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let fleet = api::load_fleet("tenants.yaml", Duration::from_secs(10)).await?;
//! let migrations = api::load_migrations("migrations")?;
//! let options = Options {
//!     select: vec!["region=eu".parse()?],
//!     ..Options::default()
//! };
//!
//! // Another deploy step migrates: wait up to a minute for every tenant to reach head.
//! let wait = WaitOptions {
//!     timeout: Duration::from_secs(60),
//!     interval: Duration::from_secs(1),
//! };
//! let outcome = api::wait_for(&fleet, &migrations, &options, &wait).await?;
//! if !outcome.arrived {
//!     for t in outcome.laggards() {
//!         eprintln!("tenant {} is {} ({:?})", t.id, t.condition.name(), t.detail);
//!     }
//!     return Err("the schema is not there yet".into());
//! }
//!
//! // Or migrate this service's tenants on start.
//! let report = api::up(&fleet, &migrations, &options, &UpOptions::default()).await?;
//! if !report.is_success() {
//!     return Err(format!("migrating stopped: {}", report.stop_reason).into());
//! }
//!
//! // Where the fleet stands, for a health endpoint.
//! let status = api::status(&fleet, &migrations, &options).await?;
//! println!("{} of {} tenant(s) current", status.count(api::Condition::Current), status.tenants.len());
//! # Ok(())
//! # }
//! ```

pub mod api;
pub(crate) mod app;
pub(crate) mod cli;
pub(crate) mod driver;
pub mod error;
pub(crate) mod exec;
pub(crate) mod load;
pub(crate) mod logging;
pub mod model;
pub(crate) mod plan;
pub(crate) mod report;

/// Not the library's API: what the `fleetmig` binary, the crate's own tests and its
/// benchmarks reach inside it. Anything here may change in any release.
#[doc(hidden)]
pub mod internal {
    pub use crate::app::main;
    pub use crate::driver::postgres::HISTORY_COLUMNS;
    pub use crate::exec::turns::Turns;
    pub use crate::load::{discover, fleet, migrations};
    pub use crate::plan::lint;
    pub use crate::report::html::html as html_report;

    /// The command line's definition, for tests that walk every argument.
    pub fn command() -> clap::Command {
        <crate::cli::Cli as clap::CommandFactory>::command()
    }
}
