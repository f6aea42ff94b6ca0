//! Opening a session on any tenant: the engine is picked here, once.

use std::time::Duration;

use crate::driver::error::DbError;
use crate::driver::session::Session;
use crate::driver::{mysql, postgres, sqlite};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::Applied;
use crate::plan::tenant::Step;

/// What a session is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Look only: no lock, nothing created (a missing schema, database or file reads as empty).
    Read,
    /// Lock the tenant and create its schema, database and history table if missing.
    Write,
}

/// Time limits for every session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long to wait for a connection before the tenant counts as unreachable.
    pub connect_timeout: Duration,
    /// How long to wait for another runner's lock on the same tenant.
    pub lock_wait: Duration,
    /// PostgreSQL `lock_timeout` for migration statements.
    pub lock_timeout: Duration,
    /// PostgreSQL `statement_timeout` for migration statements (0: none).
    pub statement_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            lock_wait: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
        }
    }
}

/// A session on a tenant of any engine.
pub enum AnySession {
    Postgres(Session<postgres::PgWire>),
    MySql(Session<mysql::MySqlWire>),
    Sqlite(Session<sqlite::SqliteWire>),
}

macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnySession::Postgres($s) => $body,
            AnySession::MySql($s) => $body,
            AnySession::Sqlite($s) => $body,
        }
    };
}

impl AnySession {
    pub async fn open(tenant: &Tenant, limits: &Limits, access: Access) -> Result<AnySession, DbError> {
        Ok(match tenant.engine {
            Engine::Postgres => AnySession::Postgres(postgres::open(tenant, limits, access).await?),
            Engine::MySql => AnySession::MySql(mysql::open(tenant, limits, access).await?),
            Engine::Sqlite => AnySession::Sqlite(sqlite::open(tenant, limits, access).await?),
        })
    }

    pub async fn applied(&mut self) -> Result<Vec<Applied>, DbError> {
        each!(self, s => s.applied().await)
    }

    pub async fn run_step(&mut self, step: Step<'_>, run_id: &str) -> Result<Duration, DbError> {
        each!(self, s => s.run_step(step, run_id).await)
    }

    pub async fn stamp(&mut self, rows: &[Applied], run_id: &str) -> Result<(), DbError> {
        each!(self, s => s.stamp(rows, run_id).await)
    }

    pub async fn check(&mut self, sql: &str) -> Result<bool, DbError> {
        each!(self, s => s.check(sql).await)
    }

    pub async fn release(self) {
        each!(self, s => s.release().await)
    }
}
