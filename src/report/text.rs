//! Plain lines for people: one per finished tenant, and a summary; with timestamps, also
//! one per started tenant, for logs that no one watches live.

use crate::exec::events::Event;
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
use crate::model::run::{Outcome, Phase, Summary, TenantReport};
use crate::model::text::escape_controls;

/// Renders run events as lines of text.
pub struct TextReporter {
    /// Width of the tenant-id column.
    id_width: usize,
    /// Prefix each line with the event's time and add a line per started tenant: for output
    /// that is not a terminal, where no live display shows what is in flight.
    timestamps: bool,
    /// True for `stamp`, whose tenants change history rather than run steps.
    stamping: bool,
    /// True for `stamp --checksums` (a stamp with no target): versions stay as they are.
    checksums: bool,
    /// Tenants in the run, to leave out the wave line of a run that is one wave.
    total: usize,
    /// The run was abandoned (a second interrupt): tenants finishing from here on were read
    /// from their history, not seen through.
    abandoned: bool,
    /// Tenants seen starting: one the run never started prints no line when its
    /// `tenant_finished` comes at the run's end (the final report counts it).
    started: std::collections::HashSet<TenantId>,
    /// Per cut-off host, in the order it was cut off, the tenants the breaker skipped
    /// untried: counted, not printed one by one (a host of 5,000 tenants printed 5,000
    /// lines), and said once per host at the run's end. The events and the report name each.
    untried: Vec<(String, usize)>,
}

impl TextReporter {
    pub fn new(id_width: usize) -> Self {
        TextReporter {
            id_width: id_width.max(6),
            timestamps: false,
            stamping: false,
            checksums: false,
            total: 0,
            abandoned: false,
            started: std::collections::HashSet::new(),
            untried: Vec::new(),
        }
    }

    /// Lines that start with the event's time (`HH:MM:SS.mmm`, UTC), and a line for each
    /// tenant as it starts.
    pub fn with_timestamps(id_width: usize) -> Self {
        TextReporter {
            timestamps: true,
            ..TextReporter::new(id_width)
        }
    }

    /// The line an event prints, without its timestamp, if it prints one. Takes note of what
    /// later lines depend on (the command, the number of tenants), so every event must pass.
    /// Control characters a database put in it are shown escaped (see [`escape_controls`]).
    /// At the run's end, the lines of the tenants skipped untried come first, one per host.
    pub fn line(&mut self, event: &Event) -> Option<String> {
        let line = self.raw_line(event).map(|line| escape_controls(&line));
        if !matches!(event, Event::RunFinished { .. }) || self.untried.is_empty() {
            return line;
        }
        let mut lines: Vec<String> = std::mem::take(&mut self.untried)
            .into_iter()
            .map(|(host, n)| {
                escape_controls(&format!(
                    "host `{host}`: {n} tenant(s) skipped untried, the host cut off (each is in the report)"
                ))
            })
            .collect();
        lines.extend(line);
        Some(lines.join("\n"))
    }

    /// Notes what later lines depend on; false for an event that prints no line of its own
    /// (a tenant skipped untried, counted for its host's line at the run's end).
    fn note(&mut self, event: &Event) -> bool {
        match event {
            Event::TenantStarted { tenant, .. } => {
                self.started.insert(tenant.clone());
            }
            Event::TenantFinished { report, .. } => {
                if let Some(host) = untried_host(report) {
                    match self.untried.iter_mut().find(|(h, _)| h == host) {
                        Some((_, n)) => *n += 1,
                        None => self.untried.push((host.to_owned(), 1)),
                    }
                    return false;
                }
            }
            _ => {}
        }
        true
    }

    fn raw_line(&mut self, event: &Event) -> Option<String> {
        if !self.note(event) {
            return None;
        }
        match event {
            Event::RunStarted {
                run_id,
                command,
                target,
                tenants,
            } => {
                self.stamping = command == "stamp";
                self.checksums = self.stamping && target.is_none();
                self.total = *tenants;
                let target = target.map(|t| format!(", target {t}")).unwrap_or_default();
                let line = format!("fleetmig {command}: {tenants} tenant(s){target} (run {run_id})");
                Some(line)
            }
            Event::TenantStarted { tenant, .. } if self.timestamps => {
                Some(format!("  {:width$}  started", tenant.as_str(), width = self.id_width))
            }
            Event::TenantFinished { report, .. }
                if matches!(report.outcome, Outcome::NotStarted) && !self.started.contains(&report.id) =>
            {
                None
            }
            Event::TenantFinished { report, .. } => Some(self.tenant_line(report)),
            Event::StepRetried {
                tenant,
                attempt,
                wait_ms,
                error,
                ..
            } => Some(format!(
                "  {:width$}  retrying in {:.1}s (attempt {attempt}): {error}",
                tenant.as_str(),
                *wait_ms as f64 / 1000.0,
                width = self.id_width
            )),
            Event::RunFinished { summary, .. } if self.stamping => Some(format!(
                "{} tenant(s) stamped, {} failed, {} skipped.",
                summary.succeeded, summary.failed, summary.skipped
            )),
            Event::RunFinished { summary, .. } => Some(summary_line(summary)),
            Event::WaveStarted {
                canary: false, tenants, ..
            } if *tenants == self.total => None,
            Event::WaveStarted { wave, canary, tenants } => Some(format!(
                "wave {wave}{}: {tenants} tenant(s)",
                if *canary { " (canary)" } else { "" }
            )),
            Event::Stopping { reason } => {
                self.abandoned |= *reason == crate::model::policy::StopReason::Abandoned;
                Some(format!("stopping: {reason}"))
            }
            Event::RollbackStarted { tenants } => Some(format!("rolling back {tenants} tenant(s)")),
            Event::TenantRolledBack {
                tenant,
                from,
                to,
                error,
                ..
            } => {
                let id = format!("{:width$}", tenant.as_str(), width = self.id_width);
                Some(match error {
                    None => format!("  {id}  rolled back {} -> {}", v(*from), v(*to)),
                    Some(e) => format!("  {id}  ROLLBACK FAILED at {}: {e}", v(*to)),
                })
            }
            Event::HostCutOff { .. } | Event::HostRestored { .. } => host_line(event),
            Event::GateStarted { .. }
            | Event::GateProgress { .. }
            | Event::GateFinished { .. }
            | Event::WindowWait { .. } => crate::report::gates::line(event),
            Event::TenantStarted { .. }
            | Event::StepStarted { .. }
            | Event::StepFinished { .. }
            | Event::WaveFinished { .. } => None,
        }
    }

    /// True for a tenant that found itself at the target and did nothing: its line says
    /// "nothing to do".
    pub fn at_target(&self, r: &TenantReport) -> bool {
        matches!(r.outcome, Outcome::Succeeded)
            && r.steps.is_empty()
            && r.start_version.is_some()
            && r.start_version == r.final_version
            && !(self.stamping || self.abandoned)
    }

    pub fn tenant_line(&self, r: &TenantReport) -> String {
        let id = format!("{:width$}", r.id.as_str(), width = self.id_width);
        match &r.outcome {
            Outcome::Succeeded if self.checksums => {
                format!("  {id}  checksums recorded, at {}", v(r.final_version))
            }
            Outcome::Succeeded if self.stamping => {
                format!(
                    "  {id}  stamped at {} (history said {})",
                    v(r.final_version),
                    v(r.start_version)
                )
            }
            // Abandoned in flight, found at the target once its session ended: what ran is
            // not known, only where it is.
            Outcome::Succeeded if r.steps.is_empty() && (r.start_version.is_none() || self.abandoned) => format!(
                "  {id}  at {} (abandoned in flight; read from its history)",
                v(r.final_version)
            ),
            // Only the steps seen through before the abandon are known to have run.
            Outcome::Succeeded if self.abandoned => format!(
                "  {id}  {} -> {} (abandoned in flight; read from its history; {} seen through before)",
                v(r.start_version),
                v(r.final_version),
                r.steps.len()
            ),
            Outcome::Succeeded if r.recorded_only() => format!(
                "  {id}  {} -> {}, recorded without running SQL",
                v(r.start_version),
                v(r.final_version)
            ),
            Outcome::Succeeded if self.at_target(r) => format!("  {id}  at {}, nothing to do", v(r.final_version)),
            Outcome::Succeeded => {
                let verb = verb(r);
                let ms: u64 = r.steps.iter().map(|s| s.duration_ms).sum();
                format!(
                    "  {id}  {} -> {}  {} {verb} in {ms} ms",
                    v(r.start_version),
                    v(r.final_version),
                    r.steps.len()
                )
            }
            Outcome::Failed {
                error,
                dirty,
                version,
                during,
            } => {
                let dirty = match version {
                    Some(version) if *dirty => {
                        format!(", dirty at migration {version} [fix by hand, then `fleetmig stamp`]")
                    }
                    _ => String::new(),
                };
                let error = match during {
                    Phase::Migrating => error.to_string(),
                    other => other.with_error(&error.to_string()),
                };
                let moved = match r.steps.len() {
                    0 => String::new(),
                    n => format!("{n} {}, ", verb(r)),
                };
                let left = match r.final_version {
                    Some(at) => format!("left at {at}"),
                    None => "its version is unknown".to_owned(),
                };
                format!("  {id}  FAILED {error}; {moved}{left}{dirty}")
            }
            Outcome::Skipped { reason } => {
                format!("  {id}  SKIPPED ({}): {}", reason.name(), reason.brief())
            }
            Outcome::NotStarted => format!("  {id}  not started"),
            Outcome::Stopped => format!("  {id}  stopped at {} (target not reached)", v(r.final_version)),
        }
    }
}

/// What a tenant's steps did: "applied" going up, "reverted" going down.
fn verb(r: &TenantReport) -> &'static str {
    match r.steps.first() {
        Some(s) if s.direction == Direction::Down => "reverted",
        _ => "applied",
    }
}

fn v(v: Option<Version>) -> String {
    v.map_or("?".to_owned(), |v| v.to_string())
}

/// `HH:MM:SS.mmm` in UTC for milliseconds since the Unix epoch.
pub(crate) fn clock(at_ms: u64) -> String {
    let secs = at_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        at_ms % 1000
    )
}

/// The run's last line.
pub fn summary_line(s: &Summary) -> String {
    let secs = s.elapsed_ms as f64 / 1000.0;
    if s.is_success() && s.changed == 0 {
        return format!(
            "Nothing to do: all {} tenant(s) already at the target ({secs:.2} s).",
            s.tenants
        );
    }
    let failed = match s.failed_after_steps {
        0 => format!("{} failed", s.failed),
        n => format!("{} failed ({n} after running steps)", s.failed),
    };
    let mut line = format!(
        "{} tenant(s): {} changed, {} already at the target, {failed}, {} skipped",
        s.tenants,
        s.changed,
        s.succeeded - s.changed,
        s.skipped
    );
    if s.rolled_back + s.rollback_failed > 0 {
        line.push_str(&format!(
            ", {} rolled back, {} rollback failed",
            s.rolled_back, s.rollback_failed
        ));
    }
    if s.not_started + s.stopped > 0 {
        line.push_str(&format!(
            ", {} not started, {} stopped part way",
            s.not_started, s.stopped
        ));
    }
    line + &format!(" ({secs:.2} s).")
}

/// The host of a tenant the breaker skipped untried, its host cut off.
fn untried_host(report: &TenantReport) -> Option<&str> {
    match &report.outcome {
        Outcome::Skipped {
            reason: crate::model::run::SkipReason::Unreachable { error },
        } => error.cut_off_host(),
        _ => None,
    }
}

/// The breaker's lines: a host cut off, a host restored.
fn host_line(event: &Event) -> Option<String> {
    let printable = crate::model::text::printable;
    match event {
        Event::HostCutOff {
            host,
            failures,
            error,
            probe_after_ms,
        } => Some(format!(
            "host `{}` cut off: {failures} connection attempt(s) in a row failed ({}); its tenants not started yet \
             are skipped, untried; one probes it again at the next wave or after {}s",
            printable(host),
            crate::model::text::printable_bounded(error),
            probe_after_ms / 1000
        )),
        Event::HostRestored { host } => Some(format!(
            "host `{}` restored: a tenant connected; its tenants start again",
            printable(host)
        )),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::exec::events::Stamped;
    use crate::model::db_error::{DbError, ErrorKind};
    use crate::model::fleet::TenantId;
    use crate::model::policy::StopReason;
    use crate::model::refusal::Refusal;
    use crate::model::run::{FinalTenant, RunReport, Status, WaveReport};
    use crate::model::run::{Phase, SkipReason, StepDone};

    /// 2023-11-14T22:13:20Z, so the timestamps read as a clock and not as zeros.
    const T0: u64 = 1_700_000_000_000;

    pub(crate) fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    pub(crate) fn step(version: i64, duration_ms: u64) -> StepDone {
        StepDone {
            version: Version::int(version),
            name: format!("step_{version}"),
            direction: Direction::Up,
            duration_ms,
            repeatable: false,
        }
    }

    pub(crate) fn report(
        tenant: &str,
        outcome: Outcome,
        start: Option<i64>,
        end: Option<i64>,
        steps: Vec<StepDone>,
    ) -> TenantReport {
        TenantReport {
            id: id(tenant),
            outcome,
            start_version: start.map(Version::int),
            final_version: end.map(Version::int),
            steps,
        }
    }

    pub(crate) fn duplicate_column() -> DbError {
        DbError::new(
            ErrorKind::Sql,
            "applying 0002_add_email",
            "column \"email\" of relation \"users\" already exists",
        )
        .with_code("42701")
    }

    pub(crate) fn step_started(tenant: &str, version: i64, name: &str, index: usize, total: usize) -> Event {
        Event::StepStarted {
            wave: 1,
            tenant: id(tenant),
            version: Version::int(version),
            name: name.into(),
            direction: Direction::Up,
            index,
            total,
        }
    }

    fn step_finished(tenant: &str, version: i64, duration_ms: u64) -> Event {
        Event::StepFinished {
            wave: 1,
            tenant: id(tenant),
            version: Version::int(version),
            direction: Direction::Up,
            duration_ms,
        }
    }

    #[test]
    fn a_tenant_abandoned_in_flight_says_its_steps_were_not_all_seen() {
        let mut text = TextReporter::new(4);
        let finished = |steps| Event::TenantFinished {
            wave: 1,
            report: report("acme", Outcome::Succeeded, Some(0), Some(2), steps),
        };
        assert!(text.line(&finished(vec![step(1, 3)])).unwrap().contains("1 applied"));
        text.line(&Event::Stopping {
            reason: StopReason::Abandoned,
        });
        let line = text.line(&finished(vec![step(1, 3)])).unwrap();
        assert!(
            line.contains("0 -> 2 (abandoned in flight; read from its history; 1 seen through before)"),
            "{line}"
        );
        let line = text.line(&finished(vec![])).unwrap();
        assert!(
            line.contains("at 2 (abandoned in flight; read from its history)"),
            "{line}"
        );
    }

    /// A canary wave that succeeds, then a wave with a failure (with a database code), a
    /// dirty tenant, a stop for the failure limit, and a rollback with one failure.
    pub(crate) fn scripted_run() -> Vec<Stamped> {
        let started = |t: &str| Event::TenantStarted { wave: 1, tenant: id(t) };
        let events = vec![
            Event::RunStarted {
                run_id: "18b5c3a-2a".into(),
                command: "up".into(),
                target: Some(Version::int(3)),
                tenants: 4,
            },
            Event::WaveStarted {
                wave: 1,
                canary: true,
                tenants: 1,
            },
            started("acme"),
            step_started("acme", 2, "add_email", 1, 2),
            step_finished("acme", 2, 12),
            step_started("acme", 3, "index_email", 2, 2),
            step_finished("acme", 3, 30),
            Event::TenantFinished {
                wave: 1,
                report: report(
                    "acme",
                    Outcome::Succeeded,
                    Some(1),
                    Some(3),
                    vec![step(2, 12), step(3, 30)],
                ),
            },
            Event::WaveFinished {
                wave: 1,
                summary: Summary::default(),
            },
            Event::WaveStarted {
                wave: 2,
                canary: false,
                tenants: 3,
            },
            started("globex"),
            started("initech"),
            started("umbrella-corp"),
            step_started("globex", 2, "add_email", 1, 2),
            step_started("umbrella-corp", 2, "add_email", 1, 2),
            Event::TenantFinished {
                wave: 1,
                report: report(
                    "initech",
                    Outcome::Skipped {
                        reason: SkipReason::Refused {
                            refusal: Refusal::Dirty {
                                version: Version::int(2),
                            },
                        },
                    },
                    Some(2),
                    Some(2),
                    vec![],
                ),
            },
            Event::TenantFinished {
                wave: 1,
                report: report(
                    "globex",
                    Outcome::Failed {
                        version: Some(Version::int(2)),
                        during: Phase::Migrating,
                        error: duplicate_column(),
                        dirty: false,
                    },
                    Some(1),
                    Some(1),
                    vec![],
                ),
            },
            Event::Stopping {
                reason: StopReason::MaxFailures { failed: 1, limit: 1 },
            },
            step_finished("umbrella-corp", 2, 8),
            Event::TenantFinished {
                wave: 1,
                report: report("umbrella-corp", Outcome::Stopped, Some(1), Some(2), vec![step(2, 8)]),
            },
            Event::WaveFinished {
                wave: 2,
                summary: Summary::default(),
            },
            Event::RollbackStarted { tenants: 2 },
            Event::TenantRolledBack {
                wave: 1,
                tenant: id("umbrella-corp"),
                from: Some(Version::int(2)),
                to: Some(Version::int(1)),
                error: None,
            },
            Event::TenantRolledBack {
                wave: 1,
                tenant: id("acme"),
                from: Some(Version::int(3)),
                to: Some(Version::int(3)),
                error: Some("reverting 0003_index_email: lock timeout (code 55P03)".into()),
            },
            Event::RunFinished {
                summary: Summary {
                    tenants: 4,
                    succeeded: 1,
                    changed: 1,
                    failed: 1,
                    skipped: 1,
                    not_started: 0,
                    stopped: 1,
                    elapsed_ms: 1234,
                    ..Summary::default()
                },
                stop_reason: StopReason::MaxFailures { failed: 1, limit: 1 },
            },
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Stamped {
                at_ms: T0 + 37 * i as u64,
                event,
            })
            .collect()
    }

    fn render(mut reporter: TextReporter) -> String {
        let mut out = String::new();
        for line in scripted_run().iter().filter_map(|s| reporter.line(&s.event)) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// As a log (not a terminal) shows it: `crate::report::log::LogWriter`.
    fn render_log(id_width: usize) -> String {
        let (mut log, mut out) = (crate::report::log::LogWriter::new(id_width), Vec::new());
        for stamped in scripted_run() {
            log.write_event(&mut out, &stamped).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines() {
        insta::assert_snapshot!("lines", render(TextReporter::new(13)));
    }

    #[test]
    fn a_tenant_the_run_never_started_prints_no_line_at_the_end() {
        let mut text = TextReporter::new(6);
        let finished = |tenant: &str| Event::TenantFinished {
            wave: 2,
            report: report(tenant, Outcome::NotStarted, Some(0), Some(0), vec![]),
        };
        assert_eq!(text.line(&finished("later")), None);
        text.line(&Event::TenantStarted {
            tenant: id("began"),
            wave: 2,
        });
        assert_eq!(text.line(&finished("began")).as_deref(), Some("  began   not started"));
    }

    #[test]
    fn a_database_error_prints_as_text_not_as_terminal_controls() {
        let mut text = TextReporter::new(6);
        let error = DbError::new(ErrorKind::Sql, "applying 0001_a", "boom\x1b[2J\nnext\u{202E}");
        let line = text
            .line(&Event::TenantFinished {
                wave: 1,
                report: report(
                    "acme",
                    Outcome::Failed {
                        version: Some(Version::int(1)),
                        during: Phase::Migrating,
                        error,
                        dirty: false,
                    },
                    Some(0),
                    Some(0),
                    vec![],
                ),
            })
            .unwrap();
        assert_eq!(
            line,
            "  acme    FAILED applying 0001_a: boom\\u{1b}[2J next\\u{202e}; left at 0"
        );
    }

    #[test]
    fn a_retry_is_a_line_naming_the_attempt_the_wait_and_the_error() {
        let mut text = TextReporter::new(6);
        let error = DbError::new(ErrorKind::Unreachable, "connecting", "connection refused");
        let line = text.line(&Event::StepRetried {
            wave: 1,
            tenant: id("acme"),
            attempt: 2,
            wait_ms: 1250,
            error,
        });
        assert_eq!(
            line.as_deref(),
            Some("  acme    retrying in 1.2s (attempt 2): connecting: connection refused")
        );
    }

    #[test]
    fn lines_with_timestamps() {
        insta::assert_snapshot!("lines_with_timestamps", render_log(13));
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00.000");
        assert_eq!(clock(T0 + 86_400_000 + 5), "22:13:20.005");
        assert_eq!(clock(u64::MAX), "14:25:51.615");
    }

    // The final report is plain text for the same readers; its table is pinned here.
    fn final_tenant(id: &str, wave: usize, status: Status, start: i64, end: i64) -> FinalTenant {
        FinalTenant::new(
            id.into(),
            wave,
            status,
            Some(Version::int(start)),
            Some(Version::int(end)),
        )
    }

    #[test]
    fn final_report_table() {
        let failed = FinalTenant {
            failed_migration: Some(Version::int(2)),
            error: Some(duplicate_column().to_string()),
            error_code: Some("42701".into()),
            error_number: None,
            ..final_tenant("globex", 2, Status::Failed, 1, 1)
        };
        let skipped = FinalTenant {
            error: Some(
                Refusal::Dirty {
                    version: Version::int(2),
                }
                .to_string(),
            ),
            dirty: Some(Version::int(2)),
            ..final_tenant("initech", 2, Status::Skipped, 1, 1)
        };
        let rolled_back = FinalTenant {
            rollback: Some([Some(Version::int(2)), Some(Version::int(1))]),
            migrations_run: 1,
            ..final_tenant("umbrella-corp", 2, Status::RolledBack, 1, 1)
        };
        let rollback_failed = FinalTenant {
            rollback: Some([Some(Version::int(3)), Some(Version::int(3))]),
            rollback_error: Some("reverting 0003_index_email: lock timeout (code 55P03)".into()),
            migrations_run: 2,
            ..final_tenant("acme", 1, Status::RollbackFailed, 1, 3)
        };
        let stopped = FinalTenant {
            migrations_run: 1,
            ..final_tenant("hooli", 2, Status::Stopped, 1, 2)
        };
        let wave = |wave, canary, tenants, counts: &[(&'static str, usize)]| {
            WaveReport::new(
                wave,
                canary,
                tenants,
                counts
                    .iter()
                    .map(|(k, n)| (k.to_string(), *n))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let report = RunReport {
            run_id: "18b5c3a-2a".into(),
            command: "up".into(),
            stop_reason: StopReason::MaxFailures { failed: 1, limit: 1 },
            waves: vec![
                wave(1, true, 1, &[("rollback_failed", 1)]),
                wave(
                    2,
                    false,
                    5,
                    &[
                        ("failed", 1),
                        ("skipped", 1),
                        ("rolled_back", 1),
                        ("not_started", 1),
                        ("stopped", 1),
                    ],
                ),
            ],
            tenants: vec![
                stopped,
                rollback_failed,
                failed,
                skipped,
                rolled_back,
                FinalTenant {
                    start_version: None,
                    final_version: None,
                    ..final_tenant("wayne-ent", 2, Status::NotStarted, 0, 0)
                },
            ],
            summary: Summary::default(),
            hosts_cut_off: Vec::new(),
        };
        let text = crate::report::run::text(&report, crate::report::run::Rows::All);
        let statuses: Vec<&str> = text
            .lines()
            .skip(1)
            .map_while(|l| l.split_whitespace().nth(2).filter(|_| !l.starts_with("wave ")))
            .collect();
        assert_eq!(
            statuses,
            [
                "failed",
                "rolled_back",
                "rollback_failed",
                "stopped",
                "skipped",
                "not_started"
            ],
            "{text}"
        );
        insta::assert_snapshot!("final_report_table", text);
    }

    /// 203 tenants: two failed (one after a step, one while connecting), one rolled back,
    /// 23 changed, 177 not started.
    fn large_run() -> RunReport {
        let mut tenants: Vec<FinalTenant> = (1..=203)
            .map(|n| {
                let id = format!("tenant-{n:03}");
                match n {
                    1..=26 => FinalTenant {
                        migrations_run: 2,
                        ..final_tenant(&id, 1 + usize::from(n > 3), Status::Succeeded, 1, 3)
                    },
                    _ => FinalTenant {
                        start_version: None,
                        final_version: None,
                        ..final_tenant(&id, 3, Status::NotStarted, 0, 0)
                    },
                }
            })
            .collect();
        tenants[6] = FinalTenant {
            failed_migration: Some(Version::int(3)),
            error: Some("applying 0003_index_email: could not create unique index \"users_email\" (code 23505)".into()),
            error_code: Some("23505".into()),
            error_number: None,
            migrations_run: 1,
            ..final_tenant("tenant-007", 2, Status::Failed, 1, 2)
        };
        tenants[12] = FinalTenant {
            during: Some(Phase::Connecting),
            error: Some("connecting: error communicating with database: Connection refused (os error 111)".into()),
            start_version: None,
            final_version: None,
            ..final_tenant("tenant-013", 2, Status::Failed, 0, 0)
        };
        tenants[18] = FinalTenant {
            rollback: Some([Some(Version::int(3)), Some(Version::int(1))]),
            migrations_run: 2,
            ..final_tenant("tenant-019", 2, Status::RolledBack, 1, 1)
        };
        let summary = crate::model::run::summarize(&tenants, std::time::Duration::from_millis(8_250));
        let counts = |wave| {
            let mut counts = BTreeMap::new();
            for t in tenants.iter().filter(|t| t.wave == wave) {
                *counts.entry(t.status.name().to_owned()).or_insert(0) += 1;
            }
            counts
        };
        RunReport {
            run_id: "18b5c3a-2a".into(),
            command: "up".into(),
            stop_reason: StopReason::MaxFailures { failed: 2, limit: 2 },
            waves: vec![
                WaveReport::new(1, true, 3, counts(1)),
                WaveReport::new(2, false, 23, counts(2)),
                WaveReport::new(3, false, 177, counts(3)),
            ],
            summary,
            tenants,
            hosts_cut_off: Vec::new(),
        }
    }

    #[test]
    fn final_report_of_a_large_run_lists_failures_first_and_counts_the_rest() {
        let report = large_run();
        let more = "`fleetmig report 18b5c3a-2a --all` lists every tenant";
        let text = crate::report::run::text(&report, crate::report::run::Rows::Screenful { more });
        insta::assert_snapshot!(
            "final_report_large_run",
            format!("{}\n{text}", summary_line(&report.summary))
        );
    }

    #[test]
    fn final_report_with_every_row_lists_all_203() {
        let report = large_run();
        let text = crate::report::run::text(&report, crate::report::run::Rows::All);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("tenant-")).collect();
        assert_eq!(rows.len(), 203, "{text}");
        assert!(
            rows[0].starts_with("tenant-007") && rows[1].starts_with("tenant-013"),
            "{text}"
        );
        assert!(
            rows[2].starts_with("tenant-019") && rows[3].starts_with("tenant-001"),
            "{text}"
        );
        assert!(
            rows[202].starts_with("tenant-203") && !text.contains("lists every tenant"),
            "{text}"
        );
    }

    #[test]
    fn past_a_screenful_changed_tenants_are_counted_too_and_named_first() {
        let mut report = large_run();
        for t in report
            .tenants
            .iter_mut()
            .filter(|t| t.status == Status::NotStarted)
            .take(30)
        {
            *t = FinalTenant {
                migrations_run: 1,
                ..final_tenant(&t.id, 3, Status::Succeeded, 1, 3)
            };
        }
        let more = "`fleetmig report 18b5c3a-2a --all` lists every tenant";
        let text = crate::report::run::text(&report, crate::report::run::Rows::Screenful { more });
        let rows = text.lines().filter(|l| l.starts_with("tenant-")).count();
        assert_eq!(rows, 3, "{text}");
        assert!(
            text.contains("\n53 succeeded (changed): tenant-001, tenant-002, tenant-003 and 50 more\n147 not started: tenant-057, "),
            "{text}"
        );
    }

    /// 3,000 tenants: 2,500 failed, 400 skipped, 100 succeeded. The table stops at a
    /// screenful of failures; the rest of them and the skipped ones are counted, and the
    /// hint says where every row is.
    #[test]
    fn past_a_screenful_of_failures_the_rest_are_counted_not_listed() {
        let mut report = large_run();
        report.tenants = (1..=3000)
            .map(|n| {
                let id = format!("tenant-{n:04}");
                match n {
                    1..=2500 => FinalTenant {
                        failed_migration: Some(Version::int(2)),
                        error: Some("applying 0002_x: syntax error".into()),
                        ..final_tenant(&id, 1, Status::Failed, 1, 1)
                    },
                    2501..=2900 => FinalTenant {
                        error: Some("unreachable: host cut off".into()),
                        ..final_tenant(&id, 1, Status::Skipped, 0, 0)
                    },
                    _ => final_tenant(&id, 1, Status::Succeeded, 3, 3),
                }
            })
            .collect();
        let more = "`fleetmig report 18b5c3a-2a --all` lists every tenant";
        let text = crate::report::run::text(&report, crate::report::run::Rows::Screenful { more });
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("tenant-")).collect();
        assert_eq!(rows.len(), crate::report::run::SCREENFUL, "{text}");
        assert!(
            rows[0].starts_with("tenant-0001") && rows[39].starts_with("tenant-0040"),
            "{text}"
        );
        for line in [
            "2460 more failed: tenant-0041, tenant-0042, tenant-0043 and 2457 more",
            "400 more skipped: tenant-2501, tenant-2502, tenant-2503 and 397 more",
            "100 succeeded (already at the target): tenant-2901, tenant-2902, tenant-2903 and 97 more",
            "(`fleetmig report 18b5c3a-2a --all` lists every tenant)",
        ] {
            assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
        }
        assert!(text.lines().count() < 60, "{text}");
        let all = crate::report::run::text(&report, crate::report::run::Rows::All);
        assert_eq!(all.lines().filter(|l| l.starts_with("tenant-")).count(), 3000);
    }

    #[test]
    fn tenants_that_moved_then_failed_are_counted_as_such() {
        let moved = report(
            "acme",
            Outcome::Failed {
                version: Some(Version::int(3)),
                during: Phase::Migrating,
                error: duplicate_column(),
                dirty: false,
            },
            Some(1),
            Some(2),
            vec![step(2, 5)],
        );
        let unreached = report(
            "globex",
            Outcome::Failed {
                version: None,
                during: Phase::Connecting,
                error: DbError::new(ErrorKind::Unreachable, "connecting", "connection refused"),
                dirty: false,
            },
            None,
            None,
            vec![],
        );
        let summary = Summary::of(
            &[moved.clone(), unreached.clone()],
            std::time::Duration::from_millis(1500),
        );
        assert_eq!((summary.failed, summary.failed_after_steps), (2, 1));
        let text = TextReporter::new(6);
        insta::assert_snapshot!(
            "moved_then_failed",
            [
                text.tenant_line(&moved),
                text.tenant_line(&unreached),
                summary_line(&summary)
            ]
            .join("\n")
        );
    }
}
