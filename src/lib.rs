//! fleetmig applies one set of versioned SQL migrations across a fleet of tenant
//! databases or schemas (PostgreSQL, MySQL/MariaDB, SQLite).
//!
//! The flow: [`load`] reads the fleet file and the migrations folder into the [`model`];
//! [`plan`] decides, purely, what each tenant needs; [`exec`] runs it across tenants and
//! emits events; [`report`] turns events into text or JSON. Only [`driver`] speaks SQL.
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
pub mod app;
pub mod cli;
pub mod driver;
pub mod error;
pub mod exec;
pub mod load;
pub mod logging;
pub mod model;
pub mod plan;
pub mod report;
