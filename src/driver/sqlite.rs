//! SQLite: one file per tenant. Writers hold the file in exclusive locking mode for the
//! whole session, so a second runner waits (busy timeout) instead of racing.

use std::path::PathBuf;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor, Row};

use crate::driver::connect::{Access, Limits};
use crate::driver::error::{DbError, ErrorKind};
use crate::driver::session::{Session, Wire};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{Applied, Version};

pub const HISTORY_COLUMNS: &str = "version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
     applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), duration_ms INTEGER NOT NULL DEFAULT 0, \
     run_id TEXT NOT NULL, dirty INTEGER NOT NULL DEFAULT 0";

pub struct SqliteWire {
    /// `None` for a read-only look at a file that does not exist yet.
    conn: Option<SqliteConnection>,
}

impl SqliteWire {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("writers always have a connection")
    }
}

pub async fn open(tenant: &Tenant, limits: &Limits, access: Access) -> Result<Session<SqliteWire>, DbError> {
    let path = PathBuf::from(tenant.url.url().path());
    if access == Access::Read && !path.exists() {
        return Ok(Session::new(SqliteWire { conn: None }, None));
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
    let mut options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(access == Access::Write)
        .read_only(access == Access::Read)
        .busy_timeout(limits.lock_wait);
    if let Some(query) = tenant.url.url().query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            options = options.pragma(key.into_owned(), value.into_owned());
        }
    }
    let fail = |kind, op: &str, e: sqlx::Error| DbError::sqlx(kind, op, &e, None);
    let conn = match tokio::time::timeout(limits.connect_timeout, SqliteConnection::connect_with(&options)).await {
        Ok(conn) => conn.map_err(|e| fail(ErrorKind::Unreachable, "opening the database file", e))?,
        Err(_) => {
            return Err(DbError::new(
                ErrorKind::Unreachable,
                "opening the database file",
                "timed out",
            ));
        }
    };
    let mut wire = SqliteWire { conn: Some(conn) };
    let prepared = async {
        for statement in &tenant.init_sql {
            wire.batch(statement)
                .await
                .map_err(|e| (ErrorKind::Sql, "running init_sql", e))?;
        }
        if access == Access::Write {
            wire.batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
                .await
                .map_err(|e| {
                    (
                        ErrorKind::Locked,
                        "waiting for the tenant lock held by another runner",
                        e,
                    )
                })?;
            wire.batch(&format!(
                "CREATE TABLE IF NOT EXISTS fleetmig_history ({HISTORY_COLUMNS})"
            ))
            .await
            .map_err(|e| (ErrorKind::Sql, "creating fleetmig_history", e))?;
        }
        Ok::<(), (ErrorKind, &str, sqlx::Error)>(())
    }
    .await;
    match prepared {
        Ok(()) => Ok(Session::new(wire, None)),
        Err((kind, op, e)) => {
            let err = fail(kind, op, e);
            wire.finish(false).await;
            Err(err)
        }
    }
}

impl Wire for SqliteWire {
    const ENGINE: Engine = Engine::Sqlite;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

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
        let rows = sqlx::query("SELECT version, name, checksum, dirty FROM fleetmig_history ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Applied {
                    version: Version(r.try_get(0)?),
                    name: r.try_get(1)?,
                    checksum: r.try_get(2)?,
                    dirty: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    async fn insert_row(&mut self, row: &Applied, duration_ms: i64, run_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO fleetmig_history (version, name, checksum, duration_ms, run_id, dirty) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(row.version.0)
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
            .bind(version.0)
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
            .bind(row.version.0)
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn delete_row(&mut self, version: Version) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM fleetmig_history WHERE version = ?")
            .bind(version.0)
            .execute(self.conn())
            .await
            .map(drop)
    }

    async fn check(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(sql).fetch_optional(self.conn()).await?;
        Ok(row.is_some_and(|r| {
            r.try_get::<bool, _>(0)
                .or_else(|_| r.try_get::<i64, _>(0).map(|v| v != 0))
                .unwrap_or(false)
        }))
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
