//! The ledger's error: which ledger, what it was doing, and why it failed, free of secrets.

use std::time::Duration;

/// A ledger error, free of secrets. Its text carries the cause's too, for the places that
/// keep it as one line (a stop reason's detail); the cause is also its `source`.
#[derive(Debug, thiserror::Error)]
#[error("ledger `{ledger}`: {op}: {cause}")]
pub struct LedgerError {
    /// The ledger's URL, any password hidden.
    pub ledger: String,
    /// What the ledger was asked to do ("listing runs", "recording a tenant's outcome").
    pub op: String,
    #[source]
    pub cause: Cause,
}

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The database refused or failed the statement.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// Reaching or opening the ledger failed; the text is the database's, password hidden.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within the ledger's time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The ledger is not one fleetmig can use (not a ledger, a newer schema, SQLite for a
    /// shared run), or could not be made.
    #[error("{0}")]
    Refused(String),
    /// The run's records are gone: the file was deleted or replaced, or the run's rows were.
    #[error("{0}")]
    Lost(String),
    /// A record fleetmig wrote does not read back: named, never taken for a missing one.
    #[error("run `{run_id}`: its {what} cannot be read ({source}); the ledger was edited or damaged")]
    Undecodable {
        run_id: String,
        /// "report", "plan", "stop marker", ...
        what: String,
        #[source]
        source: Undecodable,
    },
}

/// What was wrong with a record that does not read.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A value outside what fleetmig writes (a tenant state no fleetmig knows).
    #[error("unknown value `{0}`")]
    Unknown(String),
}

impl Cause {
    /// Worth another attempt: the connection or the server hiccuped, the statement did not fail.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Cause::Sql(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
            Cause::Sql(sqlx::Error::Database(db)) => db.code().is_some_and(|c| {
                c.starts_with("08")
                    || matches!(
                        &*c,
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300" | "5" | "6" | "261" | "517"
                    )
            }),
            _ => false,
        }
    }

    /// A record of `run_id` that does not read.
    pub(super) fn undecodable(run_id: &str, what: &str, source: impl Into<Undecodable>) -> Cause {
        Cause::Undecodable {
            run_id: run_id.to_owned(),
            what: what.to_owned(),
            source: source.into(),
        }
    }
}

/// A migration version as the ledger holds it (text; a whole number in ledgers written
/// before versions could be text), naming the run and the record when it does not read.
pub(super) fn version(
    run_id: &str,
    what: &str,
    text: Option<String>,
) -> Result<Option<crate::model::migration::Version>, Cause> {
    text.map(|t| {
        crate::model::migration::Version::read(&t)
            .map_err(|_| Cause::undecodable(run_id, what, Undecodable::Unknown(t)))
    })
    .transpose()
}

/// Reads one JSON record of a run, naming the run and the record when it does not read.
pub(super) fn decode<T: serde::de::DeserializeOwned>(run_id: &str, what: &str, text: &str) -> Result<T, Cause> {
    serde_json::from_str(text).map_err(|e| Cause::undecodable(run_id, what, e))
}
