//! How the gates between waves read: the lines that say a gate started and ended (and
//! that the run waits for its change window), the question `--confirm` asks, and the
//! plain prompt used when no progress bars are drawn.

use std::io::{BufRead, Write};
use std::time::Duration;

use crate::exec::dispatch::Prompt;
use crate::exec::events::{Event, Gate, GateStart, NextWave};

/// The line a gate event prints in text output, if it prints one.
pub fn line(event: &Event) -> Option<String> {
    match event {
        Event::GateStarted {
            wave,
            gate: GateStart::Bake { duration_ms, until_ms },
        } => Some(format!(
            "wave {wave}: baking {} (until {} UTC)",
            short(Duration::from_millis(*duration_ms)),
            hms(*until_ms)
        )),
        Event::GateStarted {
            wave,
            gate: GateStart::Check { total, .. },
        } => Some(format!("wave {wave}: checking {total} tenant(s)")),
        Event::GateStarted {
            wave,
            gate: GateStart::Confirm { next },
        } => Some(format!(
            "wave {wave}: asking before wave {} ({} tenant(s))",
            next.next_wave, next.tenants
        )),
        Event::GateFinished {
            wave,
            gate,
            passed,
            detail,
            elapsed_ms,
        } => {
            let detail = detail.as_deref().unwrap_or_default();
            Some(match (gate, passed) {
                (Gate::Check, true) => format!("wave {wave}: check {detail}"),
                (Gate::Check, false) => format!("wave {wave}: check FAILED: {detail}"),
                (Gate::Bake, true) => format!(
                    "wave {wave}: baked {}",
                    short(Duration::from_secs((elapsed_ms + 500) / 1000))
                ),
                (Gate::Bake, false) => format!("wave {wave}: bake ended early: {detail}"),
                (Gate::Confirm, _) => format!("wave {wave}: {detail}"),
            })
        }
        Event::WindowWait { window, opens_at, .. } => Some(format!(
            "change window `{window}` is closed: no tenant starts until it opens at {opens_at}; tenants in flight finish"
        )),
        _ => None,
    }
}

/// What `--confirm` asks: what the next wave holds, then the question (no newline: the
/// answer is typed after it).
pub fn question(next: &NextWave) -> String {
    let mut shown = next
        .first_tenants
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let more = next.tenants.saturating_sub(next.first_tenants.len());
    if more > 0 {
        shown.push_str(&format!(" and {more} more"));
    }
    let mut on = next.engines.join(", ");
    if next.hosts > 0 {
        on.push_str(&format!(" on {} host(s)", next.hosts));
    }
    format!(
        "next: wave {}{}, {} tenant(s) ({on}): {shown}\nStart wave {}? [y/N] ",
        next.next_wave,
        if next.canary { " (canary)" } else { "" },
        next.tenants,
        next.next_wave
    )
}

/// True for the answers that mean yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES")
}

/// Asks on standard error and reads the answer from standard input: for runs without
/// progress bars (text lines or JSON Lines on standard output).
#[derive(Debug, Default)]
pub struct PlainPrompt;

impl Prompt for PlainPrompt {
    fn confirm(&self, next: &NextWave) -> bool {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{}", question(next));
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .is_ok_and(|_| is_yes(&answer))
    }

    fn abandon(&self) {
        eprintln!();
    }
}

/// A duration as people read it, to the second: `4m`, `3m 52s`, `1h 2m`; under a second
/// shows as `0s`. Rounded up, so a wait with time left never shows as over.
pub fn short(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// `HH:MM:SS` of a Unix-epoch millisecond time, UTC.
pub fn hms(at_ms: u64) -> String {
    let secs = at_ms / 1000;
    format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fleet::TenantId;

    fn next(tenants: usize, hosts: usize, engines: &[&str]) -> NextWave {
        NextWave {
            next_wave: 2,
            canary: false,
            tenants,
            first_tenants: (1..=tenants.min(NextWave::FIRST))
                .map(|n| TenantId::new(&format!("tenant-{n:02}")).unwrap())
                .collect(),
            hosts,
            engines: engines.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_question_shows_what_the_next_wave_holds() {
        insta::assert_snapshot!(question(&next(12, 2, &["postgres"])), @r"
        next: wave 2, 12 tenant(s) (postgres on 2 host(s)): tenant-01, tenant-02, tenant-03, tenant-04, tenant-05 and 7 more
        Start wave 2? [y/N]
        ");
        insta::assert_snapshot!(question(&next(2, 0, &["sqlite"])), @r"
        next: wave 2, 2 tenant(s) (sqlite): tenant-01, tenant-02
        Start wave 2? [y/N]
        ");
    }

    #[test]
    fn text_output_has_a_line_when_a_gate_starts_and_ends() {
        let finished = |gate, passed, detail: Option<&str>, elapsed_ms| Event::GateFinished {
            wave: 1,
            gate,
            passed,
            detail: detail.map(str::to_owned),
            elapsed_ms,
        };
        let events = [
            Event::GateStarted {
                wave: 1,
                gate: GateStart::Check {
                    query: "SELECT true".into(),
                    total: 12,
                },
            },
            Event::GateProgress {
                wave: 1,
                gate: Gate::Check,
                passed: 3,
                total: 12,
            },
            finished(Gate::Check, true, Some("passed on 12/12"), 40),
            finished(Gate::Check, false, Some("check returned false on tenant `a1`"), 40),
            Event::GateStarted {
                wave: 1,
                gate: GateStart::Bake {
                    duration_ms: 240_000,
                    until_ms: 86_400_000 + 3_723_000,
                },
            },
            finished(Gate::Bake, true, None, 240_004),
            finished(Gate::Bake, false, Some("interrupted"), 1_200),
            Event::GateStarted {
                wave: 1,
                gate: GateStart::Confirm {
                    next: next(12, 2, &["postgres"]),
                },
            },
            finished(Gate::Confirm, true, Some("confirmed"), 5_000),
            Event::WindowWait {
                wave: 2,
                window: "Mon-Fri 02:00-05:00 Europe/Copenhagen".into(),
                opens_at: "2026-01-15T02:00:00+01:00[Europe/Copenhagen]".into(),
                opens_at_ms: 1_768_438_800_000,
            },
        ];
        let lines: Vec<String> = events.iter().filter_map(line).collect();
        insta::assert_snapshot!(lines.join("\n"), @r"
        wave 1: checking 12 tenant(s)
        wave 1: check passed on 12/12
        wave 1: check FAILED: check returned false on tenant `a1`
        wave 1: baking 4m (until 01:02:03 UTC)
        wave 1: baked 4m
        wave 1: bake ended early: interrupted
        wave 1: asking before wave 2 (12 tenant(s))
        wave 1: confirmed
        change window `Mon-Fri 02:00-05:00 Europe/Copenhagen` is closed: no tenant starts until it opens at 2026-01-15T02:00:00+01:00[Europe/Copenhagen]; tenants in flight finish
        ");
    }

    #[test]
    fn durations_read_short_and_round_up() {
        assert_eq!(short(Duration::from_secs(240)), "4m");
        assert_eq!(short(Duration::from_millis(231_200)), "3m 52s");
        assert_eq!(short(Duration::from_millis(1)), "1s");
        assert_eq!(short(Duration::ZERO), "0s");
        assert_eq!(short(Duration::from_secs(3720)), "1h 2m");
        assert_eq!(hms(86_400_000 + 3_723_000), "01:02:03");
    }
}
