//! The run ledger: every run, its plan, and every tenant's outcome, in SQLite (a file beside
//! the fleet file, by default) or PostgreSQL (shared by a team).
//!
//! A tenant is written `started` before its first statement and its outcome after its
//! commit, so after a crash the ledger is either right or says "started" (unknown), never
//! "done" for work that did not commit. The tenants' own history tables stay the truth.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::model::migration::Version;
use crate::model::run::{FinalTenant, RunReport};
use crate::model::run::{Outcome, Phase, TenantReport};
use crate::model::secret::DbUrl;

/// A ledger error, free of secrets.
#[derive(Debug, thiserror::Error)]
#[error("ledger `{ledger}`: {op}: {message}")]
pub struct LedgerError {
    pub ledger: String,
    pub op: String,
    pub message: String,
}

const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS fleetmig_runs (
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    target BIGINT,
    runner TEXT NOT NULL,
    fleet TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    stop_reason TEXT,
    plan TEXT NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS fleetmig_run_tenants (
    run_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    wave BIGINT NOT NULL,
    state TEXT NOT NULL,
    start_version BIGINT,
    final_version BIGINT,
    steps TEXT,
    error TEXT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, tenant)
);";

/// What a run set out to do: enough to resume it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunPlan {
    /// `up` or `down`.
    pub command: String,
    /// The version tenants are taken to.
    pub target: i64,
    /// Tenant ids, wave by wave, in rollout order.
    pub waves: Vec<Vec<String>>,
    /// Waves marked as canary waves.
    pub canary_waves: Vec<usize>,
    /// The rollout policy the run was started with, which `--resume` keeps. Absent in
    /// runs recorded before fleetmig kept it, and for `stamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RecordedPolicy>,
    /// `down --steps N`: how many migrations each tenant reverts (the run has no target
    /// version then). Absent for every other run, and in runs recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
}

/// A run's rollout policy as the ledger keeps it: every value as its flag writes it, so a
/// later fleetmig reads it back and an operator can read it in the plan's JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RecordedPolicy {
    /// `--waves` (or the fleet file's `rollout.waves`); `None`: one wave after the canaries.
    pub waves: Option<String>,
    /// `--canary` selectors.
    pub canary: Vec<String>,
    pub max_failures: String,
    pub max_skipped: String,
    pub rollback: String,
    pub bake_ms: Option<u64>,
    pub check: Option<String>,
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    /// `per-migration` or `per-tenant`.
    pub tx: String,
    /// `--retry-for`, in milliseconds (`None`: the default).
    pub retry_for_ms: Option<u64>,
    /// `--retries` (`None`: no count limit).
    pub retries: Option<u32>,
}

/// One line of `fleetmig runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub command: String,
    /// The version tenants were taken to; `null` for a `down --steps` run.
    pub target: Option<i64>,
    /// `down --steps N`: the migrations each tenant reverts. Left out for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    pub runner: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub stop_reason: Option<String>,
    pub tenants: i64,
    /// Tenants per final status, the same counts as the run's `summary`.
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
    pub rollback_failed: i64,
    pub skipped: i64,
    pub not_started: i64,
    pub stopped: i64,
}

/// The last failure the ledger saw for a tenant, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub run_id: String,
    pub at_ms: i64,
    pub error: String,
}

/// The `--steps` a run's recorded plan holds; `None` for other runs, old runs, and a plan
/// that does not read.
fn steps_of(plan: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Steps {
        #[serde(default)]
        steps: Option<usize>,
    }
    serde_json::from_str::<Steps>(plan).ok().and_then(|p| p.steps)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Who runs fleetmig and where, for the ledger. The user is the operating system's name
/// for this process's user (cron, systemd units and containers often set no `$USER`);
/// `$USER` or `$USERNAME` only when the system has no name for it. The host is the
/// kernel's host name (`/etc/hostname` is missing in many containers).
pub fn runner() -> String {
    let user = whoami::fallible::username()
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "?".into());
    let host = whoami::fallible::hostname()
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()))
        .unwrap_or_else(|_| "?".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// Tenant rows written by one statement: far below SQLite's and PostgreSQL's limits on
/// bound parameters, and large enough that a big fleet costs few round trips.
const ROWS_PER_STATEMENT: usize = 200;

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

/// Why one attempt at a ledger write failed.
enum Fault {
    Sql(sqlx::Error),
    /// No answer within the ledger's time limit.
    Timeout(Duration),
    /// The run's records are gone: the file was deleted or replaced, or the run's rows were.
    Lost(String),
}

impl From<sqlx::Error> for Fault {
    fn from(e: sqlx::Error) -> Self {
        Fault::Sql(e)
    }
}

impl Fault {
    /// Worth another attempt: the connection or the server hiccuped, the statement did not fail.
    fn is_transient(&self) -> bool {
        match self {
            Fault::Sql(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
            Fault::Sql(sqlx::Error::Database(db)) => db.code().is_some_and(|c| {
                c.starts_with("08")
                    || matches!(
                        &*c,
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300" | "5" | "6" | "261" | "517"
                    )
            }),
            _ => false,
        }
    }
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
    pool: AnyPool,
    /// The ledger's URL with any password hidden, for messages.
    shown: String,
    /// Bounds every statement and the retries of a write: `--connect-timeout`, at least
    /// [`MIN_ANSWER`].
    limit: Duration,
    /// SQLite only: the file, checked before every write.
    file: Option<LedgerFile>,
    /// Why the run's end could not be recorded, when it could not.
    missed_end: Arc<Mutex<Option<String>>>,
}

/// The tables a fleetmig ledger has from its creation on.
const TABLES: &str = "('fleetmig_runs', 'fleetmig_run_tenants')";

impl Ledger {
    /// Opens (and creates, the first time) the ledger at `url`: connecting to a server
    /// within `connect` (the command's `--connect-timeout`); a SQLite file, and every
    /// statement later, within `connect` but never less than [`MIN_ANSWER`].
    ///
    /// A SQLite ledger is created whole (its tables written to a side file that is then
    /// linked into place), so a file at the ledger's path that is empty or lacks the
    /// tables was not made by fleetmig, or was truncated: it is refused, never
    /// overwritten with a new ledger.
    pub async fn open(url: &DbUrl, connect: Duration) -> Result<Ledger, LedgerError> {
        install_default_drivers();
        let limit = connect.max(MIN_ANSWER);
        let shown = url.redacted();
        let fail = |op: &str, message: String| LedgerError {
            ledger: shown.clone(),
            op: op.into(),
            message,
        };
        let sql_fail = |op: &str, e: sqlx::Error| {
            fail(
                op,
                crate::model::db_error::DbError::sqlx(
                    crate::model::db_error::ErrorKind::Unreachable,
                    "",
                    &e,
                    url.password(),
                )
                .message,
            )
        };
        let sqlite = url.scheme() == "sqlite";
        let (text, file) = if sqlite {
            let path = PathBuf::from(url.url().path());
            match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    create_sqlite(&path, limit).await.map_err(|e| match e {
                        Fault::Sql(e) => sql_fail("creating it", e),
                        Fault::Timeout(t) => fail("creating it", format!("no answer within {t:?}")),
                        Fault::Lost(m) => fail("creating it", m),
                    })?
                }
                Err(e) => return Err(fail("opening", e.to_string())),
                Ok(m) if !m.is_file() => return Err(fail("opening", "not a file".into())),
                Ok(m) if m.len() == 0 => {
                    return Err(fail(
                        "opening",
                        "the file is empty (0 bytes): not a fleetmig ledger, or one truncated. fleetmig creates \
                         its ledger whole, never empty, and will not start a new one over it: move the file away \
                         to start a new ledger, or restore it from a backup"
                            .into(),
                    ));
                }
                Ok(_) => {}
            }
            let identity = file_identity(&path);
            (
                format!("sqlite://{}?mode=rw", path.display()),
                Some(LedgerFile { path, identity }),
            )
        } else {
            (url.expose().to_owned(), None)
        };
        // One direct connection first, bounded: a pool that cannot connect only says it
        // timed out, where the connection says why (refused, bad password, not a database).
        let direct = async {
            let mut conn = AnyConnection::connect(&text).await?;
            let tables: i64 = if sqlite {
                sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN {TABLES}"
                ))
                .fetch_one(&mut conn)
                .await?
            } else {
                conn.execute(SCHEMA).await?;
                2
            };
            conn.close().await?;
            Ok::<_, sqlx::Error>(tables)
        };
        let open_within = if sqlite { limit } else { connect };
        let tables = match tokio::time::timeout(open_within, direct).await {
            Ok(Ok(tables)) => tables,
            Ok(Err(e)) => return Err(sql_fail("opening", e)),
            Err(_) => return Err(fail("opening", format!("no answer within {open_within:?}"))),
        };
        if tables < 2 {
            return Err(fail(
                "opening",
                "the file is a SQLite database without fleetmig's tables (fleetmig_runs, fleetmig_run_tenants): \
                 not a fleetmig ledger; give --ledger another file, or move this one away"
                    .into(),
            ));
        }
        let options = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 4 })
            .acquire_timeout(if sqlite { limit } else { connect });
        let options = if sqlite {
            // Waits for another runner's write no longer than the command's time limit.
            let busy = limit.as_millis().min(i32::MAX as u128);
            options.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {busy};"
                        )
                        .as_str(),
                    )
                    .await
                    .map(drop)
                })
            })
        } else {
            options
        };
        let pool = options.connect_lazy(&text).map_err(|e| sql_fail("opening", e))?;
        Ok(Ledger {
            pool,
            shown,
            limit,
            file,
            missed_end: Arc::default(),
        })
    }

    fn fail(&self, op: &str, e: sqlx::Error) -> LedgerError {
        LedgerError {
            ledger: self.shown.clone(),
            op: op.into(),
            message: e.to_string(),
        }
    }

    fn fault(&self, op: &str, fault: Fault) -> LedgerError {
        match fault {
            Fault::Sql(e) => self.fail(op, e),
            Fault::Timeout(t) => LedgerError {
                ledger: self.shown.clone(),
                op: op.into(),
                message: format!("no answer within {t:?}"),
            },
            Fault::Lost(message) => LedgerError {
                ledger: self.shown.clone(),
                op: op.into(),
                message,
            },
        }
    }

    /// A SQLite ledger's file must still be the one opened.
    fn check_file(&self, run_id: &str) -> Result<(), Fault> {
        let Some(file) = &self.file else { return Ok(()) };
        let now = file_identity(&file.path);
        if now.is_some() && now == file.identity {
            return Ok(());
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        Err(Fault::Lost(format!(
            "the ledger file `{}` was {what} during the run: the records of run `{run_id}` are lost",
            file.path.display()
        )))
    }

    /// Runs one ledger write: on the file opened (SQLite), within the time limit, again
    /// after a transient error while the time limit lasts.
    async fn write<T, F, Fut>(&self, op: &str, run_id: &str, mut attempt: F) -> Result<T, LedgerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let started = Instant::now();
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            self.check_file(run_id).map_err(|f| self.fault(op, f))?;
            let result = match tokio::time::timeout(self.limit, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Fault::Timeout(self.limit)),
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

    /// Records a new run and its plan, every tenant `pending`. Not retried: the insert
    /// may have committed before its answer was lost.
    pub async fn begin_run(&self, run_id: &str, fleet: &str, plan: &RunPlan) -> Result<(), LedgerError> {
        self.begin(run_id, fleet, plan, None).await
    }

    /// Records a new shared run (see [`Ledger::begin_run`]) with the failure limit every
    /// runner applies to the whole run, in the same transaction: a run is never left
    /// behind half made.
    pub async fn begin_shared_run(
        &self,
        run_id: &str,
        fleet: &str,
        plan: &RunPlan,
        max_failures: &str,
    ) -> Result<(), LedgerError> {
        self.begin(run_id, fleet, plan, Some(max_failures)).await
    }

    async fn begin(&self, run_id: &str, fleet: &str, plan: &RunPlan, shared: Option<&str>) -> Result<(), LedgerError> {
        let op = "recording the run";
        self.check_file(run_id).map_err(|f| self.fault(op, f))?;
        match tokio::time::timeout(self.limit, self.begin_run_once(run_id, fleet, plan, shared)).await {
            Ok(result) => result.map_err(|f| self.fault(op, f)),
            Err(_) => Err(self.fault(op, Fault::Timeout(self.limit))),
        }
    }

    async fn begin_run_once(
        &self,
        run_id: &str,
        fleet: &str,
        plan: &RunPlan,
        shared: Option<&str>,
    ) -> Result<(), Fault> {
        let text = serde_json::to_string(plan).expect("plans serialize");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO fleetmig_runs (run_id, command, target, runner, fleet, started_ms, plan) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(run_id)
        .bind(&plan.command)
        .bind(plan.target)
        .bind(runner())
        .bind(fleet)
        .bind(now_ms())
        .bind(&text)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<(&str, i64)> = plan
            .waves
            .iter()
            .zip(1..)
            .flat_map(|(tenants, wave)| tenants.iter().map(move |t| (t.as_str(), wave)))
            .collect();
        let now = now_ms();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, ${}, ${}, 'pending', $2)", 2 * i + 3, 2 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO fleetmig_run_tenants (run_id, tenant, wave, state, updated_ms) VALUES {}",
                values.join(", ")
            );
            let mut insert = sqlx::query(&sql).bind(run_id).bind(now);
            for (tenant, wave) in chunk {
                insert = insert.bind(*tenant).bind(*wave);
            }
            insert.execute(&mut *tx).await?;
        }
        if let Some(limit) = shared {
            sqlx::query("UPDATE fleetmig_runs SET shared = $2 WHERE run_id = $1")
                .bind(run_id)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx.commit().await?)
    }

    /// The run's rows are gone when an update of them touches nothing.
    fn lost(run_id: &str) -> Fault {
        Fault::Lost(format!(
            "run `{run_id}` is missing from the ledger (deleted, replaced or cleared during the run): its records are lost"
        ))
    }

    /// Marks a resumed run as running again.
    pub async fn reopen_run(&self, run_id: &str) -> Result<(), LedgerError> {
        self.write("reopening the run", run_id, move || async move {
            let done = sqlx::query(
                "UPDATE fleetmig_runs SET finished_ms = NULL, stop_reason = NULL, runner = $2 WHERE run_id = $1",
            )
            .bind(run_id)
            .bind(runner())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(Self::lost(run_id));
            }
            Ok(())
        })
        .await
    }

    /// Written before the tenant's first statement.
    pub async fn tenant_started(&self, run_id: &str, tenant: &str) -> Result<(), LedgerError> {
        self.write("recording a tenant's start", run_id, move || async move {
            let done = sqlx::query(
                "UPDATE fleetmig_run_tenants SET state = 'started', updated_ms = $3 WHERE run_id = $1 AND tenant = $2",
            )
            .bind(run_id)
            .bind(tenant)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(Self::lost(run_id));
            }
            Ok(())
        })
        .await
    }

    /// Written after the tenant's last commit (or failure).
    pub async fn tenant_finished(&self, run_id: &str, report: &TenantReport) -> Result<(), LedgerError> {
        let (state, error) = match &report.outcome {
            Outcome::Succeeded => ("succeeded", None),
            Outcome::Failed { error, .. } => ("failed", Some(error.to_string())),
            Outcome::Skipped { reason } => ("skipped", Some(format!("{}: {}", reason.name(), reason.message()))),
            Outcome::NotStarted => ("not_started", None),
            Outcome::Stopped => ("stopped", None),
        };
        let steps = serde_json::to_string(&report.steps).expect("steps serialize");
        let (steps, error) = (steps.as_str(), error.as_deref());
        self.write("recording a tenant's outcome", run_id, move || async move {
            let done = sqlx::query(
                "UPDATE fleetmig_run_tenants SET state = $3, start_version = COALESCE(start_version, $4), final_version = $5, \
                 steps = $6, error = $7, updated_ms = $8 WHERE run_id = $1 AND tenant = $2",
            )
            .bind(run_id)
            .bind(report.id.as_str())
            .bind(state)
            .bind(report.start_version.map(|v| v.0))
            .bind(report.final_version.map(|v| v.0))
            .bind(steps)
            .bind(error)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(Self::lost(run_id));
            }
            Ok(())
        })
        .await
    }

    /// Records the end of a run with its final report. On failure the reason is also kept
    /// for [`Ledger::missed_end`].
    pub async fn finish_run(&self, report: &RunReport) -> Result<(), LedgerError> {
        let result = self
            .write("recording the run's end", &report.run_id, move || {
                self.finish_run_once(report)
            })
            .await;
        if let Err(e) = &result {
            *self.missed_end.lock().expect("not poisoned") = Some(e.to_string());
        }
        result
    }

    async fn finish_run_once(&self, report: &RunReport) -> Result<(), Fault> {
        let mut tx = self.pool.begin().await?;
        // Tenants that ended alike share one statement per chunk: a run of a thousand
        // tenants at the target is a few statements, not a thousand.
        let mut alike: BTreeMap<(&str, Option<i64>), Vec<&str>> = BTreeMap::new();
        for t in &report.tenants {
            alike
                .entry((t.status.name(), t.final_version.map(|v| v.0)))
                .or_default()
                .push(&t.id);
        }
        let now = now_ms();
        for ((state, version), ids) in alike {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 5)).collect();
                let sql = format!(
                    "UPDATE fleetmig_run_tenants SET state = $2, final_version = $3, updated_ms = $4 \
                     WHERE run_id = $1 AND tenant IN ({})",
                    list.join(", ")
                );
                let mut update = sqlx::query(&sql)
                    .bind(&report.run_id)
                    .bind(state)
                    .bind(version)
                    .bind(now);
                for id in chunk {
                    update = update.bind(*id);
                }
                if update.execute(&mut *tx).await?.rows_affected() < chunk.len() as u64 {
                    return Err(Self::lost(&report.run_id));
                }
            }
        }
        let done =
            sqlx::query("UPDATE fleetmig_runs SET finished_ms = $2, stop_reason = $3, report = $4 WHERE run_id = $1")
                .bind(&report.run_id)
                .bind(now_ms())
                .bind(report.stop_reason.to_string())
                .bind(serde_json::to_string(report).expect("reports serialize"))
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(Self::lost(&report.run_id));
        }
        Ok(tx.commit().await?)
    }

    /// Past runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>, LedgerError> {
        self.bounded("listing runs", async {
            let rows = sqlx::query(
                "SELECT r.run_id, r.command, r.target, r.runner, r.started_ms, r.finished_ms, r.stop_reason, \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'succeeded'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'failed'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'rolled_back'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'rollback_failed'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'skipped'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'not_started'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'stopped'), \
             r.plan \
             FROM fleetmig_runs r ORDER BY r.started_ms DESC, r.run_id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("listing runs", e))?;
            rows.iter()
                .map(|r| {
                    let steps = steps_of(&r.try_get::<String, _>(15)?);
                    let command: String = r.try_get(1)?;
                    // `stamp --checksums` keeps each tenant's version: the run has no target.
                    let untargeted = steps.is_some() || command.starts_with("stamp --checksums");
                    Ok(RunRow {
                        run_id: r.try_get(0)?,
                        target: if untargeted { None } else { r.try_get(2)? },
                        command,
                        steps,
                        runner: r.try_get(3)?,
                        started_ms: r.try_get(4)?,
                        finished_ms: r.try_get(5)?,
                        stop_reason: r.try_get(6)?,
                        tenants: r.try_get(7)?,
                        succeeded: r.try_get(8)?,
                        failed: r.try_get(9)?,
                        rolled_back: r.try_get(10)?,
                        rollback_failed: r.try_get(11)?,
                        skipped: r.try_get(12)?,
                        not_started: r.try_get(13)?,
                        stopped: r.try_get(14)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("listing runs", e))
        })
        .await
    }

    /// A run's final report, if it finished.
    pub async fn report(&self, run_id: &str) -> Result<Option<RunReport>, LedgerError> {
        self.bounded("reading a run", async {
            let text: Option<Option<String>> = sqlx::query_scalar("SELECT report FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail("reading a run", e))?;
            text.flatten()
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| self.fail("reading a run's report", sqlx::Error::Decode(Box::new(e))))
        })
        .await
    }

    /// A run's plan; `None` when no run has that id.
    pub async fn plan(&self, run_id: &str) -> Result<Option<RunPlan>, LedgerError> {
        self.bounded("reading a run", async {
            let text: Option<String> = sqlx::query_scalar("SELECT plan FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail("reading a run", e))?;
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| self.fail("reading a run's plan", sqlx::Error::Decode(Box::new(e))))
        })
        .await
    }

    /// The newest `up` or `down` run that did not finish, or stopped early.
    pub async fn last_unfinished(&self) -> Result<Option<String>, LedgerError> {
        self.bounded("looking for an unfinished run", async {
            sqlx::query_scalar(
                "SELECT run_id FROM fleetmig_runs WHERE command IN ('up', 'down') \
             AND (finished_ms IS NULL OR stop_reason <> 'completed') ORDER BY started_ms DESC, run_id DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail("looking for an unfinished run", e))
        })
        .await
    }

    /// Per tenant, the last error any run recorded for it (and not cleared by a later success).
    pub async fn last_errors(&self) -> Result<Vec<(String, LastError)>, LedgerError> {
        self.bounded("reading last errors", async {
            let rows = sqlx::query(
                "SELECT t.tenant, t.run_id, t.updated_ms, t.error FROM fleetmig_run_tenants t \
             WHERE t.error IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fleetmig_run_tenants u WHERE u.tenant = t.tenant \
             AND u.updated_ms > t.updated_ms AND (u.state = 'succeeded' OR u.error IS NOT NULL)) ORDER BY t.tenant",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("reading last errors", e))?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        LastError {
                            run_id: r.try_get(1)?,
                            at_ms: r.try_get(2)?,
                            error: r.try_get(3)?,
                        },
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("reading last errors", e))
        })
        .await
    }

    /// Every tenant row of a run: (tenant, state, final version).
    pub async fn tenants(&self, run_id: &str) -> Result<Vec<(String, String, Option<i64>)>, LedgerError> {
        self.bounded("reading a run's tenants", async {
            let rows = sqlx::query(
                "SELECT tenant, state, final_version FROM fleetmig_run_tenants WHERE run_id = $1 ORDER BY wave, tenant",
            )
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("reading a run's tenants", e))?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("reading a run's tenants", e))
        })
        .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates a new SQLite ledger at `path`, whole: its tables are written to a side file,
/// which is then linked to `path` only if nothing is there yet (another runner may have
/// created the ledger at the same moment: then that one is used).
async fn create_sqlite(path: &Path, limit: Duration) -> Result<(), Fault> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Fault::Lost(format!("creating its folder: {e}")))?;
    }
    let name = path.file_name().map_or("ledger".into(), |n| n.to_string_lossy());
    let side = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&side);
    let write = async {
        let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", side.display())).await?;
        conn.execute(SCHEMA).await?;
        conn.close().await
    };
    let result = match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => match std::fs::hard_link(&side, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: a rename, which a racing creator could
            // overwrite with its own new (and equally empty) ledger.
            Err(_) => std::fs::rename(&side, path).map_err(|e| Fault::Lost(format!("moving it into place: {e}"))),
        },
        Ok(Err(e)) => Err(Fault::Sql(e)),
        Err(_) => Err(Fault::Timeout(limit)),
    };
    let _ = std::fs::remove_file(&side);
    result
}

/// Where the ledger lives when neither `--ledger` nor the fleet file's `ledger:` says:
/// a SQLite file beside the fleet file, named after it (`tenants.ledger.db`).
pub fn default_ledger_path(fleet_path: &std::path::Path) -> std::path::PathBuf {
    let stem = fleet_path.file_stem().and_then(|s| s.to_str()).unwrap_or("fleet");
    let dir = fleet_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    dir.join(format!("{stem}.ledger.db"))
}

/// The database's clock in milliseconds: every runner of a shared run judges leases by
/// the ledger's clock, never its own, so clock skew between machines cannot expire a lease.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// What a claim on a shared run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This runner now owns the tenant. `from`: the runner whose lease expired, on a takeover.
    Tenant {
        id: String,
        wave: usize,
        from: Option<String>,
    },
    /// Nothing to claim now: the open wave's other tenants are in other runners' hands.
    Wait,
    /// No tenant is pending or in flight: the run is done.
    Done,
    /// The run's stop marker is set.
    Stopped(crate::model::policy::StopReason),
}

/// One tenant row of a shared run, for the report assembled from the ledger.
#[derive(Debug, Clone)]
pub struct SharedRow {
    pub tenant: String,
    pub wave: i64,
    pub state: String,
    pub start_version: Option<i64>,
    pub final_version: Option<i64>,
    pub steps: Option<String>,
    pub error: Option<String>,
    /// Where and how it failed, and its rollback: `None` for rows written before the
    /// ledger kept it (or that have nothing to say).
    pub failure: Option<RowFailure>,
    /// True for a `started` row whose lease has run out: its runner is gone.
    pub expired: bool,
}

/// What a shared run's tenant row keeps besides its state and error (JSON in its `failure`
/// column), so the run's report assembled from the ledger says what a runner's own report
/// says: the failed migration, where it failed, the codes, the dirty mark, the rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RowFailure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_migration: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_number: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<[Option<Version>; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<String>,
    /// Why a skipped tenant was refused, for the report that groups tenants by problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<crate::model::refusal::Refusal>,
}

impl RowFailure {
    /// A tenant's line of a runner's final report, as the row keeps it.
    pub fn of(t: &FinalTenant) -> Option<RowFailure> {
        let f = RowFailure {
            failed_migration: t.failed_migration,
            during: t.during,
            dirty: t.dirty,
            error_code: t.error_code.clone(),
            error_number: t.error_number,
            rollback: t.rollback,
            rollback_error: t.rollback_error.clone(),
            refusal: t.refusal.clone(),
        };
        (f != RowFailure::default()).then_some(f)
    }

    /// A tenant's outcome as it finished, before any rollback.
    fn of_outcome(outcome: &Outcome) -> Option<RowFailure> {
        let mut f = RowFailure {
            dirty: crate::model::run::dirty_at(outcome),
            ..RowFailure::default()
        };
        if let Outcome::Failed {
            version, during, error, ..
        } = outcome
        {
            f.failed_migration = *version;
            f.during = Some(*during).filter(|d| *d != Phase::Migrating);
            f.error_code = error.code.clone();
            f.error_number = error.number;
        }
        if let Outcome::Skipped {
            reason: crate::model::run::SkipReason::Refused { refusal },
        } = outcome
        {
            f.refusal = Some(refusal.clone());
        }
        (f != RowFailure::default()).then_some(f)
    }

    fn json(f: Option<RowFailure>) -> Option<String> {
        f.map(|f| serde_json::to_string(&f).expect("failures serialize"))
    }
}

/// A shared run as a whole, for its report.
#[derive(Debug, Clone)]
pub struct SharedRun {
    pub command: String,
    pub started_ms: i64,
    pub canary_waves: Vec<usize>,
    pub marker: Option<crate::model::policy::StopReason>,
    pub rows: Vec<SharedRow>,
}

/// Several runners on one run (PostgreSQL ledgers only): claims under leases, heartbeats,
/// and a run-wide stop marker.
impl Ledger {
    fn is_postgres(&self) -> bool {
        self.pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
    }

    /// Refuses a SQLite ledger and adds the columns shared runs need to an older ledger.
    pub async fn prepare_sharing(&self) -> Result<(), LedgerError> {
        self.bounded("adding the shared-run columns", async {
        if !self.is_postgres() {
            return Err(LedgerError {
                ledger: self.shown.clone(),
                op: "sharing a run".into(),
                message: "several runners need a PostgreSQL ledger (--ledger postgres://...); a SQLite file cannot hand out leases across machines".into(),
            });
        }
        let present: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'fleetmig_run_tenants' AND column_name = 'failure'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail("adding the shared-run columns", e))?;
        if present > 0 {
            return Ok(());
        }
        // Only when missing: an ALTER takes an exclusive lock other runners would queue on.
        self.pool
            .execute(
                "ALTER TABLE fleetmig_runs ADD COLUMN IF NOT EXISTS shared TEXT, \
                 ADD COLUMN IF NOT EXISTS shared_stop TEXT; \
                 ALTER TABLE fleetmig_run_tenants ADD COLUMN IF NOT EXISTS owner TEXT, \
                 ADD COLUMN IF NOT EXISTS lease_until_ms BIGINT, ADD COLUMN IF NOT EXISTS claimed_ms BIGINT, \
                 ADD COLUMN IF NOT EXISTS failure TEXT;",
            )
            .await
            .map(drop)
            .map_err(|e| self.fail("adding the shared-run columns", e))
        })
        .await
    }

    /// A shared run's failure limit; `None` when the run is not shared (or does not exist).
    pub async fn shared_limit(&self, run_id: &str) -> Result<Option<String>, LedgerError> {
        self.bounded("reading a run", async {
            let found: Option<Option<String>> =
                sqlx::query_scalar("SELECT shared FROM fleetmig_runs WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("reading a run", e))?;
            Ok(found.flatten())
        })
        .await
    }

    /// Claims the next tenant of the lowest wave that still has work: a pending one, or one
    /// whose runner's lease ran out. One statement; rows other runners are claiming are
    /// skipped, not waited for.
    async fn claim_unbounded(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<Claimed, Fault> {
        let sql = format!(
            "WITH pick AS (SELECT run_id, tenant, state AS was, owner AS prev FROM fleetmig_run_tenants \
               WHERE run_id = $1 \
               AND wave = (SELECT MIN(wave) FROM fleetmig_run_tenants WHERE run_id = $1 AND state IN ('pending', 'started')) \
               AND (state = 'pending' OR (state = 'started' AND (lease_until_ms IS NULL OR lease_until_ms < {DB_NOW_MS}))) \
               AND NOT EXISTS (SELECT 1 FROM fleetmig_runs r WHERE r.run_id = $1 AND r.shared_stop IS NOT NULL) \
               ORDER BY tenant LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE fleetmig_run_tenants t SET state = 'started', owner = $2, lease_until_ms = {DB_NOW_MS} + $3, \
               claimed_ms = {DB_NOW_MS}, updated_ms = {DB_NOW_MS} \
             FROM pick WHERE t.run_id = pick.run_id AND t.tenant = pick.tenant \
             RETURNING t.tenant, t.wave, pick.was, pick.prev"
        );
        let row = sqlx::query(&sql)
            .bind(run_id)
            .bind(owner)
            .bind(lease_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(Fault::Sql)?;
        if let Some(r) = row {
            let read = || -> Result<Claimed, sqlx::Error> {
                let was: String = r.try_get(2)?;
                let prev: Option<String> = r.try_get(3)?;
                Ok(Claimed::Tenant {
                    id: r.try_get(0)?,
                    wave: r.try_get::<i64, _>(1)? as usize,
                    from: if was == "started" {
                        Some(prev.unwrap_or_else(|| "?".into()))
                    } else {
                        None
                    },
                })
            };
            return read().map_err(Fault::Sql);
        }
        let (open, marker): (i64, Option<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM fleetmig_run_tenants WHERE run_id = $1 AND state IN ('pending', 'started')), \
             (SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1)",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await
        .map_err(Fault::Sql)?;
        Ok(match marker.and_then(|m| serde_json::from_str(&m).ok()) {
            Some(reason) => Claimed::Stopped(reason),
            None if open == 0 => Claimed::Done,
            None => Claimed::Wait,
        })
    }

    /// The heartbeat: extends the lease on every tenant this runner holds.
    async fn renew_unbounded(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<(), Fault> {
        sqlx::query(&format!(
            "UPDATE fleetmig_run_tenants SET lease_until_ms = {DB_NOW_MS} + $3 \
             WHERE run_id = $1 AND owner = $2 AND state = 'started'"
        ))
        .bind(run_id)
        .bind(owner)
        .bind(lease_ms)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(Fault::Sql)
    }

    /// The run's stop marker, when a runner set it.
    async fn stop_marker_unbounded(&self, run_id: &str) -> Result<Option<crate::model::policy::StopReason>, Fault> {
        let marker: Option<Option<String>> =
            sqlx::query_scalar("SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Fault::Sql)?;
        Ok(marker.flatten().and_then(|m| serde_json::from_str(&m).ok()))
    }

    /// Writes a claimed tenant's outcome, if this runner still owns it. `release` hands it
    /// back as pending (this runner stopped on its own; others carry on). A failure is
    /// counted against `limit` for the whole run, under a lock on the run's row so two
    /// failures finishing at once both count; the marker is set in the same transaction,
    /// so no claim sees the failure without the marker. Returns the marker when set.
    async fn finish_claimed_unbounded(
        &self,
        run_id: &str,
        owner: &str,
        report: &TenantReport,
        release: bool,
        limit: crate::model::policy::MaxFailures,
        total: usize,
    ) -> Result<Option<crate::model::policy::StopReason>, Fault> {
        let failed = matches!(report.outcome, Outcome::Failed { .. });
        let (state, error) = match &report.outcome {
            _ if release => ("pending", None),
            Outcome::Succeeded => ("succeeded", None),
            Outcome::Failed { error, .. } => ("failed", Some(error.to_string())),
            Outcome::Skipped { reason } => ("skipped", Some(format!("{}: {}", reason.name(), reason.message()))),
            Outcome::NotStarted => ("not_started", None),
            Outcome::Stopped => ("stopped", None),
        };
        let mut tx = self.pool.begin().await.map_err(Fault::Sql)?;
        if failed {
            sqlx::query("SELECT run_id FROM fleetmig_runs WHERE run_id = $1 FOR UPDATE")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Fault::Sql)?;
        }
        let steps = serde_json::to_string(&report.steps).expect("steps serialize");
        sqlx::query(&format!(
            "UPDATE fleetmig_run_tenants SET state = $4, start_version = COALESCE(start_version, $5), final_version = $6, \
             steps = $7, error = $8, failure = $9, updated_ms = {DB_NOW_MS}, lease_until_ms = NULL, \
             owner = CASE WHEN $4 = 'pending' THEN NULL ELSE owner END \
             WHERE run_id = $1 AND tenant = $2 AND owner = $3"
        ))
        .bind(run_id)
        .bind(report.id.as_str())
        .bind(owner)
        .bind(state)
        .bind(report.start_version.map(|v| v.0))
        .bind(report.final_version.map(|v| v.0))
        .bind(steps)
        .bind(error)
        .bind(RowFailure::json(RowFailure::of_outcome(&report.outcome).filter(|_| !release)))
        .execute(&mut *tx)
        .await
        .map_err(Fault::Sql)?;
        if failed {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM fleetmig_run_tenants WHERE run_id = $1 AND state = 'failed'")
                    .bind(run_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Fault::Sql)?;
            let count = count as usize;
            if limit.is_exceeded(count, total) {
                let reason = crate::model::policy::StopReason::MaxFailures {
                    failed: count,
                    limit: limit.limit(total).unwrap_or(0),
                };
                sqlx::query("UPDATE fleetmig_runs SET shared_stop = $2 WHERE run_id = $1 AND shared_stop IS NULL")
                    .bind(run_id)
                    .bind(serde_json::to_string(&reason).expect("reasons serialize"))
                    .execute(&mut *tx)
                    .await
                    .map_err(Fault::Sql)?;
            }
        }
        let marker: Option<String> = sqlx::query_scalar("SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(Fault::Sql)?;
        tx.commit().await.map_err(Fault::Sql)?;
        Ok(marker.and_then(|m| serde_json::from_str(&m).ok()))
    }

    /// A runner's last word on a shared run: the rollback results for its own tenants, then,
    /// if no tenant is left in a live runner's hands, the run's report assembled from every
    /// tenant row by `assemble` (whoever finishes last writes it; a later one overwrites it
    /// with what it saw). Returns true when this runner wrote the run's report.
    async fn conclude_shared_unbounded(
        &self,
        run_id: &str,
        owner: &str,
        own: &RunReport,
        assemble: impl FnOnce(SharedRun) -> RunReport,
    ) -> Result<bool, LedgerError> {
        let fail = |e| self.fail("recording the run's end", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let run = sqlx::query(
            "SELECT command, started_ms, plan, shared_stop FROM fleetmig_runs WHERE run_id = $1 FOR UPDATE",
        )
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        for t in own.tenants.iter().filter(|t| t.rollback.is_some()) {
            sqlx::query(&format!(
                "UPDATE fleetmig_run_tenants SET state = $4, final_version = $5, failure = $6, updated_ms = {DB_NOW_MS} \
                 WHERE run_id = $1 AND tenant = $2 AND owner = $3"
            ))
            .bind(run_id)
            .bind(&t.id)
            .bind(owner)
            .bind(t.status.name())
            .bind(t.final_version.map(|v| v.0))
            .bind(RowFailure::json(RowFailure::of(t)))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        let rows = sqlx::query(&format!(
            "SELECT tenant, wave, state, start_version, final_version, steps, error, \
             (state = 'started' AND (lease_until_ms IS NULL OR lease_until_ms < {DB_NOW_MS})), failure \
             FROM fleetmig_run_tenants WHERE run_id = $1 ORDER BY wave, tenant"
        ))
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let rows: Vec<SharedRow> = rows
            .iter()
            .map(|r| {
                Ok(SharedRow {
                    tenant: r.try_get(0)?,
                    wave: r.try_get(1)?,
                    state: r.try_get(2)?,
                    start_version: r.try_get(3)?,
                    final_version: r.try_get(4)?,
                    steps: r.try_get(5)?,
                    error: r.try_get(6)?,
                    expired: r.try_get(7)?,
                    failure: r
                        .try_get::<Option<String>, _>(8)?
                        .map(|f| serde_json::from_str(&f))
                        .transpose()
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(fail)?;
        if rows.iter().any(|r| r.state == "started" && !r.expired) {
            tx.commit().await.map_err(fail)?;
            return Ok(false);
        }
        let read = || -> Result<SharedRun, sqlx::Error> {
            let plan: String = run.try_get(2)?;
            let marker: Option<String> = run.try_get(3)?;
            Ok(SharedRun {
                command: run.try_get(0)?,
                started_ms: run.try_get(1)?,
                canary_waves: serde_json::from_str::<RunPlan>(&plan).map_or(vec![], |p| p.canary_waves),
                marker: marker.and_then(|m| serde_json::from_str(&m).ok()),
                rows,
            })
        };
        let report = assemble(read().map_err(fail)?);
        sqlx::query(&format!(
            "UPDATE fleetmig_runs SET finished_ms = {DB_NOW_MS}, stop_reason = $2, report = $3 WHERE run_id = $1"
        ))
        .bind(run_id)
        .bind(report.stop_reason.to_string())
        .bind(serde_json::to_string(&report).expect("reports serialize"))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(true)
    }
}

/// The shared-run operations, each bounded by the ledger's time limit and retried after a
/// transient error while it lasts: a ledger that stops answering stops this runner (its
/// leases run out; the others carry on), never hangs it.
impl Ledger {
    /// `work` within the ledger's time limit; the reads (`runs`, `report`, `plan`, ...) go
    /// through it too, so a ledger that opened and then went silent fails them, never hangs.
    async fn bounded<T>(&self, op: &str, work: impl Future<Output = Result<T, LedgerError>>) -> Result<T, LedgerError> {
        match tokio::time::timeout(self.limit, work).await {
            Ok(result) => result,
            Err(_) => Err(self.fault(op, Fault::Timeout(self.limit))),
        }
    }

    /// Claims the next tenant of the lowest wave that still has work: a pending one, or one
    /// whose runner's lease ran out. One statement; rows other runners are claiming are
    /// skipped, not waited for.
    pub async fn claim(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<Claimed, LedgerError> {
        // A claim whose answer was lost leaves a tenant under this runner's lease, which
        // runs out; another runner then takes it over from its real version. Safe to retry.
        self.write("claiming a tenant", run_id, move || {
            self.claim_unbounded(run_id, owner, lease_ms)
        })
        .await
    }

    /// The heartbeat: extends the lease on every tenant this runner holds.
    pub async fn renew(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<(), LedgerError> {
        self.write("renewing leases", run_id, move || {
            self.renew_unbounded(run_id, owner, lease_ms)
        })
        .await
    }

    /// The run's stop marker, when a runner set it.
    pub async fn stop_marker(&self, run_id: &str) -> Result<Option<crate::model::policy::StopReason>, LedgerError> {
        self.write("reading the run's stop marker", run_id, move || {
            self.stop_marker_unbounded(run_id)
        })
        .await
    }

    /// See [`Ledger::finish_claimed_unbounded`].
    pub async fn finish_claimed(
        &self,
        run_id: &str,
        owner: &str,
        report: &TenantReport,
        release: bool,
        limit: crate::model::policy::MaxFailures,
        total: usize,
    ) -> Result<Option<crate::model::policy::StopReason>, LedgerError> {
        // One transaction, keyed on this runner's ownership: again after a lost answer, it
        // writes the same row and counts the same failures.
        self.write("recording a tenant's outcome", run_id, move || {
            self.finish_claimed_unbounded(run_id, owner, report, release, limit, total)
        })
        .await
    }

    /// See [`Ledger::conclude_shared_unbounded`]. On failure the reason is also kept for
    /// [`Ledger::missed_end`].
    pub async fn conclude_shared(
        &self,
        run_id: &str,
        owner: &str,
        own: &RunReport,
        assemble: impl FnOnce(SharedRun) -> RunReport,
    ) -> Result<bool, LedgerError> {
        let work = self.conclude_shared_unbounded(run_id, owner, own, assemble);
        let result = self.bounded("recording the run's end", work).await;
        if let Err(e) = &result {
            *self.missed_end.lock().expect("not poisoned") = Some(e.to_string());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_recorded_before_the_policy_was_kept_still_read() {
        let old = r#"{"command":"up","target":3,"waves":[["a"],["b","c"]],"canary_waves":[1]}"#;
        let plan: RunPlan = serde_json::from_str(old).unwrap();
        assert_eq!(plan.policy, None);
        assert_eq!(plan.waves.len(), 2);
        let partial = r#"{"command":"up","target":3,"waves":[],"canary_waves":[],"policy":{"retries":4}}"#;
        let plan: RunPlan = serde_json::from_str(partial).unwrap();
        assert_eq!(plan.policy.unwrap().retries, Some(4));
        assert_eq!(plan.steps, None);
        assert_eq!(steps_of(old), None);
        assert_eq!(
            steps_of(r#"{"command":"down","target":0,"waves":[],"canary_waves":[],"steps":2}"#),
            Some(2)
        );
    }
}
