//! Setup errors: anything that stops a command before it touches a tenant.

use crate::load::fleet::{FleetError, MapError};
use crate::load::migrations::MigrationsError;
use crate::model::db_error::DbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// `adopt --map`'s revision map.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The `discover:` query could not run: the registry is unreachable or refused it.
    #[error("fleet file `{path}`: discover: registry `{registry}`")]
    Discover {
        path: String,
        /// The registry's URL, password hidden.
        registry: String,
        /// Boxed: a database error is large, and every `Result<_, Error>` would carry its size.
        #[source]
        source: Box<DbError>,
    },
    #[error("migrations folder `{dir}`")]
    Migrations {
        dir: String,
        #[source]
        source: MigrationsError,
    },
    #[error(transparent)]
    Ledger(#[from] crate::driver::ledger::LedgerError),
    #[error("{0}")]
    Usage(String),
    /// Selector waves that leave selected tenants in no wave.
    #[error(transparent)]
    Waves(#[from] crate::plan::waves::Unplaced),
    /// `--partition K/N` picked no tenant, or `--canary-only` runs in another share: not an
    /// error, nothing to do (exit 0), said on stderr.
    #[error("{0}")]
    NothingHere(String),
    #[error("nothing was run: {0}")]
    Refused(String),
    #[error("writing output")]
    Output(#[from] std::io::Error),
    /// A run ran (tenants may have changed) but its output could not be written.
    #[error("run `{run_id}` ran ({outcome}), but its report could not be written to {target}; {kept}")]
    Unreported {
        run_id: String,
        /// The stop reason and the counts, for stderr.
        outcome: String,
        /// Standard output, or the `--report` file.
        target: String,
        /// Where the report can still be found.
        kept: String,
        #[source]
        source: std::io::Error,
    },
}

/// The error and its causes on one line, each named once.
pub fn render(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
