//! The shared-run source: tenants as this runner claims them from the run's ledger (see
//! `exec::join` for the ledger's side). The ledger owns the run's state: which tenant is
//! whose, which wave is open, the run-wide failure count and the stop marker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::Jitter;

use super::{Dispatcher, Slot};
use crate::driver::ledger::LedgerError;
use crate::exec::events::Event;
use crate::exec::run::host_caps;
use crate::exec::tenant;
use crate::exec::work::Work;
use crate::model::fleet::Tenant;
use crate::model::policy::StopReason;
use crate::model::run::{Outcome, RunReport, Summary, TenantReport};
use crate::plan::waves::Wave;

pub(crate) use crate::driver::ledger::Claimed;

/// How often an idle runner looks again for work and for the run's stop marker.
const POLL: Duration = Duration::from_millis(200);

/// A shared run's ledger, as the dispatcher uses it.
pub(crate) trait Claims: Sync {
    /// Tenants in the whole run.
    fn total(&self) -> usize;
    /// Claims the next tenant of the open wave for this runner.
    async fn claim(&self) -> Result<Claimed, LedgerError>;
    /// Records a claimed tenant's outcome (`release`: it goes back to the pool untouched),
    /// and returns the run's stop reason when the run-wide limits are now reached.
    async fn finish(&self, report: &TenantReport, release: bool) -> Result<Option<StopReason>, LedgerError>;
    /// The run's stop marker, when a runner set it.
    async fn stop_marker(&self) -> Result<Option<StopReason>, LedgerError>;
    /// Keeps this runner's claims alive until the task returned is aborted.
    fn keep_alive(&self) -> Option<tokio::task::JoinHandle<()>>;
    /// Records this runner's end; the runner that ends last writes the whole run's report.
    /// `own`: why this runner stopped.
    async fn conclude(&self, report: &RunReport, own: &StopReason) -> Result<(), LedgerError>;
    /// The run's end could not be recorded in time.
    fn gave_up_on_end(&self, why: String);
}

impl<'r, W: Work> Dispatcher<'r, W> {
    /// Claims tenants until the run is done or stopped, running each under its host's cap.
    /// Returns the wave this runner stopped in, when the run stopped early.
    pub(super) async fn claims<C: Claims>(&mut self, claims: &C) -> Option<usize> {
        let waves = self.waves;
        let by_id: HashMap<&str, (&'r Tenant, &'r Wave<'r>)> = waves
            .iter()
            .flat_map(|w| w.tenants.iter().map(move |t| (t.id.as_str(), (*t, w))))
            .collect();
        let all: Vec<&Tenant> = by_id.values().map(|(t, _)| *t).collect();
        let caps = host_caps(self.ctx, &all);
        let heartbeat = claims.keep_alive();
        let stop = self.stop.clone();
        // What each task in flight has done, for its report should it be abandoned.
        let progress = tenant::Tracker::default();
        let starter = self.starter(&stop, &progress);
        let limiter = self.limiter.clone();
        let mut in_flight = FuturesUnordered::new();
        // Slots in flight: abandoned, they are read once their sessions ended.
        let mut flying: Vec<usize> = Vec::new();
        let mut wave: Option<(usize, Instant)> = None;
        let mut done = false;
        let mut abandoned = false;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'claiming: loop {
            while !done && !starter.stopping() && in_flight.len() < self.ctx.concurrency.max(1) {
                if let Some(limiter) = &limiter {
                    limiter
                        .until_ready_with_jitter(Jitter::up_to(Duration::from_millis(20)))
                        .await;
                }
                // A ledger that does not answer must not keep interrupts from being heard.
                let claimed = tokio::select! {
                    claimed = claims.claim() => claimed,
                    Some(()) = self.interrupts.recv() => {
                        if self.interrupted() {
                            abandoned = true;
                            break 'claiming;
                        }
                        break;
                    }
                };
                match claimed {
                    Ok(Claimed::Tenant { id, wave: number, from }) => {
                        let (t, w) = *by_id
                            .get(id.as_str())
                            .expect("`up --join` checks every tenant of the run against the fleet file");
                        if let Some(from) = from {
                            tracing::warn!("tenant `{id}`: the lease of `{from}` ran out; taking it over");
                        }
                        self.enter_wave(&mut wave, number);
                        let i = self.slots.len();
                        self.slots.push(Slot {
                            wave: number,
                            ..Slot::new(t, w)
                        });
                        flying.push(i);
                        let cap = caps[&t.server_key()].clone();
                        in_flight.push(async move {
                            let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
                            starter.events.emit(Event::TenantStarted {
                                tenant: t.id.clone(),
                                wave: number,
                            });
                            (i, starter.run(t, number).await)
                        });
                    }
                    Ok(Claimed::Wait) => break,
                    Ok(Claimed::Done) => done = true,
                    Ok(Claimed::Stopped(reason)) => self.escalate(reason),
                    Err(e) => {
                        self.ledger_lost(&e);
                        break;
                    }
                }
            }
            if in_flight.is_empty() && (done || starter.stopping()) {
                break;
            }
            tokio::select! {
                Some((i, report)) = in_flight.next() => {
                    flying.retain(|f| *f != i);
                    if self.claimed_finished(claims, i, report).await {
                        abandoned = true;
                        break;
                    }
                }
                _ = tick.tick() => {
                    if !starter.stopping() {
                        match claims.stop_marker().await {
                            Ok(Some(reason)) => self.escalate(reason),
                            Ok(None) => {}
                            Err(e) => self.ledger_lost(&e),
                        }
                    }
                }
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        abandoned = true;
                        break;
                    }
                }
            }
        }
        // Abandoned tenants stay claimed; once the heartbeat stops their leases run out and
        // another runner takes them over from their real versions.
        drop(in_flight);
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        if abandoned {
            self.escalate(StopReason::Abandoned);
            // Where each abandoned tenant really is goes in this runner's report; the ledger
            // keeps them claimed, for the runner that takes them over to read again.
            self.abandon_in_flight(flying, &progress).await;
        }
        let (last, began) = wave?;
        self.wave_finished(last, began);
        self.reason.is_early().then_some(last)
    }

    /// Announces the wave of the tenant this runner just claimed, ending the one before.
    fn enter_wave(&self, current: &mut Option<(usize, Instant)>, wave: usize) {
        if current.is_some_and(|(w, _)| w == wave) {
            return;
        }
        if let Some((w, began)) = *current {
            self.wave_finished(w, began);
        }
        *current = Some((wave, Instant::now()));
        let (canary, tenants) = self
            .waves
            .iter()
            .find(|w| w.number == wave)
            .map_or((false, 0), |w| (w.canary, w.tenants.len()));
        self.events.emit(Event::WaveStarted { wave, canary, tenants });
    }

    /// The end of this runner's part in `wave`: the tenants it ran there.
    fn wave_finished(&self, wave: usize, began: Instant) {
        let reports: Vec<TenantReport> = self
            .slots
            .iter()
            .filter(|s| s.wave == wave)
            .filter_map(|s| s.report.clone())
            .collect();
        self.events.emit(Event::WaveFinished {
            wave,
            summary: Summary::of(&reports, began.elapsed()),
        });
    }

    /// Writes a claimed tenant's outcome and applies the run's stop, if the run-wide
    /// limits are now reached. Listens to interrupts meanwhile: true when a second one
    /// came (the write is given up on; the tenant stays claimed until its lease runs out).
    async fn claimed_finished<C: Claims>(&mut self, claims: &C, i: usize, report: TenantReport) -> bool {
        // Stopped here by a local Ctrl-C, not by the run: the tenant goes back to the pool.
        let release =
            matches!(report.outcome, Outcome::NotStarted | Outcome::Stopped) && self.reason == StopReason::Interrupted;
        let mut abandon = false;
        let written = {
            let writing = claims.finish(&report, release);
            tokio::pin!(writing);
            loop {
                tokio::select! {
                    written = &mut writing => break Some(written),
                    Some(()) = self.interrupts.recv() => {
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
            wave: self.slots[i].wave,
            report: report.clone(),
        });
        self.record(i, report);
        abandon
    }
}
