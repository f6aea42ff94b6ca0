//! Live progress on a terminal: an overall bar, the current wave, and a capped set of
//! tenant lines, with the lines worth keeping printed above them into scrollback.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::events::{Event, Outcome, Stamped};
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
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
            "{elapsed:>4} [{bar:30}] {pos}/{len} tenants  {msg}  {per_sec:1}  ETA {eta}"
        } else {
            "[{bar:30}] {pos}/{len} tenants  {msg}"
        };
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
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
        };
        reporter.draw_overall();
        reporter
    }

    pub fn handle(&mut self, stamped: &Stamped) {
        let line = self.text.line(&stamped.event);
        match &stamped.event {
            Event::RunStarted { tenants, .. } => {
                self.total = *tenants;
                self.print(line);
                self.draw_overall();
            }
            Event::TenantStarted { tenant } => self.start(tenant),
            Event::StepStarted {
                tenant,
                version,
                name,
                direction,
                index,
                total,
            } => {
                self.start(tenant);
                let doing = step_label(*version, name, *direction, *index, *total);
                if let Some(flight) = self.in_flight.get_mut(tenant) {
                    flight.doing = doing;
                    if let Some(bar) = &flight.line {
                        bar.set_message(tenant_line(tenant, &flight.doing, self.options.id_width));
                    }
                }
            }
            Event::TenantFinished { report } => {
                self.end(&report.id);
                self.done += 1;
                match report.outcome {
                    Outcome::Failed { .. } => self.failed += 1,
                    Outcome::Skipped { .. } => self.skipped += 1,
                    Outcome::Succeeded | Outcome::NotStarted | Outcome::Stopped => {}
                }
                if matches!(
                    report.outcome,
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
            Event::WaveStarted { wave, canary, tenants } => {
                self.phase = Phase::Wave {
                    wave: *wave,
                    canary: *canary,
                    tenants: *tenants,
                    done: 0,
                    shown: line.is_some(),
                };
                self.print(line);
                self.draw_status();
            }
            Event::Stopping { reason } => {
                self.stopping = Some(reason.to_string());
                self.print(line);
                self.draw_status();
            }
            Event::RollbackStarted { tenants } => {
                self.phase = Phase::Rollback {
                    tenants: *tenants,
                    done: 0,
                };
                self.print(line);
                self.draw_status();
            }
            Event::TenantRolledBack { error, .. } => {
                if let Phase::Rollback { done, .. } = &mut self.phase {
                    *done += 1;
                }
                if error.is_some() {
                    self.print(line);
                }
                self.draw_status();
            }
            Event::Retrying { tenant, attempt, .. } => {
                if let Some(flight) = self.in_flight.get_mut(tenant) {
                    flight.doing = format!("retrying (attempt {attempt})");
                    if let Some(bar) = &flight.line {
                        bar.set_message(tenant_line(tenant, &flight.doing, self.options.id_width));
                    }
                }
                self.print(line);
            }
            Event::RunFinished { .. } => self.print(line),
            Event::StepFinished { .. } | Event::WaveFinished { .. } => {}
        }
    }

    /// Clears the bars; the printed lines stay. Dropping the reporter does the same.
    pub fn finish(self) {
        drop(self);
    }

    fn clear(&mut self) {
        self.overall.disable_steady_tick();
        let lines = self.in_flight.values_mut().filter_map(|f| f.line.take());
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
                    self.remove_line(bar);
                }
            }
        }
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

fn tenant_line(tenant: &TenantId, doing: &str, id_width: usize) -> String {
    format!("{:id_width$}  {doing}", tenant.as_str())
}

/// `0003_add_email (3/7)`, as `Migration::label` names the migration.
fn step_label(version: Version, name: &str, direction: Direction, index: usize, total: usize) -> String {
    let verb = match direction {
        Direction::Up => "",
        Direction::Down => "reverting ",
    };
    format!("{verb}{:04}_{name} ({index}/{total})", version.0)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;
    use crate::exec::events::Summary;
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
        Event::TenantStarted { tenant: id(tenant) }
    }

    fn succeeded(tenant: &str) -> Event {
        Event::TenantFinished {
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
                    target: Some(Version(7)),
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
                    report: report(
                        "tenant-02",
                        Outcome::Failed {
                            version: Version(1),
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
    fn lines_are_capped_and_freed_lines_go_to_the_longest_waiting() {
        let (mut reporter, screen) = on_screen(options(3));
        busy_wave(&mut reporter);
        insta::assert_snapshot!("busy_wave", screen.text());
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

    #[test]
    fn events_in_any_order_do_not_panic() {
        let unknown = || {
            vec![
                step_started("ghost", 3, "add_email", 3, 7),
                Event::StepFinished {
                    tenant: id("ghost"),
                    version: Version(3),
                    direction: Direction::Down,
                    duration_ms: 1,
                },
                Event::TenantFinished {
                    report: report("never-started", Outcome::NotStarted, None, None, vec![]),
                },
                Event::TenantFinished {
                    report: report("ghost", Outcome::Stopped, None, None, vec![]),
                },
                Event::TenantFinished {
                    report: report("ghost", Outcome::Succeeded, None, None, vec![]),
                },
                Event::TenantRolledBack {
                    tenant: id("ghost"),
                    from: None,
                    to: None,
                    error: Some("no".into()),
                },
                Event::RollbackStarted { tenants: 0 },
                Event::TenantRolledBack {
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
                    reason: crate::plan::policy::StopReason::Abandoned,
                },
                Event::WaveStarted {
                    wave: 2,
                    canary: false,
                    tenants: 0,
                },
                started("ghost"),
                started("ghost"),
                Event::RunFinished {
                    summary: Summary::default(),
                    stop_reason: crate::plan::policy::StopReason::Abandoned,
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
