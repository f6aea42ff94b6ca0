//! The shared-run source: tenants as this runner claims them from the run's ledger (see
//! `exec::join` for the ledger's side). The ledger owns the run's state: which tenant is
//! whose, which wave is open, the run-wide failure count and the stop marker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::Jitter;
use tokio::sync::Semaphore;

use super::{Dispatcher, Slot, Starter, Watch};
use crate::driver::ledger::LedgerError;
use crate::exec::breaker::{Admit, Breakers};
use crate::exec::events::Event;
use crate::exec::run::host_caps;
use crate::exec::tenant;
use crate::exec::work::Work;
use crate::model::db_error::DbError;
use crate::model::fleet::Tenant;
use crate::model::policy::StopReason;
use crate::model::run::{Outcome, RunReport, SkipReason, Summary, TenantReport};

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

/// A claimed tenant's task: its slot, its report, and what its host's breaker made of it.
type Running<'s> = Pin<Box<dyn Future<Output = (usize, TenantReport, Ran)> + 's>>;

/// How a claimed tenant ended, for its host's breaker.
enum Ran {
    /// Skipped untried, its host cut off: not an outcome the breaker learns from.
    CutOff,
    /// Tried; `counted`: its failed connection attempts were each counted already.
    Tried { counted: bool },
}

/// The claim loop's own state.
struct Claiming<'s, W> {
    starter: Starter<'s, W>,
    /// The run's tenants by name: their wave's index in the run, and their own in it.
    by_id: HashMap<&'s str, (usize, usize)>,
    caps: HashMap<String, Arc<Semaphore>>,
    in_flight: FuturesUnordered<Running<'s>>,
    /// Slots in flight: abandoned, they are read once their sessions ended.
    flying: Vec<usize>,
    /// The wave this runner last claimed in, and when it entered it.
    wave: Option<(usize, Instant)>,
    /// The ledger has no tenant left, pending or in flight.
    done: bool,
}

/// What the claim loop does next.
enum Next {
    Go,
    /// A second interrupt: abandon the tenants in flight.
    Abandon,
}

impl<'r, W: Work> Dispatcher<'r, W> {
    /// Claims tenants until the run is done or stopped, running each under its host's cap.
    /// Returns the wave this runner stopped in, when the run stopped early.
    pub(super) async fn claims<C: Claims>(&mut self, claims: &C) -> Option<usize> {
        let waves = self.waves;
        let by_id: HashMap<&str, (usize, usize)> = (waves.iter().enumerate())
            .flat_map(|(k, w)| w.tenants.iter().enumerate().map(move |(n, t)| (t.id.as_str(), (k, n))))
            .collect();
        let all: Vec<&Tenant> = waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
        let heartbeat = claims.keep_alive();
        let stop = self.stop.clone();
        // What each task in flight has done, for its report should it be abandoned.
        let progress = tenant::Tracker::default();
        let mut c = Claiming {
            starter: self.starter(&stop, &progress),
            caps: host_caps(self.ctx, &all),
            by_id,
            in_flight: FuturesUnordered::new(),
            flying: Vec::new(),
            wave: None,
            done: false,
        };
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let abandoned = loop {
            if let Next::Abandon = self.claim_more(claims, &mut c).await {
                break true;
            }
            if c.in_flight.is_empty() && (c.done || c.starter.stopping()) {
                break false;
            }
            if let Next::Abandon = self.next_event(claims, &mut c, &mut tick).await {
                break true;
            }
        };
        // Abandoned tenants stay claimed; once the heartbeat stops their leases run out and
        // another runner takes them over from their real versions.
        let Claiming {
            flying,
            wave,
            in_flight,
            ..
        } = c;
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

    /// Claims tenants while this runner has room for them and the run goes on.
    async fn claim_more<'s, C: Claims>(&mut self, claims: &C, c: &mut Claiming<'s, W>) -> Next
    where
        'r: 's,
    {
        while !c.done && !c.starter.stopping() && c.in_flight.len() < self.ctx.concurrency.max(1) {
            // A closed window claims nothing: the lease poll comes back here to look again.
            let wave = c.wave.map_or(1, |(w, _)| w);
            if self
                .policy
                .window
                .as_ref()
                .is_some_and(|w| w.closed_now(self.events, wave))
            {
                break;
            }
            if let Some(limiter) = &self.limiter {
                limiter
                    .until_ready_with_jitter(Jitter::up_to(Duration::from_millis(20)))
                    .await;
            }
            // A ledger that does not answer must not keep interrupts from being heard.
            let claimed = tokio::select! {
                claimed = claims.claim() => claimed,
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        return Next::Abandon;
                    }
                    break;
                }
            };
            match claimed {
                Ok(Claimed::Tenant { id, wave, from }) => {
                    if let Some(from) = from {
                        tracing::warn!("tenant `{id}`: the lease of `{from}` ran out; taking it over");
                    }
                    self.start_claimed(c, &id, wave);
                }
                Ok(Claimed::Wait) => break,
                Ok(Claimed::Done) => c.done = true,
                Ok(Claimed::Stopped(reason)) => self.escalate(reason),
                Err(e) => {
                    self.ledger_lost(&e);
                    break;
                }
            }
        }
        Next::Go
    }

    /// Starts the tenant this runner just claimed, under its host's cap.
    fn start_claimed<'s>(&mut self, c: &mut Claiming<'s, W>, id: &str, wave: usize)
    where
        'r: 's,
    {
        let (k, n) = *c
            .by_id
            .get(id)
            .expect("`up --join` checks every tenant of the run against the fleet file");
        let w = &self.waves[k];
        let t = w.tenants[n];
        self.enter_wave(&mut c.wave, wave);
        let i = self.slots.len();
        self.slots.push(Slot {
            wave,
            ..Slot::new(t, w)
        });
        c.flying.push(i);
        let cap = c.caps[&t.server_key()].clone();
        let starter = c.starter;
        let breakers = self.breakers.clone();
        c.in_flight.push(Box::pin(async move {
            let _permit = cap.acquire_owned().await.expect("host semaphores are never closed");
            // This runner's breaker, on the tenants it claims: a host it cut off costs it
            // no more connect timeouts (its peers keep their own).
            if let Some(error) = admitted(&breakers, &t.server_key()).await {
                return (i, untried(t, error), Ran::CutOff);
            }
            starter.events.emit(Event::TenantStarted {
                tenant: t.id.clone(),
                wave,
            });
            let watch = Watch::new(t, None, &breakers, starter.events);
            let report = starter.run(t, wave, Some(&watch)).await;
            (
                i,
                report,
                Ran::Tried {
                    counted: watch.counted(),
                },
            )
        }));
    }

    /// Waits for a tenant to end, the next look at the run's stop marker, or an interrupt.
    async fn next_event<C: Claims>(
        &mut self,
        claims: &C,
        c: &mut Claiming<'_, W>,
        tick: &mut tokio::time::Interval,
    ) -> Next {
        tokio::select! {
            Some((i, report, ran)) = c.in_flight.next() => {
                c.flying.retain(|f| *f != i);
                if let Ran::Tried { counted } = ran {
                    self.observe_host(i, &report, counted);
                }
                if self.claimed_finished(claims, i, report).await {
                    return Next::Abandon;
                }
            }
            _ = tick.tick() => {
                if !c.starter.stopping() {
                    match claims.stop_marker().await {
                        Ok(Some(reason)) => self.escalate(reason),
                        Ok(None) => {}
                        Err(e) => self.ledger_lost(&e),
                    }
                }
            }
            Some(()) = self.interrupts.recv() => {
                if self.interrupted() {
                    return Next::Abandon;
                }
            }
        }
        Next::Go
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

/// Whether a claimed tenant of `host` may start: `Some` error when this runner cut the
/// host off. While a probe of the host is in flight it waits for the probe's outcome.
async fn admitted(breakers: &Breakers, host: &str) -> Option<DbError> {
    loop {
        match breakers.admit(host, true) {
            Admit::Go | Admit::Probe => return None,
            Admit::Skip(error) => return Some(error),
            Admit::Wait => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The report of a tenant skipped untried, its host cut off.
pub(super) fn untried(t: &Tenant, error: DbError) -> TenantReport {
    TenantReport {
        id: t.id.clone(),
        outcome: Outcome::Skipped {
            reason: SkipReason::Unreachable { error },
        },
        start_version: None,
        final_version: None,
        steps: vec![],
    }
}
