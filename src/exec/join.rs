//! Several runners on one run: the ledger-backed tenant source of a shared run in a
//! PostgreSQL ledger (the dispatcher's claim loop is `exec::dispatch::claims`). The
//! ledger, not this process, owns the run's state: which tenant is whose (leases kept
//! alive by a heartbeat), which wave is open (the lowest one with a tenant pending or in
//! flight), and whether the run is stopped (a marker any runner may set when the run-wide
//! failure limit is reached). A tenant whose runner died is claimed again once its lease
//! runs out, and `tenant::run` reads its real version under its own lock first, so no
//! migration runs twice.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::driver::ledger::{Claimed, Ledger, LedgerError, SharedRun};
use crate::exec::dispatch::Claims;
use crate::model::policy::{MaxFailures, StopReason};
use crate::model::record::TenantState;
use crate::model::run::{FinalTenant, HostCutOff, RunReport, Status, TenantReport, WaveReport, summarize};

/// This runner's terms in a shared run.
#[derive(Debug, Clone)]
pub struct Shared {
    /// How long a claimed tenant stays this runner's without a heartbeat; renewed every third.
    pub lease: Duration,
    /// The run's failure limit, counted over every runner's tenants.
    pub max_failures: MaxFailures,
    /// Tenants in the whole run (for a percentage limit).
    pub total: usize,
    /// Who this runner is, in the ledger's `owner` column.
    pub owner: String,
}

/// A shared run's ledger as the dispatcher's tenant source: this runner's claims, its
/// heartbeat, and the run's end.
#[derive(Debug)]
pub(crate) struct LedgerClaims<'r> {
    ledger: &'r Ledger,
    shared: &'r Shared,
    run_id: &'r str,
}

impl<'r> LedgerClaims<'r> {
    pub(crate) fn new(ledger: &'r Ledger, shared: &'r Shared, run_id: &'r str) -> Self {
        LedgerClaims { ledger, shared, run_id }
    }

    fn lease_ms(&self) -> i64 {
        self.shared.lease.as_millis() as i64
    }
}

impl Claims for LedgerClaims<'_> {
    fn total(&self) -> usize {
        self.shared.total
    }

    async fn claim(&self) -> Result<Claimed, LedgerError> {
        self.ledger
            .claim(self.run_id, &self.shared.owner, self.lease_ms())
            .await
    }

    async fn finish(&self, report: &TenantReport, release: bool) -> Result<Option<StopReason>, LedgerError> {
        let shared = self.shared;
        (self.ledger)
            .finish_claimed(
                self.run_id,
                &shared.owner,
                report,
                release,
                shared.max_failures,
                shared.total,
            )
            .await
    }

    async fn stop_marker(&self) -> Result<Option<StopReason>, LedgerError> {
        self.ledger.stop_marker(self.run_id).await
    }

    /// Renews this runner's leases every third of a lease.
    fn keep_alive(&self) -> Option<tokio::task::JoinHandle<()>> {
        let ledger = self.ledger.clone();
        let run_id = self.run_id.to_owned();
        let owner = self.shared.owner.clone();
        let (every, lease_ms) = (self.shared.lease / 3, self.lease_ms());
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = ledger.renew(&run_id, &owner, lease_ms).await {
                    tracing::warn!("{e}");
                }
            }
        }))
    }

    async fn conclude(&self, report: &RunReport, own: &StopReason) -> Result<(), LedgerError> {
        let assemble = |run: SharedRun| assemble(self.run_id, run, own);
        let last = (self.ledger)
            .conclude_shared(self.run_id, &self.shared.owner, report, assemble)
            .await?;
        if last {
            tracing::info!(
                "run `{}`: this runner ended last and wrote the run's report",
                self.run_id
            );
        }
        Ok(())
    }

    fn gave_up_on_end(&self, why: String) {
        self.ledger.gave_up_on_end(why);
    }
}

/// The whole run's report from its ledger rows. A tenant still `started` there belongs to
/// a runner whose lease ran out: it is reported `stopped`, its version unknown to the ledger.
fn assemble(run_id: &str, run: SharedRun, last: &StopReason) -> RunReport {
    let open = run
        .rows
        .iter()
        .any(|r| r.state.is_open() || matches!(r.state, TenantState::Ended(Status::NotStarted | Status::Stopped)));
    let stop_reason = match run.marker {
        Some(reason) => reason,
        None if open && last.is_early() => last.clone(),
        None if open => StopReason::Interrupted,
        None => StopReason::Completed,
    };
    let mut waves: BTreeMap<usize, WaveReport> = BTreeMap::new();
    let tenants: Vec<FinalTenant> = run
        .rows
        .into_iter()
        .map(|row| {
            let status = match row.state {
                TenantState::Pending => Status::NotStarted,
                TenantState::Started => Status::Stopped,
                TenantState::Ended(s) => s,
            };
            let migrations_run = row.migrations_run;
            let wave = row.wave as usize;
            // The rows keep no timing: a shared run's timeline is not drawn.
            let w = waves
                .entry(wave)
                .or_insert_with(|| WaveReport::new(wave, run.canary_waves.contains(&wave), 0, BTreeMap::new()));
            w.tenants += 1;
            *w.counts.entry(status.name().to_owned()).or_insert(0) += 1;
            let error = match (row.state, row.expired) {
                (TenantState::Started, true) => {
                    Some("its runner stopped renewing its lease; its history table has its real version".to_owned())
                }
                _ => row.error,
            };
            let failure = row.failure.unwrap_or_default();
            FinalTenant {
                id: row.tenant,
                wave,
                status,
                start_version: row.start_version,
                final_version: row.final_version,
                dirty: failure.dirty,
                failed_migration: failure.failed_migration,
                during: failure.during,
                error,
                error_code: failure.error_code,
                error_number: failure.error_number,
                detail: failure.detail,
                hint: failure.hint,
                rollback: failure.rollback,
                rollback_error: failure.rollback_error,
                migrations_run,
                refusal: failure.refusal,
                started_ms: None,
                finished_ms: None,
                rollback_ms: None,
            }
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let summary = summarize(&tenants, Duration::from_millis((now - run.started_ms).max(0) as u64));
    let stop_reason = summary.settle(stop_reason);
    RunReport {
        run_id: run_id.to_owned(),
        command: run.command,
        stop_reason,
        waves: waves.into_values().collect(),
        hosts_cut_off: HostCutOff::from_untried(&tenants),
        tenants,
        summary,
    }
}
