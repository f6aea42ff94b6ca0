//! The tenant registry: runs the fleet file's `discover:` query and reads every column as
//! text.
//!
//! The query goes over each engine's text protocol (PostgreSQL's simple query, MySQL's
//! `COM_QUERY`), so the server renders every value, of whatever type (uuid, numeric, enum,
//! boolean), as text: no cast is needed in the query. The session is read-only: discovery
//! never writes to the registry.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Column, Connection, Database, Decode, Executor, Row, Type};

use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, RegistryRow};
use crate::model::secret::DbUrl;

/// Runs `query` on the registry at `url` and gives its rows in order, every value as text.
/// `timeout` bounds connecting; the query runs to its end.
pub async fn fetch(url: &DbUrl, query: &str, timeout: Duration) -> Result<Vec<RegistryRow>, DbError> {
    let fail = |kind, op: &str, e: sqlx::Error| DbError::sqlx(kind, op, &e, url.password());
    let connect_fail = |e| fail(ErrorKind::Unreachable, "connecting", e);
    let query_fail = |e| fail(ErrorKind::Sql, "running the query", e);
    let engine = Engine::from_scheme(url.scheme()).ok_or_else(|| {
        DbError::new(
            ErrorKind::Unreachable,
            "connecting",
            format!("unknown scheme `{}`", url.scheme()),
        )
    })?;
    match engine {
        Engine::Postgres => {
            let options = PgConnectOptions::from_str(url.expose())
                .map_err(connect_fail)?
                .application_name("fleetmig")
                .options([("default_transaction_read_only", "on")]);
            let mut conn = within(timeout, PgConnection::connect_with(&options))
                .await?
                .map_err(connect_fail)?;
            let rows = sqlx::raw_sql(query).fetch_all(&mut conn).await;
            let _ = conn.close().await;
            texts(&rows.map_err(query_fail)?).map_err(query_fail)
        }
        Engine::MySql => {
            let options = MySqlConnectOptions::from_str(url.expose()).map_err(connect_fail)?;
            let mut conn = within(timeout, MySqlConnection::connect_with(&options))
                .await?
                .map_err(connect_fail)?;
            let rows = match conn.execute("SET SESSION TRANSACTION READ ONLY").await {
                Ok(_) => sqlx::raw_sql(query).fetch_all(&mut conn).await,
                Err(e) => Err(e),
            };
            let _ = conn.close().await;
            texts(&rows.map_err(query_fail)?).map_err(query_fail)
        }
        Engine::Sqlite => {
            let options = SqliteConnectOptions::new().filename(url.url().path()).read_only(true);
            let mut conn = within(timeout, SqliteConnection::connect_with(&options))
                .await?
                .map_err(connect_fail)?;
            let rows = sqlx::raw_sql(query).fetch_all(&mut conn).await;
            let _ = conn.close().await;
            texts(&rows.map_err(query_fail)?).map_err(query_fail)
        }
    }
}

async fn within<T>(timeout: Duration, connecting: impl Future<Output = T>) -> Result<T, DbError> {
    tokio::time::timeout(timeout, connecting).await.map_err(|_| {
        DbError::new(
            ErrorKind::Unreachable,
            "connecting",
            format!("no answer within {timeout:?}"),
        )
    })
}

/// Every value of `rows` as text, without the type check: over a text protocol (and in
/// SQLite, which converts) any value decodes as the text the database wrote.
fn texts<R>(rows: &[R]) -> Result<Vec<RegistryRow>, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|c| {
                    Ok((
                        c.name().to_owned(),
                        row.try_get_unchecked::<Option<String>, _>(c.ordinal())?,
                    ))
                })
                .collect()
        })
        .collect()
}
