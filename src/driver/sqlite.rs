//! SQLite: one file per tenant. Writers hold the file in exclusive locking mode for the
//! whole session, so a second runner waits (up to `lock_wait`) instead of racing.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteLockingMode};
use sqlx::{Connection, Executor, Row};
use tokio::time::Instant;

use crate::driver::compat::Compat;
use crate::driver::connect::{Access, Limits};
use crate::driver::session::{Session, Wire, applied_row, run_init_sql};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{Applied, Version};

pub const HISTORY_COLUMNS: &str = "version TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
     applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), duration_ms INTEGER NOT NULL DEFAULT 0, \
     run_id TEXT NOT NULL, dirty INTEGER NOT NULL DEFAULT 0";

pub struct SqliteWire {
    /// `None` for a read-only look at a file that does not exist yet.
    conn: Option<SqliteConnection>,
    /// Rows breaking a foreign key before the current step, per (table, parent): a step
    /// fails only on rows it adds, not on what the application left with enforcement off.
    known_violations: Violations,
    /// Set once `before_steps` turned the keys off and took `known_violations`: once per
    /// session is enough, since every step before the current one passed its check.
    keys_off: bool,
}

/// `PRAGMA foreign_key_check`, counted per (child table, parent table).
type Violations = BTreeMap<(String, String), i64>;

const FOREIGN_KEY_CHECK: &str =
    "SELECT \"table\", parent, count(*) FROM pragma_foreign_key_check GROUP BY 1, 2 ORDER BY 1, 2";

impl SqliteWire {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("writers always have a connection")
    }

    async fn violations(&mut self) -> Result<Violations, sqlx::Error> {
        let conn = self.conn();
        let rows = sqlx::query(FOREIGN_KEY_CHECK).fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
            .collect()
    }
}

/// A check's answer: its first column, true or non-zero.
fn is_true(row: &sqlx::sqlite::SqliteRow) -> bool {
    row.try_get::<bool, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v != 0))
        .unwrap_or(false)
}

pub async fn open(tenant: &Tenant, limits: &Limits, access: Access) -> Result<Session<SqliteWire>, DbError> {
    let path = PathBuf::from(tenant.url.url().path());
    if access == Access::Read && !path.exists() {
        return Ok(Session::new(
            SqliteWire {
                conn: None,
                known_violations: Violations::new(),
                keys_off: false,
            },
            None,
        ));
    }
    if let Some(dir) = path.parent().filter(|_| access == Access::Write) {
        std::fs::create_dir_all(dir).map_err(|e| {
            DbError::new(
                ErrorKind::Unreachable,
                format!("creating folder `{}`", dir.display()),
                e.to_string(),
            )
        })?;
    }
    let options = connect_options(tenant, &path, limits, access)?;
    let conn = match access {
        Access::Write => lock(&options, limits).await?,
        Access::Read => {
            match tokio::time::timeout(limits.connect_timeout, SqliteConnection::connect_with(&options)).await {
                Ok(conn) => conn.map_err(|e| open_failed(&e))?,
                Err(_) => return Err(open_timed_out()),
            }
        }
    };
    let mut wire = SqliteWire {
        conn: Some(conn),
        known_violations: Violations::new(),
        keys_off: false,
    };
    let compat = tenant
        .history_compat
        .map(|tool| Compat::new(tool, Engine::Sqlite, None, "fleetmig_history"));
    match prepare(&mut wire, tenant, limits, access, compat.as_ref()).await {
        Ok(()) => Ok(Session::new(wire, None).keeping(compat)),
        Err((op, e)) => {
            let err = DbError::sqlx(ErrorKind::Sql, op, &e, None);
            wire.finish(false).await;
            Err(err)
        }
    }
}

/// How the tenant's file is opened: created and locked exclusively to write, read-only to
/// read, with the URL's PRAGMAs.
fn connect_options(
    tenant: &Tenant,
    path: &std::path::Path,
    limits: &Limits,
    access: Access,
) -> Result<SqliteConnectOptions, DbError> {
    let mut options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(access == Access::Write)
        .read_only(access == Access::Read)
        .busy_timeout(limits.lock_wait);
    if access == Access::Write {
        // Exclusive from the first access, so that in WAL mode too the lock is on the file;
        // `lock` does the waiting.
        options = options
            .locking_mode(SqliteLockingMode::Exclusive)
            .busy_timeout(Duration::ZERO);
    }
    if let Some(query) = tenant.url.url().query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !crate::model::fleet::is_sqlite_pragma(&key, &value) {
                return Err(DbError::new(
                    ErrorKind::Unreachable,
                    "reading the URL",
                    format!("`{}` is not a PRAGMA name and plain value", key.escape_debug()),
                ));
            }
            options = options.pragma(key.into_owned(), value.into_owned());
        }
    }
    Ok(options)
}

/// Runs the tenant's `init_sql` and, to write, sets the busy wait and creates the history
/// table; an error names what was being done.
async fn prepare(
    wire: &mut SqliteWire,
    tenant: &Tenant,
    limits: &Limits,
    access: Access,
    compat: Option<&Compat>,
) -> Result<(), (String, sqlx::Error)> {
    let op = |what: &str| what.to_owned();
    run_init_sql(wire, tenant)
        .await
        .map_err(|e| (op("running init_sql"), e))?;
    if access == Access::Write {
        wire.batch(&format!(
            "PRAGMA busy_timeout = {}; CREATE TABLE IF NOT EXISTS fleetmig_history ({HISTORY_COLUMNS})",
            limits.lock_wait.as_millis()
        ))
        .await
        .map_err(|e| (op("creating fleetmig_history"), e))?;
        upgrade_history(wire)
            .await
            .map_err(|e| (op("upgrading fleetmig_history (versions as text)"), e))?;
        if let Some(compat) = compat {
            wire.batch(&compat.create_sql())
                .await
                .map_err(|e| (format!("creating {}", compat.tool().table()), e))?;
        }
    }
    Ok(())
}

/// A history table from before versions were text (`version INTEGER PRIMARY KEY`) is
/// rebuilt with a text version, once, in one transaction under the write lock; every row
/// is kept.
async fn upgrade_history(wire: &mut SqliteWire) -> Result<(), sqlx::Error> {
    let kind: Option<String> =
        sqlx::query_scalar("SELECT upper(type) FROM pragma_table_info('fleetmig_history') WHERE name = 'version'")
            .fetch_optional(wire.conn())
            .await?;
    if kind.as_deref() != Some("INTEGER") {
        return Ok(());
    }
    let sql = format!(
        "BEGIN IMMEDIATE; CREATE TABLE fleetmig_history_text ({HISTORY_COLUMNS}); \
         INSERT INTO fleetmig_history_text (version, name, checksum, applied_at, duration_ms, run_id, dirty) \
         SELECT CAST(version AS TEXT), name, checksum, applied_at, duration_ms, run_id, dirty FROM fleetmig_history; \
         DROP TABLE fleetmig_history; ALTER TABLE fleetmig_history_text RENAME TO fleetmig_history; COMMIT;"
    );
    if let Err(e) = wire.batch(&sql).await {
        let _ = wire.batch("ROLLBACK").await;
        return Err(e);
    }
    Ok(())
}

fn open_timed_out() -> DbError {
    DbError::new(ErrorKind::Unreachable, "opening the database file", "timed out")
}

/// A writer's connection that holds the file, once another runner lets go (within
/// `lock_wait`). SQLite's own busy wait is off for this: in exclusive locking mode a refused
/// attempt keeps its shared lock while it waits, and two runners waiting so deadlock. A
/// refused attempt closes its connection instead and tries again on a new one.
async fn lock(options: &SqliteConnectOptions, limits: &Limits) -> Result<SqliteConnection, DbError> {
    let deadline = Instant::now() + limits.lock_wait;
    loop {
        let attempt = async {
            let mut conn = SqliteConnection::connect_with(options).await?;
            match conn.execute("BEGIN EXCLUSIVE; COMMIT;").await {
                Ok(_) => Ok(conn),
                Err(e) => {
                    let _ = conn.close().await;
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(limits.connect_timeout, attempt).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) if is_busy(&e) && Instant::now() < deadline => backoff().await,
            Ok(Err(e)) if is_busy(&e) => {
                return Err(DbError::sqlx(
                    ErrorKind::Locked,
                    "waiting for the tenant lock held by another runner",
                    &e,
                    None,
                ));
            }
            Ok(Err(e)) => return Err(open_failed(&e)),
            Err(_) => return Err(open_timed_out()),
        }
    }
}

/// Why a tenant's file did not open. A file that is not a database or is corrupt
/// (SQLITE_NOTADB, SQLITE_CORRUPT) is the file's own fault, not a moment's: trying it again
/// for `--retry-for` as if it were unreachable only delayed the failure.
fn open_failed(e: &sqlx::Error) -> DbError {
    let code = e
        .as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok());
    let kind = match code.map(|c| c & 0xff) {
        Some(11 | 26) => ErrorKind::Sql,
        _ => ErrorKind::Unreachable,
    };
    DbError::sqlx(kind, "opening the database file", e, None)
}

/// SQLITE_BUSY or SQLITE_LOCKED, or an extended code of them: another connection has the file.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// A short wait before the next attempt, different in each runner so that two that
/// collided do not collide again in step.
async fn backoff() {
    let jitter = RandomState::new().hash_one(std::process::id()) % 40;
    tokio::time::sleep(Duration::from_millis(10 + jitter)).await;
}

impl Wire for SqliteWire {
    const ENGINE: Engine = Engine::Sqlite;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    /// SQLite's documented way to change a schema: foreign keys off for the migration (the
    /// pragma is a no-op inside a transaction), so that rebuilding a table (create, copy,
    /// drop the old one, rename) does not cascade into its children; `verify_step` checks
    /// the keys before the commit instead.
    async fn before_steps(&mut self) -> Result<(), sqlx::Error> {
        if !self.keys_off {
            self.batch("PRAGMA foreign_keys = OFF").await?;
            self.known_violations = self.violations().await?;
            self.keys_off = true;
        }
        Ok(())
    }

    async fn verify_step(&mut self) -> Result<(), sqlx::Error> {
        let now = self.violations().await?;
        let added: Vec<String> = now
            .iter()
            .filter_map(|((table, parent), n)| {
                let before = self
                    .known_violations
                    .get(&(table.clone(), parent.clone()))
                    .copied()
                    .unwrap_or(0);
                (*n > before).then(|| format!("{} row(s) of `{table}` point at no row of `{parent}`", n - before))
            })
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        Err(sqlx::Error::Protocol(format!(
            "foreign key check failed: {} (PRAGMA foreign_key_check)",
            added.join(", ")
        )))
    }

    async fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn().execute(sqlx::raw_sql(sql)).await.map(drop)
    }

    async fn read_history(&mut self) -> Result<Vec<Applied>, sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let exists: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fleetmig_history'")
                .fetch_one(&mut *conn)
                .await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT CAST(version AS TEXT), name, checksum, dirty FROM fleetmig_history")
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(applied_row).collect()
    }

    async fn insert_row(&mut self, row: &Applied, duration_ms: i64, run_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO fleetmig_history (version, name, checksum, duration_ms, run_id, dirty) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(row.version.text())
            .bind(&row.name)
            .bind(&row.checksum)
            .bind(duration_ms)
            .bind(run_id)
            .bind(row.dirty)
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn mark_row(&mut self, version: Version, dirty: bool, duration_ms: Option<i64>) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE fleetmig_history SET dirty = ?, duration_ms = coalesce(?, duration_ms) WHERE version = ?")
            .bind(dirty)
            .bind(duration_ms)
            .bind(version.text())
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn update_row(&mut self, row: &Applied, run_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE fleetmig_history SET name = ?, checksum = ?, dirty = ?, run_id = ? WHERE version = ?")
            .bind(&row.name)
            .bind(&row.checksum)
            .bind(row.dirty)
            .bind(run_id)
            .bind(row.version.text())
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn delete_row(&mut self, version: Version) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM fleetmig_history WHERE version = ?")
            .bind(version.text())
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn text_rows(&mut self, sql: &str) -> Result<Option<Vec<[String; 3]>>, sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let rows = crate::driver::session::unless_missing(sqlx::query(sql).fetch_all(conn).await)?;
        rows.map(|rows| rows.iter().map(crate::driver::session::text_row).collect())
            .transpose()
    }

    async fn check(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        // A file that does not exist yet reads as an empty database (the `--check` query is
        // tried before wave 1 on a tenant that may be new): one in memory answers for it.
        let Some(conn) = self.conn.as_mut() else {
            let mut empty = SqliteConnection::connect("sqlite::memory:").await?;
            let answer = sqlx::query(sql).fetch_optional(&mut empty).await;
            let _ = empty.close().await;
            return answer.map(|row| row.is_some_and(|r| is_true(&r)));
        };
        let row = sqlx::query(sql).fetch_optional(conn).await?;
        Ok(row.is_some_and(|r| is_true(&r)))
    }

    async fn catalog(&mut self) -> Result<crate::model::catalog::Catalog, sqlx::Error> {
        let mut objects = Vec::new();
        if let Some(conn) = self.conn.as_mut() {
            for (kind, sql) in super::catalog::SQLITE {
                for row in sqlx::query(sql).fetch_all(&mut *conn).await? {
                    objects.push(super::catalog::object(*kind, &row)?);
                }
            }
            for row in sqlx::query(super::catalog::SQLITE_TABLE_TEXT)
                .fetch_all(&mut *conn)
                .await?
            {
                let (table, sql): (String, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
                super::catalog::sqlite_table_text(&mut objects, &table, sql.as_deref().unwrap_or(""));
            }
        }
        Ok(crate::model::catalog::Catalog::new(objects))
    }

    async fn unlock(&mut self) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn finish(self, _clean: bool) {
        if let Some(conn) = self.conn {
            let _ = conn.close().await;
        }
    }
}
