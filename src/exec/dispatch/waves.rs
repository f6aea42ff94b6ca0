//! The local source: this runner's waves, one after another, with the gates between them.
//! Within a wave, tenants fan out under the concurrency cap, per-host caps and the rate
//! limiter, starting in fleet order.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::Jitter;

use super::{AFTER_ABANDON, Dispatcher, Starter, Watch, not_started};
use crate::driver::ledger::LedgerError;
use crate::exec::breaker::{self, Admit, Breakers};
use crate::exec::events::{Event, Events, Gate, GateStart, NextWave};
use crate::exec::run::host_limit;
use crate::exec::tenant::{self, Action, HostWatch};
use crate::exec::turns::{Turn, Turns};
use crate::exec::window::ChangeWindow;
use crate::exec::work::Work;
use crate::model::db_error::DbError;
use crate::model::fleet::{Engine, Tenant, TenantId};
use crate::model::policy::StopReason;
use crate::model::run::{GateReport, Outcome, Summary, TenantReport};
use crate::model::sets::Sets;
use crate::plan::tenant::Target;
use crate::plan::waves::Wave;

/// A tenant task's end.
struct Ended {
    slot: usize,
    report: TenantReport,
    /// A ledger write that failed.
    fault: Option<LedgerError>,
    /// When it started, for the timeline; `None` when it never did.
    started: Option<tokio::time::Instant>,
    /// Skipped untried, its host cut off: not an outcome the host's breaker learns from.
    cut_off: bool,
    /// Its failed connection attempts were each counted by its host's breaker already.
    counted: bool,
}

impl Ended {
    fn not_started(slot: usize, t: &Tenant, fault: Option<LedgerError>) -> Self {
        Ended {
            slot,
            report: not_started(t),
            fault,
            started: None,
            cut_off: false,
            counted: false,
        }
    }

    /// Skipped without being tried: its host is cut off (`error` says why). Announced here,
    /// as it never started.
    fn cut_off(slot: usize, t: &Tenant, wave: usize, error: DbError, events: &Events) -> Self {
        let report = super::claims::untried(t, error);
        events.emit(Event::TenantFinished {
            wave,
            report: report.clone(),
        });
        Ended {
            slot,
            report,
            fault: None,
            started: None,
            cut_off: true,
            counted: false,
        }
    }
}

impl<'r, W: Work> Dispatcher<'r, W> {
    /// Runs the waves in order, each followed by its gates, until the run stops. Returns
    /// the wave the run stopped in, when it stopped early.
    pub(super) async fn waves(&mut self) -> Option<usize> {
        let waves = self.waves;
        let mut offset = 0;
        let mut stop_wave = None;
        for (k, wave) in waves.iter().enumerate() {
            let range = offset..offset + wave.tenants.len();
            offset = range.end;
            if self.reason.is_early() {
                for i in range {
                    self.slots[i].report = Some(not_started(self.slots[i].tenant));
                    self.slots[i].unannounced = true;
                }
                continue;
            }
            self.events.emit(Event::WaveStarted {
                wave: wave.number,
                canary: wave.canary,
                tenants: wave.tenants.len(),
            });
            self.breakers.new_wave();
            let wave_began = Instant::now();
            let marked = tokio::time::Instant::now();
            let alive = self.run_wave(range.clone()).await;
            // Counted in place, not from a copy of every report of the wave (see `finish`).
            let reports = range.clone().filter_map(|i| self.slots[i].report.as_ref());
            let summary = Summary::of(reports, wave_began.elapsed());
            self.events.emit(Event::WaveFinished {
                wave: wave.number,
                summary,
            });
            let span = [self.ms(marked), self.ms(tokio::time::Instant::now())];
            self.wave_spans.insert(wave.number, span);
            if alive && !self.reason.is_early() {
                self.gates(wave, range, waves.get(k + 1)).await;
            }
            if self.reason.is_early() {
                stop_wave.get_or_insert(wave.number);
            }
        }
        stop_wave
    }

    /// Runs one wave; returns false when the run was abandoned.
    async fn run_wave(&mut self, range: Range<usize>) -> bool {
        let tenants: Vec<(usize, &'r Tenant, usize)> = range
            .clone()
            .map(|i| (i, self.slots[i].tenant, self.slots[i].wave))
            .collect();
        // Only a shortcut: an interrupt ends it (it may wait up to --connect-timeout on a
        // host that stopped answering), and the tenants then see the stop.
        let mut already_there = {
            let surveying = already_at_target(self.work, self.ctx.sets, self.action, &tenants);
            tokio::select! {
                found = surveying => found,
                Some(()) = self.interrupts.recv() => {
                    self.interrupted();
                    HashMap::new()
                }
            }
        };
        if already_there.len() == tenants.len() {
            self.settle_surveyed(tenants, already_there).await;
            return true;
        }
        // Every tenant waits for its turn at once; the turns let them start in fleet order
        // under the concurrency and per-host caps.
        let caps: HashMap<String, usize> = self
            .slots
            .iter()
            .map(|s| (s.tenant.server_key(), host_limit(self.ctx, s.tenant)))
            .collect();
        let mut turns = Turns::new(
            self.ctx.concurrency,
            caps,
            tenants.iter().map(|(i, t, _)| {
                let server = (!already_there.contains_key(i)).then(|| t.server_key());
                (*i, server)
            }),
        );
        if self.policy.host_failures > 0 {
            turns = turns.ramp(self.policy.host_failures as usize);
        }
        let started: Mutex<HashSet<usize>> = Mutex::default();
        let progress = tenant::Tracker::default();
        let stop = self.stop.clone();
        let breakers = self.breakers.clone();
        let task = Task {
            starter: self.starter(&stop, &progress),
            turns: &turns,
            started: &started,
            limiter: self.limiter.clone(),
            window: self.policy.window.as_ref(),
            breakers: &breakers,
        };
        let stream = futures::stream::iter(tenants)
            .map(|(i, t, wave)| task.clone().run(i, t, wave, already_there.remove(&i).map(Box::new)))
            .buffer_unordered(usize::MAX);
        let alive = self.collect(stream, &turns).await;
        if !alive {
            self.escalate(StopReason::Abandoned);
            let in_flight: Vec<usize> = {
                let started = started.lock().expect("not poisoned");
                started
                    .iter()
                    .copied()
                    .filter(|&i| self.slots[i].report.is_none())
                    .collect()
            };
            let reports = self.abandon_in_flight(in_flight, &progress).await;
            self.record_abandoned(&reports).await;
        }
        self.settle_not_started(range, &started.into_inner().expect("not poisoned"));
        alive
    }

    /// The wave's tenants that did not start: `not_started`, and unannounced unless they
    /// began waiting for their start.
    fn settle_not_started(&mut self, range: Range<usize>, started: &HashSet<usize>) {
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
    }

    /// A wave whose every tenant the survey found at its target (a no-op run): each is
    /// announced and recorded in fleet order, as the turns would have started them, with
    /// no turn and no future per tenant, which at 100,000 tenants were most of the run's
    /// memory. It yields now and then so that the reporters keep up.
    async fn settle_surveyed(
        &mut self,
        tenants: Vec<(usize, &'r Tenant, usize)>,
        mut reports: HashMap<usize, TenantReport>,
    ) {
        for (n, (i, t, wave)) in tenants.into_iter().enumerate() {
            let Some(report) = reports.remove(&i) else { continue };
            let began = tokio::time::Instant::now();
            announce_surveyed(t, wave, &report, self.events);
            self.record(i, report);
            self.timed(i, Some(began));
            if n % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Records the wave's tenants as they end, listening to interrupts; false when a
    /// second one abandoned the tenants still in flight.
    async fn collect(&mut self, stream: impl futures::Stream<Item = Ended>, turns: &Turns) -> bool {
        tokio::pin!(stream);
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(ended) => {
                        if let Some(e) = ended.fault {
                            self.ledger_lost(&e);
                        }
                        if !ended.cut_off {
                            if let Some(host) = self.observe_host(ended.slot, &ended.report, ended.counted) {
                                turns.unproven(&host);
                            }
                        }
                        self.record(ended.slot, ended.report);
                        self.timed(ended.slot, ended.started);
                    }
                    None => return true,
                },
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted() {
                        return false;
                    }
                }
            }
        }
    }

    /// The ledger learns where the abandoned tenants ended, within its share of the time.
    async fn record_abandoned(&self, reports: &[TenantReport]) {
        let Some(ledger) = &self.ctx.ledger else { return };
        let run_id = &self.ctx.run_id;
        let writes = async {
            for report in reports {
                if let Err(e) = ledger.tenant_finished(run_id, report).await {
                    tracing::warn!("{e}");
                }
            }
        };
        // The run's end records each tenant's state and version again: these writes must
        // leave it time.
        let cap = AFTER_ABANDON / 2;
        if tokio::time::timeout_at(self.until(cap), writes).await.is_err() {
            tracing::warn!("the ledger did not record the abandoned tenants within {cap:?}");
        }
    }

    /// The gates after a wave; escalates on failure. Each gate is announced as it starts
    /// and ends, so the display can show it as a gate rather than as slow work.
    async fn gates(&mut self, wave: &Wave<'_>, range: Range<usize>, next: Option<&Wave<'_>>) {
        if let Some(sql) = &self.policy.gates.check {
            if !self.check_gate(wave, range, sql).await {
                return;
            }
        }
        if self.policy.pause_after == Some(wave.number) {
            return self.escalate(StopReason::Paused { wave: wave.number });
        }
        let Some(next) = next else { return };
        if let Some(bake) = self.policy.gates.bake {
            if !self.bake_gate(wave, bake).await {
                return;
            }
        }
        if self.policy.gates.confirm && !self.policy.gates.assume_yes {
            self.confirm_gate(wave, next).await;
        }
    }

    /// The `--check` query on every tenant of the wave that succeeded; false when the run
    /// stops.
    async fn check_gate(&mut self, wave: &Wave<'_>, range: Range<usize>, sql: &str) -> bool {
        let events = self.events;
        let work = self.work;
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
        let began = tokio::time::Instant::now();
        events.emit(Event::GateStarted {
            wave: wave.number,
            gate: GateStart::Check {
                query: sql.to_owned(),
                total,
            },
        });
        let checking = async move {
            for (n, t) in tenants.into_iter().enumerate() {
                match work.check(t, sql).await {
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
                self.gate_finished(wave.number, Gate::Check, false, Some("interrupted".into()), began);
                self.interrupted();
                return false;
            }
        };
        // "passed on 0/0" read as a check that ran; nothing ran.
        let passed = match total {
            0 => "skipped: no tenant of the wave succeeded".to_owned(),
            _ => format!("passed on {total}/{total}"),
        };
        let detail = failed.clone().or(Some(passed));
        self.gate_finished(wave.number, Gate::Check, failed.is_none(), detail, began);
        let Some(detail) = failed else { return true };
        self.escalate(StopReason::GateFailed {
            wave: wave.number,
            detail,
        });
        false
    }

    /// Waits `bake` before the next wave; false when an interrupt cut it short.
    async fn bake_gate(&mut self, wave: &Wave<'_>, bake: Duration) -> bool {
        let events = self.events;
        let began = tokio::time::Instant::now();
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
                self.gate_finished(wave.number, Gate::Bake, true, None, began);
                true
            }
            Some(()) = self.interrupts.recv() => {
                self.gate_finished(wave.number, Gate::Bake, false, Some("interrupted".into()), began);
                self.escalate(StopReason::Interrupted);
                false
            }
        }
    }

    /// Asks the operator before `next`; without anyone to ask, the run stops.
    async fn confirm_gate(&mut self, wave: &Wave<'_>, next: &Wave<'_>) {
        let events = self.events;
        let began = tokio::time::Instant::now();
        let next = next_wave(next);
        events.emit(Event::GateStarted {
            wave: wave.number,
            gate: GateStart::Confirm { next: next.clone() },
        });
        let Some(prompt) = self.policy.gates.prompt.clone() else {
            let detail = "not confirmed: there is no one to ask".to_owned();
            self.gate_finished(wave.number, Gate::Confirm, false, Some(detail.clone()), began);
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
                self.gate_finished(wave.number, Gate::Confirm, false, Some("interrupted".into()), began);
                return self.escalate(StopReason::Interrupted);
            }
        };
        let yes = matches!(answer, Ok(true));
        let detail = if yes { "confirmed" } else { "not confirmed" }.to_owned();
        self.gate_finished(wave.number, Gate::Confirm, yes, Some(detail.clone()), began);
        if !yes {
            self.escalate(StopReason::GateFailed {
                wave: wave.number,
                detail,
            });
        }
    }
}

impl<W: Work> Dispatcher<'_, W> {
    /// Announces a gate's end, and keeps it for the report's timeline.
    fn gate_finished(
        &mut self,
        wave: usize,
        gate: Gate,
        passed: bool,
        detail: Option<String>,
        began: tokio::time::Instant,
    ) {
        let now = tokio::time::Instant::now();
        self.events.emit(Event::GateFinished {
            wave,
            gate,
            passed,
            detail: detail.clone(),
            elapsed_ms: now.duration_since(began).as_millis() as u64,
        });
        let (started_ms, finished_ms) = (self.ms(began), self.ms(now));
        self.gates.push((
            wave,
            GateReport {
                gate,
                passed,
                detail,
                started_ms,
                finished_ms,
            },
        ));
    }
}

/// One tenant's task within a wave: its turn, the rate limiter, the ledger's record of its
/// start and end, and the run itself.
struct Task<'s, W> {
    starter: Starter<'s, W>,
    turns: &'s Turns,
    started: &'s Mutex<HashSet<usize>>,
    limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
    /// The change window a tenant waits for just before it starts.
    window: Option<&'s ChangeWindow>,
    /// Whether a tenant's host is cut off.
    breakers: &'s Breakers,
}

impl<W> Clone for Task<'_, W> {
    fn clone(&self) -> Self {
        Task {
            starter: self.starter,
            turns: self.turns,
            started: self.started,
            limiter: self.limiter.clone(),
            window: self.window,
            breakers: self.breakers,
        }
    }
}

impl<W: Work> Task<'_, W> {
    /// `done`: the tenant's report when a survey found it at the target already.
    async fn run(self, i: usize, t: &Tenant, wave: usize, done: Option<Box<TenantReport>>) -> Ended {
        let Task { starter, .. } = self;
        let (events, stop) = (starter.events, starter.stop);
        // Made first, so that leaving early gives up the tenant's place in the queue.
        let mut turn = self.turns.turn(i);
        if starter.stopping() && done.is_none() {
            return Ended::not_started(i, t, None);
        }
        let host = turn.server().unwrap_or_default();
        tokio::select! {
            () = turn.ready() => {}
            () = stop.raised(), if done.is_none() => return Ended::not_started(i, t, None),
            error = self.breakers.cut_off(&host), if done.is_none() => {
                return Ended::cut_off(i, t, wave, error, events);
            }
        }
        if let Some(report) = done {
            return surveyed(i, t, wave, *report, &mut turn, events);
        }
        // Boxed, as the start is: its waits (rate, window, probe) inlined here made every
        // waiting tenant's future as large as theirs.
        if let Some(ended) = Box::pin(self.before_start(i, t, wave, &host, &mut turn)).await {
            return ended;
        }
        // Boxed: every tenant of a wave waits in this function at once, and the tenant's
        // whole job inlined here made each waiting one as large as a running one.
        Box::pin(self.start(i, t, wave, turn)).await
    }

    /// Records the start of `t`, which holds its `turn`, runs it and records its end.
    async fn start(self, i: usize, t: &Tenant, wave: usize, mut turn: Turn<'_>) -> Ended {
        let starter = self.starter;
        let events = starter.events;
        let ctx = starter.ctx;
        // A tenant the ledger cannot record as started does not start.
        if let Some(ledger) = &ctx.ledger {
            if let Err(e) = ledger.tenant_started(&ctx.run_id, t.id.as_str()).await {
                return Ended::not_started(i, t, Some(e));
            }
        }
        self.started.lock().expect("no task panics holding it").insert(i);
        let began = tokio::time::Instant::now();
        events.emit(Event::TenantStarted {
            tenant: t.id.clone(),
            wave,
        });
        turn.started();
        let watch = Watch::new(t, Some(self.turns), self.breakers, events);
        let report = starter.run(t, wave, Some(&watch)).await;
        if breaker::reached(&report) {
            watch.reached();
        }
        let mut fault = None;
        if let Some(ledger) = &ctx.ledger {
            fault = ledger.tenant_finished(&ctx.run_id, &report).await.err();
        }
        events.emit(Event::TenantFinished {
            wave,
            report: report.clone(),
        });
        Ended {
            slot: i,
            report,
            fault,
            started: Some(began),
            cut_off: false,
            counted: watch.counted(),
        }
    }

    /// The waits between a tenant's turn and its start: a rate slot, the change window,
    /// the stop and its host's breaker. `Some`: how it ended without starting.
    async fn before_start(&self, i: usize, t: &Tenant, wave: usize, host: &str, turn: &mut Turn<'_>) -> Option<Ended> {
        let (events, stop) = (self.starter.events, self.starter.stop);
        // A stop ends the wait for a start slot at once: with a low `--rate`, every tenant
        // left waiting its turn made a stop take one slot per tenant.
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                _ = limiter.until_ready_with_jitter(Jitter::up_to(Duration::from_millis(20))) => {}
                () = stop.raised() => return Some(Ended::not_started(i, t, None)),
            }
        }
        // Last before the start, after every other wait: a window that closed while this
        // tenant waited its turn or a rate slot keeps it from starting.
        if let Some(window) = self.window {
            tokio::select! {
                () = window.open(events, wave) => {}
                () = stop.raised() => return Some(Ended::not_started(i, t, None)),
            }
        }
        if self.starter.stopping() {
            return Some(Ended::not_started(i, t, None));
        }
        // Last of all: a host cut off while this tenant waited keeps it from starting; an
        // open breaker's probe is the tenant that starts at once, and one that comes while a
        // probe is in flight lets the next tenant start and waits for the probe's outcome.
        let error = probed(self.breakers, host, turn).await?;
        Some(Ended::cut_off(i, t, wave, error, events))
    }
}

/// A tenant a survey found at its target already: announced as started and finished at once.
fn surveyed(i: usize, t: &Tenant, wave: usize, report: TenantReport, turn: &mut Turn<'_>, events: &Events) -> Ended {
    let began = tokio::time::Instant::now();
    announce_surveyed(t, wave, &report, events);
    turn.started();
    Ended {
        slot: i,
        report,
        fault: None,
        started: Some(began),
        cut_off: false,
        counted: false,
    }
}

/// A surveyed tenant's start and end, announced at once.
fn announce_surveyed(t: &Tenant, wave: usize, report: &TenantReport, events: &Events) {
    events.emit(Event::TenantStarted {
        tenant: t.id.clone(),
        wave,
    });
    events.emit(Event::TenantFinished {
        wave,
        report: report.clone(),
    });
}

/// Whether a tenant of `host` holding its turn may start: `Some` error when its host is cut
/// off. While a probe of the host is in flight it waits for the probe's outcome, its turn
/// marked started so that other hosts' tenants start meanwhile.
async fn probed(breakers: &Breakers, host: &str, turn: &mut Turn<'_>) -> Option<DbError> {
    loop {
        match breakers.admit(host, true) {
            Admit::Go | Admit::Probe => return None,
            Admit::Skip(error) => return Some(error),
            Admit::Wait => {
                turn.started();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tenants a survey shows at the target already, with their (empty) reports: they need
/// no session at all. Only for `up` and `down` to a version; anything else, and any
/// tenant the survey does not cover (or keeps another tool's history), takes the ordinary
/// path.
async fn already_at_target(
    work: &impl Work,
    sets: &Sets,
    action: Action<'_>,
    tenants: &[(usize, &Tenant, usize)],
) -> HashMap<usize, TenantReport> {
    if !matches!(action, Action::Migrate(Target::Up { .. } | Target::Down { .. })) {
        return HashMap::new();
    }
    // A tenant with `history_compat` takes a session even at its target: the session writes
    // the other tool's rows it may still lack (set after the tenant was migrated).
    let surveyable = |t: &&Tenant| t.history_compat.is_none();
    // The servers' tenants in one survey for the wave, not one per chunk: a host that does
    // not answer costs its timeout once.
    let served: Vec<&Tenant> = tenants
        .iter()
        .map(|(_, t, _)| *t)
        .filter(|t| t.engine != Engine::Sqlite)
        .filter(surveyable)
        .collect();
    let mut out = HashMap::new();
    keep_at_target(&mut out, sets, action, tenants, work.survey(&served).await);
    // SQLite files a chunk at a time (each file answers or not on its own), so that the
    // history rows of 100,000 files are not all held at once. Each file surveyed is read
    // once more by its tenant's session if it is behind: once a chunk finds most of its
    // files behind (an upgrade, not a no-op), the rest of the wave is not surveyed.
    for chunk in tenants.chunks(FILES_AT_ONCE) {
        let files: Vec<&Tenant> = chunk
            .iter()
            .map(|(_, t, _)| *t)
            .filter(|t| t.engine == Engine::Sqlite)
            .filter(surveyable)
            .collect();
        if files.is_empty() {
            continue;
        }
        let before = out.len();
        keep_at_target(&mut out, sets, action, chunk, work.survey(&files).await);
        if (out.len() - before) * 2 < files.len() {
            break;
        }
    }
    out
}

/// SQLite files surveyed per chunk.
const FILES_AT_ONCE: usize = 1_000;

/// Adds to `out` the report of each of `tenants` whose `surveyed` rows leave nothing to do.
fn keep_at_target(
    out: &mut HashMap<usize, TenantReport>,
    sets: &Sets,
    action: Action<'_>,
    tenants: &[(usize, &Tenant, usize)],
    mut surveyed: HashMap<TenantId, Vec<crate::model::migration::Applied>>,
) {
    for (i, t, _) in tenants {
        let Some(rows) = surveyed.remove(&t.id) else { continue };
        if let Some(report) = at_target(sets, action, t, &rows) {
            out.insert(*i, report);
        }
    }
}

/// `t`'s report when its surveyed history `rows` leave nothing to do.
fn at_target(
    sets: &Sets,
    action: Action<'_>,
    t: &Tenant,
    rows: &[crate::model::migration::Applied],
) -> Option<TenantReport> {
    let Action::Migrate(target) = action.resolved(sets, t.engine) else {
        return None;
    };
    // Whether its repeatable migrations changed takes a session to tell.
    if !sets.of(t.engine).repeatables().is_empty() {
        return None;
    }
    let p = crate::plan::tenant::plan(sets.of(t.engine), rows, target).ok()?;
    p.steps.is_empty().then(|| TenantReport {
        id: t.id.clone(),
        outcome: Outcome::Succeeded,
        start_version: Some(p.from),
        final_version: Some(p.to),
        steps: vec![],
    })
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
