//! The dispatcher: one loop that owns a run's state and every stop decision.
//!
//! Waves run one after another; within a wave, tenants fan out under the concurrency cap,
//! per-host caps and the rate limiter. Tenant tasks only read the stop flag, at safe points
//! (before their first statement and between migrations); the dispatcher alone sets it.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Jitter, Quota, RateLimiter};
use tokio::sync::mpsc;

use crate::driver::connect::{Access, Connector, Limits};
use crate::driver::ledger::LedgerError;
use crate::exec::events::{Event, Events, Gate, GateStart, NextWave};
use crate::exec::join::Shared;
use crate::exec::run::{RunContext, host_caps, host_limit, inspect_all};
use crate::exec::tenant::{self, Action, Job};
use crate::exec::turns::Turns;
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::Tenant;
use crate::model::migration::{Applied, MigrationSet, Version};
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy, StopReason};
use crate::model::run::{FinalTenant, RunReport, Status, WaveReport, dirty_at, summarize};
use crate::model::run::{Outcome, Phase, SkipReason, Summary, TenantReport};
use crate::plan::tenant::Target;
use crate::plan::waves::Wave;

/// Tenant starts per second, and how many may start at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
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
}

/// A tenant's slot in the run.
struct Slot<'a> {
    tenant: &'a Tenant,
    wave: usize,
    /// In a canary wave.
    canary: bool,
    report: Option<TenantReport>,
    rollback: Option<TenantReport>,
    /// Why a tenant the run never started has no version in the report.
    unread: Option<String>,
    /// The run stopped before it started: no event has named it yet. Its `tenant_finished`
    /// (`not_started`) comes just before the run's end, so the events account for every
    /// tenant `run_finished` counts.
    unannounced: bool,
}

/// The dispatcher's state.
struct Dispatcher<'r, 'a> {
    ctx: &'r RunContext<'a>,
    policy: &'r Policy,
    action: Action,
    events: &'r Events,
    slots: Vec<Slot<'a>>,
    /// Set by the dispatcher only; read by tenant tasks at safe points.
    stop: Arc<AtomicBool>,
    reason: StopReason,
    failed: usize,
    skipped: usize,
    /// Ctrl-C presses, from the caller (`None` once the sender is gone).
    interrupts: mpsc::UnboundedReceiver<()>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// Set when the run is abandoned: all the dispatcher still does (reads, ledger writes)
    /// ends by then, so the report is out before the process's own deadline.
    last_word: Option<tokio::time::Instant>,
}

impl<'r, 'a> Dispatcher<'r, 'a> {
    fn escalate(&mut self, reason: StopReason) {
        if reason == StopReason::Abandoned && self.last_word.is_none() {
            self.last_word = Some(tokio::time::Instant::now() + LAST_WORD);
        }
        if reason > self.reason {
            self.events.emit(Event::Stopping { reason: reason.clone() });
            self.reason = reason;
            self.stop.store(true, Ordering::SeqCst);
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

    /// The ledger could not take a write: stop, keeping the first cause.
    fn ledger_lost(&mut self, e: &LedgerError) {
        if !matches!(self.reason, StopReason::LedgerUnavailable { .. }) {
            self.escalate(StopReason::LedgerUnavailable { detail: e.to_string() });
        }
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

    /// Runs one wave; returns false when the run was abandoned.
    async fn run_wave(&mut self, range: std::ops::Range<usize>) -> bool {
        let caps: HashMap<String, usize> = self
            .slots
            .iter()
            .map(|s| (s.tenant.server_key(), host_limit(self.ctx, s.tenant)))
            .collect();
        let started: Arc<Mutex<HashSet<usize>>> = Arc::default();
        let progress = tenant::Tracker::default();
        let tracker = &progress;
        let ctx = self.ctx;
        let action = self.action;
        let events = self.events;
        let stop = self.stop.clone();
        let limiter = self.limiter.clone();
        let tenants: Vec<(usize, &Tenant, usize)> = range
            .clone()
            .map(|i| (i, self.slots[i].tenant, self.slots[i].wave))
            .collect();
        // Only a shortcut: an interrupt ends it (it may wait up to --connect-timeout on a
        // host that stopped answering), and the tenants then see the stop.
        let mut already_there = {
            let surveying = already_at_target(self.ctx, self.action, &tenants);
            tokio::select! {
                found = surveying => found,
                Some(()) = self.interrupts.recv() => {
                    self.interrupted();
                    HashMap::new()
                }
            }
        };
        // Every tenant waits for its turn at once; the turns let them start in fleet order
        // under the concurrency and per-host caps.
        let turns = Turns::new(
            self.ctx.concurrency,
            caps,
            tenants.iter().map(|(i, t, _)| {
                let server = (!already_there.contains_key(i)).then(|| t.server_key());
                (*i, server)
            }),
        );
        let turns = &turns;
        let mut stream = futures::stream::iter(tenants)
            .map(|(i, t, wave)| {
                let started = started.clone();
                let stop = stop.clone();
                let limiter = limiter.clone();
                let done = already_there.remove(&i);
                async move {
                    // Made first, so that leaving early gives up the tenant's place in the queue.
                    let mut turn = turns.turn(i);
                    if stop.load(Ordering::SeqCst) && done.is_none() {
                        return (i, not_started(t), None);
                    }
                    tokio::select! {
                        () = turn.ready() => {}
                        () = stopped(&stop), if done.is_none() => return (i, not_started(t), None),
                    }
                    if let Some(report) = done {
                        events.emit(Event::TenantStarted {
                            tenant: t.id.clone(),
                            wave,
                        });
                        turn.started();
                        events.emit(Event::TenantFinished {
                            wave,
                            report: report.clone(),
                        });
                        return (i, report, None);
                    }
                    // A stop ends the wait for a start slot at once: with a low `--rate`, every
                    // tenant left waiting its turn made a stop take one slot per tenant.
                    if let Some(limiter) = limiter {
                        tokio::select! {
                            _ = limiter.until_ready_with_jitter(Jitter::up_to(Duration::from_millis(20))) => {}
                            () = stopped(&stop) => return (i, not_started(t), None),
                        }
                    }
                    if stop.load(Ordering::SeqCst) {
                        return (i, not_started(t), None);
                    }
                    // A tenant the ledger cannot record as started does not start.
                    if let Some(ledger) = &ctx.ledger {
                        if let Err(e) = ledger.tenant_started(&ctx.run_id, t.id.as_str()).await {
                            return (i, not_started(t), Some(e));
                        }
                    }
                    started.lock().expect("no task panics holding it").insert(i);
                    events.emit(Event::TenantStarted {
                        tenant: t.id.clone(),
                        wave,
                    });
                    turn.started();
                    let job = Job {
                        set: ctx.set,
                        action,
                        per_tenant_tx: ctx.per_tenant_tx,
                        retry: ctx.retry,
                        run_id: &ctx.run_id,
                        wave,
                        events,
                        stop: &stop,
                        progress: Some(tracker),
                    };
                    let report = tenant::run_announced(t, &ctx.connector, job).await;
                    let mut fault = None;
                    if let Some(ledger) = &ctx.ledger {
                        fault = ledger.tenant_finished(&ctx.run_id, &report).await.err();
                    }
                    events.emit(Event::TenantFinished {
                        wave,
                        report: report.clone(),
                    });
                    (i, report, fault)
                }
            })
            .buffer_unordered(usize::MAX);
        let mut abandoned = false;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some((i, report, fault)) => {
                        if let Some(e) = fault {
                            self.ledger_lost(&e);
                        }
                        self.record(i, report);
                    }
                    None => break,
                },
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        abandoned = true;
                        break;
                    }
                }
            }
        }
        drop(stream);
        if abandoned {
            self.escalate(StopReason::Abandoned);
            let in_flight: Vec<usize> = {
                let started = started.lock().expect("not poisoned");
                let mut ids: Vec<usize> = started
                    .iter()
                    .copied()
                    .filter(|&i| self.slots[i].report.is_none())
                    .collect();
                ids.sort_unstable();
                ids
            };
            let tenants: Vec<&Tenant> = in_flight.iter().map(|&i| self.slots[i].tenant).collect();
            let settled = settled_history(self.ctx, &tenants, self.within(AFTER_ABANDON)).await;
            let mut reports = Vec::with_capacity(in_flight.len());
            for (i, read) in in_flight.into_iter().zip(settled) {
                let tenant = self.slots[i].tenant;
                let known = progress.lock().expect("not poisoned").remove(&tenant.id);
                let report = abandoned_report(tenant, self.ctx.set, self.action, read, known);
                self.events.emit(Event::TenantFinished {
                    wave: self.slots[i].wave,
                    report: report.clone(),
                });
                self.slots[i].report = Some(report.clone());
                reports.push(report);
            }
            if let Some(ledger) = &self.ctx.ledger {
                let ctx = self.ctx;
                let writes = async {
                    for report in &reports {
                        if let Err(e) = ledger.tenant_finished(&ctx.run_id, report).await {
                            tracing::warn!("{e}");
                        }
                    }
                };
                // The run's end records each tenant's state and version again: these writes
                // must leave it time.
                let cap = AFTER_ABANDON / 2;
                if tokio::time::timeout_at(self.until(cap), writes).await.is_err() {
                    tracing::warn!("the ledger did not record the abandoned tenants within {cap:?}");
                }
            }
        }
        let started = started.lock().expect("not poisoned");
        for i in range {
            let slot = &mut self.slots[i];
            if slot.report.is_none() {
                slot.report = Some(not_started(slot.tenant));
            }
            slot.unannounced = !started.contains(&i)
                && slot
                    .report
                    .as_ref()
                    .is_some_and(|r| matches!(r.outcome, Outcome::NotStarted));
        }
        !abandoned
    }

    fn record(&mut self, i: usize, report: TenantReport) {
        if matches!(report.outcome, Outcome::Failed { .. }) {
            self.failed += 1;
            if self.policy.max_failures.is_exceeded(self.failed, self.total()) {
                let limit = self.policy.max_failures.limit(self.total()).unwrap_or(0);
                self.escalate(StopReason::MaxFailures {
                    failed: self.failed,
                    limit,
                });
            }
        }
        if let Outcome::Skipped { reason } = &report.outcome {
            self.skipped += 1;
            let slot = &self.slots[i];
            let stop = self.policy.max_skipped.stop(
                self.skipped,
                self.total(),
                slot.tenant.id.as_str(),
                slot.canary,
                reason.name(),
            );
            if let Some(stop) = stop {
                self.escalate(stop);
            }
        }
        self.slots[i].report = Some(report);
    }

    /// The gates after a wave; escalates on failure. Each gate is announced as it starts
    /// and ends, so the display can show it as a gate rather than as slow work.
    async fn gates(&mut self, wave: &Wave<'_>, range: std::ops::Range<usize>, next: Option<&Wave<'_>>) {
        let policy = self.policy;
        let gates = &policy.gates;
        let events = self.events;
        if let Some(sql) = &gates.check {
            let ctx = self.ctx;
            let tenants: Vec<&Tenant> = range
                .filter(|&i| {
                    matches!(
                        self.slots[i].report.as_ref().map(|r| &r.outcome),
                        Some(Outcome::Succeeded)
                    )
                })
                .map(|i| self.slots[i].tenant)
                .collect();
            let total = tenants.len();
            let began = Instant::now();
            events.emit(Event::GateStarted {
                wave: wave.number,
                gate: GateStart::Check {
                    query: sql.clone(),
                    total,
                },
            });
            let checking = async move {
                for (n, t) in tenants.into_iter().enumerate() {
                    match check(ctx, t, sql).await {
                        Ok(true) => events.emit(Event::GateProgress {
                            wave: wave.number,
                            gate: Gate::Check,
                            passed: n + 1,
                            total,
                        }),
                        Ok(false) => return Some(format!("check returned false on tenant `{}`", t.id)),
                        Err(e) => return Some(format!("check failed on tenant `{}`: {e}", t.id)),
                    }
                }
                None
            };
            // A check only reads: an interrupt ends it at once (a slow check made the first
            // wait for it, and the second end the process with no report).
            let failed = tokio::select! {
                failed = checking => failed,
                Some(()) = self.interrupts.recv() => {
                    gate_finished(events, wave.number, Gate::Check, false, Some("interrupted".into()), began);
                    self.interrupted();
                    return;
                }
            };
            // "passed on 0/0" read as a check that ran; nothing ran.
            let passed = match total {
                0 => "skipped: no tenant of the wave succeeded".to_owned(),
                _ => format!("passed on {total}/{total}"),
            };
            let detail = failed.clone().or(Some(passed));
            gate_finished(events, wave.number, Gate::Check, failed.is_none(), detail, began);
            if let Some(detail) = failed {
                return self.escalate(StopReason::GateFailed {
                    wave: wave.number,
                    detail,
                });
            }
        }
        if self.policy.pause_after == Some(wave.number) {
            return self.escalate(StopReason::Paused { wave: wave.number });
        }
        let Some(next) = next else { return };
        if let Some(bake) = gates.bake {
            let began = Instant::now();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            events.emit(Event::GateStarted {
                wave: wave.number,
                gate: GateStart::Bake {
                    duration_ms: bake.as_millis() as u64,
                    until_ms: now_ms + bake.as_millis() as u64,
                },
            });
            tokio::select! {
                _ = tokio::time::sleep(bake) => {
                    gate_finished(events, wave.number, Gate::Bake, true, None, began);
                }
                Some(()) = self.interrupts.recv() => {
                    gate_finished(events, wave.number, Gate::Bake, false, Some("interrupted".into()), began);
                    return self.escalate(StopReason::Interrupted);
                }
            }
        }
        if gates.confirm && !gates.assume_yes {
            let began = Instant::now();
            let next = next_wave(next);
            events.emit(Event::GateStarted {
                wave: wave.number,
                gate: GateStart::Confirm { next: next.clone() },
            });
            let Some(prompt) = gates.prompt.clone() else {
                let detail = "not confirmed: there is no one to ask".to_owned();
                gate_finished(events, wave.number, Gate::Confirm, false, Some(detail.clone()), began);
                return self.escalate(StopReason::GateFailed {
                    wave: wave.number,
                    detail,
                });
            };
            let asking = {
                let prompt = prompt.clone();
                tokio::task::spawn_blocking(move || prompt.confirm(&next))
            };
            // An interrupt answers for the operator; the read is left behind (the runtime's
            // shutdown does not wait for it), and the prompt is told so the display goes on.
            let answer = tokio::select! {
                answer = asking => answer,
                Some(()) = self.interrupts.recv() => {
                    prompt.abandon();
                    gate_finished(events, wave.number, Gate::Confirm, false, Some("interrupted".into()), began);
                    return self.escalate(StopReason::Interrupted);
                }
            };
            let yes = matches!(answer, Ok(true));
            let detail = if yes { "confirmed" } else { "not confirmed" }.to_owned();
            gate_finished(events, wave.number, Gate::Confirm, yes, Some(detail.clone()), began);
            if !yes {
                self.escalate(StopReason::GateFailed {
                    wave: wave.number,
                    detail,
                });
            }
        }
    }

    fn wants_rollback(&self, slot: &Slot<'_>, stop_wave: Option<usize>) -> bool {
        let Some(report) = &slot.report else { return false };
        let incomplete = matches!(report.outcome, Outcome::Failed { .. } | Outcome::Stopped);
        let moved = report.final_version.is_some() && report.final_version != report.start_version;
        if !moved {
            return false;
        }
        match self.policy.rollback {
            RollbackPolicy::None => false,
            RollbackPolicy::Failed => incomplete,
            RollbackPolicy::Wave => incomplete || (stop_wave == Some(slot.wave) && self.reason.is_failure()),
            RollbackPolicy::Run => incomplete || self.reason.is_failure(),
        }
    }

    async fn rollback(&mut self, stop_wave: Option<usize>) {
        if !matches!(self.action, Action::Migrate(Target::Up { .. })) {
            return;
        }
        let chosen: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.wants_rollback(&self.slots[*i], stop_wave))
            .collect();
        if chosen.is_empty() {
            return;
        }
        self.events.emit(Event::RollbackStarted { tenants: chosen.len() });
        let never = AtomicBool::new(false);
        let tenants: Vec<&Tenant> = self.slots.iter().map(|s| s.tenant).collect();
        let caps = host_caps(self.ctx, &tenants);
        let ctx = self.ctx;
        let events = self.events;
        let never = &never;
        let work: Vec<(usize, &Tenant, Version, usize)> = chosen
            .iter()
            .map(|&i| {
                let start = self.slots[i]
                    .report
                    .as_ref()
                    .and_then(|r| r.start_version)
                    .unwrap_or(Version::ZERO);
                (i, self.slots[i].tenant, start, self.slots[i].wave)
            })
            .collect();
        let starts: HashMap<usize, Version> = work.iter().map(|(i, _, start, _)| (*i, *start)).collect();
        let mut stream = futures::stream::iter(work)
            .map(|(i, t, start, wave)| {
                let cap = caps[&t.server_key()].clone();
                async move {
                    let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                    let action = Action::Migrate(Target::Down { to: start });
                    let quiet = events.retries_only();
                    let job = Job {
                        set: ctx.set,
                        action,
                        per_tenant_tx: false,
                        retry: ctx.retry,
                        run_id: &ctx.run_id,
                        wave,
                        events: &quiet,
                        stop: never,
                        progress: None,
                    };
                    let report = tenant::run(t, &ctx.connector, job).await;
                    let error = match &report.outcome {
                        Outcome::Succeeded => None,
                        Outcome::Failed { error, .. } => Some(error.to_string()),
                        Outcome::Skipped { reason } => Some(reason.message()),
                        Outcome::NotStarted | Outcome::Stopped => Some("did not run".to_owned()),
                    };
                    events.emit(Event::TenantRolledBack {
                        tenant: t.id.clone(),
                        wave,
                        from: report.start_version,
                        to: report.final_version,
                        error,
                    });
                    (i, report)
                }
            })
            .buffer_unordered(self.ctx.concurrency.max(1));
        let mut abandoned = false;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some((i, report)) => self.slots[i].rollback = Some(report),
                    None => break,
                },
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        abandoned = true;
                        break;
                    }
                }
            }
        }
        drop(stream);
        if !abandoned {
            return;
        }
        self.escalate(StopReason::Abandoned);
        let cut: Vec<usize> = chosen
            .into_iter()
            .filter(|&i| self.slots[i].rollback.is_none())
            .collect();
        let tenants: Vec<&Tenant> = cut.iter().map(|&i| self.slots[i].tenant).collect();
        let settled = settled_history(self.ctx, &tenants, self.within(AFTER_ABANDON)).await;
        for (i, read) in cut.into_iter().zip(settled) {
            let action = Action::Migrate(Target::Down { to: starts[&i] });
            let report = abandoned_report(self.slots[i].tenant, self.ctx.set, action, read, None);
            if report.final_version.is_none() {
                // Unknown, not where the run left it before the rollback began.
                if let Some(r) = self.slots[i].report.as_mut() {
                    r.final_version = None;
                }
            }
            self.events.emit(Event::TenantRolledBack {
                tenant: report.id.clone(),
                wave: self.slots[i].wave,
                from: None,
                to: report.final_version,
                error: match &report.outcome {
                    Outcome::Failed { error, .. } => Some(error.to_string()),
                    _ => None,
                },
            });
            self.slots[i].rollback = Some(report);
        }
    }

    /// Reads the version of every tenant the run never reached, so the report says where
    /// each one really is. A second interrupt while it reads, or the time after an abandon
    /// running out, leaves those versions unknown.
    async fn read_untouched(&mut self) {
        let untouched: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .report
                    .as_ref()
                    .is_some_and(|r| matches!(r.outcome, Outcome::NotStarted) && r.final_version.is_none())
            })
            .collect();
        if untouched.is_empty() {
            return;
        }
        let tenants: Vec<&Tenant> = untouched.iter().map(|&i| self.slots[i].tenant).collect();
        let reading = inspect_all(self.ctx, &tenants);
        let read = if self.reason == StopReason::Abandoned {
            // The run's end is recorded after this read: it keeps its share of the time.
            let end = self.until(AFTER_ABANDON);
            let end = self.last_word.map_or(end, |last| end.min(last - END_SHARE));
            tokio::time::timeout_at(end, reading).await.ok()
        } else {
            self.interruptible(reading).await
        };
        let Some(read) = read else {
            for i in untouched {
                self.slots[i].unread =
                    Some("never started; its version was not read before the run had to end (unknown)".into());
            }
            return;
        };
        for (i, (_, rows)) in untouched.into_iter().zip(read) {
            match (self.slots[i].report.as_mut(), rows) {
                (Some(report), Ok(rows)) => {
                    let v = crate::plan::tenant::version_of(&rows);
                    report.start_version = Some(v);
                    report.final_version = Some(v);
                }
                (_, Err(e)) => self.slots[i].unread = Some(format!("never started; its version is unknown: {e}")),
                (None, Ok(_)) => {}
            }
        }
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

    fn finish(self, started: Instant, waves: &[Wave<'_>], command: &str) -> RunReport {
        let tenants: Vec<FinalTenant> = self.slots.iter().map(final_tenant).collect();
        let summary = summarize(&tenants, started.elapsed());
        let reason = summary.settle(self.reason);
        let waves = waves
            .iter()
            .map(|w| {
                let mut counts = std::collections::BTreeMap::new();
                for t in tenants.iter().filter(|t| t.wave == w.number) {
                    *counts.entry(t.status.name().to_owned()).or_insert(0) += 1;
                }
                WaveReport {
                    wave: w.number,
                    canary: w.canary,
                    tenants: w.tenants.len(),
                    counts,
                }
            })
            .collect();
        RunReport {
            run_id: self.ctx.run_id.clone(),
            command: command.to_owned(),
            stop_reason: reason,
            waves,
            tenants,
            summary,
        }
    }
}

/// Tenants a survey shows at the target already, with their (empty) reports: they need
/// no session at all. Only for `up` and `down` to a version; anything else, and any
/// tenant the survey does not cover, takes the ordinary path.
async fn already_at_target(
    ctx: &RunContext<'_>,
    action: Action,
    tenants: &[(usize, &Tenant, usize)],
) -> HashMap<usize, TenantReport> {
    let Action::Migrate(target @ (Target::Up { .. } | Target::Down { .. })) = action else {
        return HashMap::new();
    };
    let refs: Vec<&Tenant> = tenants.iter().map(|(_, t, _)| *t).collect();
    let mut surveyed = ctx.connector.survey(&refs).await;
    let mut out = HashMap::new();
    for (i, t, _) in tenants {
        let Some(rows) = surveyed.remove(&t.id) else { continue };
        if let Ok(p) = crate::plan::tenant::plan(ctx.set, &rows, target) {
            if p.steps.is_empty() {
                let report = TenantReport {
                    id: t.id.clone(),
                    outcome: Outcome::Succeeded,
                    start_version: Some(p.from),
                    final_version: Some(p.to),
                    steps: vec![],
                };
                out.insert(*i, report);
            }
        }
    }
    out
}

/// Resolves once the run is stopping (checked every 50 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
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
        id: slot.tenant.id.to_string(),
        wave: slot.wave,
        status: Status::Succeeded,
        start_version: report.start_version,
        final_version: report.final_version,
        dirty: dirty_at(&report.outcome),
        failed_migration: None,
        during: None,
        error: None,
        error_code: None,
        error_number: None,
        rollback: None,
        rollback_error: None,
        migrations_run: report.steps.len(),
        refusal: None,
    };
    out.status = match &report.outcome {
        Outcome::Succeeded => Status::Succeeded,
        Outcome::Failed {
            version, during, error, ..
        } => {
            out.failed_migration = *version;
            out.during = Some(*during).filter(|d| *d != Phase::Migrating);
            out.error = Some(error.to_string());
            out.error_code = error.code.clone();
            out.error_number = error.number;
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
    };
    if let Some(rb) = &slot.rollback {
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
    out
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

/// Each tenant's history once the sessions abandoned on it have ended, read under the
/// tenant's lock (the abandoned session holds it until the database has finished with
/// it: committed or rolled back). All at once, each within `within`; an `Err` when it
/// could not be read in time.
pub(crate) async fn settled_history(
    ctx: &RunContext<'_>,
    tenants: &[&Tenant],
    within: Duration,
) -> Vec<Result<Vec<Applied>, String>> {
    if tenants.is_empty() {
        return Vec::new();
    }
    let deadline = tokio::time::Instant::now() + within;
    let limits = Limits {
        connect_timeout: within,
        lock_wait: within,
        lock_budget: within,
        ..ctx.connector.limits.clone()
    };
    // Pools of its own: the run's may hold connections that no longer answer.
    let connector = Connector::new(ctx.fleet, limits);
    let reads = tenants.iter().map(|t| {
        let connector = &connector;
        async move {
            let read = tokio::time::timeout_at(deadline, async {
                let mut session = connector.open(t, Access::Write).await?;
                let rows = session.applied().await;
                Ok::<_, DbError>((session, rows))
            })
            .await;
            match read {
                Ok(Ok((session, rows))) => {
                    let _ = tokio::time::timeout_at(deadline, session.release()).await;
                    rows.map_err(|e| e.to_string())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {within:?}")),
            }
        }
    });
    let out = futures::future::join_all(reads).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), connector.close()).await;
    out
}

/// What a tenant abandoned in flight reports: where its history says it is once its
/// session ended, or that this is unknown. Never a guess. `known`: what its task noted
/// before it was dropped (where it started, where its plan went, the steps it completed).
pub(crate) fn abandoned_report(
    t: &Tenant,
    set: &MigrationSet,
    action: Action,
    read: Result<Vec<Applied>, String>,
    known: Option<tenant::Progress>,
) -> TenantReport {
    let known = known.unwrap_or_default();
    const WHY: &str = "abandoned by a second interrupt (Ctrl-C or SIGTERM)";
    let failed = |version, message: String, dirty| Outcome::Failed {
        version,
        during: Phase::Migrating,
        error: DbError::new(crate::model::db_error::ErrorKind::Sql, "migrating", message),
        dirty,
    };
    let (outcome, final_version) = match read {
        Err(e) => (
            failed(
                None,
                format!(
                    "{WHY}; its version is unknown: its history could not be read once its session ended ({e}); \
                     `fleetmig status` reads it"
                ),
                false,
            ),
            None,
        ),
        Ok(rows) => {
            let now = crate::plan::tenant::version_of(&rows);
            let target = match action {
                Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => Some(to),
                Action::Migrate(Target::DownSteps { .. }) => known.to,
                Action::Checksums(_) => Some(now),
            };
            let outcome = if let Some(row) = rows.iter().find(|r| r.dirty) {
                failed(
                    Some(row.version),
                    format!(
                        "{WHY} during migration {}, which runs outside a transaction: its history marks it dirty",
                        row.version
                    ),
                    true,
                )
            } else if target == Some(now) {
                Outcome::Succeeded
            } else {
                // The migration it was in, or about to start: the next one from where it is.
                let next = match action {
                    Action::Migrate(Target::Up { .. }) => set.iter().map(|m| m.version).find(|m| *m > now),
                    Action::Migrate(_) => Some(now),
                    Action::Stamp(_) | Action::Checksums(_) => None,
                };
                failed(
                    next,
                    format!("{WHY}; read once its session ended, its history shows version {now}"),
                    false,
                )
            };
            (outcome, Some(now))
        }
    };
    TenantReport {
        id: t.id.clone(),
        outcome,
        start_version: known.start,
        final_version,
        steps: known.steps,
    }
}

async fn check(ctx: &RunContext<'_>, t: &Tenant, sql: &str) -> Result<bool, DbError> {
    let mut session = ctx.connector.open(t, Access::Read).await?;
    let result = session.check(sql).await;
    session.release().await;
    result
}

fn gate_finished(events: &Events, wave: usize, gate: Gate, passed: bool, detail: Option<String>, began: Instant) {
    events.emit(Event::GateFinished {
        wave,
        gate,
        passed,
        detail,
        elapsed_ms: began.elapsed().as_millis() as u64,
    });
}

/// What the operator is shown of the wave they are asked to start.
fn next_wave(wave: &Wave<'_>) -> NextWave {
    let hosts: HashSet<String> = wave
        .tenants
        .iter()
        .filter(|t| t.engine != crate::model::fleet::Engine::Sqlite)
        .map(|t| t.server_key())
        .collect();
    let engines: std::collections::BTreeSet<String> = wave.tenants.iter().map(|t| t.engine.to_string()).collect();
    NextWave {
        next_wave: wave.number,
        canary: wave.canary,
        tenants: wave.tenants.len(),
        first_tenants: wave
            .tenants
            .iter()
            .take(NextWave::FIRST)
            .map(|t| t.id.clone())
            .collect(),
        hosts: hosts.len(),
        engines: engines.into_iter().collect(),
    }
}

/// Runs the `--check` query once on `t` before any wave, so that a query that cannot run
/// stops the run before anything changes, not after the canaries. Its answer does not
/// matter (nothing has been migrated yet). Not an error here: a tenant that cannot be
/// reached (the run's own rules deal with it), and a query naming a table, column or
/// function that does not exist, which a pending migration may create; nor a query still
/// running after [`REHEARSAL`] (a database refuses a query it cannot parse at once).
/// On PostgreSQL the query also runs under a `statement_timeout` of [`REHEARSAL`], so one
/// given up on does not run on in the server (nor hold up the pooled session it ran in:
/// the rehearsal has a pool of its own).
pub async fn rehearse_check(ctx: &RunContext<'_>, t: &Tenant, sql: &str) -> Result<(), DbError> {
    let mut limits = ctx.connector.limits.clone();
    if limits.statement_timeout.is_zero() || limits.statement_timeout > REHEARSAL {
        limits.statement_timeout = REHEARSAL;
    }
    let connector = Connector::new(ctx.fleet, limits);
    let rehearsal = async {
        let Ok(mut session) = connector.open(t, Access::Read).await else {
            return Ok(());
        };
        let result = session.check(sql).await;
        session.release().await;
        match result {
            // 57014: cancelled by the statement timeout, a query too slow, not one that cannot run.
            Err(e) if e.kind == ErrorKind::Sql && !e.is_missing_object() && e.code.as_deref() != Some("57014") => {
                Err(e)
            }
            _ => Ok(()),
        }
    };
    tokio::time::timeout(REHEARSAL, rehearsal).await.unwrap_or(Ok(()))
}

/// How long the `--check` query is given before wave 1 (see [`rehearse_check`]).
pub const REHEARSAL: Duration = Duration::from_secs(2);

/// True when `--confirm` can ask someone: standard input is a terminal.
pub fn can_confirm() -> bool {
    std::io::stdin().is_terminal()
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
    pub action: Action,
    pub policy: &'r Policy,
    /// The command's name, as the events and the report give it.
    pub command: &'r str,
    pub events: &'r Events,
    pub source: Source<'r>,
}

/// Runs `spec.action` over the run's tenants under `spec.policy`, and returns the run's
/// report (also announced as the last event).
pub async fn dispatch(spec: RunSpec<'_>, interrupts: Interrupts) -> RunReport {
    match spec.source {
        Source::Waves => {
            dispatch_waves(
                spec.ctx,
                spec.waves,
                spec.action,
                spec.policy,
                spec.command,
                spec.events,
                interrupts,
            )
            .await
        }
        Source::Shared(shared) => {
            crate::exec::join::cooperate(
                spec.ctx,
                spec.waves,
                spec.action,
                spec.policy,
                spec.command,
                spec.events,
                interrupts,
                shared,
            )
            .await
        }
    }
}

async fn dispatch_waves(
    ctx: &RunContext<'_>,
    waves: &[Wave<'_>],
    action: Action,
    policy: &Policy,
    command: &str,
    events: &Events,
    interrupts: mpsc::UnboundedReceiver<()>,
) -> RunReport {
    let started = Instant::now();
    let slots: Vec<Slot> = waves
        .iter()
        .flat_map(|w| {
            w.tenants.iter().map(move |t| Slot {
                tenant: t,
                wave: w.number,
                canary: w.canary,
                report: None,
                rollback: None,
                unread: None,
                unannounced: false,
            })
        })
        .collect();
    let target = match action {
        Action::Migrate(Target::Up { to }) | Action::Migrate(Target::Down { to }) | Action::Stamp(to) => Some(to),
        Action::Migrate(Target::DownSteps { .. }) | Action::Checksums(_) => None,
    };
    events.emit(Event::RunStarted {
        run_id: ctx.run_id.clone(),
        command: command.to_owned(),
        target,
        tenants: slots.len(),
    });
    let limiter = policy.rate.map(|r| {
        Arc::new(RateLimiter::direct(
            Quota::per_second(r.per_second).allow_burst(r.burst),
        ))
    });
    let mut d = Dispatcher {
        ctx,
        policy,
        action,
        events,
        slots,
        stop: Arc::default(),
        reason: StopReason::Completed,
        failed: 0,
        skipped: 0,
        interrupts,
        limiter,
        last_word: None,
    };
    let mut offset = 0;
    let mut stop_wave = None;
    for (k, wave) in waves.iter().enumerate() {
        let range = offset..offset + wave.tenants.len();
        offset = range.end;
        if d.reason.is_early() {
            for i in range {
                d.slots[i].report = Some(not_started(d.slots[i].tenant));
                d.slots[i].unannounced = true;
            }
            continue;
        }
        events.emit(Event::WaveStarted {
            wave: wave.number,
            canary: wave.canary,
            tenants: wave.tenants.len(),
        });
        let wave_began = Instant::now();
        let alive = d.run_wave(range.clone()).await;
        let reports: Vec<TenantReport> = range.clone().filter_map(|i| d.slots[i].report.clone()).collect();
        events.emit(Event::WaveFinished {
            wave: wave.number,
            summary: Summary::of(&reports, wave_began.elapsed()),
        });
        if !alive || d.reason.is_early() {
            stop_wave.get_or_insert(wave.number);
            continue;
        }
        d.gates(wave, range, waves.get(k + 1)).await;
        if d.reason.is_early() {
            stop_wave.get_or_insert(wave.number);
        }
    }
    if d.reason != StopReason::Abandoned {
        d.rollback(stop_wave).await;
    }
    d.read_untouched().await;
    for slot in d.slots.iter().filter(|s| s.unannounced) {
        if let Some(report) = &slot.report {
            events.emit(Event::TenantFinished {
                wave: slot.wave,
                report: report.clone(),
            });
        }
    }
    let last_word = d.until(AFTER_ABANDON);
    // Still listened to while the run's end is recorded: a ledger that does not answer must
    // not keep a second interrupt from ending the run with its report.
    let mut interrupts = std::mem::replace(&mut d.interrupts, mpsc::unbounded_channel().1);
    let mut report = d.finish(started, waves, command);
    if let Some(ledger) = &ctx.ledger {
        if report.stop_reason == StopReason::Abandoned {
            match tokio::time::timeout_at(last_word, ledger.finish_run(&report)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => missed_end(&mut report, &e, events),
                // Not only a log line: the operator is told on stderr that the report is the
                // run's only full record.
                Err(_) => ledger.gave_up_on_end(format!(
                    "it did not record the run's end within {LAST_WORD:?} of the second interrupt"
                )),
            }
        } else {
            let mut presses = usize::from(report.stop_reason >= StopReason::Interrupted);
            let recorded = {
                let recording = ledger.finish_run(&report);
                tokio::pin!(recording);
                loop {
                    tokio::select! {
                        done = &mut recording => break Some(done),
                        Some(()) = interrupts.recv() => {
                            presses += 1;
                            if presses >= 2 {
                                // A healthy ledger takes the end in milliseconds: it gets its
                                // last second; one that does not answer is given up on then.
                                break tokio::time::timeout(END_SHARE, &mut recording).await.ok();
                            }
                        }
                    }
                }
            };
            match recorded {
                Some(Ok(())) => {}
                Some(Err(e)) => missed_end(&mut report, &e, events),
                None => ledger.gave_up_on_end(format!(
                    "it had not recorded the run's end {END_SHARE:?} after a second interrupt"
                )),
            }
        }
    }
    announce(&report, events);
    report
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

/// The run's last event, once its report is final.
pub(crate) fn announce(report: &RunReport, events: &Events) {
    events.emit(Event::RunFinished {
        summary: report.summary.clone(),
        stop_reason: report.stop_reason.clone(),
    });
}

/// The end of a runner's part in a shared run (see `join`): the tenants it ran, in the
/// order it ran them, go through the same rollback and final report as a whole run.
/// `rollback` is false when other runners may still own these tenants' next steps.
#[expect(
    clippy::too_many_arguments,
    reason = "the dispatcher's own state, handed over once by its one caller"
)]
pub(crate) async fn conclude<'a>(
    ctx: &RunContext<'a>,
    waves: &[Wave<'_>],
    action: Action,
    policy: &Policy,
    command: &str,
    events: &Events,
    interrupts: mpsc::UnboundedReceiver<()>,
    started: Instant,
    ran: Vec<(&'a Tenant, usize, TenantReport)>,
    reason: StopReason,
    stop_wave: Option<usize>,
    rollback: bool,
) -> RunReport {
    let slots = ran
        .into_iter()
        .map(|(tenant, wave, report)| Slot {
            tenant,
            wave,
            canary: waves.iter().any(|w| w.number == wave && w.canary),
            report: Some(report),
            rollback: None,
            unread: None,
            unannounced: false,
        })
        .collect();
    let mut d = Dispatcher {
        ctx,
        policy,
        action,
        events,
        slots,
        stop: Arc::default(),
        reason,
        failed: 0,
        skipped: 0,
        interrupts,
        limiter: None,
        last_word: None,
    };
    if rollback && d.reason != StopReason::Abandoned {
        d.rollback(stop_wave).await;
    }
    d.finish(started, waves, command)
}
