//! Other migration tools whose history a tenant may already hold, for `fleetmig adopt`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::model::migration::Version;

/// A migration tool whose history table fleetmig reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Diesel,
    Sqlx,
    GolangMigrate,
    Flyway,
    Dbmate,
    /// Alembic: its `alembic_version` holds only the current head revision id(s), which
    /// carry no order; a [`RevisionMap`] gives each the version it stands for.
    Alembic,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Diesel => "diesel",
            Tool::Sqlx => "sqlx",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Flyway => "flyway",
            Tool::Dbmate => "dbmate",
            Tool::Alembic => "alembic",
        }
    }

    /// The table the tool keeps its history in, in the tenant's schema or database.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Flyway => "flyway_schema_history",
            Tool::Alembic => "alembic_version",
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
#[error("`{0}` is not a tool fleetmig adopts from (known: diesel, sqlx, golang-migrate, flyway, dbmate, alembic)")]
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
            "alembic" => Ok(Tool::Alembic),
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

/// Alembic revision ids, each mapped to the version of the migration set it stands for
/// (`adopt --from alembic --map FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionMap {
    /// The file it was read from, named in every refusal that involves it.
    pub file: PathBuf,
    pub versions: BTreeMap<String, Version>,
}

/// Where `adopt` reads a tenant's history: a tool's table, and for Alembic the revision
/// map its rows are read through. Only Alembic has a map, and it always has one. Borrowed,
/// so that a run's action stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adoption<'m> {
    tool: Tool,
    map: Option<&'m RevisionMap>,
}

/// A revision map given where none is needed, or missing where one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapMisuse {
    #[error(
        "--from alembic needs --map FILE: Alembic's revision ids carry no order, so the map says which version each stands for"
    )]
    Missing,
    #[error("--map is for --from alembic only: {0} keeps versions in its table")]
    NotAlembic(Tool),
}

impl MapMisuse {
    /// Whether `tool` is adopted with a map when `has_map` says there is one: checked
    /// before the map file is read, and again when the adoption is built.
    pub fn check(tool: Tool, has_map: bool) -> Result<(), MapMisuse> {
        match (tool, has_map) {
            (Tool::Alembic, false) => Err(MapMisuse::Missing),
            (Tool::Alembic, true) | (_, false) => Ok(()),
            (tool, true) => Err(MapMisuse::NotAlembic(tool)),
        }
    }
}

impl<'m> Adoption<'m> {
    pub fn new(tool: Tool, map: Option<&'m RevisionMap>) -> Result<Adoption<'m>, MapMisuse> {
        MapMisuse::check(tool, map.is_some())?;
        Ok(Adoption { tool, map })
    }

    pub fn tool(self) -> Tool {
        self.tool
    }

    /// The revision map, for Alembic.
    pub fn map(self) -> Option<&'m RevisionMap> {
        self.map
    }
}

/// `--from TOOL`, and `--map FILE` for Alembic: how the ledger and the report name it.
impl fmt::Display for Adoption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.map {
            Some(map) => write!(f, "--from {} --map {}", self.tool, map.file.display()),
            None => write!(f, "--from {}", self.tool),
        }
    }
}
