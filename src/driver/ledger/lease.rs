//! The lease protocol of shared runs (PostgreSQL ledgers only): several runners claim a
//! run's tenants under leases they renew by heartbeat, count failures against the run's
//! limit together, and stop on a run-wide stop marker; whoever ends last writes the report.

use serde::{Deserialize, Serialize};
use sqlx::{Executor, Row};

use super::error::LedgerError;
use super::handle::{Fault, Ledger};
use super::records::RunPlan;
use crate::model::migration::Version;
use crate::model::run::{FinalTenant, Outcome, Phase, RunReport, TenantReport};

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
