//! MySQL and MariaDB: database-per-tenant, `GET_LOCK` per database. DDL commits
//! implicitly here, so every step runs under the dirty-row protocol.

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor, Row};

use crate::driver::compat::Compat;
use crate::driver::connect::{ANSWER_MARGIN, Access, Limits, answered, answered_by, connect_within};
use crate::driver::quote::backtick;
use crate::driver::session::{Session, Wire, applied_row, run_init_sql};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{Applied, Version};

pub const HISTORY_COLUMNS: &str = "version VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, \
     checksum CHAR(64) NOT NULL, applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
     duration_ms BIGINT NOT NULL DEFAULT 0, run_id VARCHAR(64) NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE";

/// Lock names are server-wide and at most 64 characters: hash the database name.
const LOCK_NAME: &str = "CONCAT('fleetmig:', SHA1(COALESCE(?, DATABASE())))";

/// Server error numbers worth another attempt: the statement was refused for a reason of the
/// moment and had no effect.
const TRANSIENT_NUMBERS: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1203, // ER_TOO_MANY_USER_CONNECTIONS
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    3572, // ER_LOCK_NOWAIT
    4031, // ER_CLIENT_INTERACTION_TIMEOUT
];

/// True for a MySQL or MariaDB error number that another attempt may not meet.
pub fn is_transient_number(number: u16) -> bool {
    TRANSIENT_NUMBERS.contains(&number)
}

/// Errors after which the failed statement had no effect: a lock wait timeout rolls back
/// the statement, a deadlock the whole transaction.
const STATEMENT_UNDONE: &[u16] = &[1205, 1213, 3572];

pub struct MySqlWire {
    conn: MySqlConnection,
    table: String,
    database: Option<String>,
    /// The tenant's database does not exist yet (read-only sessions only).
    absent: bool,
    locked: bool,
    /// The longest any one round trip may wait for its answer (`Limits::answer_within`).
    answer_within: Option<std::time::Duration>,
    /// The server's error number of the last `batch` that failed.
    last_error: Option<u16>,
}

impl MySqlWire {
    /// `GET_LOCK` waits up to `--lock-wait` (in whole seconds) on the server: its answer
    /// gets that long and the margin, whatever `--statement-timeout` says, so a connection
    /// that goes silent while waiting ends with the wait.
    fn lock_within(limits: &Limits) -> std::time::Duration {
        std::time::Duration::from_secs(limits.lock_wait.as_secs_f64().ceil() as u64) + ANSWER_MARGIN
    }
}

pub async fn open(tenant: &Tenant, limits: &Limits, access: Access) -> Result<Session<MySqlWire>, DbError> {
    let secret = tenant.url.password().map(str::to_owned);
    let fail = |kind, op: &str, e: sqlx::Error| DbError::sqlx(kind, op, &e, secret.as_deref());
    let options = MySqlConnectOptions::from_str(tenant.url.expose())
        .map_err(|e| fail(ErrorKind::Unreachable, "reading the URL", e))?;
    let connecting = MySqlConnection::connect_with(&options);
    let conn = connect_within(limits.connect_timeout, connecting, |e| {
        fail(ErrorKind::Unreachable, "connecting", e)
    })
    .await?;
    let database = tenant.namespace.database.as_ref().map(|d| d.as_str().to_owned());
    let table = match &database {
        Some(db) => format!("{}.fleetmig_history", backtick(db)),
        None => "fleetmig_history".to_owned(),
    };
    let compat = tenant
        .history_compat
        .map(|tool| Compat::new(tool, Engine::MySql, database.as_deref(), &table));
    let mut wire = MySqlWire {
        conn,
        table,
        database,
        absent: false,
        locked: false,
        answer_within: limits.answer_within(),
        last_error: None,
    };
    match prepare(&mut wire, tenant, limits, access, compat.as_ref()).await {
        Ok(()) => Ok(Session::new(wire, secret).keeping(compat)),
        Err((kind, op, e)) => {
            let err = fail(kind, &op, e);
            wire.finish(false).await;
            Err(err)
        }
    }
}

type Failure = (ErrorKind, String, sqlx::Error);

/// A history table from before versions were text gets a text version column, once,
/// under the tenant's lock; every row is kept.
async fn upgrade_history(wire: &mut MySqlWire) -> Result<(), sqlx::Error> {
    let kind: Option<String> = answered(
        wire.answer_within,
        sqlx::query_scalar(
            "SELECT CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) \
             AND TABLE_NAME = 'fleetmig_history' AND COLUMN_NAME = 'version'",
        )
        .bind(&wire.database)
        .fetch_optional(&mut wire.conn),
    )
    .await?;
    if kind.as_deref() == Some("bigint") {
        let sql = format!("ALTER TABLE {} MODIFY version VARCHAR(64) NOT NULL", wire.table);
        wire.batch(&sql).await?;
    }
    Ok(())
}

async fn prepare(
    wire: &mut MySqlWire,
    tenant: &Tenant,
    limits: &Limits,
    access: Access,
    compat: Option<&Compat>,
) -> Result<(), Failure> {
    run_init_sql(wire, tenant)
        .await
        .map_err(|e| (ErrorKind::Sql, "running init_sql".to_owned(), e))?;
    if access == Access::Write {
        let got: Option<i64> = answered_by(
            Some(MySqlWire::lock_within(limits)),
            "--lock-wait",
            sqlx::query_scalar(&format!("SELECT GET_LOCK({LOCK_NAME}, ?)"))
                .bind(&wire.database)
                .bind(limits.lock_wait.as_secs_f64().ceil() as i64)
                .fetch_one(&mut wire.conn),
        )
        .await
        .map_err(|e| (ErrorKind::Sql, "locking the tenant".to_owned(), e))?;
        if got != Some(1) {
            let holder = lock_holder(wire).await;
            let e = sqlx::Error::Protocol(format!(
                "still held after {} (--lock-wait) by {}",
                humantime::format_duration(limits.lock_budget),
                holder.as_deref().unwrap_or("another session")
            ));
            return Err((ErrorKind::Locked, "waiting for the tenant lock".to_owned(), e));
        }
        wire.locked = true;
        if let (Some(db), true) = (&wire.database, tenant.create_database) {
            wire.batch(&format!("CREATE DATABASE IF NOT EXISTS {}", backtick(db)))
                .await
                .map_err(|e| (ErrorKind::Sql, "creating the database".to_owned(), e))?;
        }
        wire.batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({HISTORY_COLUMNS})",
            wire.table
        ))
        .await
        .map_err(|e| (ErrorKind::Sql, "creating fleetmig_history".to_owned(), e))?;
        upgrade_history(wire).await.map_err(|e| {
            (
                ErrorKind::Sql,
                "upgrading fleetmig_history (versions as text)".to_owned(),
                e,
            )
        })?;
        if let Some(compat) = compat {
            wire.batch(&compat.create_sql())
                .await
                .map_err(|e| (ErrorKind::Sql, format!("creating {}", compat.tool().table()), e))?;
        }
    } else if let Some(db) = &wire.database {
        let found: Option<String> = answered(
            wire.answer_within,
            sqlx::query_scalar("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
                .bind(db)
                .fetch_optional(&mut wire.conn),
        )
        .await
        .map_err(|e| (ErrorKind::Sql, "looking for the database".to_owned(), e))?;
        wire.absent = found.is_none();
    }
    if let (Some(db), false) = (&wire.database, wire.absent) {
        wire.batch(&format!("USE {}", backtick(db)))
            .await
            .map_err(|e| (ErrorKind::Sql, "selecting the database".to_owned(), e))?;
    }
    Ok(())
}

/// Who holds the tenant's lock: its connection id, user, host and what it is doing; `None`
/// when that cannot be read (released by now, or another user's session not visible).
async fn lock_holder(wire: &mut MySqlWire) -> Option<String> {
    let row = answered(
        wire.answer_within,
        sqlx::query(&format!(
            "SELECT p.ID, CAST(p.USER AS CHAR), CAST(p.HOST AS CHAR), CAST(p.COMMAND AS CHAR), p.TIME \
             FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK({LOCK_NAME})"
        ))
        .bind(&wire.database)
        .fetch_optional(&mut wire.conn),
    )
    .await
    .ok()??;
    let id: u64 = row
        .try_get::<u64, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v as u64))
        .ok()?;
    let user: String = row.try_get(1).ok()?;
    let host: String = row.try_get(2).ok()?;
    let command: String = row.try_get(3).ok()?;
    let time: i64 = row
        .try_get::<i64, _>(4)
        .or_else(|_| row.try_get::<i32, _>(4).map(i64::from))
        .ok()?;
    Some(format!("connection {id} ({user}@{host}, {command} for {time} s)"))
}

impl Wire for MySqlWire {
    const ENGINE: Engine = Engine::MySql;
    const BEGIN: &'static str = "BEGIN";

    async fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let result = answered(self.answer_within, self.conn.execute(sqlx::raw_sql(sql))).await;
        self.last_error = match &result {
            Err(e) => e
                .as_database_error()
                .and_then(|db| db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
                .map(|my| my.number()),
            Ok(_) => None,
        };
        result.map(drop)
    }

    /// A script of one statement that failed on a lock wait or a deadlock did nothing: the
    /// server rolled the statement back. Anything else may have done part of its work.
    async fn undo_loose(&mut self, _mark: &[(i64, bool)], script: &str) -> Result<bool, sqlx::Error> {
        Ok(self.last_error.is_some_and(|n| STATEMENT_UNDONE.contains(&n)) && is_one_statement(script))
    }

    async fn read_history(&mut self) -> Result<Vec<Applied>, sqlx::Error> {
        if self.absent {
            return Ok(Vec::new());
        }
        let exists: i64 = answered(self.answer_within, sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = 'fleetmig_history'",
        )
        .bind(&self.database)
        .fetch_one(&mut self.conn))
        .await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let rows = answered(
            self.answer_within,
            sqlx::query(&format!(
                "SELECT CAST(version AS CHAR), name, checksum, CAST(dirty AS SIGNED) FROM {}",
                self.table
            ))
            .fetch_all(&mut self.conn),
        )
        .await?;
        rows.iter().map(applied_row).collect()
    }

    async fn insert_row(&mut self, row: &Applied, duration_ms: i64, run_id: &str) -> Result<(), sqlx::Error> {
        answered(
            self.answer_within,
            sqlx::query(&format!(
                "INSERT INTO {} (version, name, checksum, duration_ms, run_id, dirty) VALUES (?, ?, ?, ?, ?, ?)",
                self.table
            ))
            .bind(row.version.text())
            .bind(&row.name)
            .bind(&row.checksum)
            .bind(duration_ms)
            .bind(run_id)
            .bind(row.dirty)
            .execute(&mut self.conn),
        )
        .await
        .map(drop)
    }

    async fn mark_row(&mut self, version: Version, dirty: bool, duration_ms: Option<i64>) -> Result<(), sqlx::Error> {
        answered(
            self.answer_within,
            sqlx::query(&format!(
                "UPDATE {} SET dirty = ?, duration_ms = COALESCE(?, duration_ms) WHERE version = ?",
                self.table
            ))
            .bind(dirty)
            .bind(duration_ms)
            .bind(version.text())
            .execute(&mut self.conn),
        )
        .await
        .map(drop)
    }

    async fn update_row(&mut self, row: &Applied, run_id: &str) -> Result<(), sqlx::Error> {
        answered(
            self.answer_within,
            sqlx::query(&format!(
                "UPDATE {} SET name = ?, checksum = ?, dirty = ?, run_id = ? WHERE version = ?",
                self.table
            ))
            .bind(&row.name)
            .bind(&row.checksum)
            .bind(row.dirty)
            .bind(run_id)
            .bind(row.version.text())
            .execute(&mut self.conn),
        )
        .await
        .map(drop)
    }

    async fn delete_row(&mut self, version: Version) -> Result<(), sqlx::Error> {
        answered(
            self.answer_within,
            sqlx::query(&format!("DELETE FROM {} WHERE version = ?", self.table))
                .bind(version.text())
                .execute(&mut self.conn),
        )
        .await
        .map(drop)
    }

    async fn text_rows(&mut self, sql: &str) -> Result<Option<Vec<[String; 3]>>, sqlx::Error> {
        let rows = answered(self.answer_within, sqlx::query(sql).fetch_all(&mut self.conn)).await;
        let rows = crate::driver::session::unless_missing(rows)?;
        rows.map(|rows| rows.iter().map(crate::driver::session::text_row).collect())
            .transpose()
    }

    async fn check(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        let row = answered(self.answer_within, sqlx::query(sql).fetch_optional(&mut self.conn)).await?;
        Ok(row.is_some_and(|r| {
            r.try_get::<bool, _>(0)
                .or_else(|_| r.try_get::<i64, _>(0).map(|v| v != 0))
                .unwrap_or(false)
        }))
    }

    async fn catalog(&mut self) -> Result<crate::model::catalog::Catalog, sqlx::Error> {
        let mut objects = Vec::new();
        for (kind, sql) in super::catalog::MYSQL {
            let rows = answered(self.answer_within, sqlx::query(sql).fetch_all(&mut self.conn)).await?;
            for row in &rows {
                objects.push(super::catalog::object(*kind, row)?);
            }
        }
        let [mariadb, mysql] = super::catalog::MYSQL_CHECKS;
        let checks = match answered(self.answer_within, sqlx::query_as(mariadb).fetch_all(&mut self.conn)).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(_)) => {
                answered(self.answer_within, sqlx::query_as(mysql).fetch_all(&mut self.conn)).await?
            }
            Err(e) => return Err(e),
        };
        super::catalog::mysql_checks(&mut objects, checks);
        Ok(crate::model::catalog::Catalog::new(objects))
    }

    async fn unlock(&mut self) -> Result<(), sqlx::Error> {
        if self.locked {
            answered(
                self.answer_within,
                sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK_NAME})"))
                    .bind(&self.database)
                    .execute(&mut self.conn),
            )
            .await?;
            self.locked = false;
        }
        Ok(())
    }

    async fn finish(self, clean: bool) {
        if clean {
            let _ = self.conn.close().await;
        } else {
            // No graceful shutdown after an error: closing the socket is enough for the
            // server to roll back and release GET_LOCK, and cannot hang.
            drop(self.conn);
        }
    }
}

/// True when `script` holds exactly one statement: no `;` outside quotes and comments other
/// than at its end.
fn is_one_statement(script: &str) -> bool {
    let mut chars = script.chars().peekable();
    let mut statements = 0;
    let mut in_statement = false;
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                chars.find(|&c| c == '\n');
            }
            '#' => {
                chars.find(|&c| c == '\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '\'' | '"' | '`' => {
                in_statement = true;
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            ';' => {
                if in_statement {
                    statements += 1;
                }
                in_statement = false;
            }
            c if c.is_whitespace() => {}
            _ => in_statement = true,
        }
    }
    statements + usize::from(in_statement) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_is_told_from_several() {
        for one in [
            "UPDATE t SET a = 1 WHERE id = 1;",
            "-- why; because\nALTER TABLE t ADD COLUMN b INT; -- done;\n",
            "INSERT INTO t VALUES ('a;b', \"c;\", `d;`) /* ; */",
            "# note;\nUPDATE t SET a = 'it\\'s; fine';\n;",
        ] {
            assert!(is_one_statement(one), "{one}");
        }
        for several in [
            "UPDATE t SET a = 1; UPDATE t SET a = 2;",
            "",
            "-- only a comment;",
            "SELECT 1; SELECT 2",
        ] {
            assert!(!is_one_statement(several), "{several}");
        }
    }

    #[test]
    fn lock_waits_deadlocks_and_lost_connections_are_transient_syntax_errors_not() {
        for n in [1205, 1213, 1040, 2006, 2013] {
            assert!(is_transient_number(n), "{n}");
        }
        for n in [1005, 1064, 1146, 1062] {
            assert!(!is_transient_number(n), "{n}");
        }
    }
}
