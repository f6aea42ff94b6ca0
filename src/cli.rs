//! Command-line arguments: plain data for clap. `app` turns them into actions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::fleet::Engine;
use crate::model::migration::Version;
use crate::plan::select::Selector;

#[derive(Debug, Parser)]
#[command(
    name = "fleetmig",
    version,
    about = "Apply versioned SQL migrations across a fleet of tenant databases or schemas"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The fleet file.
    #[arg(long, global = true, default_value = "tenants.yaml", env = "FLEETMIG_FLEET")]
    pub fleet: PathBuf,
    /// The migrations folder.
    #[arg(long, global = true, default_value = "migrations", env = "FLEETMIG_MIGRATIONS")]
    pub migrations: PathBuf,
    /// Pick tenants: `id=acme`, `tier=free,region=eu` (all terms), `key!=value`, `*` wildcards.
    /// Repeat to pick tenants matching any.
    #[arg(long = "select", global = true, value_name = "EXPR")]
    pub select: Vec<Selector>,
    /// Tenants in flight at once.
    #[arg(short = 'j', long, global = true, default_value_t = 8)]
    pub concurrency: usize,
    /// Output: text for people, json for machines.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Give up on a tenant that does not answer within this time.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Wait this long for another runner's lock on a tenant.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "60s")]
    pub lock_wait: Duration,
    /// PostgreSQL lock_timeout for migration statements.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "10s")]
    pub lock_timeout: Duration,
    /// PostgreSQL statement_timeout for migration statements (0s: none).
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "0s")]
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Postgres,
    Mysql,
    Sqlite,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Postgres => Engine::Postgres,
            EngineArg::Mysql => Engine::MySql,
            EngineArg::Sqlite => Engine::Sqlite,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the next NNNN_name.up.sql and .down.sql.
    New { name: String },
    /// Show, per tenant, where it is and what would run. Touches nothing.
    Plan {
        #[arg(long)]
        to: Option<Version>,
    },
    /// Apply pending migrations up to head, or to --to.
    Up {
        #[arg(long)]
        to: Option<Version>,
    },
    /// Revert migrations with their down scripts, newest first.
    Down {
        #[arg(long, required_unless_present = "steps", conflicts_with = "steps")]
        to: Option<Version>,
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Per tenant: applied version, pending count and state. Exit 1 unless all are current.
    Status {
        /// Measure against this version instead of head.
        #[arg(long)]
        to: Option<Version>,
    },
    /// The migration set: version, name, reversible or not, checksum.
    History,
    /// Print the SQL an offline DBA would run, history writes included. Connects to nothing.
    Sql {
        #[arg(long, default_value = "0")]
        from: Version,
        #[arg(long)]
        to: Option<Version>,
        /// The SQL dialect; by default the selected tenants' engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Create and use this schema (PostgreSQL) or database (MySQL) first.
        #[arg(long)]
        schema: Option<String>,
    },
    /// Record tenants as being at VERSION without running SQL (adopt a fleet, clear a dirty tenant).
    Stamp { version: Version },
}
