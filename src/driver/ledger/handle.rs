//! The open ledger: its connection pool, the time limit every statement runs under, the
//! retries of a write after a transient error, and the check that a SQLite ledger's file
//! is still the one opened.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use super::error::{Cause, LedgerError};
use super::schema::{Engine, TABLES, create_sqlite, upgrade};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::secret::DbUrl;

/// A SQLite ledger's file and the identity (device and inode) it had when opened: a file
/// deleted or replaced during a run would otherwise swallow the run's records silently.
#[derive(Debug, Clone)]
struct LedgerFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    path.is_file().then_some((0, 0))
}

/// The least time a ledger statement is given, whatever `--connect-timeout` says: that
/// flag is about reaching servers, and a tiny one (to give up on unreachable tenants fast)
/// must not fail a healthy ledger's every write.
pub const MIN_ANSWER: Duration = Duration::from_secs(5);

/// Pauses between attempts at a ledger write that met a transient error; attempts stop
/// once the next pause would end past the ledger's time limit.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(900),
];

/// An open ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(super) pool: AnyPool,
    /// The ledger's URL with any password hidden, for messages.
    pub(super) shown: String,
    /// Bounds every statement and the retries of a write: `--connect-timeout`, at least
    /// [`MIN_ANSWER`].
    pub(super) limit: Duration,
    /// SQLite only: the file, checked before every write.
    file: Option<LedgerFile>,
    /// Why the run's end could not be recorded, when it could not.
    pub(super) missed_end: Arc<Mutex<Option<String>>>,
}

impl Ledger {
    /// Opens (and creates, the first time) the ledger at `url`, bringing its tables to this
    /// fleetmig's version: connecting to a server within `connect` (the command's
    /// `--connect-timeout`); a SQLite file, and every statement later, within `connect` but
    /// never less than [`MIN_ANSWER`].
    ///
    /// A SQLite ledger is created whole (its tables written to a side file that is then
    /// linked into place), so a file at the ledger's path that is empty or lacks the
    /// tables was not made by fleetmig, or was truncated: it is refused, never
    /// overwritten with a new ledger.
    pub async fn open(url: &DbUrl, connect: Duration) -> Result<Ledger, LedgerError> {
        install_default_drivers();
        let limit = connect.max(MIN_ANSWER);
        let shown = url.redacted();
        // The database's own words for a failure to reach it, password hidden.
        let fail = |op: &str, cause: Cause| LedgerError {
            ledger: shown.clone(),
            op: op.into(),
            cause: match cause {
                Cause::Sql(e) => {
                    Cause::Unreachable(DbError::sqlx(ErrorKind::Unreachable, "", &e, url.password()).message)
                }
                other => other,
            },
        };
        let engine = if url.scheme() == "sqlite" {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        let (text, file) = match engine {
            Engine::Sqlite => sqlite_file(url, limit).await.map_err(|(op, c)| fail(op, c))?,
            Engine::Postgres => (url.expose().to_owned(), None),
        };
        // One direct connection first, bounded: a pool that cannot connect only says it
        // timed out, where the connection says why (refused, bad password, not a database).
        let open_within = if engine == Engine::Sqlite { limit } else { connect };
        match tokio::time::timeout(open_within, prepare(&text, engine)).await {
            Ok(result) => result.map_err(|c| fail("opening", c))?,
            Err(_) => return Err(fail("opening", Cause::Timeout(open_within))),
        }
        let pool = pool_options(engine, limit, connect)
            .connect_lazy(&text)
            .map_err(|e| fail("opening", e.into()))?;
        Ok(Ledger {
            pool,
            shown,
            limit,
            file,
            missed_end: Arc::default(),
        })
    }

    pub(super) fn fail(&self, op: &str, e: sqlx::Error) -> LedgerError {
        self.fault(op, Cause::Sql(e))
    }

    pub(super) fn fault(&self, op: &str, cause: Cause) -> LedgerError {
        LedgerError {
            ledger: self.shown.clone(),
            op: op.into(),
            cause,
        }
    }

    /// A SQLite ledger's file must still be the one opened.
    pub(super) fn check_file(&self, run_id: &str) -> Result<(), Cause> {
        let Some(file) = &self.file else { return Ok(()) };
        let now = file_identity(&file.path);
        if now.is_some() && now == file.identity {
            return Ok(());
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        Err(Cause::Lost(format!(
            "the ledger file `{}` was {what} during the run: the records of run `{run_id}` are lost",
            file.path.display()
        )))
    }

    /// Runs one ledger write: on the file opened (SQLite), within the time limit, again
    /// after a transient error while the time limit lasts.
    pub(super) async fn write<T, F, Fut>(&self, op: &str, run_id: &str, mut attempt: F) -> Result<T, LedgerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Cause>>,
    {
        let started = Instant::now();
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            self.check_file(run_id).map_err(|f| self.fault(op, f))?;
            let result = match tokio::time::timeout(self.limit, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Cause::Timeout(self.limit)),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(f) if f.is_transient() => match pauses.next() {
                    Some(pause) if started.elapsed() + *pause < self.limit => tokio::time::sleep(*pause).await,
                    _ => return Err(self.fault(op, f)),
                },
                Err(f) => return Err(self.fault(op, f)),
            }
        }
    }

    /// Why the last run's end could not be recorded, if it could not.
    pub fn missed_end(&self) -> Option<String> {
        self.missed_end.lock().expect("not poisoned").clone()
    }

    /// Notes that the run's end was not recorded for a reason of the caller's (its write
    /// was given up on after a second interrupt), for [`Ledger::missed_end`].
    pub fn gave_up_on_end(&self, why: String) {
        self.missed_end.lock().expect("not poisoned").get_or_insert(why);
    }

    /// `work` within the ledger's time limit; the reads (`runs`, `report`, `plan`, ...) go
    /// through it too, so a ledger that opened and then went silent fails them, never hangs.
    pub(super) async fn bounded<T>(
        &self,
        op: &str,
        work: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        match tokio::time::timeout(self.limit, work).await {
            Ok(result) => result,
            Err(_) => Err(self.fault(op, Cause::Timeout(self.limit))),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A SQLite ledger's connection text and file, the file created whole when missing. An
/// empty file is refused: fleetmig never made it.
async fn sqlite_file(url: &DbUrl, limit: Duration) -> Result<(String, Option<LedgerFile>), (&'static str, Cause)> {
    let path = PathBuf::from(url.url().path());
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_sqlite(&path, limit).await.map_err(|c| ("creating it", c))?
        }
        Err(e) => return Err(("opening", Cause::Refused(e.to_string()))),
        Ok(m) if !m.is_file() => return Err(("opening", Cause::Refused("not a file".into()))),
        Ok(m) if m.len() == 0 => {
            return Err((
                "opening",
                Cause::Refused(
                    "the file is empty (0 bytes): not a fleetmig ledger, or one truncated. fleetmig creates \
                     its ledger whole, never empty, and will not start a new one over it: move the file away \
                     to start a new ledger, or restore it from a backup"
                        .into(),
                ),
            ));
        }
        Ok(_) => {}
    }
    let identity = file_identity(&path);
    Ok((
        format!("sqlite://{}?mode=rw", path.display()),
        Some(LedgerFile { path, identity }),
    ))
}

/// On one connection: a SQLite file must hold fleetmig's tables; then the tables are
/// brought to this fleetmig's version.
async fn prepare(text: &str, engine: Engine) -> Result<(), Cause> {
    let mut conn = AnyConnection::connect(text).await?;
    if engine == Engine::Sqlite {
        let tables: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN {TABLES}"
        ))
        .fetch_one(&mut conn)
        .await?;
        if tables < 2 {
            return Err(Cause::Refused(
                "the file is a SQLite database without fleetmig's tables (fleetmig_runs, fleetmig_run_tenants): \
                 not a fleetmig ledger; give --ledger another file, or move this one away"
                    .into(),
            ));
        }
    }
    upgrade(&mut conn, engine).await?;
    Ok(conn.close().await?)
}

/// The pool: SQLite one connection (a single writer anyway), waiting for another runner's
/// write no longer than the command's time limit; PostgreSQL a few.
fn pool_options(engine: Engine, limit: Duration, connect: Duration) -> AnyPoolOptions {
    let options = AnyPoolOptions::new();
    if engine == Engine::Postgres {
        return options.max_connections(4).acquire_timeout(connect);
    }
    let busy = limit.as_millis().min(i32::MAX as u128);
    options
        .max_connections(1)
        .acquire_timeout(limit)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(
                    format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {busy};")
                        .as_str(),
                )
                .await
                .map(drop)
            })
        })
}
