//! Opening a session on any tenant: the engine is picked here, once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;

use crate::driver::session::{self, Session, StepFailed, Undo};
use crate::driver::{mysql, postgres, sqlite};
use crate::model::catalog::Catalog;
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Fleet, Ident, Tenant, TenantId};
use crate::model::migration::{Applied, VersionStyle};
use crate::model::secret::DbUrl;
use crate::plan::tenant::Step;

/// What the PostgreSQL or MySQL client would refuse in `url` when connecting (an unknown
/// `sslmode`, a port or cache size that is not a number) or silently ignore (a parameter
/// it does not read: `connect_timeout`, libpq's `sslpassword`, MySQL's `password`), found
/// when the URL is read instead: at connect time every tenant on it would read as unreachable, retried for the
/// whole retry budget. The message holds no credential.
pub fn url_problem(engine: Engine, url: &DbUrl) -> Option<String> {
    use std::str::FromStr;
    let known: &[&str] = match engine {
        Engine::Postgres => PG_URL_PARAMS,
        Engine::MySql => MYSQL_URL_PARAMS,
        Engine::Sqlite => &[],
    };
    if engine != Engine::Sqlite {
        for (key, _) in url.url().query_pairs() {
            let pg_option = engine == Engine::Postgres && key.starts_with("options[") && key.ends_with(']');
            if !known.contains(&&*key) && !pg_option {
                let hint = if engine == Engine::MySql && key == "password" {
                    " (give the password in the user info: mysql://user:password@host/)"
                } else {
                    ""
                };
                return Some(format!(
                    "URL parameter `{}` is not one the {engine} client takes, and would be silently \
                     ignored{hint}; it takes {}",
                    key.escape_debug(),
                    known.join(", ")
                ));
            }
        }
    }
    let err = match engine {
        Engine::Postgres => sqlx::postgres::PgConnectOptions::from_str(url.expose()).err(),
        Engine::MySql => sqlx::mysql::MySqlConnectOptions::from_str(url.expose()).err(),
        Engine::Sqlite => None,
    }?;
    let message = DbError::sqlx(ErrorKind::Unreachable, "", &err, url.password()).message;
    let mut why = message.as_str();
    while let Some(rest) = why.strip_prefix("error with configuration: ") {
        why = rest;
    }
    Some(why.to_owned())
}

/// The URL parameters sqlx's PostgreSQL client reads (sqlx-postgres `options/parse.rs`);
/// it ignores any other, with a log line fleetmig silences because it shows the value.
const PG_URL_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The URL parameters sqlx's MySQL client reads (sqlx-mysql `options/parse.rs`); it
/// silently ignores any other.
const MYSQL_URL_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "charset",
    "collation",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

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
    /// How long to wait for another runner's lock on the same tenant: in one attempt, what
    /// is left of the tenant's `--lock-wait` (see `lock_budget`).
    pub lock_wait: Duration,
    /// The whole `--lock-wait` of a tenant, for all its attempts: what a lock still held
    /// at the end was waited for, as messages say it.
    pub lock_budget: Duration,
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
            lock_budget: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
        }
    }
}

/// What a server gets beyond `--statement-timeout` to answer: its cancel, the error, the
/// network.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// The start of the message of a round trip given up on.
pub const NO_ANSWER: &str = "no answer within";

impl Limits {
    /// How long to wait for any one answer of a PostgreSQL or MySQL server: the statement
    /// timeout and `ANSWER_MARGIN`, when there is one. sqlx offers no TCP keepalive on the
    /// client's socket, so this is what bounds a session whose server vanished mid-statement.
    pub fn answer_within(&self) -> Option<Duration> {
        (!self.statement_timeout.is_zero()).then(|| self.statement_timeout + ANSWER_MARGIN)
    }
}

/// Opens a connection within `limit`, written once for the engines: a server that does not
/// answer in time is unreachable, "no answer within" the limit; a refusal is `fail`ed.
pub async fn connect_within<T>(
    limit: Duration,
    connecting: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    fail: impl FnOnce(sqlx::Error) -> DbError,
) -> Result<T, DbError> {
    match tokio::time::timeout(limit, connecting).await {
        Ok(conn) => conn.map_err(fail),
        Err(_) => Err(DbError::new(
            ErrorKind::Unreachable,
            "connecting",
            format!("no answer within {limit:?}"),
        )),
    }
}

/// Awaits one round trip for at most `limit`. Past it the server is presumed gone: the
/// trip fails, and its session (broken by the error) is closed, never reused.
pub async fn answered<T>(
    limit: Option<Duration>,
    trip: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    answered_by(limit, "--statement-timeout", trip).await
}

/// [`answered`], for a `limit` that `option` (and the margin) set.
pub async fn answered_by<T>(
    limit: Option<Duration>,
    option: &str,
    trip: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let Some(limit) = limit else { return trip.await };
    match tokio::time::timeout(limit, trip).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{NO_ANSWER} {limit:?} ({option} and {ANSWER_MARGIN:?}): the connection is presumed lost"),
        ))),
    }
}

/// True for a round trip given up on: the server may or may not have done it.
pub fn is_no_answer(e: &DbError) -> bool {
    e.code.is_none() && e.message.contains(NO_ANSWER)
}

/// True for an error with no code from a socket the peer closed or reset: the connection
/// was lost, whatever the engine.
pub fn is_lost_connection(e: &DbError) -> bool {
    e.code.is_none()
        && e.number.is_none()
        && (e.message.contains("Connection reset") || e.message.contains("Broken pipe"))
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

/// Opens sessions for a run: owns the time limits and the pools of shared hosts.
#[derive(Debug)]
pub struct Connector {
    pub limits: Limits,
    /// `max_connections` of each named host.
    caps: HashMap<String, u32>,
    /// One pool per named PostgreSQL host, for its schema-tenants; made on first use.
    pools: Mutex<HashMap<String, PgPool>>,
    /// How each engine's migration set writes versions: its tenants' history rows are
    /// read in it.
    styles: [VersionStyle; 3],
}

impl Connector {
    pub fn new(fleet: &Fleet, limits: Limits) -> Self {
        let caps = fleet
            .hosts
            .iter()
            .map(|(name, h)| (name.clone(), h.max_connections))
            .collect();
        Connector {
            limits,
            caps,
            pools: Mutex::default(),
            styles: [VersionStyle::default(); 3],
        }
    }

    /// A connector for tenants on no named host (a scratch target).
    pub fn alone(limits: Limits) -> Self {
        Connector {
            limits,
            caps: HashMap::new(),
            pools: Mutex::default(),
            styles: [VersionStyle::default(); 3],
        }
    }

    /// This connector, reading `engine`'s tenants' history versions in `style` (their
    /// migration set's).
    pub fn versions(mut self, engine: Engine, style: VersionStyle) -> Self {
        self.styles[engine as usize] = style;
        self
    }

    /// This connector, reading each engine's tenants' history versions as `sets` write them.
    pub fn versions_of(self, sets: &crate::model::sets::Sets) -> Self {
        [Engine::Postgres, Engine::MySql, Engine::Sqlite]
            .into_iter()
            .fold(self, |c, e| c.versions(e, sets.style(e)))
    }

    /// This connector, reading history versions as `other` does.
    pub fn versions_like(mut self, other: &Connector) -> Self {
        self.styles = other.styles;
        self
    }

    /// The style `engine`'s tenants' history versions are read in.
    pub fn style(&self, engine: Engine) -> VersionStyle {
        self.styles[engine as usize]
    }

    /// The pool a tenant's sessions come from: schema-tenants of a named PostgreSQL host.
    /// Database-per-tenant and own-URL tenants connect and close.
    pub fn pool_for(&self, tenant: &Tenant) -> Result<Option<PgPool>, DbError> {
        let (Engine::Postgres, Some(host), None, Some(_)) = (
            tenant.engine,
            &tenant.host,
            &tenant.namespace.database,
            &tenant.namespace.schema,
        ) else {
            return Ok(None);
        };
        let mut pools = self.pools.lock().expect("no panic while holding the pool map");
        if let Some(pool) = pools.get(host) {
            return Ok(Some(pool.clone()));
        }
        let max = self.caps.get(host).copied().unwrap_or(1);
        let pool = postgres::pool(tenant.url.expose(), &self.limits, max)
            .map_err(|e| DbError::sqlx(ErrorKind::Unreachable, "reading the URL", &e, tenant.url.password()))?;
        pools.insert(host.clone(), pool.clone());
        Ok(Some(pool))
    }

    pub async fn open(&self, tenant: &Tenant, access: Access) -> Result<AnySession, DbError> {
        self.open_within(tenant, access, &self.limits).await
    }

    /// Opens a session under `limits` instead of the run's: what is left of a tenant's
    /// `--lock-wait` and `--retry-for` on a later attempt. Pools keep the run's limits.
    pub async fn open_within(&self, tenant: &Tenant, access: Access, limits: &Limits) -> Result<AnySession, DbError> {
        Ok(match tenant.engine {
            Engine::Postgres => {
                let pool = self.pool_for(tenant)?;
                AnySession::Postgres(postgres::open(tenant, limits, access, pool.as_ref()).await?)
            }
            Engine::MySql => AnySession::MySql(mysql::open(tenant, limits, access).await?),
            Engine::Sqlite => AnySession::Sqlite(sqlite::open(tenant, limits, access).await?),
        })
    }

    /// History rows of many tenants at once, where the engine allows it: the schema-tenants
    /// of each pooled PostgreSQL host are read with a few queries per host instead of a
    /// session each. Tenants not covered are absent from the map; a host that fails to
    /// answer leaves its tenants absent too, to be read one by one.
    pub async fn survey(&self, tenants: &[&Tenant]) -> HashMap<TenantId, Vec<Applied>> {
        let mut by_host: HashMap<String, (PgPool, Vec<&Tenant>)> = HashMap::new();
        for t in tenants {
            if let (Ok(Some(pool)), Some(host)) = (self.pool_for(t), &t.host) {
                by_host
                    .entry(host.clone())
                    .or_insert_with(|| (pool, Vec::new()))
                    .1
                    .push(t);
            }
        }
        let surveys = by_host.into_values().map(|(pool, group)| async move {
            let schemas: Vec<String> = group
                .iter()
                .filter_map(|t| t.namespace.schema.as_ref().map(|s| s.as_str().to_owned()))
                .collect();
            let answer = tokio::time::timeout(self.limits.connect_timeout, postgres::survey(&pool, &schemas)).await;
            (group, answer)
        });
        let mut out = HashMap::new();
        for (group, answer) in futures::future::join_all(surveys).await {
            let Ok(Ok(mut rows)) = answer else { continue };
            for t in group {
                let Some(schema) = &t.namespace.schema else { continue };
                // A row that does not read in the set's style: the tenant is read on its
                // own, where the error is reported.
                if let Ok(rows) = session::restyle(
                    rows.remove(schema.as_str()).unwrap_or_default(),
                    self.style(Engine::Postgres),
                ) {
                    out.insert(t.id.clone(), rows);
                }
            }
        }
        out
    }

    /// History rows of the SQLite tenants among `tenants` whose file exists and is not
    /// locked, `at_once` files at a time, each read-only (nothing is created) and without
    /// waiting for a lock: a file another runner holds, or that cannot be read, is left out,
    /// to take the ordinary path, which waits for its lock or reports the error.
    pub async fn survey_files(&self, tenants: &[&Tenant], at_once: usize) -> HashMap<TenantId, Vec<Applied>> {
        use futures::StreamExt;
        let limits = Limits {
            lock_wait: Duration::ZERO,
            ..self.limits.clone()
        };
        let style = self.style(Engine::Sqlite);
        let files = tenants.iter().filter(|t| t.engine == Engine::Sqlite);
        futures::stream::iter(files)
            .map(|t| {
                let limits = &limits;
                async move {
                    if !std::path::Path::new(t.url.url().path()).exists() {
                        return None;
                    }
                    let mut session = sqlite::open(t, limits, Access::Read).await.ok()?;
                    let rows = session.applied(style).await;
                    session.release().await;
                    Some((t.id.clone(), rows.ok()?))
                }
            })
            .buffer_unordered(at_once.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Catalog snapshots of many tenants at once, where the engine allows it: the
    /// schema-tenants of each pooled PostgreSQL host (per `search_path`) are read with one
    /// query per catalog kind and batch, not a session each. Tenants not covered are absent
    /// from the map; a host that fails to answer gives each of its tenants the error.
    pub async fn catalogs(&self, tenants: &[&Tenant]) -> HashMap<TenantId, Result<Catalog, DbError>> {
        type Group<'t> = (PgPool, Vec<&'t Tenant>);
        let mut by_host: HashMap<(String, Vec<Ident>), Group<'_>> = HashMap::new();
        for t in tenants {
            if let (Ok(Some(pool)), Some(host)) = (self.pool_for(t), &t.host) {
                by_host
                    .entry((host.clone(), t.search_path.clone()))
                    .or_insert_with(|| (pool, Vec::new()))
                    .1
                    .push(t);
            }
        }
        let reads = by_host.into_iter().map(|((_, path), (pool, group))| async move {
            let schemas: Vec<String> = group
                .iter()
                .filter_map(|t| t.namespace.schema.as_ref().map(|s| s.as_str().to_owned()))
                .collect();
            let extras: Vec<String> = path.iter().map(|s| s.as_str().to_owned()).collect();
            let answer = answered(
                self.limits.answer_within(),
                postgres::catalogs(&pool, &schemas, &extras),
            )
            .await;
            (group, answer)
        });
        let mut out = HashMap::new();
        for (group, answer) in futures::future::join_all(reads).await {
            match answer {
                Ok(mut catalogs) => {
                    for t in group {
                        let schema = t.namespace.schema.as_ref().map_or("", |s| s.as_str());
                        out.insert(t.id.clone(), Ok(catalogs.remove(schema).unwrap_or_default()));
                    }
                }
                Err(e) => {
                    for t in group {
                        let error = DbError::sqlx(ErrorKind::Sql, "reading the catalog", &e, t.url.password());
                        out.insert(t.id.clone(), Err(error));
                    }
                }
            }
        }
        out
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        let pools: Vec<PgPool> = self
            .pools
            .lock()
            .expect("not poisoned")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for pool in pools {
            pool.close().await;
        }
    }
}

impl AnySession {
    pub async fn applied(&mut self, style: VersionStyle) -> Result<Vec<Applied>, DbError> {
        each!(self, s => s.applied(style).await)
    }

    pub async fn repeatables(&mut self) -> Result<Vec<(String, String)>, DbError> {
        each!(self, s => s.repeatables().await)
    }

    pub async fn run_repeatable(
        &mut self,
        r: &crate::model::migration::Repeatable,
        run_id: &str,
    ) -> Result<Duration, DbError> {
        each!(self, s => s.run_repeatable(r, run_id).await)
    }

    pub async fn foreign(
        &mut self,
        tool: crate::model::foreign::Tool,
    ) -> Result<Option<Vec<crate::model::foreign::ForeignRow>>, DbError> {
        each!(self, s => s.foreign(tool).await)
    }

    pub async fn run_step(&mut self, step: Step<'_>, run_id: &str) -> Result<Duration, StepFailed> {
        each!(self, s => s.run_step(step, run_id).await)
    }

    pub async fn undo(&mut self, undo: &Undo) -> Result<(), DbError> {
        each!(self, s => s.undo(undo).await)
    }

    pub async fn run_in_one_tx(&mut self, steps: &[Step<'_>], run_id: &str) -> Result<Vec<Duration>, (usize, DbError)> {
        each!(self, s => s.run_in_one_tx(steps, run_id).await)
    }

    pub async fn stamp(
        &mut self,
        rows: &[Applied],
        set: &crate::model::migration::MigrationSet,
        run_id: &str,
    ) -> Result<(), DbError> {
        each!(self, s => s.stamp(rows, set, run_id).await)
    }

    pub async fn backfill_compat(
        &mut self,
        applied: &[Applied],
        set: &crate::model::migration::MigrationSet,
    ) -> Result<(), DbError> {
        each!(self, s => s.backfill_compat(applied, set).await)
    }

    pub async fn check(&mut self, sql: &str) -> Result<bool, DbError> {
        each!(self, s => s.check(sql).await)
    }

    pub async fn catalog(&mut self) -> Result<crate::model::catalog::Catalog, DbError> {
        each!(self, s => s.catalog().await)
    }

    pub async fn release(self) {
        each!(self, s => s.release().await)
    }
}
