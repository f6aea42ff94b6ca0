//! Turning what sqlx and each engine say into a [`DbError`]: codes, messages free of
//! secrets, and which errors are of the moment.

use crate::driver::connect;
use crate::model::db_error::{DbError, ErrorKind, Said};

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

    /// True when trying the tenant again may succeed: no connection, a round trip given
    /// up on, a lock or serialization conflict, too many connections. An error in a
    /// migration's SQL is not. Each engine names its own transient refusals.
    pub fn is_transient(&self) -> bool {
        if connect::is_no_answer(self) {
            return true;
        }
        match self.kind {
            ErrorKind::Unreachable | ErrorKind::Locked => true,
            ErrorKind::Sql => self.is_transient_code() || connect::is_lost_connection(self),
        }
    }

    /// True when the server refused for a reason of the moment (a lock wait or deadlock,
    /// too many connections, shutting down, the connection lost), not because of the SQL:
    /// each engine names its own, MySQL by error number, PostgreSQL by SQLSTATE.
    pub fn is_transient_code(&self) -> bool {
        match (self.number, self.code.as_deref()) {
            (Some(number), _) => crate::driver::mysql::is_transient_number(number),
            (None, Some(state)) => crate::driver::postgres::is_transient_state(state),
            (None, None) => false,
        }
    }

    /// Wraps a sqlx error; `secret` (a password, as written in the URL or decoded) and any
    /// URL credential the message echoes are scrubbed from it.
    pub fn sqlx(kind: ErrorKind, op: impl Into<String>, err: &sqlx::Error, secret: Option<&str>) -> Self {
        let mut out = DbError::new(kind, op, String::new());
        match (err.as_database_error(), err) {
            (Some(db), _) => {
                out.code = db.code().map(|c| c.into_owned());
                out.message = db.message().to_owned();
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    let said = Said {
                        detail: pg.detail().map(str::to_owned),
                        hint: pg.hint().map(str::to_owned),
                        table: pg.table().map(str::to_owned),
                        column: pg.column().map(str::to_owned),
                        constraint: pg.constraint().map(str::to_owned),
                        line: None,
                        position: match pg.position() {
                            Some(sqlx::postgres::PgErrorPosition::Original(at)) => Some(at),
                            _ => None,
                        },
                    };
                    out.said = (said != Said::default()).then(|| Box::new(said));
                } else if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    out.number = Some(my.number());
                    out.code = my.code().map(str::to_owned);
                }
            }
            // fleetmig's own refusals, worded for the report already.
            (None, sqlx::Error::Protocol(own)) => out.message = own.clone(),
            (None, _) => out.message = err.to_string(),
        }
        // A broken connection is not the database refusing a statement, whatever was being
        // done: it says nothing about the SQL, and another attempt may well succeed.
        if matches!(
            err,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        ) {
            out.kind = ErrorKind::Unreachable;
        }
        out.message = scrubbed(&out.message, secret);
        if let Some(said) = out.said.as_deref_mut() {
            said.detail = said.detail.as_deref().map(|t| scrubbed(t, secret));
            said.hint = said.hint.as_deref().map(|t| scrubbed(t, secret));
        }
        out
    }
}

/// `text` without URL credentials or `secret` (as written in the URL, or decoded).
fn scrubbed(text: &str, secret: Option<&str>) -> String {
    let mut text = crate::model::secret::scrub(text);
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
        let decoded = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !decoded.is_empty() {
            text = text.replace(&decoded, "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind, code: Option<&str>) -> DbError {
        DbError {
            code: code.map(str::to_owned),
            ..DbError::new(kind, "x", "m")
        }
    }

    fn mysql(number: u16) -> DbError {
        DbError {
            number: Some(number),
            ..err(ErrorKind::Sql, Some("HY000"))
        }
    }

    #[test]
    fn transient_errors_are_the_databases_not_the_migrations() {
        assert!(err(ErrorKind::Unreachable, None).is_transient());
        assert!(err(ErrorKind::Sql, Some("40001")).is_transient());
        assert!(err(ErrorKind::Sql, Some("55P03")).is_transient());
        assert!(err(ErrorKind::Sql, Some("08006")).is_transient());
        assert!(!err(ErrorKind::Sql, Some("42P01")).is_transient());
        assert!(!err(ErrorKind::Sql, None).is_transient());
        // MySQL by its error number: its SQLSTATE is HY000 for most.
        assert!(mysql(1205).is_transient());
        assert!(mysql(1213).is_transient());
        assert!(!mysql(1005).is_transient());
    }
}
