//! fleetmig applies one set of versioned SQL migrations across a fleet of tenant
//! databases or schemas (PostgreSQL, MySQL/MariaDB, SQLite).
//!
//! The flow: [`load`] reads the fleet file and the migrations folder into the [`model`];
//! [`plan`] decides, purely, what each tenant needs; [`exec`] runs it across tenants and
//! emits events; [`report`] turns events into text or JSON. Only [`driver`] speaks SQL.

pub mod app;
pub mod cli;
pub mod driver;
pub mod error;
pub mod exec;
pub mod load;
pub mod model;
pub mod plan;
pub mod report;
