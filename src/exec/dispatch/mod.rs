//! The dispatcher: one loop that owns a run's state and every stop decision, whatever
//! feeds it tenants.
//!
//! Two sources feed it: this runner's own waves, one after another with the gates between
//! them (`waves`), and a shared run's ledger, tenant by tenant as this runner claims them
//! (`claims`, over `exec::join`). Both go through the same escalation, failure limits,
//! rollback (`rollback`), abandon handling (`abandon`) and final report (here). Tenant
//! tasks only read the stop flag, at safe points (before their first statement and
//! between migrations); the dispatcher alone sets it. What touches a database goes
//! through [`Work`], so each decision is unit-tested without one (`tests`).

mod abandon;
mod claims;
mod rollback;
mod waves;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;

use crate::driver::ledger::LedgerError;
use crate::exec::breaker::{Breakers, COOL_DOWN, Change};
use crate::exec::events::{Event, Events, NextWave};
use crate::exec::join::{LedgerClaims, Shared};
use crate::exec::run::RunContext;
use crate::exec::tenant::{self, Action, Job};
use crate::exec::window::ChangeWindow;
use crate::exec::work::{Databases, Work};
use crate::model::fleet::Tenant;
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy, StopReason};
use crate::model::run::{
    FinalTenant, GateReport, Outcome, Phase, RunReport, SkipReason, Status, TenantReport, WaveReport,
};
use crate::model::run::{dirty_at, summarize};
use crate::model::text::printable_bounded;
use crate::plan::tenant::Target;
use crate::plan::waves::Wave;

pub use crate::exec::work::rehearse_check;
pub(crate) use abandon::abandoned_report;
pub(crate) use claims::Claims;

/// Tenant starts per second, and how many may start at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// Asks the operator whether to start the next wave. The app provides it, so that the
/// executor never talks to the terminal: the terminal reporter's holds its progress bars
/// while the question is up. Called on a blocking thread.
pub trait Prompt: Send + Sync + std::fmt::Debug {
    /// Shows what `next` holds and asks; true only for a yes.
    fn confirm(&self, next: &NextWave) -> bool;
    /// An interrupt answered for the operator: the question is no longer shown (the read
    /// itself may still be waiting), and the display goes on.
    fn abandon(&self) {}
}

/// What runs between waves.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// Wait this long after a wave before the next one.
    pub bake: Option<Duration>,
    /// A query run on every tenant of the finished wave; each must return true.
    pub check: Option<String>,
    /// Ask on the terminal before each next wave (`--yes` answers for you).
    pub confirm: bool,
    pub assume_yes: bool,
    /// Who asks for `confirm`; without one, the run stops at the first question.
    pub prompt: Option<Arc<dyn Prompt>>,
}

/// How a run behaves across waves and failures.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub max_failures: MaxFailures,
    pub max_skipped: MaxSkipped,
    pub rollback: RollbackPolicy,
    /// Stop cleanly after this wave.
    pub pause_after: Option<usize>,
    pub gates: Gates,
    pub rate: Option<Rate>,
    /// `--window`: tenants start only while it is open.
    pub window: Option<ChangeWindow>,
    /// `--host-failures`: this many connection attempts in a row to one host that fail cut
    /// the host off (see `exec::breaker`); 0 never does. In a shared run, each runner's
    /// breaker sees only the tenants it claims.
    pub host_failures: u32,
}

/// Ctrl-C presses (and SIGTERM, which `app::signals` maps onto the same channel): the
/// first stops the run at safe points, the second abandons in-flight work. `None` once the
/// sender is gone: a run without one is never interrupted.
pub type Interrupts = mpsc::UnboundedReceiver<()>;

/// Where a run's tenants come from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Source<'r> {
    /// This runner's own waves, one after another, with the gates between them.
    #[default]
    Waves,
    /// A shared run's ledger: tenants as this runner claims them (see `exec::join`).
    Shared(&'r Shared),
}

/// Everything a run needs, built once by its caller and handed to [`dispatch`].
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'r> {
    pub ctx: &'r RunContext<'r>,
    /// The run's tenants in order: for a shared run, the run's plan as the ledger holds it.
    pub waves: &'r [Wave<'r>],
    pub action: Action<'r>,
    pub policy: &'r Policy,
    /// The command's name, as the events and the report give it.
    pub command: &'r str,
    pub events: &'r Events,
    pub source: Source<'r>,
}

/// Runs `spec.action` over the run's tenants under `spec.policy`, and returns the run's
/// report (also announced as the last event).
pub async fn dispatch(spec: RunSpec<'_>, interrupts: Interrupts) -> RunReport {
    let work = Databases { ctx: spec.ctx };
    match spec.source {
        Source::Waves => run(spec, &work, None::<&LedgerClaims>, interrupts).await,
        Source::Shared(shared) => {
            let ledger = spec.ctx.ledger.as_ref().expect("a shared run has a ledger");
            let claims = LedgerClaims::new(ledger, shared, &spec.ctx.run_id);
            run(spec, &work, Some(&claims), interrupts).await
        }
    }
}

/// [`dispatch`] with the work and the tenant source given: this runner's waves when
/// `claims` is `None`, else the tenants it claims there.
pub(crate) async fn run<W: Work, C: Claims>(
    spec: RunSpec<'_>,
    work: &W,
    claims: Option<&C>,
    interrupts: Interrupts,
) -> RunReport {
    let started = Instant::now();
    let mut d = Dispatcher::new(spec, work, interrupts, claims.is_none());
    d.announce_start(claims.map(|c| c.total()));
    let stop_wave = match claims {
        None => d.waves().await,
        Some(claims) => d.claims(claims).await,
    };
    if d.may_roll_back(claims.is_some()) {
        d.rollback(stop_wave).await;
    }
    if claims.is_none() {
        d.read_untouched().await;
    }
    d.announce_unannounced();
    d.end(started, claims).await
}

/// How long the dispatcher keeps at its own work after a second interrupt, for each of:
/// reading where the abandoned tenants really are, and recording it in the ledger.
pub const AFTER_ABANDON: Duration = Duration::from_secs(2);

/// How long all of the dispatcher's work after an abandon may take together (the reads
/// of where tenants are and the ledger's records): well inside the process's deadline
/// after a second interrupt (`app::signals::GRACE`), so the report is always printed
/// and written, whatever stopped answering.
pub const LAST_WORD: Duration = Duration::from_secs(4);

/// The part of `LAST_WORD` kept for recording the run's end in the ledger.
const END_SHARE: Duration = Duration::from_secs(1);

/// A tenant's slot in the run.
struct Slot<'a> {
    tenant: &'a Tenant,
    wave: usize,
    /// In a canary wave.
    canary: bool,
    report: Option<TenantReport>,
    /// Boxed: set for few tenants, and a slot is kept for every tenant of the run.
    rollback: Option<Box<TenantReport>>,
    /// Why a tenant the run never started has no version in the report.
    unread: Option<String>,
    /// When it ran, in ms from the run's start (its forward run, not a rollback).
    span: Option<[u64; 2]>,
    /// When its rollback ran, likewise.
    rollback_span: Option<[u64; 2]>,
    /// The run stopped before it started: no event has named it yet. Its `tenant_finished`
    /// (`not_started`) comes just before the run's end, so the events account for every
    /// tenant `run_finished` counts.
    unannounced: bool,
}

impl<'a> Slot<'a> {
    fn new(tenant: &'a Tenant, wave: &Wave<'_>) -> Self {
        Slot {
            tenant,
            wave: wave.number,
            canary: wave.canary,
            report: None,
            rollback: None,
            unread: None,
            span: None,
            rollback_span: None,
            unannounced: false,
        }
    }
}

/// The dispatcher's state.
struct Dispatcher<'r, W> {
    ctx: &'r RunContext<'r>,
    work: &'r W,
    waves: &'r [Wave<'r>],
    policy: &'r Policy,
    action: Action<'r>,
    command: &'r str,
    events: &'r Events,
    /// The run's tenants (this runner's waves), or those this runner claimed (a shared run).
    slots: Vec<Slot<'r>>,
    /// Set by the dispatcher only; read by tenant tasks at safe points.
    stop: Arc<Stop>,
    reason: StopReason,
    /// The failure and skip limits are counted here; a shared run's ledger counts them
    /// over every runner's tenants instead.
    counts_limits: bool,
    failed: usize,
    skipped: usize,
    /// Ctrl-C presses, from the caller (`None` once the sender is gone).
    interrupts: Interrupts,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// Set when the run is abandoned: all the dispatcher still does (reads, ledger writes)
    /// ends by then, so the report is out before the process's own deadline.
    last_word: Option<tokio::time::Instant>,
    /// The run's start, from which the report's timeline counts.
    began: tokio::time::Instant,
    /// When each wave ran, by wave number, in ms from `began`.
    wave_spans: std::collections::HashMap<usize, [u64; 2]>,
    /// The gates that ran, with their wave, in order.
    gates: Vec<(usize, GateReport)>,
    /// The per-host breakers: fed each tenant's outcome here, asked by tenant tasks.
    breakers: Arc<Breakers>,
}

/// What a tenant task needs of the dispatcher, copied out of it so that tasks in flight
/// do not borrow the dispatcher while it records their outcomes.
struct Starter<'s, W> {
    ctx: &'s RunContext<'s>,
    work: &'s W,
    action: Action<'s>,
    events: &'s Events,
    stop: &'s Stop,
    progress: &'s tenant::Tracker,
}

impl<W> Clone for Starter<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W> Copy for Starter<'_, W> {}

impl<'s, W: Work> Starter<'s, W> {
    /// Runs `t`, of wave `wave`, whose start is announced; `host` hears of each of its
    /// connection attempts.
    async fn run(self, t: &Tenant, wave: usize, host: Option<&dyn tenant::HostWatch>) -> TenantReport {
        let job = Job {
            set: self.ctx.sets.of(t.engine),
            action: self.action.resolved(self.ctx.sets, t.engine),
            per_tenant_tx: self.ctx.per_tenant_tx,
            retry: self.ctx.retry,
            run_id: &self.ctx.run_id,
            wave,
            events: self.events,
            stop: self.stop,
            progress: Some(self.progress),
            host,
        };
        self.work.run(t, job).await
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl<'r, W: Work> Dispatcher<'r, W> {
    fn new(spec: RunSpec<'r>, work: &'r W, interrupts: Interrupts, own_waves: bool) -> Self {
        let slots = if own_waves {
            spec.waves
                .iter()
                .flat_map(|w| w.tenants.iter().map(move |t| Slot::new(t, w)))
                .collect()
        } else {
            Vec::new()
        };
        let limiter = spec.policy.rate.map(|r| {
            Arc::new(RateLimiter::direct(
                Quota::per_second(r.per_second).allow_burst(r.burst),
            ))
        });
        Dispatcher {
            ctx: spec.ctx,
            work,
            waves: spec.waves,
            policy: spec.policy,
            action: spec.action,
            command: spec.command,
            events: spec.events,
            slots,
            stop: Arc::default(),
            reason: StopReason::Completed,
            counts_limits: own_waves,
            failed: 0,
            skipped: 0,
            interrupts,
            limiter,
            last_word: None,
            began: tokio::time::Instant::now(),
            wave_spans: std::collections::HashMap::new(),
            gates: Vec::new(),
            breakers: Arc::new(Breakers::new(spec.policy.host_failures)),
        }
    }

    /// What tenant tasks take of the dispatcher; it stays free to record their outcomes.
    fn starter<'s>(&self, stop: &'s Stop, progress: &'s tenant::Tracker) -> Starter<'s, W>
    where
        'r: 's,
    {
        Starter {
            ctx: self.ctx,
            work: self.work,
            action: self.action,
            events: self.events,
            stop,
            progress,
        }
    }

    /// The run's first event; `tenants`: the whole run's count, when not this runner's own.
    fn announce_start(&self, tenants: Option<usize>) {
        let target = match self.action {
            Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => Some(to),
            Action::Migrate(Target::DownSteps { .. }) | Action::Checksums(_) | Action::Adopt(_) => None,
        };
        self.events.emit(Event::RunStarted {
            run_id: self.ctx.run_id.clone(),
            command: self.command.to_owned(),
            target,
            tenants: tenants.unwrap_or(self.slots.len()),
        });
    }

    fn escalate(&mut self, reason: StopReason) {
        if reason == StopReason::Abandoned && self.last_word.is_none() {
            self.last_word = Some(tokio::time::Instant::now() + LAST_WORD);
        }
        if reason > self.reason {
            self.events.emit(Event::Stopping { reason: reason.clone() });
            self.reason = reason;
            self.stop.raise();
        }
    }

    /// An interrupt: the first stops the run at safe points, one after that abandons it.
    /// True when it abandons.
    fn interrupted(&mut self) -> bool {
        let abandon = self.reason >= StopReason::Interrupted;
        self.escalate(if abandon {
            StopReason::Abandoned
        } else {
            StopReason::Interrupted
        });
        abandon
    }

    /// The ledger could not take a write: stop, keeping the first cause. In a shared run
    /// this runner stops; its leases run out and other runners carry on.
    fn ledger_lost(&mut self, e: &LedgerError) {
        if !matches!(self.reason, StopReason::LedgerUnavailable { .. }) {
            self.escalate(StopReason::LedgerUnavailable { detail: e.to_string() });
        }
    }

    /// Ms from the run's start to `at`, for the report's timeline.
    fn ms(&self, at: tokio::time::Instant) -> u64 {
        at.saturating_duration_since(self.began).as_millis() as u64
    }

    /// Notes that slot `i` ran from `started` until now.
    fn timed(&mut self, i: usize, started: Option<tokio::time::Instant>) {
        let now = self.ms(tokio::time::Instant::now());
        self.slots[i].span = started.map(|s| [self.ms(s), now]);
    }

    fn total(&self) -> usize {
        self.slots.len()
    }

    /// When work that may take `cap` must end: within `cap`, and after an abandon not
    /// past the run's last word.
    fn until(&self, cap: Duration) -> tokio::time::Instant {
        let at = tokio::time::Instant::now() + cap;
        self.last_word.map_or(at, |last| at.min(last))
    }

    /// What is left of `cap` (see [`Dispatcher::until`]).
    fn within(&self, cap: Duration) -> Duration {
        self.until(cap).saturating_duration_since(tokio::time::Instant::now())
    }

    /// Notes slot `i`'s outcome, counting it against the run's limits.
    fn record(&mut self, i: usize, report: TenantReport) {
        if self.counts_limits {
            if let Some(reason) = self.limit_reached(i, &report.outcome) {
                self.escalate(reason);
            }
        }
        self.slots[i].report = Some(report);
    }

    fn limit_reached(&mut self, i: usize, outcome: &Outcome) -> Option<StopReason> {
        match outcome {
            Outcome::Failed { .. } => {
                self.failed += 1;
                let limits = &self.policy.max_failures;
                limits
                    .is_exceeded(self.failed, self.total())
                    .then(|| StopReason::MaxFailures {
                        failed: self.failed,
                        limit: limits.limit(self.total()).unwrap_or(0),
                    })
            }
            Outcome::Skipped { reason } => {
                self.skipped += 1;
                let slot = &self.slots[i];
                let tenant = slot.tenant.id.as_str();
                let total = self.total();
                (self.policy.max_skipped).stop(self.skipped, total, tenant, slot.canary, reason.name())
            }
            _ => None,
        }
    }

    /// Feeds slot `i`'s outcome, from a tenant that was tried, to its host's breaker, and
    /// announces what that changed; returns the host when this cut it off. `counted`: its
    /// failed attempts were each counted already.
    fn observe_host(&self, i: usize, report: &TenantReport, counted: bool) -> Option<String> {
        let host = self.slots[i].tenant.server_key();
        announce_change(self.events, self.breakers.observe(&host, report, counted)?)
    }

    /// Runs `work` while listening for interrupts: the first escalates to `Interrupted`,
    /// one after that abandons `work` (`None`).
    async fn interruptible<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Some(done),
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the tenants this runner moved are rolled back now. Not after an abandon;
    /// in a shared run, only when the run failed (after a local Ctrl-C other runners may
    /// carry on with these tenants).
    fn may_roll_back(&self, shared: bool) -> bool {
        match &self.reason {
            StopReason::Abandoned => false,
            reason if shared => reason.is_failure() && *reason != StopReason::Interrupted,
            _ => true,
        }
    }

    /// The tenants the run never reached are named once, just before its end.
    fn announce_unannounced(&self) {
        for slot in self.slots.iter().filter(|s| s.unannounced) {
            if let Some(report) = &slot.report {
                self.events.emit(Event::TenantFinished {
                    wave: slot.wave,
                    report: report.clone(),
                });
            }
        }
    }

    /// The run's report, its end recorded where the run is kept, and its last event.
    async fn end<C: Claims>(mut self, started: Instant, claims: Option<&C>) -> RunReport {
        let last_word = self.until(AFTER_ABANDON);
        // Still listened to while the run's end is recorded: a ledger that does not answer must
        // not keep a second interrupt from ending the run with its report.
        let mut interrupts = std::mem::replace(&mut self.interrupts, mpsc::unbounded_channel().1);
        let own_reason = self.reason.clone();
        let events = self.events;
        let mut report = self.finish(started);
        let recording = match claims {
            Some(claims) => Ending::Shared(claims, &own_reason),
            None => match &self.ctx.ledger {
                Some(ledger) => Ending::Local(ledger),
                None => Ending::Nowhere,
            },
        };
        if let Err(e) = recording.record(&report, last_word, &mut interrupts).await {
            missed_end(&mut report, &e, events);
        }
        announce(&report, events);
        report
    }

    /// The run's report. Takes the slots, which the report replaces: kept beside it while
    /// the ledger writes it as JSON, and with the wave's summary counted from a copy of its
    /// reports, a 100,000-tenant SQLite no-op peaked about 32 MB higher (264 -> 232 MB RSS).
    fn finish(&mut self, started: Instant) -> RunReport {
        let slots = std::mem::take(&mut self.slots);
        let tenants: Vec<FinalTenant> = slots.iter().map(final_tenant).collect();
        drop(slots);
        let summary = summarize(&tenants, started.elapsed());
        let reason = summary.settle(self.reason.clone());
        let waves = self
            .waves
            .iter()
            .map(|w| {
                let mut counts = std::collections::BTreeMap::new();
                for t in tenants.iter().filter(|t| t.wave == w.number) {
                    *counts.entry(t.status.name().to_owned()).or_insert(0) += 1;
                }
                let span = self.wave_spans.get(&w.number);
                WaveReport {
                    started_ms: span.map(|s| s[0]),
                    finished_ms: span.map(|s| s[1]),
                    gates: self
                        .gates
                        .iter()
                        .filter(|(n, _)| *n == w.number)
                        .map(|(_, g)| g.clone())
                        .collect(),
                    ..WaveReport::new(w.number, w.canary, w.tenants.len(), counts)
                }
            })
            .collect();
        RunReport {
            run_id: self.ctx.run_id.clone(),
            command: self.command.to_owned(),
            stop_reason: reason,
            waves,
            tenants,
            summary,
            hosts_cut_off: self.breakers.report(),
        }
    }
}

/// Where the run's end is recorded.
enum Ending<'e, C> {
    /// This runner's own run, in its ledger.
    Local(&'e crate::driver::ledger::Ledger),
    /// A shared run: this runner's part; the last runner to end writes the whole run's.
    Shared(&'e C, &'e StopReason),
    /// A run without a ledger.
    Nowhere,
}

impl<C: Claims> Ending<'_, C> {
    /// Records the run's end. After an abandon it is given up on at `last_word`; otherwise
    /// a second interrupt while it waits leaves it [`END_SHARE`] more.
    async fn record(
        &self,
        report: &RunReport,
        last_word: tokio::time::Instant,
        interrupts: &mut Interrupts,
    ) -> Result<(), LedgerError> {
        let recording = async {
            match self {
                Ending::Local(ledger) => ledger.finish_run(report).await,
                Ending::Shared(claims, own) => claims.conclude(report, own).await,
                Ending::Nowhere => Ok(()),
            }
        };
        if report.stop_reason == StopReason::Abandoned {
            return match tokio::time::timeout_at(last_word, recording).await {
                Ok(done) => done,
                Err(_) => {
                    self.gave_up(format!(
                        "it did not record the run's end within {LAST_WORD:?} of the second interrupt"
                    ));
                    Ok(())
                }
            };
        }
        let mut presses = usize::from(report.stop_reason >= StopReason::Interrupted);
        tokio::pin!(recording);
        loop {
            tokio::select! {
                done = &mut recording => return done,
                Some(()) = interrupts.recv() => {
                    presses += 1;
                    if presses < 2 {
                        continue;
                    }
                    // A healthy ledger takes the end in milliseconds: it gets its last
                    // second; one that does not answer is given up on then.
                    return match tokio::time::timeout(END_SHARE, &mut recording).await {
                        Ok(done) => done,
                        Err(_) => {
                            self.gave_up(format!(
                                "it had not recorded the run's end {END_SHARE:?} after a second interrupt"
                            ));
                            Ok(())
                        }
                    };
                }
            }
        }
    }

    /// Not only a log line: the operator is told on stderr that the report is the run's
    /// only full record.
    fn gave_up(&self, why: String) {
        match self {
            Ending::Local(ledger) => ledger.gave_up_on_end(why),
            Ending::Shared(claims, _) => claims.gave_up_on_end(why),
            Ending::Nowhere => {}
        }
    }
}

/// The run's stop: a flag tenant tasks read at safe points, and a wake-up for the tasks
/// still waiting to start. Those wait on it rather than poll it: 100,000 waiting tenants,
/// each polling every 50 ms, kept the runtime's timer so busy that each start took a third
/// of a second.
#[derive(Debug, Default)]
pub(super) struct Stop {
    flag: AtomicBool,
    raised: tokio::sync::Notify,
}

impl Stop {
    /// Sets the flag and wakes every task waiting in [`Stop::raised`].
    fn raise(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.raised.notify_waiters();
    }

    /// Resolves once the run is stopping.
    pub(super) async fn raised(&self) {
        loop {
            let notified = self.raised.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a raise in between is not missed.
            notified.as_mut().enable();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Read as the flag, which is what a tenant's job takes.
impl std::ops::Deref for Stop {
    type Target = AtomicBool;

    fn deref(&self) -> &AtomicBool {
        &self.flag
    }
}

fn not_started(t: &Tenant) -> TenantReport {
    TenantReport {
        id: t.id.clone(),
        outcome: Outcome::NotStarted,
        start_version: None,
        final_version: None,
        steps: vec![],
    }
}

fn final_tenant(slot: &Slot<'_>) -> FinalTenant {
    let report = slot.report.as_ref().expect("every slot is filled before the report");
    let mut out = FinalTenant {
        dirty: dirty_at(&report.outcome),
        migrations_run: report.steps.len(),
        started_ms: slot.span.map(|s| s[0]),
        finished_ms: slot.span.map(|s| s[1]),
        rollback_ms: slot.rollback_span,
        ..FinalTenant::new(
            slot.tenant.id.to_string(),
            slot.wave,
            Status::Succeeded,
            report.start_version,
            report.final_version,
        )
    };
    out.status = outcome_status(slot, report, &mut out);
    if let Some(rb) = &slot.rollback {
        rolled_back(rb, &mut out);
    }
    out
}

/// A tenant's status from its outcome, with what the outcome says about it.
fn outcome_status(slot: &Slot<'_>, report: &TenantReport, out: &mut FinalTenant) -> Status {
    match &report.outcome {
        Outcome::Succeeded => Status::Succeeded,
        Outcome::Failed {
            version, during, error, ..
        } => {
            out.failed_migration = *version;
            out.during = Some(*during).filter(|d| *d != Phase::Migrating);
            out.error = Some(error.to_string());
            out.error_code = error.code.clone();
            out.error_number = error.number;
            // Bounded as the error line is: the ledger keeps the report.
            out.detail = error.said().detail.as_deref().map(printable_bounded);
            out.hint = error.said().hint.as_deref().map(printable_bounded);
            Status::Failed
        }
        Outcome::Skipped { reason } => {
            out.error = Some(format!("{}: {}", reason.name(), reason.message()));
            if let SkipReason::Refused { refusal } = reason {
                out.refusal = Some(refusal.clone());
            }
            Status::Skipped
        }
        Outcome::NotStarted => {
            if report.final_version.is_none() {
                out.error = slot.unread.clone();
            }
            Status::NotStarted
        }
        Outcome::Stopped => Status::Stopped,
    }
}

/// What a rollback changes in a tenant's final state.
fn rolled_back(rb: &TenantReport, out: &mut FinalTenant) {
    out.rollback = Some([rb.start_version, rb.final_version]);
    match &rb.outcome {
        Outcome::Succeeded => {
            out.status = Status::RolledBack;
            out.final_version = rb.final_version;
            out.dirty = None;
        }
        other => {
            out.status = Status::RollbackFailed;
            out.dirty = dirty_at(other).or(out.dirty);
            out.final_version = rb.final_version.or(out.final_version);
            out.rollback_error = Some(match other {
                Outcome::Failed { error, .. } => error.to_string(),
                Outcome::Skipped { reason } => reason.message(),
                _ => "did not run".to_owned(),
            });
        }
    }
}

/// The ledger did not take the run's end: the report (on the terminal, `--report`) is
/// the run's only full record, and its stop reason says so unless a graver one stands.
pub(crate) fn missed_end(report: &mut RunReport, e: &LedgerError, events: &Events) {
    let reason = StopReason::LedgerUnavailable {
        detail: format!("{e} (the ledger missed the run's end)"),
    };
    let ledger_already = matches!(report.stop_reason, StopReason::LedgerUnavailable { .. });
    if !ledger_already && reason > report.stop_reason {
        events.emit(Event::Stopping { reason: reason.clone() });
        report.stop_reason = reason;
    }
}

/// What a tenant's connection attempts tell its host's breaker and the wave's turns: an
/// attempt that connects proves the host (its whole cap applies); one that cannot counts
/// toward `--host-failures`, and may cut the host off, which ends the tenant's retries.
pub(super) struct Watch<'s> {
    host: String,
    /// The wave's turns, in a run of this runner's own waves (a shared run has none).
    turns: Option<&'s crate::exec::turns::Turns>,
    breakers: &'s Breakers,
    events: &'s Events,
    /// An attempt's failure was counted.
    counted: AtomicBool,
}

impl<'s> Watch<'s> {
    pub(super) fn new(
        t: &Tenant,
        turns: Option<&'s crate::exec::turns::Turns>,
        breakers: &'s Breakers,
        events: &'s Events,
    ) -> Self {
        Watch {
            host: t.server_key(),
            turns,
            breakers,
            events,
            counted: AtomicBool::new(false),
        }
    }

    /// Whether a failed attempt was counted by the breaker already.
    pub(super) fn counted(&self) -> bool {
        self.counted.load(Ordering::SeqCst)
    }
}

impl tenant::HostWatch for Watch<'_> {
    fn reached(&self) {
        self.breakers.reached(&self.host);
        if let Some(turns) = self.turns {
            turns.proven(&self.host);
        }
    }

    fn unreached(&self, error: &crate::model::db_error::DbError) {
        self.counted.store(true, Ordering::SeqCst);
        if let Some(turns) = self.turns {
            turns.missed(&self.host);
        }
        let Some(change) = self.breakers.attempt_failed(&self.host, error) else {
            return;
        };
        if let (Some(host), Some(turns)) = (announce_change(self.events, change), self.turns) {
            turns.unproven(&host);
        }
    }

    fn cut_off(&self) -> bool {
        self.breakers.is_cut_off(&self.host)
    }
}

/// Announces a change of a host's breaker; returns the host when it was cut off.
pub(super) fn announce_change(events: &Events, change: Change) -> Option<String> {
    match change {
        Change::CutOff { host, failures, error } => {
            tracing::warn!("host `{host}` cut off after {failures} connection failures in a row: {error}");
            events.emit(Event::HostCutOff {
                host: host.clone(),
                failures,
                error,
                probe_after_ms: COOL_DOWN.as_millis() as u64,
            });
            Some(host)
        }
        Change::Restored { host } => {
            events.emit(Event::HostRestored { host });
            None
        }
    }
}

/// The run's last event, once its report is final.
fn announce(report: &RunReport, events: &Events) {
    events.emit(Event::RunFinished {
        summary: report.summary.clone(),
        stop_reason: report.stop_reason.clone(),
    });
}
