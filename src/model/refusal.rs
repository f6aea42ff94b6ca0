//! Why a tenant's history is refused: what `plan` finds wrong and every report names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::migration::Version;

/// Why a tenant is not touched. Each names the version and, where there is one, the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    #[error("migration {version} is dirty: it failed part way; fix the database by hand, then `fleetmig stamp`")]
    Dirty { version: Version },
    #[error(
        "migration {version} was edited after it was applied: `{}` has checksum {file_checksum}, the tenant recorded {recorded}",
        path.display()
    )]
    Modified {
        version: Version,
        path: PathBuf,
        recorded: String,
        file_checksum: String,
    },
    #[error("applied migration {version} (`{name}`) has no file in the migrations folder")]
    Unknown { version: Version, name: String },
    #[error(
        "migration {version} (`{}`) is pending but older than applied migration {newest}: out-of-order migrations are refused",
        path.display()
    )]
    OutOfOrder {
        version: Version,
        path: PathBuf,
        newest: Version,
    },
    #[error(
        "migration {version} has {} (`{}`): it cannot be reverted",
        if *empty { "an empty down script, only comments or white space" } else { "no down script" },
        path.display()
    )]
    Irreversible {
        version: Version,
        path: PathBuf,
        /// Its down script is there but holds no statement.
        #[serde(default)]
        empty: bool,
    },
    /// An applied migration whose file now carries another version: the same checksum,
    /// renumbered (not edited).
    #[error(
        "applied migration {recorded} (`{name}`) was renumbered: its file is now migration {version}, `{}` (the same checksum)",
        path.display()
    )]
    Renumbered {
        recorded: Version,
        name: String,
        version: Version,
        path: PathBuf,
    },
    /// `adopt`: what another tool's history (or fleetmig's own) holds that fleetmig will
    /// not take as it is.
    #[error("{tool}'s `{table}`: {why}")]
    Foreign { tool: String, table: String, why: String },
}

impl Refusal {
    /// One line for a person, without advice: checksums cut to 12 characters. `Display`
    /// keeps them whole, for JSON and the ledger.
    pub fn brief(&self) -> String {
        match self {
            Refusal::Dirty { version } => format!("migration {version} is dirty (it failed part way)"),
            Refusal::Modified {
                version,
                path,
                recorded,
                file_checksum,
            } => format!(
                "migration {version} was edited after it was applied: `{}` is {}, the tenant recorded {}",
                path.display(),
                short_checksum(file_checksum),
                short_checksum(recorded)
            ),
            Refusal::Unknown { version, name } => {
                format!("applied migration {version} (`{name}`) has no file in the migrations folder")
            }
            Refusal::OutOfOrder { version, path, newest } => format!(
                "migration {version} (`{}`) is pending but older than applied migration {newest}",
                path.display()
            ),
            Refusal::Irreversible { version, path, empty } => format!(
                "migration {version} has {} (`{}`)",
                if *empty {
                    "an empty down script"
                } else {
                    "no down script"
                },
                path.display()
            ),
            Refusal::Renumbered {
                recorded,
                version,
                path,
                ..
            } => format!(
                "applied migration {recorded} was renumbered: its file is now migration {version} (`{}`)",
                path.display()
            ),
            Refusal::Foreign { .. } => self.to_string(),
        }
    }
}

impl Refusal {
    /// A few words that say which problem, for a table cell that points to the grouped
    /// message below it.
    pub fn tag(&self) -> String {
        match self {
            Refusal::Dirty { version } => format!("migration {version} dirty"),
            Refusal::Modified { version, .. } => format!("migration {version} edited"),
            Refusal::Unknown { version, .. } => format!("migration {version} has no file"),
            Refusal::OutOfOrder { version, .. } => format!("migration {version} out of order"),
            Refusal::Irreversible {
                version, empty: true, ..
            } => format!("migration {version} has an empty down script"),
            Refusal::Irreversible { version, .. } => format!("migration {version} has no down script"),
            Refusal::Renumbered { recorded, version, .. } => format!("migration {recorded} renumbered to {version}"),
            Refusal::Foreign { tool, .. } => format!("{tool} history not adopted"),
        }
    }
}

/// A checksum as people read it: its first 12 hex characters.
pub fn short_checksum(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}
