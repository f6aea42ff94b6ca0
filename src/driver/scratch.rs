//! Scratch databases for `check`: an empty database made on a PostgreSQL or MySQL server
//! for one check, and dropped after it whatever happened.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;

use sqlx::{Connection, Executor};

use crate::driver::connect::{Limits, answered, connect_within};
use crate::driver::postgres;
use crate::driver::quote::{backtick, double};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Engine;
use crate::model::secret::DbUrl;

/// A name no other check on the server uses: `fleetmig_check_<pid>_<random>`.
pub fn name() -> String {
    let random = RandomState::new().build_hasher().finish();
    format!("fleetmig_check_{}_{random:016x}", std::process::id())
}

/// Creates database `name` on the server `url` names.
pub async fn create(engine: Engine, url: &DbUrl, name: &str, limits: &Limits) -> Result<(), DbError> {
    let sql = match engine {
        Engine::Postgres => format!("CREATE DATABASE {}", double(name)),
        Engine::MySql => format!("CREATE DATABASE {}", backtick(name)),
        Engine::Sqlite => return Ok(()),
    };
    admin(engine, url, &sql, "creating the scratch database", limits).await
}

/// Drops database `name`, closing any session still on it (PostgreSQL).
pub async fn drop(engine: Engine, url: &DbUrl, name: &str, limits: &Limits) -> Result<(), DbError> {
    let sql = match engine {
        Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", double(name)),
        Engine::MySql => format!("DROP DATABASE IF EXISTS {}", backtick(name)),
        Engine::Sqlite => return Ok(()),
    };
    admin(engine, url, &sql, "dropping the scratch database", limits).await
}

/// Runs one statement on a connection of its own to the server `url` names.
async fn admin(engine: Engine, url: &DbUrl, sql: &str, op: &str, limits: &Limits) -> Result<(), DbError> {
    let secret = url.password();
    let fail = |kind, e: sqlx::Error| DbError::sqlx(kind, op, &e, secret);
    let within = limits.answer_within();
    match engine {
        Engine::Postgres => {
            let options =
                postgres::connect_options(url.expose(), limits).map_err(|e| fail(ErrorKind::Unreachable, e))?;
            let mut conn = connect_within(
                limits.connect_timeout,
                sqlx::PgConnection::connect_with(&options),
                |e| fail(ErrorKind::Unreachable, e),
            )
            .await?;
            let done = answered(within, conn.execute(sqlx::raw_sql(sql))).await;
            let _ = conn.close().await;
            done.map(drop_result).map_err(|e| fail(ErrorKind::Sql, e))
        }
        Engine::MySql => {
            let options = sqlx::mysql::MySqlConnectOptions::from_str(url.expose())
                .map_err(|e| fail(ErrorKind::Unreachable, e))?;
            let mut conn = connect_within(
                limits.connect_timeout,
                sqlx::MySqlConnection::connect_with(&options),
                |e| fail(ErrorKind::Unreachable, e),
            )
            .await?;
            let done = answered(within, conn.execute(sqlx::raw_sql(sql))).await;
            let _ = conn.close().await;
            done.map(drop_result).map_err(|e| fail(ErrorKind::Sql, e))
        }
        Engine::Sqlite => Ok(()),
    }
}

fn drop_result<T>(_: T) {}
