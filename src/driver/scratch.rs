//! Scratch databases for `check`: an empty database made on a PostgreSQL or MySQL server
//! for one check, and dropped after it whatever happened.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use crate::driver::connect::{Limits, answered, connect_within};
use crate::driver::postgres;
use crate::driver::quote::{backtick, double};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Engine;
use crate::model::secret::DbUrl;

/// A name no other check on the server uses: `fleetmig_check_<pid>_<unix seconds>_<random>`.
/// The time lets a later check tell a database whose check was killed before it could
/// drop it (see [`sweep`]).
pub fn name() -> String {
    let random = RandomState::new().build_hasher().finish();
    format!(
        "fleetmig_check_{}_{}_{random:016x}",
        std::process::id(),
        unix_seconds(SystemTime::now())
    )
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How old a scratch database must be, with no session on it, before a later check drops
/// it: far longer than any check runs.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Whether `name` is a scratch database made more than [`STALE_AFTER`] before `now`. Names
/// without a time (made before names had one) are never stale: nothing says whose they are.
pub fn is_stale(name: &str, now: SystemTime) -> bool {
    let Some(rest) = name.strip_prefix("fleetmig_check_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    let [_pid, secs, _random] = parts.as_slice() else {
        return false;
    };
    secs.parse::<u64>()
        .is_ok_and(|made| made.saturating_add(STALE_AFTER.as_secs()) < unix_seconds(now))
}

/// Drops the scratch databases on the server `url` names that checks killed before their
/// end left behind (`kill -9`, a lost machine): those older than [`STALE_AFTER`] with no
/// session on them. Best effort, each drop without force, so one that a session reaches
/// meanwhile is kept; returns the names dropped.
pub async fn sweep(engine: Engine, url: &DbUrl, limits: &Limits) -> Result<Vec<String>, DbError> {
    let list = match engine {
        Engine::Postgres => {
            "SELECT datname::text FROM pg_database d WHERE datname LIKE 'fleetmig\\_check\\_%' \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
        }
        Engine::MySql => {
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata s \
             WHERE schema_name LIKE 'fleetmig\\_check\\_%' \
             AND NOT EXISTS (SELECT 1 FROM information_schema.processlist p WHERE p.db = s.schema_name)"
        }
        Engine::Sqlite => return Ok(vec![]),
    };
    let now = SystemTime::now();
    let stale: Vec<String> = admin(engine, url, list, "listing stale scratch databases", limits)
        .await?
        .into_iter()
        .filter(|name| is_stale(name, now))
        .collect();
    let mut dropped = Vec::new();
    for name in stale {
        let sql = match engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {}", double(&name)),
            _ => format!("DROP DATABASE IF EXISTS {}", backtick(&name)),
        };
        if admin(engine, url, &sql, "dropping a stale scratch database", limits)
            .await
            .is_ok()
        {
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Creates database `name` on the server `url` names.
pub async fn create(engine: Engine, url: &DbUrl, name: &str, limits: &Limits) -> Result<(), DbError> {
    let sql = match engine {
        Engine::Postgres => format!("CREATE DATABASE {}", double(name)),
        Engine::MySql => format!("CREATE DATABASE {}", backtick(name)),
        Engine::Sqlite => return Ok(()),
    };
    admin(engine, url, &sql, "creating the scratch database", limits)
        .await
        .map(drop_result)
}

/// Drops database `name`, closing any session still on it (PostgreSQL).
pub async fn drop(engine: Engine, url: &DbUrl, name: &str, limits: &Limits) -> Result<(), DbError> {
    let sql = match engine {
        Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", double(name)),
        Engine::MySql => format!("DROP DATABASE IF EXISTS {}", backtick(name)),
        Engine::Sqlite => return Ok(()),
    };
    admin(engine, url, &sql, "dropping the scratch database", limits)
        .await
        .map(drop_result)
}

/// Runs one statement on a connection of its own to the server `url` names; returns the
/// first column of the rows it gave, as text.
async fn admin(engine: Engine, url: &DbUrl, sql: &str, op: &str, limits: &Limits) -> Result<Vec<String>, DbError> {
    use sqlx::Row;
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
            let done = answered(within, sqlx::raw_sql(sql).fetch_all(&mut conn)).await;
            let _ = conn.close().await;
            let rows = done.map_err(|e| fail(ErrorKind::Sql, e))?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| fail(ErrorKind::Sql, e)))
                .collect()
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
            let done = answered(within, sqlx::raw_sql(sql).fetch_all(&mut conn)).await;
            let _ = conn.close().await;
            let rows = done.map_err(|e| fail(ErrorKind::Sql, e))?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| fail(ErrorKind::Sql, e)))
                .collect()
        }
        Engine::Sqlite => Ok(vec![]),
    }
}

fn drop_result<T>(_: T) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scratch_names_with_a_time_older_than_a_day_are_stale() {
        let now = SystemTime::now();
        let made = |secs_ago: u64| unix_seconds(now) - secs_ago;
        let day = STALE_AFTER.as_secs();
        assert!(is_stale(
            &format!("fleetmig_check_42_{}_00ff00ff00ff00ff", made(day + 60)),
            now
        ));
        assert!(!is_stale(
            &format!("fleetmig_check_42_{}_00ff00ff00ff00ff", made(day - 60)),
            now
        ));
        // Made before names had a time, or not a scratch name at all.
        assert!(!is_stale("fleetmig_check_42_00ff00ff00ff00ff", now));
        assert!(!is_stale(&format!("app_check_42_{}_00ff", made(day * 9)), now));
        assert!(!is_stale(&format!("fleetmig_check_42_{}_00ff_x", made(day * 9)), now));
        let fresh = name();
        assert!(fresh.len() <= 63 && !is_stale(&fresh, now), "{fresh}");
    }
}
