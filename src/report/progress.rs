//! Live progress on a terminal: an overall bar, the current wave, and a capped set of
//! tenant lines, with the lines worth keeping printed above them into scrollback.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::exec::dispatch::Prompt;
use crate::exec::events::{Event, Gate, GateStart, NextWave, Stamped};
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
use crate::model::run::Outcome;
use crate::report::gates;
use crate::report::text::TextReporter;

/// How the live display looks and behaves.
#[derive(Debug, Clone)]
pub struct ProgressOptions {
    /// Width of the tenant-id column.
    pub id_width: usize,
    /// Most tenants shown on a line of their own; the others in flight are counted on one
    /// line, so that thousands of tenants still fit on a screen.
    pub max_lines: usize,
    /// Show elapsed time, rate and ETA on the overall bar. Off in tests, whose output must
    /// not depend on the clock.
    pub timing: bool,
    /// Redraw this often even when no event arrives, so that the timing fields stay
    /// current during long migrations. `None` draws on events only.
    pub refresh: Option<Duration>,
}

impl ProgressOptions {
    pub fn new(id_width: usize) -> Self {
        ProgressOptions {
            id_width,
            max_lines: 8,
            timing: true,
            refresh: Some(Duration::from_millis(200)),
        }
    }
}

/// A tenant that started and has not finished.
struct Flight {
    /// Start order: the longest-waiting tenant gets the next free line.
    seq: u64,
    /// What it is doing, e.g. `0003_add_email (3/7)`.
    doing: String,
    /// Its line, when it has one (at most `max_lines` do).
    line: Option<ProgressBar>,
}

/// What the status line under the overall bar follows.
enum Phase {
    Idle,
    Wave {
        wave: usize,
        canary: bool,
        tenants: usize,
        done: usize,
        /// False for the single wave of a run without a rollout: the overall bar says it all.
        shown: bool,
    },
    Rollback {
        tenants: usize,
        done: usize,
    },
}

/// A gate the status line shows instead of the wave's progress.
enum GateShown {
    Bake { wave: usize, until: Instant, until_ms: u64 },
    Check { wave: usize, passed: usize, total: usize },
    Confirm { wave: usize, next_wave: usize },
}

/// Migration time, for the rate and ETA: the run's time less the time spent in gates
/// (bakes, checks, questions), which are waits, not work.
#[derive(Debug, Default)]
struct Clock {
    started: Option<Instant>,
    /// Time spent in gates that ended.
    gated: Duration,
    /// When the gate now under way began.
    gate_since: Option<Instant>,
}

impl Clock {
    fn start(&mut self, now: Instant) {
        self.started.get_or_insert(now);
    }

    fn pause(&mut self, now: Instant) {
        self.gate_since.get_or_insert(now);
    }

    fn resume(&mut self, now: Instant) {
        if let Some(since) = self.gate_since.take() {
            self.gated += now.saturating_duration_since(since);
        }
    }

    /// Time spent migrating by `now`.
    fn working(&self, now: Instant) -> Duration {
        let Some(started) = self.started else {
            return Duration::ZERO;
        };
        let gate = self
            .gate_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        now.saturating_duration_since(started)
            .saturating_sub(self.gated)
            .saturating_sub(gate)
    }

    /// Time left for `total - done` tenants at the pace of the `done` so far.
    fn eta(&self, done: u64, total: u64, now: Instant) -> Option<Duration> {
        if done == 0 {
            return None;
        }
        let left = total.saturating_sub(done) as f64;
        Some(self.working(now).mul_f64(left / done as f64))
    }

    fn per_sec(&self, done: u64, now: Instant) -> f64 {
        let secs = self.working(now).as_secs_f64();
        if secs > 0.0 { done as f64 / secs } else { 0.0 }
    }
}

/// Whether a question is on the screen, shared by the reporter and its [`BarPrompt`].
#[derive(Debug, Default)]
struct Hold {
    /// The question on the screen: while set, the reporter keeps events for later and
    /// draws nothing.
    asking: Option<u64>,
    asked: u64,
}

/// Renders run events as progress bars on a terminal.
///
/// Lines printed above the bars (run header, waves, failed and skipped tenants, stop and
/// rollback failures, the summary) go to the same draw target and stay in scrollback when
/// the bars are cleared.
pub struct ProgressReporter {
    multi: MultiProgress,
    /// `done/total` tenants, failures in its message.
    overall: ProgressBar,
    /// The current wave, the stop reason or the rollback, when there is one to show.
    status: Option<ProgressBar>,
    /// "+N more in flight", when more tenants are in flight than have lines.
    more: Option<ProgressBar>,
    in_flight: HashMap<TenantId, Flight>,
    /// In-flight tenants without a line, by start order.
    waiting: BTreeMap<u64, TenantId>,
    next_seq: u64,
    /// Formats the printed lines, so they read as in plain-text output.
    text: TextReporter,
    options: ProgressOptions,
    total: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    phase: Phase,
    stopping: Option<String>,
    gate: Option<GateShown>,
    /// Migration time, read by the rate and ETA fields at each draw.
    clock: Arc<Mutex<Clock>>,
    /// Taken while an event is drawn and while a question goes up.
    hold: Arc<Mutex<Hold>>,
    /// Events that came while a question was on the screen.
    deferred: Vec<Stamped>,
    /// The status line while it redraws itself on a timer (a bake's countdown): a question
    /// stops that too, or it would draw the bars over the question. Taken after `hold`.
    ticking: Arc<Mutex<Option<ProgressBar>>>,
}

impl ProgressReporter {
    /// Bars with the default options; `target` is usually `ProgressDrawTarget::stderr()`
    /// or `stdout()`, which hide themselves when not on a terminal.
    pub fn new(target: ProgressDrawTarget, id_width: usize) -> Self {
        ProgressReporter::with_options(target, ProgressOptions::new(id_width))
    }

    pub fn with_options(target: ProgressDrawTarget, mut options: ProgressOptions) -> Self {
        options.id_width = options.id_width.max(6);
        let multi = MultiProgress::with_draw_target(target);
        let template = if options.timing {
            "{elapsed:>4} [{bar:30}] {pos}/{len} tenants  {msg}  {per_sec}  ETA {eta}"
        } else {
            "[{bar:30}] {pos}/{len} tenants  {msg}"
        };
        let clock: Arc<Mutex<Clock>> = Arc::default();
        let overall = multi.add(ProgressBar::new(0));
        // indicatif's own rate and ETA count a bake as slow work: a 24 s run with a 4 min
        // bake showed an ETA of minutes. These count migration time only.
        let eta = {
            let clock = clock.clone();
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let eta =
                    clock
                        .lock()
                        .expect("not poisoned")
                        .eta(state.pos(), state.len().unwrap_or(0), Instant::now());
                let _ = match eta {
                    Some(eta) => write!(w, "{}", gates::short(eta)),
                    None => write!(w, "-"),
                };
            }
        };
        let per_sec = {
            let clock = clock.clone();
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let rate = clock.lock().expect("not poisoned").per_sec(state.pos(), Instant::now());
                let _ = write!(w, "{rate:.1}/s");
            }
        };
        overall.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
                .with_key("eta", eta)
                .with_key("per_sec", per_sec)
                .progress_chars("=> "),
        );
        if let Some(every) = options.refresh.filter(|_| !multi.is_hidden()) {
            overall.enable_steady_tick(every);
        }
        let text = TextReporter::new(options.id_width);
        let reporter = ProgressReporter {
            multi,
            overall,
            status: None,
            more: None,
            in_flight: HashMap::new(),
            waiting: BTreeMap::new(),
            next_seq: 0,
            text,
            options,
            total: 0,
            done: 0,
            failed: 0,
            skipped: 0,
            phase: Phase::Idle,
            stopping: None,
            gate: None,
            clock,
            hold: Arc::default(),
            deferred: Vec::new(),
            ticking: Arc::default(),
        };
        reporter.draw_overall();
        reporter
    }

    /// The `--confirm` prompt that goes with these bars: it holds them while it asks.
    pub fn prompt(&self) -> BarPrompt {
        BarPrompt {
            multi: self.multi.clone(),
            overall: self.overall.clone(),
            hold: self.hold.clone(),
            ticking: self.ticking.clone(),
            refresh: self.options.refresh.filter(|_| !self.multi.is_hidden()),
            io: Box::new(StdIo),
        }
    }

    pub fn handle(&mut self, stamped: &Stamped) {
        let hold = self.hold.clone();
        let held = hold.lock().expect("not poisoned");
        if held.asking.is_some() {
            self.deferred.push(stamped.clone());
            return;
        }
        for stamped in std::mem::take(&mut self.deferred) {
            self.draw(&stamped);
        }
        self.draw(stamped);
    }

    fn draw(&mut self, stamped: &Stamped) {
        let line = self.text.line(&stamped.event);
        match &stamped.event {
            Event::RunStarted { tenants, .. } => {
                self.clock.lock().expect("not poisoned").start(Instant::now());
                self.total = *tenants;
                self.print(line);
                self.draw_overall();
            }
            Event::TenantStarted { tenant, .. } => self.start(tenant),
            Event::StepStarted {
                tenant,
                version,
                name,
                direction,
                index,
                total,
                ..
            } => {
                self.start(tenant);
                self.show_doing(tenant, step_label(*version, name, *direction, *index, *total));
            }
            // A tenant the run never started, accounted for at the run's end: no bar had it.
            Event::TenantFinished { report, .. }
                if matches!(report.outcome, Outcome::NotStarted) && !self.in_flight.contains_key(&report.id) => {}
            Event::TenantFinished { report, .. } => self.tenant_finished(&report.id, &report.outcome, line),
            Event::WaveStarted { wave, canary, tenants } => {
                self.phase = Phase::Wave {
                    wave: *wave,
                    canary: *canary,
                    tenants: *tenants,
                    done: 0,
                    shown: line.is_some(),
                };
                self.print_and_status(line);
            }
            Event::Stopping { reason } => {
                self.stopping = Some(reason.to_string());
                self.print_and_status(line);
            }
            Event::RollbackStarted { tenants } => {
                self.phase = Phase::Rollback {
                    tenants: *tenants,
                    done: 0,
                };
                self.print_and_status(line);
            }
            Event::TenantRolledBack { error, .. } => {
                if let Phase::Rollback { done, .. } = &mut self.phase {
                    *done += 1;
                }
                // A tenant rolled back cleanly is counted, not printed.
                self.print_and_status(line.filter(|_| error.is_some()));
            }
            Event::StepRetried { tenant, attempt, .. } => {
                self.show_doing(tenant, format!("retrying (attempt {attempt})"));
                self.print(line);
            }
            Event::RunFinished { .. } | Event::HostCutOff { .. } | Event::HostRestored { .. } => self.print(line),
            Event::WindowWait { .. } => self.print_and_status(line),
            Event::StepFinished { .. } | Event::WaveFinished { .. } => {}
            Event::GateStarted { wave, gate } => {
                self.clock.lock().expect("not poisoned").pause(Instant::now());
                self.gate = Some(gate_shown(*wave, gate, stamped.at_ms));
                self.draw_status();
            }
            Event::GateProgress { passed: n, .. } => {
                if let Some(GateShown::Check { passed, .. }) = &mut self.gate {
                    *passed = *n;
                }
                self.draw_status();
            }
            Event::GateFinished { gate, passed, .. } => {
                self.clock.lock().expect("not poisoned").resume(Instant::now());
                self.gate = None;
                // The question and its answer are on the screen already.
                self.print_and_status(line.filter(|_| *gate != Gate::Confirm || !passed));
            }
        }
    }

    /// Clears the bars; the printed lines stay. Dropping the reporter does the same.
    pub fn finish(mut self) {
        for stamped in std::mem::take(&mut self.deferred) {
            self.draw(&stamped);
        }
        drop(self);
    }

    fn clear(&mut self) {
        self.overall.disable_steady_tick();
        let lines = self.in_flight.values_mut().filter_map(|f| f.line.take());
        self.ticking.lock().expect("not poisoned").take();
        let bars: Vec<ProgressBar> = lines.chain(self.more.take()).chain(self.status.take()).collect();
        for bar in bars {
            self.remove_line(bar);
        }
        self.in_flight.clear();
        self.waiting.clear();
        self.overall.finish_and_clear();
        // Terminal output is best effort: a broken terminal must not fail the run.
        let _ = self.multi.clear();
    }

    /// What a tenant in flight is doing now, on its line.
    fn show_doing(&mut self, tenant: &TenantId, doing: String) {
        if let Some(flight) = self.in_flight.get_mut(tenant) {
            flight.doing = doing;
            if let Some(bar) = &flight.line {
                bar.set_message(tenant_line(tenant, &flight.doing, self.options.id_width));
            }
        }
    }

    /// A tenant ended: its line goes, the counts move, and a failure, skip or stop is
    /// printed above the bars.
    fn tenant_finished(&mut self, tenant: &TenantId, outcome: &Outcome, line: Option<String>) {
        self.end(tenant);
        self.done += 1;
        match outcome {
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Succeeded | Outcome::NotStarted | Outcome::Stopped => {}
        }
        if matches!(
            outcome,
            Outcome::Failed { .. } | Outcome::Skipped { .. } | Outcome::Stopped
        ) {
            self.print(line);
        }
        if let Phase::Wave { done, .. } = &mut self.phase {
            *done += 1;
        }
        self.draw_overall();
        self.draw_status();
    }

    /// Prints the line, if any, then redraws the status line.
    fn print_and_status(&mut self, line: Option<String>) {
        self.print(line);
        self.draw_status();
    }

    fn print(&self, line: Option<String>) {
        if let Some(line) = line {
            // Best effort, as above.
            let _ = self.multi.println(line);
        }
    }

    fn start(&mut self, tenant: &TenantId) {
        if self.in_flight.contains_key(tenant) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let doing = "starting".to_owned();
        let line = if self.in_flight.len() - self.waiting.len() < self.options.max_lines {
            let bar = self.new_line();
            bar.set_message(tenant_line(tenant, &doing, self.options.id_width));
            Some(bar)
        } else {
            self.waiting.insert(seq, tenant.clone());
            None
        };
        self.in_flight.insert(tenant.clone(), Flight { seq, doing, line });
        self.draw_more();
    }

    /// Forgets a tenant; its line, if it had one, goes to the longest-waiting tenant.
    fn end(&mut self, tenant: &TenantId) {
        let Some(flight) = self.in_flight.remove(tenant) else {
            return;
        };
        match flight.line {
            None => {
                self.waiting.remove(&flight.seq);
            }
            Some(bar) => {
                let next = self.waiting.pop_first().map(|(_, id)| id);
                match next.and_then(|id| self.in_flight.get_mut(&id).map(|f| (id, f))) {
                    Some((id, next)) => {
                        bar.set_message(tenant_line(&id, &next.doing, self.options.id_width));
                        next.line = Some(bar);
                    }
                    None => self.remove_line(bar),
                }
            }
        }
        self.draw_more();
    }

    fn remove_line(&self, bar: ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(&bar);
    }

    /// A tenant line, placed after the status line and the other tenant lines.
    fn new_line(&self) -> ProgressBar {
        let bar = ProgressBar::new_spinner();
        let bar = match &self.more {
            Some(more) => self.multi.insert_before(more, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(plain_style());
        bar
    }

    fn draw_overall(&self) {
        self.overall.set_length(self.total.max(self.done) as u64);
        self.overall.set_position(self.done as u64);
        let mut msg = format!("{} failed", self.failed);
        if self.skipped > 0 {
            msg.push_str(&format!(", {} skipped", self.skipped));
        }
        self.overall.set_message(msg);
    }

    fn draw_status(&mut self) {
        if self.gate.is_some() {
            return self.draw_gate();
        }
        if let Some(bar) = &self.status {
            bar.disable_steady_tick();
            bar.set_style(plain_style());
        }
        let mut text = match &self.phase {
            Phase::Wave {
                wave,
                canary,
                tenants,
                done,
                shown: true,
            } => Some(format!(
                "wave {wave}{}: {done}/{tenants} done",
                if *canary { " (canary)" } else { "" }
            )),
            Phase::Rollback { tenants, done } => Some(format!("rolling back: {done}/{tenants} tenant(s)")),
            Phase::Idle | Phase::Wave { .. } => None,
        };
        let rolling_back = matches!(self.phase, Phase::Rollback { .. });
        if let Some(reason) = self.stopping.as_ref().filter(|_| !rolling_back) {
            text = Some(match text {
                Some(wave) => format!("{wave}; stopping: {reason}"),
                None => format!("stopping: {reason}"),
            });
        }
        match (text, &self.status) {
            (Some(text), Some(bar)) => bar.set_message(text),
            (Some(text), None) => {
                let bar = self.multi.insert_after(&self.overall, ProgressBar::new_spinner());
                bar.set_style(plain_style());
                bar.set_message(text);
                self.status = Some(bar);
            }
            (None, _) => {
                if let Some(bar) = self.status.take() {
                    self.ticking.lock().expect("not poisoned").take();
                    self.remove_line(bar);
                }
            }
        }
    }

    /// The status line during a gate: a bake with its time left, a check with its count.
    fn draw_gate(&mut self) {
        let Some(gate) = &self.gate else { return };
        let bar = match &self.status {
            Some(bar) => bar.clone(),
            None => {
                let bar = self.multi.insert_after(&self.overall, ProgressBar::new_spinner());
                bar.set_style(plain_style());
                self.status = Some(bar.clone());
                bar
            }
        };
        match gate {
            GateShown::Bake { wave, until, until_ms } => {
                let until = *until;
                let left = move |_: &ProgressState, w: &mut dyn fmt::Write| {
                    let _ = write!(w, "{}", gates::short(until.saturating_duration_since(Instant::now())));
                };
                bar.set_style(
                    ProgressStyle::with_template("  {prefix}{left} left{wide_msg}")
                        .expect("the template is valid")
                        .with_key("left", left),
                );
                bar.set_prefix(format!("wave {wave} done; baking: "));
                bar.set_message(format!(" (until {} UTC)", gates::hms(*until_ms)));
                if let Some(every) = self.options.refresh.filter(|_| !self.multi.is_hidden()) {
                    bar.enable_steady_tick(every);
                    *self.ticking.lock().expect("not poisoned") = Some(bar.clone());
                }
            }
            GateShown::Check { wave, passed, total } => {
                bar.set_message(format!("wave {wave} done; checking: passed on {passed}/{total}"));
            }
            GateShown::Confirm { wave, next_wave } => {
                bar.set_message(format!("wave {wave} done; waiting for a yes to start wave {next_wave}"));
            }
        }
        bar.tick();
    }

    fn draw_more(&mut self) {
        let hidden = self.waiting.len();
        if hidden == 0 {
            if let Some(bar) = self.more.take() {
                self.remove_line(bar);
            }
            return;
        }
        let text = if hidden == self.in_flight.len() {
            format!("{hidden} tenant(s) in flight")
        } else {
            format!("+{hidden} more in flight")
        };
        match &self.more {
            Some(bar) => bar.set_message(text),
            None => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(plain_style());
                bar.set_message(text);
                self.more = Some(bar);
            }
        }
    }
}

/// Where a [`BarPrompt`] writes its question and reads the answer.
pub trait PromptIo: Send + Sync {
    fn write(&self, text: &str);
    fn read_line(&self) -> std::io::Result<String>;
}

/// Standard error and standard input.
struct StdIo;

impl PromptIo for StdIo {
    fn write(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    fn read_line(&self) -> std::io::Result<String> {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    }
}

/// The `--confirm` prompt of a [`ProgressReporter`]: it clears the bars and keeps them from
/// drawing while its question is up (a redraw erased it, and what was typed next became
/// the answer), and lets them draw again once answered. Holding indicatif's own lock
/// across the read would do the same, but an interrupt leaves the read behind, and the
/// bars would then wait for it forever.
pub struct BarPrompt {
    multi: MultiProgress,
    overall: ProgressBar,
    hold: Arc<Mutex<Hold>>,
    ticking: Arc<Mutex<Option<ProgressBar>>>,
    refresh: Option<Duration>,
    io: Box<dyn PromptIo>,
}

impl fmt::Debug for BarPrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarPrompt").finish_non_exhaustive()
    }
}

impl BarPrompt {
    /// Asks through `io` instead of the standard streams.
    #[cfg(test)]
    pub fn with_io(mut self, io: Box<dyn PromptIo>) -> Self {
        self.io = io;
        self
    }

    /// Lets the bars draw again, unless another question has gone up since.
    fn resume(&self, ticket: u64) {
        let mut hold = self.hold.lock().expect("not poisoned");
        if hold.asking != Some(ticket) {
            return;
        }
        hold.asking = None;
        if let Some(every) = self.refresh {
            self.overall.enable_steady_tick(every);
            if let Some(bar) = &*self.ticking.lock().expect("not poisoned") {
                bar.enable_steady_tick(every);
            }
        }
        self.overall.tick();
    }
}

impl Prompt for BarPrompt {
    fn confirm(&self, next: &NextWave) -> bool {
        let ticket = {
            let mut hold = self.hold.lock().expect("not poisoned");
            hold.asked += 1;
            hold.asking = Some(hold.asked);
            self.overall.disable_steady_tick();
            if let Some(bar) = &*self.ticking.lock().expect("not poisoned") {
                bar.disable_steady_tick();
            }
            // Best effort, as every terminal write here.
            let _ = self.multi.clear();
            self.io.write(&gates::question(next));
            hold.asked
        };
        let answer = self.io.read_line();
        self.resume(ticket);
        answer.is_ok_and(|a| gates::is_yes(&a))
    }

    fn abandon(&self) {
        let ticket = self.hold.lock().expect("not poisoned").asking;
        if let Some(ticket) = ticket {
            self.io.write("\n");
            self.resume(ticket);
        }
    }
}

impl Drop for ProgressReporter {
    /// Bars left behind by an early return would otherwise be redrawn as finished.
    fn drop(&mut self) {
        self.clear();
    }
}

/// A line of text that is cut to the terminal's width rather than wrapped.
fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("  {wide_msg}").expect("the template is valid")
}

/// The status line's view of a gate that started at `at_ms` (the event's time): a bake's
/// end is counted from then, so a reporter that falls behind does not stretch it.
fn gate_shown(wave: usize, gate: &GateStart, at_ms: u64) -> GateShown {
    match gate {
        GateStart::Bake { duration_ms, until_ms } => {
            let left = Duration::from_millis(until_ms.saturating_sub(at_ms).min(*duration_ms));
            GateShown::Bake {
                wave,
                until: Instant::now() + left,
                until_ms: *until_ms,
            }
        }
        GateStart::Check { total, .. } => GateShown::Check {
            wave,
            passed: 0,
            total: *total,
        },
        GateStart::Confirm { next } => GateShown::Confirm {
            wave,
            next_wave: next.next_wave,
        },
    }
}

fn tenant_line(tenant: &TenantId, doing: &str, id_width: usize) -> String {
    format!("{:id_width$}  {doing}", tenant.as_str())
}

/// `0003_add_email (3/7)`, as `Migration::label` names the migration.
fn step_label(version: Version, name: &str, direction: Direction, index: usize, total: usize) -> String {
    let verb = match direction {
        Direction::Up => "",
        Direction::Down => "reverting ",
    };
    match version.as_int() {
        Some(n) => format!("{verb}{n:04}_{name} ({index}/{total})"),
        None => format!("{verb}{version}_{name} ({index}/{total})"),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;
    use crate::model::run::Summary;
    use crate::report::text::tests::{duplicate_column, id, report, scripted_run, step, step_started};

    const WIDTH: usize = 100;

    /// A terminal in memory: a grid of characters and a cursor, enough of VT100 for what
    /// indicatif does (write, wrap at the right edge, move up and down, clear a line).
    /// Rows that scroll off stay, like scrollback.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Grid>>);

    #[derive(Debug, Default)]
    struct Grid {
        rows: Vec<Vec<char>>,
        row: usize,
        /// Reaches `WIDTH` after a full row: the next character wraps, a newline does not.
        col: usize,
    }

    impl Grid {
        fn put(&mut self, c: char) {
            match c {
                '\n' => {
                    self.row += 1;
                    self.col = 0;
                }
                '\r' => self.col = 0,
                c => {
                    if self.col >= WIDTH {
                        self.row += 1;
                        self.col = 0;
                    }
                    if self.rows.len() <= self.row {
                        self.rows.resize(self.row + 1, Vec::new());
                    }
                    let line = &mut self.rows[self.row];
                    if line.len() <= self.col {
                        line.resize(self.col + 1, ' ');
                    }
                    line[self.col] = c;
                    self.col += 1;
                }
            }
        }
    }

    impl Screen {
        fn text(&self) -> String {
            let grid = self.0.lock().unwrap();
            let mut lines: Vec<String> = grid
                .rows
                .iter()
                .map(|r| r.iter().collect::<String>().trim_end().to_owned())
                .collect();
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            lines.join("\n")
        }

        fn grid(&self) -> std::sync::MutexGuard<'_, Grid> {
            self.0.lock().unwrap()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            WIDTH as u16
        }

        fn height(&self) -> u16 {
            40
        }

        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            let mut g = self.grid();
            g.row = g.row.saturating_sub(n);
            g.col = g.col.min(WIDTH - 1);
            Ok(())
        }

        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            let mut g = self.grid();
            g.row += n;
            g.col = g.col.min(WIDTH - 1);
            Ok(())
        }

        fn move_cursor_right(&self, n: usize) -> io::Result<()> {
            let mut g = self.grid();
            g.col = (g.col + n).min(WIDTH - 1);
            Ok(())
        }

        fn move_cursor_left(&self, n: usize) -> io::Result<()> {
            let mut g = self.grid();
            g.col = g.col.saturating_sub(n);
            Ok(())
        }

        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)?;
            self.grid().put('\n');
            Ok(())
        }

        fn write_str(&self, s: &str) -> io::Result<()> {
            let mut g = self.grid();
            s.chars().for_each(|c| g.put(c));
            Ok(())
        }

        fn clear_line(&self) -> io::Result<()> {
            let mut g = self.grid();
            let row = g.row;
            if let Some(line) = g.rows.get_mut(row) {
                line.clear();
            }
            g.col = 0;
            Ok(())
        }

        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn options(max_lines: usize) -> ProgressOptions {
        ProgressOptions {
            max_lines,
            timing: false,
            refresh: None,
            ..ProgressOptions::new(13)
        }
    }

    fn on_screen(options: ProgressOptions) -> (ProgressReporter, Screen) {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        (ProgressReporter::with_options(target, options), screen)
    }

    fn stamped(event: Event) -> Stamped {
        Stamped { at_ms: 0, event }
    }

    fn feed(reporter: &mut ProgressReporter, events: impl IntoIterator<Item = Event>) {
        for event in events {
            reporter.handle(&stamped(event));
        }
    }

    fn started(tenant: &str) -> Event {
        Event::TenantStarted {
            wave: 1,
            tenant: id(tenant),
        }
    }

    fn succeeded(tenant: &str) -> Event {
        Event::TenantFinished {
            wave: 1,
            report: report(
                tenant,
                Outcome::Succeeded,
                Some(1),
                Some(3),
                vec![step(2, 5), step(3, 5)],
            ),
        }
    }

    /// Twelve tenants, three lines: a canary wave, then ten in flight at once.
    fn busy_wave(reporter: &mut ProgressReporter) {
        feed(
            reporter,
            [
                Event::RunStarted {
                    run_id: "18b5c3a-2a".into(),
                    command: "up".into(),
                    target: Some(Version::int(7)),
                    tenants: 12,
                },
                Event::WaveStarted {
                    wave: 1,
                    canary: true,
                    tenants: 2,
                },
                started("canary-1"),
                started("canary-2"),
                succeeded("canary-1"),
                succeeded("canary-2"),
                Event::WaveStarted {
                    wave: 2,
                    canary: false,
                    tenants: 10,
                },
            ],
        );
        for n in 1..=10 {
            feed(reporter, [started(&format!("tenant-{n:02}"))]);
        }
        feed(
            reporter,
            [
                step_started("tenant-01", 3, "add_email", 3, 7),
                step_started("tenant-02", 1, "init", 1, 7),
                step_started("tenant-05", 6, "backfill_email", 6, 7),
                Event::TenantFinished {
                    wave: 1,
                    report: report(
                        "tenant-02",
                        Outcome::Failed {
                            version: Some(Version::int(1)),
                            during: crate::model::run::Phase::Migrating,
                            error: duplicate_column(),
                            dirty: false,
                        },
                        Some(0),
                        Some(0),
                        vec![],
                    ),
                },
                succeeded("tenant-07"),
            ],
        );
    }

    #[test]
    fn tenants_the_run_never_started_change_nothing_on_screen_at_its_end() {
        let (mut reporter, screen) = on_screen(options(3));
        feed(
            &mut reporter,
            [
                Event::RunStarted {
                    run_id: "18b5c3a-2a".into(),
                    command: "up".into(),
                    target: Some(Version::int(7)),
                    tenants: 3,
                },
                Event::WaveStarted {
                    wave: 1,
                    canary: true,
                    tenants: 1,
                },
                started("canary-1"),
                succeeded("canary-1"),
            ],
        );
        let before = screen.text();
        assert!(before.contains("1/3"), "{before}");
        feed(
            &mut reporter,
            ["later-1", "later-2"].map(|t| Event::TenantFinished {
                wave: 2,
                report: report(t, Outcome::NotStarted, Some(0), Some(0), vec![]),
            }),
        );
        assert_eq!(screen.text(), before);
    }

    #[test]
    fn lines_are_capped_and_freed_lines_go_to_the_longest_waiting() {
        let (mut reporter, screen) = on_screen(options(3));
        busy_wave(&mut reporter);
        insta::assert_snapshot!("busy_wave", screen.text());
    }

    #[test]
    fn a_retry_is_a_printed_line_and_shows_on_the_tenants_line_until_its_next_step() {
        let (mut reporter, screen) = on_screen(options(3));
        let lost = crate::model::db_error::DbError::new(
            crate::model::db_error::ErrorKind::Unreachable,
            "applying 0003_add_email",
            "connection reset by peer",
        );
        feed(
            &mut reporter,
            [
                Event::RunStarted {
                    run_id: "18b5c3a-2a".into(),
                    command: "up".into(),
                    target: Some(Version::int(7)),
                    tenants: 2,
                },
                Event::WaveStarted {
                    wave: 1,
                    canary: false,
                    tenants: 2,
                },
                started("tenant-01"),
                started("tenant-02"),
                step_started("tenant-01", 3, "add_email", 3, 7),
                step_started("tenant-02", 3, "add_email", 3, 7),
                Event::StepRetried {
                    tenant: id("tenant-01"),
                    wave: 1,
                    attempt: 2,
                    wait_ms: 240,
                    error: lost,
                },
            ],
        );
        insta::assert_snapshot!("retrying", screen.text());
        feed(&mut reporter, [step_started("tenant-01", 3, "add_email", 1, 5)]);
        let after = screen.text();
        assert!(
            after.contains("retrying in 0.2s (attempt 2)"),
            "the printed line stays:\n{after}"
        );
        assert!(
            !after.contains("retrying (attempt 2)"),
            "the tenant's line moved on:\n{after}"
        );
    }

    #[test]
    fn stop_and_rollback_then_finish_leaves_only_printed_lines() {
        let (mut reporter, screen) = on_screen(options(2));
        for stamped in scripted_run() {
            reporter.handle(&stamped);
        }
        insta::assert_snapshot!("scripted_run_before_finish", screen.text());
        reporter.finish();
        insta::assert_snapshot!("scripted_run_after_finish", screen.text());
    }

    #[test]
    fn timing_fields_are_shown() {
        let (mut reporter, screen) = on_screen(ProgressOptions {
            refresh: None,
            ..ProgressOptions::new(13)
        });
        busy_wave(&mut reporter);
        let first_bar = screen
            .text()
            .lines()
            .find(|l| l.contains("tenants"))
            .unwrap()
            .to_owned();
        insta::with_settings!({filters => vec![
            (r"^ *\d+[smhdwy] \[", "[elapsed] ["),
            (r"  \S+/s  ETA \S+$", "  [rate]  ETA [eta]"),
        ]}, {
            insta::assert_snapshot!("timing", first_bar);
        });
    }

    #[test]
    fn one_wave_run_has_no_wave_line() {
        let (mut reporter, screen) = on_screen(options(8));
        feed(
            &mut reporter,
            [
                Event::RunStarted {
                    run_id: "r".into(),
                    command: "up".into(),
                    target: None,
                    tenants: 2,
                },
                Event::WaveStarted {
                    wave: 1,
                    canary: false,
                    tenants: 2,
                },
                started("alpha"),
                step_started("alpha", 12, "add_index", 1, 1),
            ],
        );
        insta::assert_snapshot!("one_wave", screen.text());
    }

    #[test]
    fn a_wait_for_the_change_window_is_shown_with_its_opening() {
        let (mut reporter, screen) = on_screen(options(8));
        feed(
            &mut reporter,
            [
                Event::RunStarted {
                    run_id: "r".into(),
                    command: "up".into(),
                    target: None,
                    tenants: 2,
                },
                Event::WindowWait {
                    wave: 1,
                    window: "Mon-Fri 02:00-05:00 Europe/Copenhagen".into(),
                    opens_at: "2026-01-15T02:00:00+01:00[Europe/Copenhagen]".into(),
                    opens_at_ms: 1_768_438_800_000,
                },
            ],
        );
        // The line wraps at the screen's width; the bars stay under it.
        let text = screen.text().replace('\n', " ");
        assert!(
            text.contains(
                "change window `Mon-Fri 02:00-05:00 Europe/Copenhagen` is closed: no tenant starts until it opens \
                 at 2026-01-15T02:00:00+01:00[Europe/Copenhagen]; tenants in flight finish [  "
            ),
            "{text}"
        );
    }

    #[test]
    fn thousands_in_flight_stay_on_one_screen() {
        let (mut reporter, screen) = on_screen(options(8));
        feed(
            &mut reporter,
            [Event::RunStarted {
                run_id: "r".into(),
                command: "up".into(),
                target: None,
                tenants: 3000,
            }],
        );
        feed(&mut reporter, (0..3000).map(|n| started(&format!("t{n:04}"))));
        feed(&mut reporter, (0..1000).map(|n| succeeded(&format!("t{n:04}"))));
        let text = screen.text();
        assert_eq!(text.lines().count(), 1 + 1 + 8 + 1, "{text}");
        assert!(text.contains("1000/3000 tenants"), "{text}");
        assert!(text.ends_with("+1992 more in flight"), "{text}");
        assert!(text.contains("t1000          starting"), "{text}");
        feed(&mut reporter, (1000..3000).map(|n| succeeded(&format!("t{n:04}"))));
        let text = screen.text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("3000/3000 tenants"), "{text}");
    }

    /// The terminal side of a question: the prompt is written to the screen, the answer
    /// comes from the test and is echoed as a terminal does.
    struct ScreenIo {
        screen: Screen,
        answers: Mutex<std::sync::mpsc::Receiver<String>>,
    }

    impl PromptIo for ScreenIo {
        fn write(&self, text: &str) {
            self.screen.write_str(text).unwrap();
        }

        fn read_line(&self) -> io::Result<String> {
            let answer = self.answers.lock().unwrap().recv().unwrap();
            self.screen.write_str(&answer).unwrap();
            Ok(answer)
        }
    }

    fn next_wave(n: usize) -> NextWave {
        NextWave {
            next_wave: 2,
            canary: false,
            tenants: n,
            first_tenants: (1..=n.min(NextWave::FIRST))
                .map(|k| id(&format!("tenant-{k:02}")))
                .collect(),
            hosts: 2,
            engines: vec!["postgres".into()],
        }
    }

    /// A canary wave of two that succeeded, and then the given gate events.
    fn after_canaries(reporter: &mut ProgressReporter, gate: impl IntoIterator<Item = Event>) {
        feed(
            reporter,
            [
                Event::RunStarted {
                    run_id: "18b5c3a-2a".into(),
                    command: "up".into(),
                    target: Some(Version::int(7)),
                    tenants: 14,
                },
                Event::WaveStarted {
                    wave: 1,
                    canary: true,
                    tenants: 2,
                },
                started("canary-1"),
                started("canary-2"),
                succeeded("canary-1"),
                succeeded("canary-2"),
                Event::WaveFinished {
                    wave: 1,
                    summary: Summary::default(),
                },
            ],
        );
        feed(reporter, gate);
    }

    #[test]
    fn a_question_holds_the_bars_until_it_is_answered() {
        let (mut reporter, screen) = on_screen(options(3));
        let next = next_wave(12);
        after_canaries(
            &mut reporter,
            [Event::GateStarted {
                wave: 1,
                gate: GateStart::Confirm { next: next.clone() },
            }],
        );
        let (answer, answers) = std::sync::mpsc::channel();
        let prompt = reporter.prompt().with_io(Box::new(ScreenIo {
            screen: screen.clone(),
            answers: Mutex::new(answers),
        }));
        let asking = std::thread::spawn(move || prompt.confirm(&next));
        while !screen.text().ends_with("[y/N]") {
            std::thread::yield_now();
        }
        // An event that comes while the question is up (here one sent before it, drawn
        // late) waits for the answer: drawing it would erase the question.
        feed(
            &mut reporter,
            [Event::GateFinished {
                wave: 1,
                gate: Gate::Check,
                passed: true,
                detail: Some("passed on 2/2".into()),
                elapsed_ms: 30,
            }],
        );
        insta::assert_snapshot!("question_up", screen.text());
        answer.send("y\n".to_owned()).unwrap();
        assert!(asking.join().unwrap(), "a yes");
        feed(
            &mut reporter,
            [
                Event::GateFinished {
                    wave: 1,
                    gate: Gate::Confirm,
                    passed: true,
                    detail: Some("confirmed".into()),
                    elapsed_ms: 5000,
                },
                Event::WaveStarted {
                    wave: 2,
                    canary: false,
                    tenants: 12,
                },
                started("tenant-01"),
            ],
        );
        insta::assert_snapshot!("question_answered", screen.text());
    }

    #[test]
    fn an_interrupted_question_lets_the_bars_draw_again() {
        let (mut reporter, screen) = on_screen(options(3));
        let next = next_wave(3);
        after_canaries(&mut reporter, []);
        let (_answer, answers) = std::sync::mpsc::channel::<String>();
        let prompt = Arc::new(reporter.prompt().with_io(Box::new(ScreenIo {
            screen: screen.clone(),
            answers: Mutex::new(answers),
        })));
        let asking = {
            let prompt = prompt.clone();
            std::thread::spawn(move || prompt.confirm(&next))
        };
        while !screen.text().ends_with("[y/N]") {
            std::thread::yield_now();
        }
        prompt.abandon();
        feed(
            &mut reporter,
            [Event::Stopping {
                reason: crate::model::policy::StopReason::Interrupted,
            }],
        );
        let text = screen.text();
        assert!(text.contains("Start wave 2? [y/N]\n"), "{text}");
        assert!(text.contains("stopping: interrupted"), "{text}");
        assert!(text.contains("2/14 tenants"), "{text}");
        drop(_answer);
        let _ = asking.join();
    }

    /// A bake's countdown redraws itself on a timer; the question that follows the bake
    /// can come before the bake's end is drawn, and that timer must not draw over it.
    #[test]
    fn a_question_after_a_bake_is_not_drawn_over_by_its_countdown() {
        let (mut reporter, screen) = on_screen(ProgressOptions {
            refresh: Some(Duration::from_millis(2)),
            ..options(3)
        });
        after_canaries(
            &mut reporter,
            [Event::GateStarted {
                wave: 1,
                gate: GateStart::Bake {
                    duration_ms: 240_000,
                    until_ms: 240_000,
                },
            }],
        );
        let (answer, answers) = std::sync::mpsc::channel();
        let prompt = reporter.prompt().with_io(Box::new(ScreenIo {
            screen: screen.clone(),
            answers: Mutex::new(answers),
        }));
        let next = next_wave(12);
        let asking = std::thread::spawn(move || prompt.confirm(&next));
        while !screen.text().ends_with("[y/N]") {
            std::thread::yield_now();
        }
        // Some twenty ticks of the countdown's timer.
        std::thread::sleep(Duration::from_millis(40));
        let text = screen.text();
        assert!(text.ends_with("Start wave 2? [y/N]"), "drawn over:\n{text}");
        assert!(!text.contains("baking"), "{text}");
        answer.send("y\n".to_owned()).unwrap();
        assert!(asking.join().unwrap());
    }

    #[test]
    fn a_bake_shows_its_time_left() {
        let (mut reporter, screen) = on_screen(options(3));
        after_canaries(
            &mut reporter,
            [Event::GateStarted {
                wave: 1,
                gate: GateStart::Bake {
                    duration_ms: 240_000,
                    until_ms: 240_000,
                },
            }],
        );
        insta::assert_snapshot!("baking", screen.text());
        feed(
            &mut reporter,
            [Event::GateFinished {
                wave: 1,
                gate: Gate::Bake,
                passed: true,
                detail: None,
                elapsed_ms: 240_000,
            }],
        );
        insta::assert_snapshot!("baked", screen.text());
    }

    #[test]
    fn a_check_shows_how_many_passed() {
        let (mut reporter, screen) = on_screen(options(3));
        after_canaries(
            &mut reporter,
            [
                Event::GateStarted {
                    wave: 1,
                    gate: GateStart::Check {
                        query: "SELECT count(*) > 0 FROM users".into(),
                        total: 2,
                    },
                },
                Event::GateProgress {
                    wave: 1,
                    gate: Gate::Check,
                    passed: 1,
                    total: 2,
                },
            ],
        );
        insta::assert_snapshot!("checking", screen.text());
        feed(
            &mut reporter,
            [
                Event::GateProgress {
                    wave: 1,
                    gate: Gate::Check,
                    passed: 2,
                    total: 2,
                },
                Event::GateFinished {
                    wave: 1,
                    gate: Gate::Check,
                    passed: true,
                    detail: Some("passed on 2/2".into()),
                    elapsed_ms: 30,
                },
            ],
        );
        insta::assert_snapshot!("checked", screen.text());
    }

    #[test]
    fn the_eta_counts_migration_time_not_gates() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = Clock::default();
        clock.start(t0);
        // Two canaries in 2 s, then a 4 min bake, then one more tenant in 1 s.
        clock.pause(t0 + s(2));
        assert_eq!(clock.eta(2, 12, t0 + s(120)), Some(s(10)), "frozen during the bake");
        clock.resume(t0 + s(242));
        assert_eq!(clock.working(t0 + s(243)), s(3));
        assert_eq!(clock.eta(3, 12, t0 + s(243)), Some(s(9)));
        assert_eq!(clock.per_sec(3, t0 + s(243)), 1.0);
        assert_eq!(clock.eta(0, 12, t0 + s(243)), None);
    }

    #[test]
    fn events_in_any_order_do_not_panic() {
        let unknown = || {
            vec![
                step_started("ghost", 3, "add_email", 3, 7),
                Event::StepFinished {
                    wave: 1,
                    tenant: id("ghost"),
                    version: Version::int(3),
                    direction: Direction::Down,
                    duration_ms: 1,
                },
                Event::TenantFinished {
                    wave: 1,
                    report: report("never-started", Outcome::NotStarted, None, None, vec![]),
                },
                Event::TenantFinished {
                    wave: 1,
                    report: report("ghost", Outcome::Stopped, None, None, vec![]),
                },
                Event::TenantFinished {
                    wave: 1,
                    report: report("ghost", Outcome::Succeeded, None, None, vec![]),
                },
                Event::TenantRolledBack {
                    wave: 1,
                    tenant: id("ghost"),
                    from: None,
                    to: None,
                    error: Some("no".into()),
                },
                Event::RollbackStarted { tenants: 0 },
                Event::TenantRolledBack {
                    wave: 1,
                    tenant: id("ghost"),
                    from: None,
                    to: None,
                    error: None,
                },
                Event::WaveFinished {
                    wave: 9,
                    summary: Summary::default(),
                },
                Event::Stopping {
                    reason: crate::model::policy::StopReason::Abandoned,
                },
                Event::WaveStarted {
                    wave: 2,
                    canary: false,
                    tenants: 0,
                },
                Event::GateProgress {
                    wave: 7,
                    gate: Gate::Check,
                    passed: 9,
                    total: 1,
                },
                Event::GateFinished {
                    wave: 7,
                    gate: Gate::Bake,
                    passed: false,
                    detail: None,
                    elapsed_ms: 0,
                },
                Event::GateStarted {
                    wave: 7,
                    gate: GateStart::Bake {
                        duration_ms: 10,
                        until_ms: 0,
                    },
                },
                started("ghost"),
                started("ghost"),
                Event::RunFinished {
                    summary: Summary::default(),
                    stop_reason: crate::model::policy::StopReason::Abandoned,
                },
                Event::RunStarted {
                    run_id: "late".into(),
                    command: "stamp".into(),
                    target: None,
                    tenants: 0,
                },
            ]
        };
        for max_lines in [0, 1, 8] {
            let (mut reporter, _screen) = on_screen(options(max_lines));
            feed(&mut reporter, unknown());
            feed(&mut reporter, unknown().into_iter().rev());
            reporter.finish();
            let mut hidden = ProgressReporter::with_options(ProgressDrawTarget::hidden(), options(max_lines));
            feed(&mut hidden, unknown().into_iter().rev());
            hidden.finish();
        }
    }
}
