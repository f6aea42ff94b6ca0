//! Other migration tools whose history a tenant may already hold, for `fleetmig adopt`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A migration tool whose history table fleetmig reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Diesel,
    Sqlx,
    GolangMigrate,
    Flyway,
    Dbmate,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Diesel => "diesel",
            Tool::Sqlx => "sqlx",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Flyway => "flyway",
            Tool::Dbmate => "dbmate",
        }
    }

    /// The table the tool keeps its history in, in the tenant's schema or database.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Flyway => "flyway_schema_history",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool name fleetmig does not adopt from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a tool fleetmig adopts from (known: diesel, sqlx, golang-migrate, flyway, dbmate)")]
pub struct BadTool(pub String);

impl FromStr for Tool {
    type Err = BadTool;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "diesel" => Ok(Tool::Diesel),
            "sqlx" => Ok(Tool::Sqlx),
            "golang-migrate" | "migrate" => Ok(Tool::GolangMigrate),
            "flyway" => Ok(Tool::Flyway),
            "dbmate" => Ok(Tool::Dbmate),
            _ => Err(BadTool(s.to_owned())),
        }
    }
}

/// One row of another tool's history table, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRow {
    /// The version as the tool wrote it.
    pub version: String,
    /// False for a row the tool marks failed (sqlx, Flyway) or dirty (golang-migrate).
    pub ok: bool,
    /// Flyway's row type (`SQL`, `BASELINE`, `UNDO_SQL`, ...); empty for the others.
    pub kind: String,
}
