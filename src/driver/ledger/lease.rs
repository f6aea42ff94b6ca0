//! The lease protocol of shared runs (PostgreSQL ledgers only): several runners claim a
//! run's tenants under leases they renew by heartbeat, count failures against the run's
//! limit together, and stop on a run-wide stop marker; whoever ends last writes the report.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::error::{Cause, LedgerError, Undecodable, decode, version};
use super::handle::Ledger;
use super::records::{RunPlan, outcome_row};
use crate::model::migration::Version;
use crate::model::policy::{MaxFailures, StopReason};
use crate::model::record::TenantState;
use crate::model::run::{FinalTenant, Outcome, Phase, RunReport, Status, TenantReport};

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
    Stopped(StopReason),
}

/// One tenant row of a shared run, for the report assembled from the ledger.
#[derive(Debug, Clone)]
pub struct SharedRow {
    pub tenant: String,
    pub wave: i64,
    pub state: TenantState,
    pub start_version: Option<Version>,
    pub final_version: Option<Version>,
    /// The migrations it ran (the length of its recorded steps).
    pub migrations_run: usize,
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
    /// PostgreSQL's DETAIL and HINT, as the report keeps them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
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
            detail: t.detail.clone(),
            hint: t.hint.clone(),
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
            f.detail = error
                .said()
                .detail
                .as_deref()
                .map(crate::model::text::printable_bounded);
            f.hint = error.said().hint.as_deref().map(crate::model::text::printable_bounded);
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
    pub marker: Option<StopReason>,
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

    /// Refuses a SQLite ledger. (The columns shared runs need came with the ledger's
    /// schema upgrades, when it was opened.)
    pub async fn prepare_sharing(&self) -> Result<(), LedgerError> {
        if self.is_postgres() {
            return Ok(());
        }
        Err(self.fault(
            "sharing a run",
            Cause::Refused(
                "several runners need a PostgreSQL ledger (--ledger postgres://...); a SQLite file cannot hand \
                 out leases across machines"
                    .into(),
            ),
        ))
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
    async fn claim_unbounded(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<Claimed, Cause> {
        let sql = format!(
            "WITH pick AS (SELECT run_id, tenant, state AS was, owner AS prev FROM fleetmig_run_tenants \
               WHERE run_id = $1 \
               AND wave = (SELECT MIN(wave) FROM fleetmig_run_tenants WHERE run_id = $1 AND state IN ($4, $5)) \
               AND (state = $4 OR (state = $5 AND (lease_until_ms IS NULL OR lease_until_ms < {DB_NOW_MS}))) \
               AND NOT EXISTS (SELECT 1 FROM fleetmig_runs r WHERE r.run_id = $1 AND r.shared_stop IS NOT NULL) \
               ORDER BY tenant LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE fleetmig_run_tenants t SET state = $5, owner = $2, lease_until_ms = {DB_NOW_MS} + $3, \
               claimed_ms = {DB_NOW_MS}, updated_ms = {DB_NOW_MS} \
             FROM pick WHERE t.run_id = pick.run_id AND t.tenant = pick.tenant \
             RETURNING t.tenant, t.wave, pick.was, pick.prev"
        );
        let row = sqlx::query(&sql)
            .bind(run_id)
            .bind(owner)
            .bind(lease_ms)
            .bind(TenantState::Pending.as_str())
            .bind(TenantState::Started.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = row {
            let was: String = r.try_get(2)?;
            let prev: Option<String> = r.try_get(3)?;
            return Ok(Claimed::Tenant {
                id: r.try_get(0)?,
                wave: r.try_get::<i64, _>(1)? as usize,
                from: (was == TenantState::Started.as_str()).then(|| prev.unwrap_or_else(|| "?".into())),
            });
        }
        let (open, marker): (i64, Option<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM fleetmig_run_tenants WHERE run_id = $1 AND state IN ($2, $3)), \
             (SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1)",
        )
        .bind(run_id)
        .bind(TenantState::Pending.as_str())
        .bind(TenantState::Started.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(match stop_reason(run_id, marker)? {
            Some(reason) => Claimed::Stopped(reason),
            None if open == 0 => Claimed::Done,
            None => Claimed::Wait,
        })
    }

    /// The heartbeat: extends the lease on every tenant this runner holds.
    async fn renew_unbounded(&self, run_id: &str, owner: &str, lease_ms: i64) -> Result<(), Cause> {
        sqlx::query(&format!(
            "UPDATE fleetmig_run_tenants SET lease_until_ms = {DB_NOW_MS} + $3 \
             WHERE run_id = $1 AND owner = $2 AND state = $4"
        ))
        .bind(run_id)
        .bind(owner)
        .bind(lease_ms)
        .bind(TenantState::Started.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The run's stop marker, when a runner set it.
    async fn stop_marker_unbounded(&self, run_id: &str) -> Result<Option<StopReason>, Cause> {
        let marker: Option<Option<String>> =
            sqlx::query_scalar("SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        stop_reason(run_id, marker.flatten())
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
        limit: MaxFailures,
        total: usize,
    ) -> Result<Option<StopReason>, Cause> {
        let failed = matches!(report.outcome, Outcome::Failed { .. });
        let (state, error) = match outcome_row(&report.outcome) {
            _ if release => (TenantState::Pending, None),
            row => row,
        };
        let mut tx = self.pool.begin().await?;
        if failed {
            sqlx::query("SELECT run_id FROM fleetmig_runs WHERE run_id = $1 FOR UPDATE")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let steps = serde_json::to_string(&report.steps).expect("steps serialize");
        sqlx::query(&format!(
            "UPDATE fleetmig_run_tenants SET state = $4, start_version = COALESCE(start_version, $5), final_version = $6, \
             steps = $7, error = $8, failure = $9, updated_ms = {DB_NOW_MS}, lease_until_ms = NULL, \
             owner = CASE WHEN $4 = $10 THEN NULL ELSE owner END \
             WHERE run_id = $1 AND tenant = $2 AND owner = $3"
        ))
        .bind(run_id)
        .bind(report.id.as_str())
        .bind(owner)
        .bind(state.as_str())
        .bind(report.start_version.map(|v| v.text().into_owned()))
        .bind(report.final_version.map(|v| v.text().into_owned()))
        .bind(steps)
        .bind(error)
        .bind(RowFailure::json(RowFailure::of_outcome(&report.outcome).filter(|_| !release)))
        .bind(TenantState::Pending.as_str())
        .execute(&mut *tx)
        .await?;
        if failed {
            count_failure(&mut tx, run_id, limit, total).await?;
        }
        let marker: Option<String> = sqlx::query_scalar("SELECT shared_stop FROM fleetmig_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        stop_reason(run_id, marker)
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
    ) -> Result<bool, Cause> {
        let mut tx = self.pool.begin().await?;
        let run = sqlx::query(
            "SELECT command, started_ms, plan, shared_stop FROM fleetmig_runs WHERE run_id = $1 FOR UPDATE",
        )
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
        for t in own.tenants.iter().filter(|t| t.rollback.is_some()) {
            sqlx::query(&format!(
                "UPDATE fleetmig_run_tenants SET state = $4, final_version = $5, failure = $6, updated_ms = {DB_NOW_MS} \
                 WHERE run_id = $1 AND tenant = $2 AND owner = $3"
            ))
            .bind(run_id)
            .bind(&t.id)
            .bind(owner)
            .bind(TenantState::Ended(t.status).as_str())
            .bind(t.final_version.map(|v| v.text().into_owned()))
            .bind(RowFailure::json(RowFailure::of(t)))
            .execute(&mut *tx)
            .await?;
        }
        let rows = shared_rows(&mut tx, run_id).await?;
        if rows.iter().any(|r| r.state == TenantState::Started && !r.expired) {
            tx.commit().await?;
            return Ok(false);
        }
        let plan: RunPlan = decode(run_id, "plan", &run.try_get::<String, _>(2)?)?;
        let report = assemble(SharedRun {
            command: run.try_get(0)?,
            started_ms: run.try_get(1)?,
            canary_waves: plan.canary_waves,
            marker: stop_reason(run_id, run.try_get(3)?)?,
            rows,
        });
        sqlx::query(&format!(
            "UPDATE fleetmig_runs SET finished_ms = {DB_NOW_MS}, stop_reason = $2, report = $3 WHERE run_id = $1"
        ))
        .bind(run_id)
        .bind(report.stop_reason.to_string())
        .bind(serde_json::to_string(&report).expect("reports serialize"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Counts the run's failures after one more, and sets the stop marker when they exceed
/// `limit` (unless a runner set it first).
async fn count_failure(
    tx: &mut Transaction<'static, Any>,
    run_id: &str,
    limit: MaxFailures,
    total: usize,
) -> Result<(), Cause> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fleetmig_run_tenants WHERE run_id = $1 AND state = $2")
        .bind(run_id)
        .bind(TenantState::Ended(Status::Failed).as_str())
        .fetch_one(&mut **tx)
        .await?;
    let count = count as usize;
    if limit.is_exceeded(count, total) {
        let reason = StopReason::MaxFailures {
            failed: count,
            limit: limit.limit(total).unwrap_or(0),
        };
        sqlx::query("UPDATE fleetmig_runs SET shared_stop = $2 WHERE run_id = $1 AND shared_stop IS NULL")
            .bind(run_id)
            .bind(serde_json::to_string(&reason).expect("reasons serialize"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Every tenant row of a shared run, in wave order, each read whole or the run named.
async fn shared_rows(tx: &mut Transaction<'static, Any>, run_id: &str) -> Result<Vec<SharedRow>, Cause> {
    let rows = sqlx::query(&format!(
        "SELECT tenant, wave, state, start_version, final_version, steps, error, \
         (state = $2 AND (lease_until_ms IS NULL OR lease_until_ms < {DB_NOW_MS})), failure \
         FROM fleetmig_run_tenants WHERE run_id = $1 ORDER BY wave, tenant"
    ))
    .bind(run_id)
    .bind(TenantState::Started.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| shared_row(run_id, r)).collect()
}

fn shared_row(run_id: &str, r: &AnyRow) -> Result<SharedRow, Cause> {
    let tenant: String = r.try_get(0)?;
    let what = |field: &str| format!("tenant `{tenant}`'s {field}");
    let state = read_state(run_id, &what("state"), &r.try_get::<String, _>(2)?)?;
    let steps: Option<String> = r.try_get(5)?;
    let migrations_run = match steps {
        Some(s) => decode::<Vec<serde_json::Value>>(run_id, &what("steps"), &s)?.len(),
        None => 0,
    };
    let failure: Option<String> = r.try_get(8)?;
    Ok(SharedRow {
        wave: r.try_get(1)?,
        state,
        start_version: version(run_id, &what("start version"), r.try_get(3)?)?,
        final_version: version(run_id, &what("final version"), r.try_get(4)?)?,
        migrations_run,
        error: r.try_get(6)?,
        expired: r.try_get(7)?,
        failure: failure
            .map(|f| decode(run_id, &what("failure record"), &f))
            .transpose()?,
        tenant,
    })
}

/// A tenant row's state, or an error naming the run and `what` was read ("tenant `a`'s state").
pub(super) fn read_state(run_id: &str, what: &str, text: &str) -> Result<TenantState, Cause> {
    TenantState::parse(text).ok_or_else(|| Cause::undecodable(run_id, what, Undecodable::Unknown(text.to_owned())))
}

/// The run's stop marker, read: an unreadable one is an error, never "not stopped".
fn stop_reason(run_id: &str, marker: Option<String>) -> Result<Option<StopReason>, Cause> {
    marker.map(|m| decode(run_id, "stop marker", &m)).transpose()
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
    pub async fn stop_marker(&self, run_id: &str) -> Result<Option<StopReason>, LedgerError> {
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
        limit: MaxFailures,
        total: usize,
    ) -> Result<Option<StopReason>, LedgerError> {
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
        let op = "recording the run's end";
        let work = async {
            (self.conclude_shared_unbounded(run_id, owner, own, assemble).await).map_err(|c| self.fault(op, c))
        };
        let result = self.bounded(op, work).await;
        if let Err(e) = &result {
            *self.missed_end.lock().expect("not poisoned") = Some(e.to_string());
        }
        result
    }
}
