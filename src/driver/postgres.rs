//! PostgreSQL: schema-per-tenant or database-per-tenant, transactional DDL, advisory locks
//! keyed on database and schema together.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};

use crate::driver::connect::{Access, Limits};
use crate::driver::error::{DbError, ErrorKind};
use crate::driver::quote::double;
use crate::driver::session::{Session, Wire};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{Applied, Version};

/// The history table's columns, shared with the offline script.
pub const HISTORY_COLUMNS: &str = "version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
     applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms BIGINT NOT NULL DEFAULT 0, \
     run_id TEXT NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE";

/// The tenant lock's key: one per database and schema, so schema-tenants in one
/// database never wait for each other.
const LOCK_KEY: &str =
    "hashtextextended('fleetmig/' || current_database() || '/' || coalesce($1, current_schema()), 0)";

pub struct PgWire {
    conn: PgConnection,
    /// `"schema".fleetmig_history`, or unqualified when the tenant has no schema.
    table: String,
    schema: Option<String>,
    locked: bool,
}

/// Connects, runs `init_sql`, and for writing takes the lock and creates what is missing.
pub async fn open(tenant: &Tenant, limits: &Limits, access: Access) -> Result<Session<PgWire>, DbError> {
    let secret = tenant.url.password().map(str::to_owned);
    let fail = |kind, op: &str, e: sqlx::Error| DbError::sqlx(kind, op, &e, secret.as_deref());
    let url = match &tenant.namespace.database {
        Some(db) => tenant.url.with_path(&format!("/{db}")),
        None => tenant.url.clone(),
    };
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| fail(ErrorKind::Unreachable, "reading the URL", e))?
        .application_name("fleetmig")
        .options([
            ("lock_timeout", format!("{}ms", limits.lock_timeout.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", limits.statement_timeout.as_millis()),
            ),
        ]);
    let conn = match tokio::time::timeout(limits.connect_timeout, PgConnection::connect_with(&options)).await {
        Ok(conn) => conn.map_err(|e| fail(ErrorKind::Unreachable, "connecting", e))?,
        Err(_) => {
            return Err(DbError::new(
                ErrorKind::Unreachable,
                "connecting",
                format!("no answer within {:?}", limits.connect_timeout),
            ));
        }
    };
    let schema = tenant.namespace.schema.as_ref().map(|s| s.as_str().to_owned());
    let table = match &schema {
        Some(s) => format!("{}.fleetmig_history", double(s)),
        None => "fleetmig_history".to_owned(),
    };
    let mut wire = PgWire {
        conn,
        table,
        schema,
        locked: false,
    };
    match prepare(&mut wire, tenant, limits, access).await {
        Ok(()) => Ok(Session::new(wire, secret)),
        Err((kind, op, e)) => {
            let err = fail(kind, &op, e);
            wire.finish(false).await;
            Err(err)
        }
    }
}

type Failure = (ErrorKind, String, sqlx::Error);

async fn prepare(wire: &mut PgWire, tenant: &Tenant, limits: &Limits, access: Access) -> Result<(), Failure> {
    for statement in &tenant.init_sql {
        wire.conn
            .execute(sqlx::raw_sql(statement))
            .await
            .map_err(|e| (ErrorKind::Sql, "running init_sql".to_owned(), e))?;
    }
    if access == Access::Write {
        let got: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({LOCK_KEY})"))
            .bind(&wire.schema)
            .fetch_one(&mut wire.conn)
            .await
            .map_err(|e| (ErrorKind::Sql, "locking the tenant".to_owned(), e))?;
        if !got {
            let waited = async {
                sqlx::query("SELECT set_config('lock_timeout', $1, false)")
                    .bind(format!("{}ms", limits.lock_wait.as_millis()))
                    .execute(&mut wire.conn)
                    .await?;
                sqlx::query(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
                    .bind(&wire.schema)
                    .execute(&mut wire.conn)
                    .await?;
                sqlx::query("SELECT set_config('lock_timeout', $1, false)")
                    .bind(format!("{}ms", limits.lock_timeout.as_millis()))
                    .execute(&mut wire.conn)
                    .await
            };
            waited.await.map_err(|e| {
                (
                    ErrorKind::Locked,
                    "waiting for the tenant lock held by another runner".to_owned(),
                    e,
                )
            })?;
        }
        wire.locked = true;
        let mut ddl = String::new();
        if let Some(schema) = &wire.schema {
            ddl.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", double(schema)));
        }
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({HISTORY_COLUMNS});",
            wire.table
        ));
        wire.batch(&ddl)
            .await
            .map_err(|e| (ErrorKind::Sql, "creating fleetmig_history".to_owned(), e))?;
    }
    if let Some(schema) = &wire.schema {
        wire.batch(&format!("SET search_path TO {}", double(schema)))
            .await
            .map_err(|e| (ErrorKind::Sql, "setting search_path".to_owned(), e))?;
    }
    Ok(())
}

impl Wire for PgWire {
    const ENGINE: Engine = Engine::Postgres;
    const BEGIN: &'static str = "BEGIN";

    async fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute(sqlx::raw_sql(sql)).await.map(drop)
    }

    async fn read_history(&mut self) -> Result<Vec<Applied>, sqlx::Error> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.table)
            .fetch_one(&mut self.conn)
            .await?;
        if !exists {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT version, name, checksum, dirty FROM {} ORDER BY version",
            self.table
        ))
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Applied {
                    version: Version(r.try_get(0)?),
                    name: r.try_get(1)?,
                    checksum: r.try_get(2)?,
                    dirty: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn insert_row(&mut self, row: &Applied, duration_ms: i64, run_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "INSERT INTO {} (version, name, checksum, duration_ms, run_id, dirty) VALUES ($1, $2, $3, $4, $5, $6)",
            self.table
        ))
        .bind(row.version.0)
        .bind(&row.name)
        .bind(&row.checksum)
        .bind(duration_ms)
        .bind(run_id)
        .bind(row.dirty)
        .execute(&mut self.conn)
        .await
        .map(drop)
    }

    async fn mark_row(&mut self, version: Version, dirty: bool, duration_ms: Option<i64>) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {} SET dirty = $2, duration_ms = coalesce($3, duration_ms) WHERE version = $1",
            self.table
        ))
        .bind(version.0)
        .bind(dirty)
        .bind(duration_ms)
        .execute(&mut self.conn)
        .await
        .map(drop)
    }

    async fn update_row(&mut self, row: &Applied, run_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {} SET name = $2, checksum = $3, dirty = $4, run_id = $5 WHERE version = $1",
            self.table
        ))
        .bind(row.version.0)
        .bind(&row.name)
        .bind(&row.checksum)
        .bind(row.dirty)
        .bind(run_id)
        .execute(&mut self.conn)
        .await
        .map(drop)
    }

    async fn delete_row(&mut self, version: Version) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DELETE FROM {} WHERE version = $1", self.table))
            .bind(version.0)
            .execute(&mut self.conn)
            .await
            .map(drop)
    }

    async fn check(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(sql).fetch_optional(&mut self.conn).await?;
        Ok(row.is_some_and(|r| {
            r.try_get::<bool, _>(0)
                .or_else(|_| r.try_get::<i64, _>(0).map(|v| v != 0))
                .unwrap_or(false)
        }))
    }

    async fn unlock(&mut self) -> Result<(), sqlx::Error> {
        if self.locked {
            sqlx::query(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
                .bind(&self.schema)
                .execute(&mut self.conn)
                .await?;
            self.locked = false;
        }
        self.batch("RESET ALL").await
    }

    async fn finish(self, clean: bool) {
        if clean {
            let _ = self.conn.close().await;
        } else {
            let _ = self.conn.close_hard().await;
        }
    }
}
