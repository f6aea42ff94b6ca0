//! Several runners on one run: this runner's claim loop over a shared run in a PostgreSQL
//! ledger. The ledger, not this process, owns the run's state: which tenant is whose
//! (leases kept alive by a heartbeat), which wave is open (the lowest one with a tenant
//! pending or in flight), and whether the run is stopped (a marker any runner may set
//! when the run-wide failure limit is reached). A tenant whose runner died is claimed
//! again once its lease runs out, and `tenant::run` reads its real version under its own
//! lock first, so no migration runs twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::{DefaultDirectRateLimiter, Jitter, Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc};

use crate::driver::ledger::{Claimed, Ledger, SharedRun};
use crate::exec::dispatch::{
    AFTER_ABANDON, LAST_WORD, Policy, abandoned_report, announce, conclude, missed_end, settled_history,
};
use crate::exec::events::{Event, Events};
use crate::exec::run::{RunContext, host_caps};
use crate::exec::tenant::{self, Action, Job};
use crate::model::fleet::Tenant;
use crate::model::migration::Version;
use crate::model::policy::{MaxFailures, StopReason};
use crate::model::record::TenantState;
use crate::model::run::{FinalTenant, RunReport, Status, WaveReport, summarize};
use crate::model::run::{Outcome, Summary, TenantReport};
use crate::plan::tenant::Target;
use crate::plan::waves::Wave;

/// How often an idle runner looks again for work and for the run's stop marker.
const POLL: Duration = Duration::from_millis(200);

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

/// Runs one claimed tenant: under its host's cap, then the ordinary tenant job.
#[expect(
    clippy::too_many_arguments,
    reason = "the claim loop's own state, handed over for each tenant it claims"
)]
async fn run_one<'a>(
    ctx: &RunContext<'a>,
    t: &'a Tenant,
    wave: usize,
    action: Action,
    events: &Events,
    stop: &AtomicBool,
    cap: Arc<Semaphore>,
    progress: &tenant::Tracker,
) -> (&'a Tenant, usize, TenantReport) {
    let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
    let job = Job {
        set: ctx.set,
        action,
        per_tenant_tx: ctx.per_tenant_tx,
        retry: ctx.retry,
        run_id: &ctx.run_id,
        wave,
        events,
        stop,
        progress: Some(progress),
    };
    (t, wave, tenant::run(t, &ctx.connector, job).await)
}

/// The claim loop's state.
struct Runner<'r, 'a> {
    ctx: &'r RunContext<'a>,
    ledger: &'r Ledger,
    shared: &'r Shared,
    events: &'r Events,
    /// Set from the run's marker or a local Ctrl-C; read by tenant tasks at safe points.
    stop: Arc<AtomicBool>,
    reason: StopReason,
    /// Tenants this runner ran, in the order they finished.
    ran: Vec<(&'a Tenant, usize, TenantReport)>,
    /// The wave this runner last claimed in, for wave events.
    wave: Option<usize>,
    /// When this runner entered that wave, for its elapsed time.
    wave_began: Instant,
}

impl<'r, 'a> Runner<'r, 'a> {
    fn escalate(&mut self, reason: StopReason) {
        if reason > self.reason {
            self.events.emit(Event::Stopping { reason: reason.clone() });
            self.reason = reason;
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// The ledger, which owns this shared run, did not answer: this runner stops (its
    /// leases run out and other runners carry on), keeping the first cause.
    fn ledger_lost(&mut self, e: &crate::driver::ledger::LedgerError) {
        if !matches!(self.reason, StopReason::LedgerUnavailable { .. }) {
            self.escalate(StopReason::LedgerUnavailable { detail: e.to_string() });
        }
    }

    fn wave_finished(&self, wave: usize) {
        let reports: Vec<TenantReport> = self
            .ran
            .iter()
            .filter(|(_, w, _)| *w == wave)
            .map(|(_, _, r)| r.clone())
            .collect();
        self.events.emit(Event::WaveFinished {
            wave,
            summary: Summary::of(&reports, self.wave_began.elapsed()),
        });
    }

    fn enter_wave(&mut self, wave: usize, waves: &[Wave<'_>]) {
        if self.wave == Some(wave) {
            return;
        }
        if let Some(w) = self.wave {
            self.wave_finished(w);
        }
        self.wave = Some(wave);
        self.wave_began = Instant::now();
        let (canary, tenants) = waves
            .iter()
            .find(|w| w.number == wave)
            .map_or((false, 0), |w| (w.canary, w.tenants.len()));
        self.events.emit(Event::WaveStarted { wave, canary, tenants });
    }

    /// Writes a tenant's outcome and applies the run's marker, if it is set now. Listens to
    /// interrupts meanwhile: true when a second one came (the write is given up on; the
    /// tenant stays claimed until its lease runs out).
    async fn record(
        &mut self,
        t: &'a Tenant,
        wave: usize,
        report: TenantReport,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> bool {
        // Stopped here by a local Ctrl-C, not by the run: the tenant goes back to the pool.
        let release =
            matches!(report.outcome, Outcome::NotStarted | Outcome::Stopped) && self.reason == StopReason::Interrupted;
        let shared = self.shared;
        let ledger = self.ledger;
        let mut abandon = false;
        let written = {
            let writing = ledger.finish_claimed(
                &self.ctx.run_id,
                &shared.owner,
                &report,
                release,
                shared.max_failures,
                shared.total,
            );
            tokio::pin!(writing);
            loop {
                tokio::select! {
                    written = &mut writing => break Some(written),
                    Some(()) = interrupts.recv() => {
                        if self.reason >= StopReason::Interrupted {
                            abandon = true;
                            break None;
                        }
                        self.escalate(StopReason::Interrupted);
                    }
                }
            }
        };
        match written {
            Some(Ok(Some(reason))) => self.escalate(reason),
            Some(Ok(None)) | None => {}
            Some(Err(e)) => self.ledger_lost(&e),
        }
        self.events.emit(Event::TenantFinished {
            wave,
            report: report.clone(),
        });
        self.ran.push((t, wave, report));
        abandon
    }
}

/// This runner's part in shared run `ctx.run_id`: claims tenants until the run is done or
/// stopped, then rolls back what its own policy asks of its own tenants, and returns the
/// report of the tenants it ran. The runner that ends last also writes the whole run's
/// report, assembled from the ledger, as `fleetmig report RUN` shows it.
#[expect(
    clippy::too_many_arguments,
    reason = "the dispatcher's arguments plus the shared run's terms"
)]
pub(crate) async fn cooperate(
    ctx: &RunContext<'_>,
    waves: &[Wave<'_>],
    action: Action,
    policy: &Policy,
    command: &str,
    events: &Events,
    mut interrupts: mpsc::UnboundedReceiver<()>,
    shared: &Shared,
) -> RunReport {
    let started = Instant::now();
    let ledger = ctx.ledger.as_ref().expect("a shared run has a ledger");
    let target = match action {
        Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => Some(to),
        Action::Migrate(Target::DownSteps { .. }) | Action::Checksums(_) => None,
    };
    events.emit(Event::RunStarted {
        run_id: ctx.run_id.clone(),
        command: command.to_owned(),
        target,
        tenants: shared.total,
    });
    let by_id: HashMap<&str, &Tenant> = waves
        .iter()
        .flat_map(|w| w.tenants.iter().map(|t| (t.id.as_str(), *t)))
        .collect();
    let all: Vec<&Tenant> = by_id.values().copied().collect();
    let caps = host_caps(ctx, &all);
    let limiter: Option<DefaultDirectRateLimiter> = policy
        .rate
        .map(|r| RateLimiter::direct(Quota::per_second(r.per_second).allow_burst(r.burst)));
    let lease_ms = shared.lease.as_millis() as i64;
    let heartbeat = {
        let ledger = ledger.clone();
        let run_id = ctx.run_id.clone();
        let owner = shared.owner.clone();
        let every = shared.lease / 3;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = ledger.renew(&run_id, &owner, lease_ms).await {
                    tracing::warn!("{e}");
                }
            }
        })
    };
    let mut r = Runner {
        ctx,
        ledger,
        shared,
        events,
        stop: Arc::default(),
        reason: StopReason::Completed,
        ran: vec![],
        wave: None,
        wave_began: Instant::now(),
    };
    let stop = r.stop.clone();
    // What each task in flight has done, for its report should it be abandoned.
    let progress = tenant::Tracker::default();
    let mut in_flight = FuturesUnordered::new();
    // The tenants of `in_flight`, with their waves: abandoned, they are read once their
    // sessions ended, for this runner's report.
    let mut flying: Vec<(&Tenant, usize)> = Vec::new();
    let mut done = false;
    let mut abandoned = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'claiming: loop {
        while !done && !stop.load(Ordering::SeqCst) && in_flight.len() < ctx.concurrency.max(1) {
            if let Some(limiter) = &limiter {
                limiter
                    .until_ready_with_jitter(Jitter::up_to(Duration::from_millis(20)))
                    .await;
            }
            // A ledger that does not answer must not keep interrupts from being heard.
            let claimed = tokio::select! {
                claimed = ledger.claim(&ctx.run_id, &shared.owner, lease_ms) => claimed,
                Some(()) = interrupts.recv() => {
                    if r.reason >= StopReason::Interrupted {
                        abandoned = true;
                        break 'claiming;
                    }
                    r.escalate(StopReason::Interrupted);
                    break;
                }
            };
            match claimed {
                Ok(Claimed::Tenant { id, wave, from }) => {
                    let t = by_id
                        .get(id.as_str())
                        .copied()
                        .expect("`up --join` checks every tenant of the run against the fleet file");
                    if let Some(from) = from {
                        tracing::warn!("tenant `{id}`: the lease of `{from}` ran out; taking it over");
                    }
                    r.enter_wave(wave, waves);
                    let cap = caps[&t.server_key()].clone();
                    flying.push((t, wave));
                    in_flight.push(run_one(ctx, t, wave, action, events, &stop, cap, &progress));
                }
                Ok(Claimed::Wait) => break,
                Ok(Claimed::Done) => done = true,
                Ok(Claimed::Stopped(reason)) => r.escalate(reason),
                Err(e) => {
                    r.ledger_lost(&e);
                    break;
                }
            }
        }
        if in_flight.is_empty() && (done || stop.load(Ordering::SeqCst)) {
            break;
        }
        tokio::select! {
            Some((t, wave, report)) = in_flight.next() => {
                flying.retain(|(f, _)| f.id != t.id);
                if r.record(t, wave, report, &mut interrupts).await {
                    abandoned = true;
                    break;
                }
            }
            _ = tick.tick() => {
                if !stop.load(Ordering::SeqCst) {
                    match ledger.stop_marker(&ctx.run_id).await {
                        Ok(Some(reason)) => r.escalate(reason),
                        Ok(None) => {}
                        Err(e) => r.ledger_lost(&e),
                    }
                }
            }
            Some(()) = interrupts.recv() => {
                if r.reason >= StopReason::Interrupted {
                    abandoned = true;
                    break;
                }
                r.escalate(StopReason::Interrupted);
            }
        }
    }
    // Abandoned tenants stay claimed; once the heartbeat stops their leases run out and
    // another runner takes them over from their real versions.
    drop(in_flight);
    heartbeat.abort();
    let last_word = tokio::time::Instant::now() + LAST_WORD;
    if abandoned {
        r.escalate(StopReason::Abandoned);
        // Where each abandoned tenant really is goes in this runner's report; the ledger
        // keeps them claimed, for the runner that takes them over to read again.
        let tenants: Vec<&Tenant> = flying.iter().map(|(t, _)| *t).collect();
        let settled = settled_history(ctx, &tenants, AFTER_ABANDON).await;
        for ((t, wave), read) in flying.into_iter().zip(settled) {
            let known = progress.lock().expect("not poisoned").remove(&t.id);
            let report = abandoned_report(t, ctx.set, action, read, known);
            events.emit(Event::TenantFinished {
                wave,
                report: report.clone(),
            });
            r.ran.push((t, wave, report));
        }
    }
    if let Some(w) = r.wave {
        r.wave_finished(w);
    }
    let Runner { ran, reason, wave, .. } = r;
    // After a local Ctrl-C other runners may carry on with these tenants: no rollback.
    let rollback = reason.is_failure() && reason != StopReason::Interrupted;
    let stop_wave = if reason.is_early() { wave } else { None };
    let own_reason = reason.clone();
    let mut report = conclude(
        ctx, waves, action, policy, command, events, interrupts, started, ran, reason, stop_wave, rollback,
    )
    .await;
    let assemble = |run: SharedRun| assemble(&ctx.run_id, run, &own_reason);
    let concluding = ledger.conclude_shared(&ctx.run_id, &shared.owner, &report, assemble);
    // After an abandon the report must be out before the process's deadline: a ledger that
    // does not answer in time missed the run's end, and stderr says so.
    let concluded = if own_reason == StopReason::Abandoned {
        match tokio::time::timeout_at(last_word, concluding).await {
            Ok(done) => done,
            Err(_) => {
                ledger.gave_up_on_end(format!(
                    "it did not record the run's end within {LAST_WORD:?} of the second interrupt"
                ));
                Ok(false)
            }
        }
    } else {
        concluding.await
    };
    match concluded {
        Ok(true) => tracing::info!(
            "run `{}`: this runner ended last and wrote the run's report",
            ctx.run_id
        ),
        Ok(false) => {}
        Err(e) => missed_end(&mut report, &e, events),
    }
    announce(&report, events);
    report
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
            let w = waves.entry(wave).or_insert_with(|| WaveReport {
                wave,
                canary: run.canary_waves.contains(&wave),
                tenants: 0,
                counts: BTreeMap::new(),
            });
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
                start_version: row.start_version.map(Version),
                final_version: row.final_version.map(Version),
                dirty: failure.dirty,
                failed_migration: failure.failed_migration,
                during: failure.during,
                error,
                error_code: failure.error_code,
                error_number: failure.error_number,
                rollback: failure.rollback,
                rollback_error: failure.rollback_error,
                migrations_run,
                refusal: failure.refusal,
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
        tenants,
        summary,
    }
}
