//! The ledger's error: which ledger, what it was doing, and why it failed, free of secrets.

/// A ledger error, free of secrets.
#[derive(Debug, thiserror::Error)]
#[error("ledger `{ledger}`: {op}: {message}")]
pub struct LedgerError {
    pub ledger: String,
    pub op: String,
    pub message: String,
}
