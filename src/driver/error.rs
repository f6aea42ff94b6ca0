//! A database error as fleetmig reports it: what it was doing, the server's code and message.

use serde::Serialize;

/// What kind of trouble, for deciding what the tenant's outcome is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No session could be opened (refused, timed out, bad credentials, TLS), or the one
    /// open was lost (the connection broke): the database did not refuse anything.
    Unreachable,
    /// Another runner holds the tenant's lock.
    Locked,
    /// The database refused a statement.
    Sql,
}

/// An error from one tenant's database, free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{op}: {message}{}", code.as_ref().map(|c| format!(" (code {c})")).unwrap_or_default())]
pub struct DbError {
    pub kind: ErrorKind,
    /// What fleetmig was doing: "connecting", "applying 0003_add_email", ...
    pub op: String,
    /// The database's error code (SQLSTATE, MySQL error number), when it gave one.
    pub code: Option<String>,
    pub message: String,
}

impl DbError {
    /// The statement named a table, column, function or schema that does not exist: one
    /// a pending migration may still create.
    pub fn is_missing_object(&self) -> bool {
        match self.code.as_deref() {
            // PostgreSQL: undefined table, column, function, object; invalid schema name.
            Some("42P01" | "42703" | "42883" | "42704" | "3F000") => true,
            // MySQL/MariaDB: no such table, unknown column (SQLSTATE and error number).
            Some("42S02" | "42S22" | "1146" | "1054") => true,
            // SQLite gives one code for every error; its message names the case.
            _ => ["no such table", "no such column", "no such function"]
                .iter()
                .any(|m| self.message.starts_with(m)),
        }
    }

    pub fn new(kind: ErrorKind, op: impl Into<String>, message: impl Into<String>) -> Self {
        DbError {
            kind,
            op: op.into(),
            code: None,
            message: message.into(),
        }
    }

    /// Wraps a sqlx error; `secret` (a password, as written in the URL or decoded) and any
    /// URL credential the message echoes are scrubbed from it.
    pub fn sqlx(kind: ErrorKind, op: impl Into<String>, err: &sqlx::Error, secret: Option<&str>) -> Self {
        let (code, message) = match (err.as_database_error(), err) {
            (Some(db), _) => (db.code().map(|c| c.into_owned()), db.message().to_owned()),
            // fleetmig's own refusals, worded for the report already.
            (None, sqlx::Error::Protocol(own)) => (None, own.clone()),
            (None, _) => (None, err.to_string()),
        };
        // A broken connection is not the database refusing a statement, whatever was being
        // done: it says nothing about the SQL, and another attempt may well succeed.
        let kind = match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => ErrorKind::Unreachable,
            _ => kind,
        };
        let mut message = crate::model::secret::scrub(&message);
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            message = message.replace(secret, "***");
            let decoded = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !decoded.is_empty() {
                message = message.replace(&decoded, "***");
            }
        }
        DbError {
            kind,
            op: op.into(),
            code,
            message,
        }
    }
}
