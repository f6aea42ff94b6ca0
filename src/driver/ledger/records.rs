//! Run records: a run and its plan, every tenant's start and outcome, the run's end.
//!
//! A tenant is written `started` before its first statement and its outcome after its
//! commit, so after a crash the ledger is either right or says "started" (unknown), never
//! "done" for work that did not commit. The tenants' own history tables stay the truth.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::Cause;
use super::error::LedgerError;
use super::handle::Ledger;
use crate::model::migration::Version;
use crate::model::record::RunSource;
use crate::model::record::TenantState;
use crate::model::run::{Outcome, RunReport, TenantReport};

/// What a run set out to do: enough to resume it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunPlan {
    /// `up` or `down`.
    pub command: String,
    /// The version tenants are taken to.
    pub target: Version,
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
    /// Which migrations the run applied: the set's fingerprint and the git commit of its
    /// folder. Absent in runs recorded before fleetmig kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
}

/// A run's rollout policy as the ledger keeps it: every value as its flag writes it, so a
/// later fleetmig reads it back and an operator can read it in the plan's JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RecordedPolicy {
    /// `--waves` (or the fleet file's `rollout.waves`) when it holds sizes only, as
    /// `1,10%,100%`; `None`: one wave after the canaries, or see `wave_steps`.
    pub waves: Option<String>,
    /// A `--waves` spec with selectors or `*`, one step each (`region=eu,tier=free` is one
    /// step: its comma joins terms). Empty for size-only specs, and in runs recorded before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wave_steps: Vec<String>,
    /// `--canary` selectors.
    pub canary: Vec<String>,
    pub max_failures: String,
    pub max_skipped: String,
    pub rollback: String,
    pub bake_ms: Option<u64>,
    /// `--window` (or the fleet file's `rollout.window`), as written. Absent in runs
    /// recorded before it was kept, and in runs without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub check: Option<String>,
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    /// `per-migration` or `per-tenant`.
    pub tx: String,
    /// `--retry-for`, in milliseconds (`None`: the default).
    pub retry_for_ms: Option<u64>,
    /// `--retries` (`None`: no count limit).
    pub retries: Option<u32>,
    /// `--host-failures` (or the fleet file's `rollout.host_failures`, else 3): the breaker's
    /// K, 0 for none. Absent in runs recorded before it was kept: those take today's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_failures: Option<u32>,
    /// `--out-of-order` (or the fleet file's `out_of_order: true`): a resumed run keeps it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub out_of_order: bool,
}

pub(super) fn now_ms() -> i64 {
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
pub(super) const ROWS_PER_STATEMENT: usize = 200;

/// The state and error a tenant's outcome leaves its row with.
pub(super) fn outcome_row(outcome: &Outcome) -> (TenantState, Option<String>) {
    let error = match outcome {
        Outcome::Failed { error, .. } => Some(error.to_string()),
        Outcome::Skipped { reason } => Some(format!("{}: {}", reason.name(), reason.message())),
        Outcome::Succeeded | Outcome::NotStarted | Outcome::Stopped => None,
    };
    (TenantState::of(outcome), error)
}

impl Ledger {
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
            Err(_) => Err(self.fault(op, Cause::Timeout(self.limit))),
        }
    }

    async fn begin_run_once(
        &self,
        run_id: &str,
        fleet: &str,
        plan: &RunPlan,
        shared: Option<&str>,
    ) -> Result<(), Cause> {
        let text = serde_json::to_string(plan).expect("plans serialize");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO fleetmig_runs (run_id, command, target, runner, fleet, started_ms, plan) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(run_id)
        .bind(&plan.command)
        .bind(plan.target.text().into_owned())
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
                .map(|i| format!("($1, ${}, ${}, $3, $2)", 2 * i + 4, 2 * i + 5))
                .collect();
            let sql = format!(
                "INSERT INTO fleetmig_run_tenants (run_id, tenant, wave, state, updated_ms) VALUES {}",
                values.join(", ")
            );
            let mut insert = sqlx::query(&sql)
                .bind(run_id)
                .bind(now)
                .bind(TenantState::Pending.as_str());
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
    pub(super) fn lost(run_id: &str) -> Cause {
        Cause::Lost(format!(
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
                "UPDATE fleetmig_run_tenants SET state = $4, updated_ms = $3 WHERE run_id = $1 AND tenant = $2",
            )
            .bind(run_id)
            .bind(tenant)
            .bind(now_ms())
            .bind(TenantState::Started.as_str())
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
        let (state, error) = outcome_row(&report.outcome);
        let state = state.as_str();
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
            .bind(report.start_version.map(|v| v.text().into_owned()))
            .bind(report.final_version.map(|v| v.text().into_owned()))
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

    async fn finish_run_once(&self, report: &RunReport) -> Result<(), Cause> {
        let mut tx = self.pool.begin().await?;
        // Tenants that ended alike share one statement per chunk: a run of a thousand
        // tenants at the target is a few statements, not a thousand.
        let mut alike: BTreeMap<(&str, Option<String>), Vec<&str>> = BTreeMap::new();
        for t in &report.tenants {
            alike
                .entry((
                    TenantState::Ended(t.status).as_str(),
                    t.final_version.map(|v| v.text().into_owned()),
                ))
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
                    .bind(version.clone())
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
