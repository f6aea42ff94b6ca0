//! A database error as fleetmig reports it: what it was doing, the server's codes, message
//! and whatever else it said (PostgreSQL's DETAIL and HINT, the object concerned).

use std::fmt;

use serde::Serialize;

use crate::model::text::{printable, printable_bounded};

/// What kind of trouble, for deciding what the tenant's outcome is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No session could be opened (refused, timed out, bad credentials, TLS), or the one
    /// open was lost (the connection broke): the database did not refuse anything.
    Unreachable,
    /// Another session holds the tenant's lock.
    Locked,
    /// The database refused a statement.
    Sql,
}

/// An error from one tenant's database, free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct DbError {
    pub kind: ErrorKind,
    /// What fleetmig was doing: "connecting", "applying 0003_add_email", ...
    pub op: String,
    /// The database's SQLSTATE (for SQLite, its error code), when it gave one.
    pub code: Option<String>,
    /// MySQL's and MariaDB's own error number (1205, 1213, ...): what their manuals and
    /// the `mysql` client name an error by; their SQLSTATE is often only `HY000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u16>,
    pub message: String,
    /// What else the server said, when it said more: boxed, as most errors carry none.
    #[serde(flatten)]
    pub said: Option<Box<Said>>,
}

/// The parts of a server's error besides its code and message (PostgreSQL's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Said {
    /// PostgreSQL's DETAIL: the facts behind the message ("Key (email)=(a@x) is duplicated.").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// PostgreSQL's HINT: what the server suggests doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The table, column or constraint the error concerns, when the server names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// The line of the migration's script the server placed the error on (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Where in the text sent the server placed the error (characters from 1); only the
    /// session knows what that text was, and turns it into `line`.
    #[serde(skip)]
    pub position: Option<usize>,
}

/// One line, as `psql` and `mysql` would put it: `op: message (code 42601) at line 3;
/// DETAIL: ...; HINT: ...`, or `op: ERROR 1205 (HY000): message` for MySQL. What the
/// server said is printable and bounded (see [`printable_bounded`]): the text reports, the
/// progress lines and the ledger keep this line; JSON keeps each field whole.
impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = printable_bounded;
        let (op, message) = (printable(&self.op), one_line(&self.message));
        match (self.number, &self.code) {
            (Some(n), Some(state)) => write!(f, "{op}: ERROR {n} ({}): {message}", printable(state))?,
            (Some(n), None) => write!(f, "{op}: ERROR {n}: {message}")?,
            (None, Some(code)) => write!(f, "{op}: {message} (code {})", printable(code))?,
            (None, None) => write!(f, "{op}: {message}")?,
        }
        let Some(said) = &self.said else { return Ok(()) };
        if let Some(line) = said.line {
            write!(f, " at line {line}")?;
        }
        if let Some(detail) = &said.detail {
            write!(f, "; DETAIL: {}", one_line(detail))?;
        }
        if let Some(hint) = &said.hint {
            write!(f, "; HINT: {}", one_line(hint))?;
        }
        Ok(())
    }
}

impl DbError {
    /// The error of a tenant the breaker skipped untried, its host cut off (`--host-failures`);
    /// [`DbError::cut_off_host`] reads the host back.
    pub fn host_cut_off(host: &str, message: String) -> Self {
        DbError::new(ErrorKind::Unreachable, format!("host `{host}` cut off"), message)
    }

    /// The host, when this is a [`DbError::host_cut_off`] error.
    pub fn cut_off_host(&self) -> Option<&str> {
        if self.kind != ErrorKind::Unreachable || self.code.is_some() {
            return None;
        }
        self.op.strip_prefix("host `")?.strip_suffix("` cut off")
    }

    /// The server gave this error (a code, or not a connection failure at all): it is
    /// alive, whatever it said. An `Unreachable` without a code is a server that did not
    /// answer: refused, timed out, no route.
    pub fn answered(&self) -> bool {
        self.kind != ErrorKind::Unreachable || self.code.is_some() || self.number.is_some()
    }

    pub fn new(kind: ErrorKind, op: impl Into<String>, message: impl Into<String>) -> Self {
        DbError {
            kind,
            op: op.into(),
            code: None,
            number: None,
            message: message.into(),
            said: None,
        }
    }

    /// Places the server's error position, given in the text `sent`, on a line of `script`,
    /// the part of it that is the migration's. An error outside the script places nothing.
    pub fn locate(&mut self, sent: &str, script: &str) {
        let Some(said) = self.said.as_deref_mut() else { return };
        let Some(at) = said.position.take() else { return };
        let Some(byte) = sent.find(script) else { return };
        let start = sent[..byte].chars().count();
        let Some(index) = at.checked_sub(1 + start) else { return };
        if index < script.chars().count() {
            said.line = Some(script.chars().take(index).filter(|&c| c == '\n').count() + 1);
        }
    }

    /// What else the server said, when it said any of it.
    pub fn said(&self) -> &Said {
        static NOTHING: Said = Said {
            detail: None,
            hint: None,
            table: None,
            column: None,
            constraint: None,
            line: None,
            position: None,
        };
        self.said.as_deref().unwrap_or(&NOTHING)
    }

    /// With the database's code (SQLSTATE).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_in_the_text_sent_becomes_a_line_of_the_script() {
        let script = "CREATE TABLE a (x int);\nCREATE TABLEE b (y int);";
        let sent = format!("BEGIN;\n{script}\n;\nINSERT INTO h VALUES (1);\nCOMMIT;");
        let at = sent.find("TABLEE").unwrap() + 1;
        let placed = |at| DbError {
            said: Some(Box::new(Said {
                position: Some(at),
                ..Said::default()
            })),
            ..DbError::new(ErrorKind::Sql, "applying 0001_a", "syntax error at or near \"TABLEE\"").with_code("42601")
        };
        let mut e = placed(at);
        e.locate(&sent, script);
        assert_eq!(e.said().line, Some(2));
        assert_eq!(
            e.to_string(),
            "applying 0001_a: syntax error at or near \"TABLEE\" (code 42601) at line 2"
        );
        let mut outside = placed(sent.find("INSERT").unwrap() + 1);
        outside.locate(&sent, script);
        assert_eq!(outside.said().line, None);
    }

    #[test]
    fn mysql_errors_read_as_the_mysql_client_prints_them() {
        let e = DbError {
            number: Some(1205),
            ..DbError::new(
                ErrorKind::Sql,
                "applying 0002_b",
                "Lock wait timeout exceeded; try restarting transaction",
            )
            .with_code("HY000")
        };
        assert_eq!(
            e.to_string(),
            "applying 0002_b: ERROR 1205 (HY000): Lock wait timeout exceeded; try restarting transaction"
        );
    }
}
