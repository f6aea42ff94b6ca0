//! Text output that is not a terminal (a CI log, a file): each line with its time, a line
//! when a tenant starts and one when it ends. A no-op over 100,000 tenants printed 200,000
//! lines there; now the first [`LISTED_AT_TARGET`] tenants found at their target are listed
//! and the rest counted: a line every [`COUNT_EVERY_MS`] while they come and one at the
//! end. From then on a tenant's `started` line is held until its end (at most [`HOLD_MS`])
//! to learn whether it is one of them; a tenant whose `started` line was printed always
//! gets its end. A kill -9 loses at most the last [`HOLD_MS`] of held lines; the ledger
//! has every tenant's start.

use std::collections::VecDeque;
use std::io::Write;

use crate::exec::events::{Event, Stamped};
use crate::model::fleet::TenantId;
use crate::report::text::{TextReporter, clock};

/// Tenants found at their target listed one by one before the rest are counted.
pub const LISTED_AT_TARGET: usize = 40;
/// How long a `started` line waits for its tenant's end before it is printed anyway.
pub const HOLD_MS: u64 = 1000;
/// How often, at most, a line counts the tenants at their target not listed.
pub const COUNT_EVERY_MS: u64 = 10_000;

/// Writes a run's events as timestamped lines, counting tenants at their target past the
/// first [`LISTED_AT_TARGET`].
pub struct LogWriter {
    text: TextReporter,
    /// `started` lines not printed yet, oldest first: tenant, time, line.
    held: VecDeque<(TenantId, u64, String)>,
    /// Tenants at their target listed so far.
    listed: usize,
    /// Tenants at their target not listed.
    unlisted: usize,
    /// `unlisted` when a line last said it, and that line's time.
    said: (usize, u64),
}

impl LogWriter {
    pub fn new(id_width: usize) -> Self {
        LogWriter {
            text: TextReporter::with_timestamps(id_width),
            held: VecDeque::new(),
            listed: 0,
            unlisted: 0,
            said: (0, 0),
        }
    }

    pub fn write_event(&mut self, out: &mut dyn Write, stamped: &Stamped) -> std::io::Result<()> {
        match &stamped.event {
            // Held only once tenants at their target are counted, not listed.
            Event::TenantStarted { tenant, .. } if self.listed >= LISTED_AT_TARGET => {
                if let Some(line) = self.text.line(&stamped.event) {
                    self.held.push_back((tenant.clone(), stamped.at_ms, line));
                }
                return Ok(());
            }
            Event::TenantFinished { report, .. } if self.text.at_target(report) => {
                let held = self.held.iter().rposition(|(t, ..)| *t == report.id);
                match held {
                    Some(k) if self.listed >= LISTED_AT_TARGET => {
                        let _ = self.text.line(&stamped.event);
                        self.held.remove(k);
                        self.unlisted += 1;
                        return Ok(());
                    }
                    _ => self.listed += 1,
                }
            }
            Event::RunFinished { .. } => {
                self.release(out, u64::MAX)?;
                // Said here for the last time: no count comes after the summary.
                self.said = (self.unlisted, stamped.at_ms);
                if self.unlisted > 0 {
                    let n = self.unlisted;
                    let line = format!("{n} more tenant(s) at the target, not listed one by one");
                    writeln!(out, "{} {line}", clock(stamped.at_ms))?;
                }
            }
            _ => {}
        }
        let Some(line) = self.text.line(&stamped.event) else {
            return Ok(());
        };
        self.release(out, u64::MAX)?;
        for line in line.lines() {
            writeln!(out, "{} {line}", clock(stamped.at_ms))?;
        }
        Ok(())
    }

    /// At `now_ms`: prints the `started` lines held longer than [`HOLD_MS`], and while
    /// tenants at their target go unlisted, a line counting them every [`COUNT_EVERY_MS`].
    pub fn tick(&mut self, out: &mut dyn Write, now_ms: u64) -> std::io::Result<()> {
        self.release(out, now_ms.saturating_sub(HOLD_MS))?;
        let (said, at) = self.said;
        if self.unlisted > said && now_ms >= at.saturating_add(COUNT_EVERY_MS) {
            // Every held line first, so lines stay in time order.
            self.release(out, u64::MAX)?;
            let n = self.unlisted;
            let line = format!("{n} tenant(s) at the target so far, not listed one by one");
            writeln!(out, "{} {line}", clock(now_ms))?;
            self.said = (n, now_ms);
        }
        Ok(())
    }

    /// Prints the held `started` lines of tenants that started at or before `until_ms`, in
    /// order: those before them too, so lines stay in time order.
    fn release(&mut self, out: &mut dyn Write, until_ms: u64) -> std::io::Result<()> {
        while let Some((_, at_ms, _)) = self.held.front() {
            if *at_ms > until_ms {
                break;
            }
            let (_, at_ms, line) = self.held.pop_front().expect("a front entry");
            writeln!(out, "{} {line}", clock(at_ms))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::migration::Version;
    use crate::model::run::{Outcome, Summary};
    use crate::report::text::tests::{id, report, step};

    fn started(t: &str, at_ms: u64) -> Stamped {
        Stamped {
            at_ms,
            event: Event::TenantStarted { tenant: id(t), wave: 1 },
        }
    }

    fn finished(t: &str, at_ms: u64, steps: &[i64]) -> Stamped {
        let steps: Vec<_> = steps.iter().map(|&v| step(v, 5)).collect();
        let start = steps.first().map_or(3, |_| 2);
        Stamped {
            at_ms,
            event: Event::TenantFinished {
                wave: 1,
                report: report(t, Outcome::Succeeded, Some(start), Some(3), steps),
            },
        }
    }

    fn run_started(tenants: usize) -> Stamped {
        Stamped {
            at_ms: 0,
            event: Event::RunStarted {
                run_id: "r".to_owned(),
                command: "up".to_owned(),
                target: Some(Version::int(3)),
                tenants,
            },
        }
    }

    fn run_finished(at_ms: u64, changed: usize, at_target: usize) -> Stamped {
        let summary = Summary {
            tenants: changed + at_target,
            succeeded: changed + at_target,
            changed,
            ..Summary::default()
        };
        Stamped {
            at_ms,
            event: Event::RunFinished {
                summary,
                stop_reason: crate::model::policy::StopReason::Completed,
            },
        }
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn past_the_first_forty_tenants_at_their_target_are_counted_not_listed() {
        let (mut log, mut out) = (LogWriter::new(6), Vec::new());
        log.write_event(&mut out, &run_started(101)).unwrap();
        for i in 0..100 {
            let t = format!("t{i:03}");
            log.write_event(&mut out, &started(&t, 10 * i)).unwrap();
            log.write_event(&mut out, &finished(&t, 10 * i, &[])).unwrap();
        }
        // A tenant that changed is listed, however many were at their target before it.
        log.write_event(&mut out, &started("moved", 2000)).unwrap();
        log.write_event(&mut out, &finished("moved", 2100, &[3])).unwrap();
        log.write_event(&mut out, &run_finished(2200, 1, 100)).unwrap();
        log.tick(&mut out, 2200 + COUNT_EVERY_MS).unwrap();
        let out = text(out);
        assert!(!out.contains("so far"), "{out}");
        assert_eq!(out.matches("nothing to do").count(), 40, "{out}");
        assert_eq!(out.matches(" started").count(), 41, "{out}");
        assert!(out.contains("t039    at 3, nothing to do"), "{out}");
        assert!(!out.contains("t040"), "{out}");
        assert!(out.contains("00:00:02.000   moved   started"), "{out}");
        assert!(out.contains("moved   2 -> 3  1 applied"), "{out}");
        let counted = out
            .find("60 more tenant(s) at the target, not listed one by one")
            .unwrap();
        assert!(counted < out.find("100 already at the target").unwrap(), "{out}");
    }

    #[test]
    fn a_started_line_waits_at_most_its_hold_and_then_its_tenant_always_gets_its_end() {
        let (mut log, mut out) = (LogWriter::new(6), Vec::new());
        log.write_event(&mut out, &run_started(50)).unwrap();
        for i in 0..40 {
            let t = format!("t{i:03}");
            log.write_event(&mut out, &started(&t, 0)).unwrap();
            log.write_event(&mut out, &finished(&t, 0, &[])).unwrap();
        }
        log.write_event(&mut out, &started("slow", 100)).unwrap();
        log.tick(&mut out, 100 + HOLD_MS - 1).unwrap();
        assert!(!text(out.clone()).contains("slow"));
        log.tick(&mut out, 100 + HOLD_MS).unwrap();
        assert!(text(out.clone()).contains("00:00:00.100   slow    started"));
        // At its target, past the first forty: listed all the same, its start being out.
        log.write_event(&mut out, &finished("slow", 1500, &[])).unwrap();
        assert!(text(out).contains("00:00:01.500   slow    at 3, nothing to do"));
    }

    #[test]
    fn lines_stay_in_time_order_and_the_count_is_said_every_ten_seconds_while_it_grows() {
        let (mut log, mut out) = (LogWriter::new(6), Vec::new());
        log.write_event(&mut out, &run_started(200)).unwrap();
        for i in 0..45 {
            let t = format!("t{i:03}");
            log.write_event(&mut out, &started(&t, 0)).unwrap();
            log.write_event(&mut out, &finished(&t, 0, &[])).unwrap();
        }
        log.write_event(&mut out, &started("a", 5)).unwrap();
        log.write_event(&mut out, &started("b", 6)).unwrap();
        log.write_event(&mut out, &finished("b", 7, &[3])).unwrap();
        // Held, younger than its hold when the count is said: printed before the count.
        log.write_event(&mut out, &started("c", COUNT_EVERY_MS - 100)).unwrap();
        log.tick(&mut out, COUNT_EVERY_MS).unwrap();
        log.tick(&mut out, COUNT_EVERY_MS + 500).unwrap();
        log.tick(&mut out, 2 * COUNT_EVERY_MS).unwrap();
        let out = text(out);
        let (a, b) = (
            out.find("a       started").unwrap(),
            out.find("b       started").unwrap(),
        );
        assert!(a < b && b < out.find("b       2 -> 3").unwrap(), "{out}");
        assert_eq!(
            out.matches("5 tenant(s) at the target so far, not listed one by one")
                .count(),
            1,
            "{out}"
        );
        assert!(out.contains("00:00:10.000 5 tenant(s) at the target so far"), "{out}");
        assert!(
            out.find("c       started").unwrap() < out.find("so far").unwrap(),
            "{out}"
        );
    }
}
