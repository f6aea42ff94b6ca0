//! PostgreSQL: schema-per-tenant or database-per-tenant, transactional DDL, advisory locks
//! keyed on database and schema together.
//!
//! Schema-tenants of one host share a pool: a session sets the tenant's `search_path`,
//! migrates, unlocks and `RESET ALL`s before its connection goes back; a connection that saw
//! an error, or whose session was dropped part way, is closed instead. A migration, its
//! history row and the commit travel in one round trip.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Column, Connection, Either, Executor, Row};

use crate::driver::catalog;
use crate::driver::compat::Compat;
use crate::driver::connect::{ANSWER_MARGIN, Access, Limits, NO_ANSWER, answered, connect_within};
use crate::driver::quote::double;
use crate::driver::session::{self, Session, TenantStep, Wire, read_version, run_init_sql};
use crate::model::catalog::{Catalog, Kind, Object};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Tenant};
use crate::model::migration::{Applied, Direction, Version};

/// The history table's columns, shared with the offline script.
pub const HISTORY_COLUMNS: &str = "version TEXT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
     applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms BIGINT NOT NULL DEFAULT 0, \
     run_id TEXT NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE";

/// A string literal with its quotes doubled. Only for text fleetmig itself produced and
/// checked (validated names, hex checksums, run ids), to fold a step into one round trip.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The tenant lock's key expression: one per database and schema, so schema-tenants in one
/// database never wait for each other.
fn lock_key(schema: Option<&str>) -> String {
    let schema = schema.map_or("current_schema()".to_owned(), literal);
    format!("hashtextextended('fleetmig/' || current_database() || '/' || {schema}, 0)")
}

/// SQLSTATEs worth another attempt: the server refused for a reason of the moment
/// (serialization failure, deadlock, lock timeout, too many connections, shutting down,
/// starting up), or any of class 08, connection exceptions.
const TRANSIENT_STATES: &[&str] = &["40001", "40P01", "55P03", "53300", "57P01", "57P03"];

/// True for a PostgreSQL SQLSTATE that another attempt may not meet.
pub fn is_transient_state(state: &str) -> bool {
    TRANSIENT_STATES.contains(&state) || state.starts_with("08")
}

/// The connection options every fleetmig session uses.
/// sqlx sets no TCP keepalive on its sockets; the server's keepalives at least make it
/// notice a client cut off by the network within about a minute, roll back and release
/// the tenant lock. The client side is bounded by `Limits::answer_within`.
pub fn connect_options(url: &str, limits: &Limits) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?.application_name("fleetmig").options([
        ("lock_timeout", server_ms(limits.lock_timeout)),
        ("statement_timeout", server_ms(limits.statement_timeout)),
        ("tcp_keepalives_idle", "30".to_owned()),
        ("tcp_keepalives_interval", "10".to_owned()),
        ("tcp_keepalives_count", "3".to_owned()),
    ]))
}

/// A timeout as PostgreSQL takes it, in whole milliseconds. `Limits` built by a library
/// user are not range-checked as flags are: a nonzero duration under 1 ms rounds up to
/// `1ms` (never to `0ms`, which PostgreSQL reads as "no timeout"), and one past the
/// server's largest (`i32::MAX` ms, about 24.8 days) is that largest.
fn server_ms(timeout: Duration) -> String {
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
    format!("{ms}ms")
}

/// A pool for the schema-tenants of one host.
pub fn pool(url: &str, limits: &Limits, max: u32) -> Result<PgPool, sqlx::Error> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(limits.connect_timeout)
        .test_before_acquire(false)
        .connect_lazy_with(connect_options(url, limits)?))
}

enum Conn {
    Own(PgConnection),
    Pooled(PoolConnection<Postgres>),
}

impl Conn {
    fn get(&mut self) -> &mut PgConnection {
        match self {
            Conn::Own(c) => c,
            Conn::Pooled(c) => c,
        }
    }
}

pub struct PgWire {
    conn: Option<Conn>,
    /// `"schema".fleetmig_history`, or unqualified when the tenant has no schema.
    table: String,
    schema: Option<String>,
    locked: bool,
    /// Set once the session is unlocked and reset; a pooled connection goes back only then.
    clean: bool,
    /// The history as read while the session was opened, for the first `read_history`.
    history: Option<Vec<Applied>>,
    /// The longest any one round trip may wait for its answer (`Limits::answer_within`).
    answer_within: Option<std::time::Duration>,
}

impl Drop for PgWire {
    /// A session dropped part way (a cancelled future) must not hand its connection back
    /// mid-transaction or still locked: take it out of the pool and let it close.
    fn drop(&mut self) {
        if let (Some(Conn::Pooled(_)), false) = (&self.conn, self.clean) {
            if let Some(Conn::Pooled(c)) = self.conn.take() {
                drop(c.detach());
            }
        }
    }
}

impl PgWire {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a live session has a connection").get()
    }

    /// A step's history write as SQL text: the row's insert (up) or delete (down), with
    /// `duration` as the duration expression and `returning` appended.
    fn record(&self, row: &Applied, direction: Direction, run_id: &str, duration: &str, returning: &str) -> String {
        match direction {
            Direction::Up => format!(
                "INSERT INTO {} (version, name, checksum, duration_ms, run_id, dirty) VALUES ({}, {}, {}, {duration}, {}, {}){returning};",
                self.table,
                literal(&row.version.text()),
                literal(&row.name),
                literal(&row.checksum),
                literal(run_id),
                row.dirty
            ),
            Direction::Down => format!(
                "DELETE FROM {} WHERE version = {}{returning};",
                self.table,
                literal(&row.version.text())
            ),
        }
    }

    /// The rows of SQL text sent whole (simple-query protocol, nothing prepared).
    async fn fetch(&mut self, sql: &str) -> Result<Vec<PgRow>, sqlx::Error> {
        let limit = self.answer_within;
        answered(limit, self.conn().fetch_all(sqlx::raw_sql(sql))).await
    }
}

/// Opens a session: from `pool` when given (schema-tenants of a host), else a connection
/// of its own. Runs `init_sql`; for writing, takes the lock and creates what is missing.
pub async fn open(
    tenant: &Tenant,
    limits: &Limits,
    access: Access,
    pool: Option<&PgPool>,
) -> Result<Session<PgWire>, DbError> {
    let secret = tenant.url.password().map(str::to_owned);
    let fail = |kind, op: &str, e: sqlx::Error| DbError::sqlx(kind, op, &e, secret.as_deref());
    let conn = match pool {
        Some(pool) => match pool.acquire().await {
            Ok(c) => Conn::Pooled(c),
            // A pool that cannot connect only says it timed out: one direct attempt tells why.
            Err(e @ sqlx::Error::PoolTimedOut) => {
                let options = pool.connect_options();
                let direct = PgConnection::connect_with(&options);
                let why = match tokio::time::timeout(limits.connect_timeout, direct).await {
                    Ok(Err(direct)) => direct,
                    _ => e,
                };
                return Err(fail(ErrorKind::Unreachable, "connecting", why));
            }
            Err(e) => return Err(fail(ErrorKind::Unreachable, "connecting", e)),
        },
        None => Conn::Own(own_connection(tenant, limits, access, &fail).await?),
    };
    let schema = tenant.namespace.schema.as_ref().map(|s| s.as_str().to_owned());
    let table = match &schema {
        Some(s) => format!("{}.fleetmig_history", double(s)),
        None => "fleetmig_history".to_owned(),
    };
    let compat = tenant
        .history_compat
        .map(|tool| Compat::new(tool, Engine::Postgres, schema.as_deref(), &table));
    let mut wire = PgWire {
        conn: Some(conn),
        table,
        schema,
        locked: false,
        clean: false,
        history: None,
        answer_within: limits.answer_within(),
    };
    match prepare(&mut wire, tenant, limits, access, compat.as_ref()).await {
        Ok(()) => Ok(Session::new(wire, secret).keeping(compat)),
        Err(failure) => {
            let err = match failure {
                PrepareError::Db((kind, op, e)) => fail(kind, &op, e),
                PrepareError::LockWait => {
                    // Only a courtesy: a connection gone silent does not hold up the error.
                    let holder = tokio::time::timeout(ANSWER_MARGIN, lock_holder(&mut wire))
                        .await
                        .ok()
                        .flatten();
                    DbError::new(
                        ErrorKind::Locked,
                        "waiting for the tenant lock",
                        format!(
                            "still held after {} (--lock-wait) by {}",
                            humantime::format_duration(limits.lock_budget),
                            holder.as_deref().unwrap_or("another session")
                        ),
                    )
                }
            };
            wire.finish(false).await;
            Err(err)
        }
    }
}

type Failure = (ErrorKind, String, sqlx::Error);

/// PostgreSQL's SQLSTATE for a database that does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// A connection of the tenant's own: to its `database`, else to the URL's. A session that
/// writes, of a tenant with `create_database: true`, creates a missing database first.
async fn own_connection(
    tenant: &Tenant,
    limits: &Limits,
    access: Access,
    fail: &impl Fn(ErrorKind, &str, sqlx::Error) -> DbError,
) -> Result<PgConnection, DbError> {
    let url = match &tenant.namespace.database {
        Some(db) => tenant.url.with_path(&format!("/{db}")),
        None => tenant.url.clone(),
    };
    let options =
        connect_options(url.expose(), limits).map_err(|e| fail(ErrorKind::Unreachable, "reading the URL", e))?;
    let connect = || {
        let connecting = PgConnection::connect_with(&options);
        connect_within(limits.connect_timeout, connecting, |e| {
            fail(ErrorKind::Unreachable, "connecting", e)
        })
    };
    match (connect().await, &tenant.namespace.database) {
        (Err(e), Some(db))
            if e.code.as_deref() == Some(INVALID_CATALOG_NAME) && tenant.create_database && access == Access::Write =>
        {
            create_database(tenant, db.as_str(), limits, fail).await?;
            connect().await
        }
        (result, _) => result,
    }
}

/// Creates database `name` through a connection to the database the tenant's URL names.
/// Another runner may have created it since this one looked: that is success too.
async fn create_database(
    tenant: &Tenant,
    name: &str,
    limits: &Limits,
    fail: &impl Fn(ErrorKind, &str, sqlx::Error) -> DbError,
) -> Result<(), DbError> {
    const OP: &str = "creating the database";
    let options =
        connect_options(tenant.url.expose(), limits).map_err(|e| fail(ErrorKind::Unreachable, "reading the URL", e))?;
    let connecting = PgConnection::connect_with(&options);
    let mut admin = connect_within(limits.connect_timeout, connecting, |e| {
        fail(ErrorKind::Unreachable, OP, e)
    })
    .await?;
    let sql = format!("CREATE DATABASE {}", double(name));
    let created = answered(limits.answer_within(), admin.execute(sqlx::raw_sql(&sql))).await;
    let code = created
        .as_ref()
        .err()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code().map(|c| c.into_owned()));
    match (created, code.as_deref()) {
        (Ok(_), _) => {
            let _ = admin.close().await;
            Ok(())
        }
        // duplicate_database, or the catalog's unique index when both commit at once.
        (Err(_), Some("42P04" | "23505")) => Ok(()),
        (Err(e), _) => Err(fail(ErrorKind::Sql, OP, e)),
    }
}

/// Why a session could not be set up.
enum PrepareError {
    Db(Failure),
    /// Another runner held the tenant's lock for all of `--lock-wait`.
    LockWait,
}

impl From<Failure> for PrepareError {
    fn from(f: Failure) -> Self {
        PrepareError::Db(f)
    }
}

/// Who holds the tenant's lock, in words: "another fleetmig runner (...)" when the holder's
/// `application_name` is fleetmig's, else its name or user; `None` when it cannot be read
/// (gone by now, or not visible to this user).
async fn lock_holder(wire: &mut PgWire) -> Option<String> {
    let key = lock_key(wire.schema.as_deref());
    // A bigint advisory key shows in pg_locks as its high and low 32 bits.
    let sql = format!(
        "WITH k AS (SELECT {key} AS k) \
         SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
         coalesce(host(a.client_addr), 'local socket'), coalesce(a.state, ''), \
         coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') \
         FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid \
         AND l.objsubid = 1 LIMIT 1"
    );
    let row = wire.fetch(&sql).await.ok()?.into_iter().next()?;
    let pid: i32 = row.try_get(0).ok()?;
    let app: String = row.try_get(1).ok()?;
    let user: String = row.try_get(2).ok()?;
    let host: String = row.try_get(3).ok()?;
    let state: String = row.try_get(4).ok()?;
    let since: String = row.try_get(5).ok()?;
    Some(describe_holder(pid, &app, &user, &host, &state, &since))
}

/// A session holding a lock, in words for an error message.
fn describe_holder(pid: i32, app: &str, user: &str, host: &str, state: &str, since: &str) -> String {
    let state = if state.is_empty() {
        String::new()
    } else {
        format!(", {state}")
    };
    if app == "fleetmig" {
        let since = if since.is_empty() {
            String::new()
        } else {
            format!(", connected {since}")
        };
        format!("another fleetmig runner (pid {pid} on host {host}, user {user}{since}{state})")
    } else {
        let who = if app.is_empty() {
            format!("{user}@{host}")
        } else {
            format!("`{app}` ({user}@{host})")
        };
        format!("{who}, pid {pid}{state}")
    }
}

/// The longest pause between two tries for a tenant lock another runner holds.
const LOCK_POLL_MAX: Duration = Duration::from_millis(500);

/// Waits until `deadline` for the tenant lock by trying for it again and again, idle in
/// between. A session blocked in `pg_advisory_lock` runs a statement that holds a snapshot,
/// and the other runner's `CREATE INDEX CONCURRENTLY` on this tenant waits for every such
/// snapshot while this session waits for its lock: a deadlock (40P01) that leaves an
/// INVALID index. Between tries this session holds nothing a concurrent build waits for.
async fn wait_for_lock(wire: &mut PgWire, key: &str, deadline: tokio::time::Instant) -> Result<(), PrepareError> {
    let try_lock = format!("SELECT pg_try_advisory_lock({key})");
    let mut pause = Duration::from_millis(25);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(PrepareError::LockWait);
        }
        tokio::time::sleep(jitter(pause).min(left)).await;
        let waiting = (ErrorKind::Locked, "waiting for the tenant lock");
        let rows = fetch_by(wire, &try_lock, deadline, waiting).await?;
        let got: bool = rows
            .first()
            .ok_or(sqlx::Error::RowNotFound)
            .and_then(|r| r.try_get(0))
            .map_err(|e| (waiting.0, waiting.1.to_owned(), e))?;
        if got {
            return Ok(());
        }
        pause = (pause * 2).min(LOCK_POLL_MAX);
    }
}

/// One round trip of the lock phase (the first try and every poll), bounded by the lock
/// wait's `deadline` and `ANSWER_MARGIN`, whatever --statement-timeout says: a connection
/// that went silent while taking the lock must not outlast --lock-wait by more than a margin.
async fn fetch_by(
    wire: &mut PgWire,
    sql: &str,
    deadline: tokio::time::Instant,
    (kind, op): (ErrorKind, &str),
) -> Result<Vec<PgRow>, PrepareError> {
    let within = deadline.saturating_duration_since(tokio::time::Instant::now()) + ANSWER_MARGIN;
    let within = wire.answer_within.map_or(within, |limit| limit.min(within));
    let conn = wire.conn().fetch_all(sqlx::raw_sql(sql));
    match tokio::time::timeout(within, conn).await {
        Ok(rows) => rows.map_err(|e| (kind, op.to_owned(), e).into()),
        Err(_) => {
            let lost = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{NO_ANSWER} {within:.1?} (--lock-wait and {ANSWER_MARGIN:?}): the connection is presumed lost"
                ),
            );
            Err((ErrorKind::Unreachable, op.to_owned(), sqlx::Error::Io(lost)).into())
        }
    }
}

/// Somewhere between half of `d` and all of it, so runners waiting on one lock spread out.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = d / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
}

async fn prepare(
    wire: &mut PgWire,
    tenant: &Tenant,
    limits: &Limits,
    access: Access,
    compat: Option<&Compat>,
) -> Result<(), PrepareError> {
    run_init_sql(wire, tenant)
        .await
        .map_err(|e| (ErrorKind::Sql, "running init_sql".to_owned(), e))?;
    let key = lock_key(wire.schema.as_deref());
    // Simple-query text only, never a prepared statement: a statement per schema would
    // fill each connection's statement cache with plans the server re-checks on every
    // catalog change of the whole run.
    let mut setup = String::new();
    if access == Access::Write {
        // A pooled connection has the run's lock_timeout; a later attempt may have less left.
        let _ = writeln!(setup, "SET lock_timeout TO '{}';", server_ms(limits.lock_timeout));
        // The third column: a history table from before versions were text, to upgrade.
        let table = literal(&wire.table);
        let probe = format!(
            "SELECT pg_try_advisory_lock({key}), to_regclass({table}) IS NOT NULL, coalesce((SELECT atttypid = 'bigint'::regtype \
             FROM pg_attribute WHERE attrelid = to_regclass({table}) AND attname = 'version'), false)"
        );
        let deadline = tokio::time::Instant::now() + limits.lock_wait;
        let row = fetch_by(wire, &probe, deadline, (ErrorKind::Sql, "locking the tenant")).await?;
        let (got, has_table, integer_versions): (bool, bool, bool) = row
            .first()
            .ok_or(sqlx::Error::RowNotFound)
            .and_then(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .map_err(|e| (ErrorKind::Sql, "locking the tenant".to_owned(), e))?;
        if !got {
            wait_for_lock(wire, &key, deadline).await?;
        }
        wire.locked = true;
        // Seen before the lock was ours, so only a hint: IF NOT EXISTS stays.
        if !has_table || !got {
            if let Some(schema) = &wire.schema {
                let _ = writeln!(setup, "CREATE SCHEMA IF NOT EXISTS {};", double(schema));
            }
            let _ = writeln!(setup, "CREATE TABLE IF NOT EXISTS {} ({HISTORY_COLUMNS});", wire.table);
        }
        if let Some(compat) = compat {
            let _ = writeln!(setup, "{}", compat.create_sql());
        }
        if integer_versions {
            // Once, under the lock: every row kept, its version as text.
            let _ = writeln!(
                setup,
                "ALTER TABLE {} ALTER COLUMN version TYPE TEXT USING version::text;",
                wire.table
            );
        }
    }
    if let Some(schema) = &wire.schema {
        // The tenant's schema first: what a migration creates unqualified goes there.
        let after = tenant.search_path.iter().map(|s| double(s.as_str()));
        let path: Vec<String> = std::iter::once(double(schema)).chain(after).collect();
        let _ = writeln!(setup, "SET search_path TO {};", path.join(", "));
    }
    if access == Access::Write {
        // The table exists now: read the history in the same round trip.
        let _ = write!(setup, "{}", history_query(&wire.table));
        let what = setup_op(&setup, compat);
        let rows = wire.fetch(&setup).await.map_err(|e| (ErrorKind::Sql, what, e))?;
        let applied = rows.iter().map(applied_of).collect::<Result<_, _>>();
        wire.history = Some(applied.map_err(|e| (ErrorKind::Sql, "reading fleetmig_history".to_owned(), e))?);
    } else if !setup.is_empty() {
        wire.batch(&setup)
            .await
            .map_err(|e| (ErrorKind::Sql, "setting search_path".to_owned(), e))?;
    }
    Ok(())
}

/// What a writer's setup text does, for its error message.
fn setup_op(setup: &str, compat: Option<&Compat>) -> String {
    if setup.contains("ALTER TABLE") {
        "upgrading fleetmig_history (versions as text)".to_owned()
    } else if let Some(compat) = compat {
        format!("creating fleetmig_history and {}", compat.tool().table())
    } else if setup.contains("CREATE TABLE") {
        "creating fleetmig_history".to_owned()
    } else {
        "reading fleetmig_history".to_owned()
    }
}

/// The tenant's schema (the session's `search_path`) as an oid expression.
const SCHEMA_OID: &str = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())";

impl PgWire {
    /// The INVALID indexes of the tenant's schema that no session is building right now,
    /// each with its schema-qualified, quoted name.
    async fn invalid_indexes(&mut self) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let sql = format!(
            "SELECT i.indexrelid::bigint, format('%I.%I', n.nspname, c.relname) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relnamespace = {SCHEMA_OID} AND NOT i.indisvalid AND NOT EXISTS \
             (SELECT FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)"
        );
        let rows = self.fetch(&sql).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}

impl PgWire {
    /// After a lock timeout: the other sessions holding a lock on a table of the tenant's
    /// schema (what a migration's statement waits for), at most three, oldest first. The
    /// failed statement no longer waits, so `pg_blocking_pids` has nothing to say by now;
    /// a session left in a failed transaction is rolled back first (it is closed after).
    async fn relation_lock_holders(&mut self) -> Option<String> {
        let sql = format!(
            "ROLLBACK; SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
             coalesce(host(a.client_addr), 'local socket'), coalesce(a.state, ''), \
             string_agg(DISTINCT format('%s on %I', l.mode, c.relname), ', ') \
             FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND l.pid <> pg_backend_pid() AND c.relnamespace = {SCHEMA_OID} \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             GROUP BY 1, 2, 3, 4, 5, a.xact_start ORDER BY a.xact_start NULLS LAST LIMIT 3"
        );
        let rows = self.fetch(&sql).await.ok()?;
        let mut held = Vec::new();
        for row in rows {
            let pid: i32 = row.try_get(0).ok()?;
            let app: String = row.try_get(1).ok()?;
            let user: String = row.try_get(2).ok()?;
            let host: String = row.try_get(3).ok()?;
            let state: String = row.try_get(4).ok()?;
            let locks: String = row.try_get(5).ok()?;
            held.push(format!(
                "{} holding {locks}",
                describe_holder(pid, &app, &user, &host, &state, "")
            ));
        }
        (!held.is_empty()).then(|| format!("the table is locked by {}", held.join("; ")))
    }
}

/// The script's text without its comments, lowercased, white space collapsed.
fn bare_sql(script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let code = line.split("--").next().unwrap_or_default();
        out.push_str(code);
        out.push(' ');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// True for a script that is a single `CREATE [UNIQUE] INDEX CONCURRENTLY`, `REINDEX ...
/// CONCURRENTLY` or `DROP INDEX CONCURRENTLY`: when it fails, nothing of it stays but an
/// INVALID index. Anything with a second statement (or a `/* */` comment) is not.
fn is_lone_concurrent_index_statement(script: &str) -> bool {
    let sql = bare_sql(script);
    let sql = sql.trim_end_matches([';', ' ']);
    if sql.contains(';') || sql.contains("/*") {
        return false;
    }
    sql.starts_with("create index concurrently ")
        || sql.starts_with("create unique index concurrently ")
        || sql.starts_with("drop index concurrently ")
        || sql.starts_with("reindex ") && sql.contains(" concurrently ")
}

/// The words of a script that could name a relation, lowercased (quotes dropped).
fn identifiers(script: &str) -> Vec<String> {
    bare_sql(script)
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn history_query(table: &str) -> String {
    format!("SELECT version::text, name, checksum, dirty FROM {table};")
}

fn applied_of(r: &PgRow) -> Result<Applied, sqlx::Error> {
    applied_of_at(r, 0)
}

/// A history row from the columns `version, name, checksum, dirty` starting at `first`.
fn applied_of_at(r: &PgRow, first: usize) -> Result<Applied, sqlx::Error> {
    Ok(Applied {
        version: read_version(&r.try_get::<String, _>(first)?)?,
        name: r.try_get(first + 1)?,
        checksum: r.try_get(first + 2)?,
        dirty: r.try_get(first + 3)?,
    })
}

/// The most history tables one survey statement reads. The server's cost of a UNION ALL
/// grows faster than its branches: 10,000 schemas read by 8 psql sessions in batches of
/// 250 took 2.2-2.3 s of server CPU, of 100 1.7-1.8 s, of 50 about the same (README).
const SURVEY_BATCH: usize = 100;

/// The history rows of many schemas of one database, in a few queries: the schemas that
/// have a history table, then their rows in batches, run side by side on the pool's
/// connections. Schemas without one map to no rows.
pub async fn survey(pool: &PgPool, schemas: &[String]) -> Result<HashMap<String, Vec<Applied>>, sqlx::Error> {
    let with_table: Vec<String> = {
        let mut conn = pool.acquire().await?;
        sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid \
             WHERE c.relname = 'fleetmig_history' AND c.relkind = 'r' AND n.nspname = ANY($1)",
        )
        .bind(schemas)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut out: HashMap<String, Vec<Applied>> = schemas.iter().map(|s| (s.clone(), Vec::new())).collect();
    // As many batches as the pool has connections, none over `SURVEY_BATCH` tables.
    let lanes = pool.options().get_max_connections().max(1) as usize;
    let size = with_table.len().div_ceil(lanes).clamp(25, SURVEY_BATCH);
    let batches = with_table.chunks(size).map(|chunk| async move {
        let sql = chunk
            .iter()
            .map(|s| {
                format!(
                    "SELECT {}::text, version::text, name, checksum, dirty FROM {}.fleetmig_history",
                    literal(s),
                    double(s)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut conn = pool.acquire().await?;
        let rows = conn.fetch_all(sqlx::raw_sql(&sql)).await?;
        rows.iter()
            .map(|row| {
                let schema: String = row.try_get(0)?;
                Ok((schema, applied_of_at(row, 1)?))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    });
    for rows in futures::future::try_join_all(batches).await? {
        for (schema, applied) in rows {
            out.entry(schema).or_default().push(applied);
        }
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|a| a.version);
    }
    Ok(out)
}

/// The catalogs of `schemas`, read on `conn` with one query per kind whatever their
/// number, each schema's own name taken out of its definitions ([`catalog::unqualify`]).
/// A schema with nothing in it, or that does not exist, has an empty catalog.
pub async fn catalogs_on(conn: &mut PgConnection, schemas: &[String]) -> Result<HashMap<String, Catalog>, sqlx::Error> {
    read_catalogs(conn, schemas, false).await
}

/// Views read at once when many schemas are read: each holds about three locks (the view
/// and the tables it reads) until its statement ends.
const VIEWS_AT_ONCE: usize = 64;

/// [`catalogs_on`]; with `views_apart`, views are read [`VIEWS_AT_ONCE`] per statement.
async fn read_catalogs(
    conn: &mut PgConnection,
    schemas: &[String],
    views_apart: bool,
) -> Result<HashMap<String, Catalog>, sqlx::Error> {
    let qualifiers: HashMap<String, String> = sqlx::query_as(catalog::PG_QUALIFIERS)
        .bind(schemas)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let mut objects: HashMap<String, Vec<Object>> = schemas.iter().map(|s| (s.clone(), Vec::new())).collect();
    for (kind, sql) in catalog::POSTGRES {
        let rows = match (kind, views_apart) {
            (Kind::View, true) => views_by_oid(conn, schemas).await?,
            _ => sqlx::query(sql).bind(schemas).fetch_all(&mut *conn).await?,
        };
        for row in rows {
            let schema: String = row.try_get(0)?;
            let mut object = catalog::object_at(*kind, &row, 1)?;
            if let Some(q) = qualifiers.get(&schema) {
                object.name = catalog::unqualify(&object.name, q);
                for value in object.attrs.values_mut() {
                    *value = catalog::unqualify(value, q);
                }
            }
            objects.entry(schema).or_default().push(object);
        }
    }
    Ok(objects.into_iter().map(|(s, o)| (s, Catalog::new(o))).collect())
}

/// The view rows of `schemas`, a few views per statement.
async fn views_by_oid(conn: &mut PgConnection, schemas: &[String]) -> Result<Vec<PgRow>, sqlx::Error> {
    let oids: Vec<Oid> = sqlx::query_scalar(catalog::PG_VIEW_OIDS)
        .bind(schemas)
        .fetch_all(&mut *conn)
        .await?;
    let mut rows = Vec::new();
    for chunk in oids.chunks(VIEWS_AT_ONCE) {
        rows.extend(
            sqlx::query(catalog::PG_VIEWS_BY_OID)
                .bind(chunk)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(rows)
}

/// The catalogs of many schemas of one database, as `drift` reads a host's schema-tenants:
/// split in as many batches as the pool has connections, each read with one query per
/// kind (views a few at a time), with the session's `search_path` set to what follows
/// each tenant's own schema on its session (`extras`), so a definition reads as it does
/// on the tenant's session and on `check`'s scratch target. The setting is reset before
/// the connection goes back; after an error the connection is closed instead.
pub async fn catalogs(
    pool: &PgPool,
    schemas: &[String],
    extras: &[String],
) -> Result<HashMap<String, Catalog>, sqlx::Error> {
    let lanes = pool.options().get_max_connections().max(1) as usize;
    let size = schemas.len().div_ceil(lanes).max(200);
    let path = extras.iter().map(|s| double(s)).collect::<Vec<_>>().join(", ");
    let batches = schemas.chunks(size.max(1)).map(|chunk| {
        let path = path.clone();
        async move {
            let mut conn = pool.acquire().await?;
            let read = async {
                sqlx::query("SELECT set_config('search_path', $1, false)")
                    .bind(&path)
                    .execute(&mut *conn)
                    .await?;
                let read = read_catalogs(&mut conn, chunk, true).await?;
                conn.execute("RESET search_path").await?;
                Ok::<_, sqlx::Error>(read)
            }
            .await;
            if read.is_err() {
                drop(conn.detach());
            }
            read
        }
    });
    let mut out = HashMap::new();
    for read in futures::future::try_join_all(batches).await? {
        out.extend(read);
    }
    Ok(out)
}

impl Wire for PgWire {
    const ENGINE: Engine = Engine::Postgres;
    const BEGIN: &'static str = "BEGIN";

    async fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let limit = self.answer_within;
        answered(limit, self.conn().execute(sqlx::raw_sql(sql))).await.map(drop)
    }

    async fn read_history(&mut self) -> Result<Vec<Applied>, sqlx::Error> {
        if let Some(rows) = self.history.take() {
            return Ok(rows);
        }
        let probe = format!("SELECT to_regclass({}) IS NOT NULL", literal(&self.table));
        let exists = self.fetch(&probe).await?;
        if !exists
            .first()
            .map(|r| r.try_get::<bool, _>(0))
            .transpose()?
            .unwrap_or(false)
        {
            return Ok(Vec::new());
        }
        let rows = self.fetch(&history_query(&self.table)).await?;
        rows.iter().map(applied_of).collect()
    }

    fn step_sql(
        &self,
        script: &str,
        row: &Applied,
        direction: Direction,
        run_id: &str,
        wrap: bool,
        compat: &str,
    ) -> Option<String> {
        // One step per transaction: its duration is the time since the transaction began.
        let since = "(extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint";
        let record = self.record(row, direction, run_id, since, "");
        Some(if wrap {
            format!("BEGIN;\n{script}\n;\n{compat}{record}\nCOMMIT;")
        } else {
            format!("{script}\n;\n{compat}{record}")
        })
    }

    fn tenant_sql(&self, steps: &[TenantStep<'_>], run_id: &str) -> Option<String> {
        // Each step's own duration: the clock at its start, kept in a transaction-local setting.
        const MARK: &str = "SELECT FROM set_config('fleetmig.step_started', clock_timestamp()::text, true);";
        const SINCE: &str = "(extract(epoch FROM clock_timestamp() - current_setting('fleetmig.step_started')::timestamptz) * 1000)::bigint";
        let returning = format!(" RETURNING version::text AS fleetmig_step, {SINCE}");
        let mut sql = String::from("BEGIN;\n");
        // The other tool's history before the step's own row, which returns the row that
        // says the step finished.
        for (script, row, direction, compat) in steps {
            let record = self.record(row, *direction, run_id, SINCE, &returning);
            let _ = write!(sql, "{MARK}\n{script}\n;\n{compat}{record}\n");
        }
        sql.push_str("COMMIT;");
        Some(sql)
    }

    async fn batch_steps(&mut self, sql: &str) -> (Vec<(String, i64)>, Result<(), sqlx::Error>) {
        let mut done = Vec::new();
        let limit = self.answer_within;
        let mut rows = self.conn().fetch_many(sqlx::raw_sql(sql));
        let result = answered(limit, async {
            loop {
                match rows.try_next().await {
                    Ok(Some(Either::Right(row))) => {
                        let ours = row.columns().first().is_some_and(|c| c.name() == "fleetmig_step");
                        if ours {
                            match (row.try_get::<String, _>(0), row.try_get::<i64, _>(1)) {
                                (Ok(v), Ok(ms)) => done.push((v, ms)),
                                (Err(e), _) | (_, Err(e)) => break Err(e),
                            }
                        }
                    }
                    Ok(Some(Either::Left(_))) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        })
        .await;
        (done, result)
    }

    // The bookkeeping of steps outside a transaction, `stamp` and `repair`: SQL text too,
    // for the same reason as everything else per tenant.
    async fn insert_row(&mut self, row: &Applied, duration_ms: i64, run_id: &str) -> Result<(), sqlx::Error> {
        let sql = self.record(row, Direction::Up, run_id, &duration_ms.to_string(), "");
        self.batch(&sql).await
    }

    async fn mark_row(&mut self, version: Version, dirty: bool, duration_ms: Option<i64>) -> Result<(), sqlx::Error> {
        let duration = duration_ms.map_or("duration_ms".to_owned(), |ms| ms.to_string());
        let sql = format!(
            "UPDATE {} SET dirty = {dirty}, duration_ms = {duration} WHERE version = {}",
            self.table,
            literal(&version.text())
        );
        self.batch(&sql).await
    }

    async fn update_row(&mut self, row: &Applied, run_id: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET name = {}, checksum = {}, dirty = {}, run_id = {} WHERE version = {}",
            self.table,
            literal(&row.name),
            literal(&row.checksum),
            row.dirty,
            literal(run_id),
            literal(&row.version.text())
        );
        self.batch(&sql).await
    }

    async fn delete_row(&mut self, version: Version) -> Result<(), sqlx::Error> {
        self.batch(&format!(
            "DELETE FROM {} WHERE version = {}",
            self.table,
            literal(&version.text())
        ))
        .await
    }

    async fn loose_mark(&mut self) -> Result<Vec<(i64, bool)>, sqlx::Error> {
        let sql = format!(
            "SELECT i.indexrelid::bigint, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relnamespace = {SCHEMA_OID}"
        );
        let rows = self.fetch(&sql).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A failed script sent as one simple query leaves nothing behind (PostgreSQL runs a
    /// multi-statement text as one implicit transaction) except what a concurrent index
    /// build left: its INVALID index. Those the script created are dropped. Only for a
    /// script that is one concurrent index statement is the database then as it was: a
    /// `DO` block or a procedure may have committed part of its work.
    async fn undo_loose(&mut self, mark: &[(i64, bool)], script: &str) -> Result<bool, sqlx::Error> {
        let invalid = self.invalid_indexes().await?;
        let mut made = Vec::new();
        for (oid, name) in invalid {
            match mark.iter().find(|(o, _)| *o == oid) {
                // Invalid before the script: not ours.
                Some((_, false)) => {}
                // Valid before, invalid now (a failed `DROP INDEX CONCURRENTLY`): part way.
                Some((_, true)) => return Ok(false),
                None => made.push(name),
            }
        }
        if made.is_empty() && !is_lone_concurrent_index_statement(script) {
            return Ok(false);
        }
        // A concurrent build's INVALID index exists only because the script was that one
        // statement (PostgreSQL refuses it in a multi-statement text or a function).
        for name in made {
            self.batch(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        Ok(true)
    }

    async fn before_rerun(&mut self, script: &str) -> Result<(), sqlx::Error> {
        let words = identifiers(script);
        for (_, name) in self.invalid_indexes().await? {
            let bare = name
                .rsplit('.')
                .next()
                .unwrap_or(&name)
                .trim_matches('"')
                .to_lowercase();
            if words.contains(&bare) {
                self.batch(&format!("DROP INDEX IF EXISTS {name}")).await?;
            }
        }
        Ok(())
    }

    /// In a transaction, for a lock timeout: the sessions holding locks on the tenant's
    /// tables. Outside one, for a lock or statement timeout, or a deadlock: the oldest open
    /// transaction in the database that holds a snapshot or a transaction id (a concurrent
    /// index build waits for every one of them, in every schema), other sessions of
    /// fleetmig last.
    async fn blocker(&mut self, error: &DbError, in_transaction: bool) -> Option<String> {
        if in_transaction {
            if error.code.as_deref() != Some("55P03") {
                return None;
            }
            return self.relation_lock_holders().await;
        }
        if !matches!(error.code.as_deref(), Some("55P03" | "57014" | "40P01")) {
            return None;
        }
        let sql = "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), \
             to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
             coalesce(to_char(query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND xact_start IS NOT NULL AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) \
             ORDER BY application_name = 'fleetmig', xact_start LIMIT 1";
        let row = self.fetch(sql).await.ok()?.into_iter().next()?;
        let pid: i32 = row.try_get(0).ok()?;
        let app: String = row.try_get(1).ok()?;
        let state: String = row.try_get(2).ok()?;
        let xact: String = row.try_get(3).ok()?;
        let query: String = row.try_get(4).ok()?;
        let app = if app.is_empty() {
            String::new()
        } else {
            format!(" `{app}`")
        };
        Some(format!(
            "the oldest open transaction in the database, which a concurrent index build waits for: \
             pid {pid}{app} ({state}), transaction started {xact}, query started {query}"
        ))
    }

    fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    async fn text_rows(&mut self, sql: &str) -> Result<Option<Vec<[String; 3]>>, sqlx::Error> {
        let rows = session::unless_missing(self.fetch(sql).await)?;
        rows.map(|rows| rows.iter().map(session::text_row).collect())
            .transpose()
    }

    async fn check(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        let row = self.fetch(sql).await?.into_iter().next();
        Ok(row.is_some_and(|r| {
            r.try_get::<bool, _>(0)
                .or_else(|_| r.try_get::<i64, _>(0).map(|v| v != 0))
                .unwrap_or(false)
        }))
    }

    async fn catalog(&mut self) -> Result<Catalog, sqlx::Error> {
        let Some(schema) = self
            .fetch("SELECT current_schema()::text")
            .await?
            .first()
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten()
        else {
            return Ok(Catalog::default());
        };
        let limit = self.answer_within;
        let schemas = [schema];
        let mut read = answered(limit, catalogs_on(self.conn(), &schemas)).await?;
        Ok(read.remove(&schemas[0]).unwrap_or_default())
    }

    async fn unlock(&mut self) -> Result<(), sqlx::Error> {
        let mut sql = String::new();
        if self.locked {
            let _ = write!(sql, "SELECT pg_advisory_unlock({});", lock_key(self.schema.as_deref()));
        }
        sql.push_str("RESET ALL;");
        self.batch(&sql).await?;
        self.locked = false;
        Ok(())
    }

    /// A clean session says goodbye (own connection) or goes back to its pool. Any other is
    /// dropped without a TLS shutdown: after an error the server may still have a reply in
    /// flight, and waiting on a graceful shutdown there can hang; closing the socket makes
    /// the server roll back and release the session's locks.
    async fn finish(mut self, clean: bool) {
        self.clean = clean;
        match self.conn.take() {
            Some(Conn::Own(c)) if clean => {
                let _ = c.close().await;
            }
            Some(Conn::Pooled(c)) if !clean => drop(c.detach()),
            Some(Conn::Own(c)) => drop(c),
            Some(Conn::Pooled(c)) => drop(c),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timeouts_never_round_to_none_and_stay_in_range() {
        assert_eq!(server_ms(Duration::ZERO), "0ms");
        assert_eq!(server_ms(Duration::from_micros(500)), "1ms");
        assert_eq!(server_ms(Duration::from_nanos(1)), "1ms");
        assert_eq!(server_ms(Duration::from_micros(1500)), "2ms");
        assert_eq!(server_ms(Duration::from_secs(10)), "10000ms");
        assert_eq!(server_ms(Duration::MAX), "2147483647ms");
        let limits = Limits {
            lock_timeout: Duration::from_micros(500),
            ..Limits::default()
        };
        let options = connect_options("postgres://u@h/d", &limits).unwrap();
        let sent = format!("{options:?}");
        assert!(sent.contains("lock_timeout=1ms"), "{sent}");
    }

    #[test]
    fn only_a_lone_concurrent_index_statement_is_known_to_leave_nothing_but_its_index() {
        for lone in [
            "-- fleetmig: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            "-- fleetmig: no-transaction, rerun-if-dirty\ncreate unique index  concurrently if not exists i on t(a)",
            "-- why\nDROP INDEX CONCURRENTLY IF EXISTS i; -- done\n",
            "REINDEX INDEX CONCURRENTLY i;",
        ] {
            assert!(is_lone_concurrent_index_statement(lone), "{lone}");
        }
        for other in [
            "-- fleetmig: no-transaction\nCREATE INDEX i ON t (a);",
            "CREATE INDEX CONCURRENTLY i ON t (a); UPDATE t SET a = 1;",
            "DO $$ BEGIN PERFORM 1; COMMIT; END $$;",
            "/* x */ CREATE INDEX CONCURRENTLY i ON t (a);",
            "ALTER TYPE mood ADD VALUE 'meh';",
        ] {
            assert!(!is_lone_concurrent_index_statement(other), "{other}");
        }
    }

    #[test]
    fn identifiers_are_the_scripts_words_without_comments() {
        let words =
            identifiers("-- drop old_idx\nCREATE INDEX CONCURRENTLY IF NOT EXISTS \"Users_Email\" ON users (email);");
        assert!(words.contains(&"users_email".to_owned()) && words.contains(&"users".to_owned()));
        assert!(!words.contains(&"old_idx".to_owned()), "{words:?}");
    }
}
