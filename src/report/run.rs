//! The final report of `up` and `down`: a table for people, JSON or Markdown for files.

use std::fmt::Write;

use comfy_table::Table;
use comfy_table::presets::NOTHING;

use crate::model::migration::Version;
use crate::model::run::{FinalTenant, RunReport, Status};

fn v(v: Option<Version>) -> String {
    v.map_or("?".to_owned(), |v| v.to_string())
}

/// How many rows the table may have before succeeded and not-started tenants are
/// summarised as counts: about a screenful.
pub const SCREENFUL: usize = 40;

/// Which rows the text report lists.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// Every tenant.
    All,
    /// Every tenant that needs a look; succeeded and not-started ones too while the table
    /// stays within a screenful, else as counts. `more` says how to see every row.
    Screenful { more: &'a str },
}

/// Where a row sorts: what needs a look first, in the order it needs it.
fn rank(t: &FinalTenant) -> usize {
    match t.status {
        Status::Failed => 0,
        Status::RolledBack => 1,
        Status::RollbackFailed => 2,
        Status::Stopped => 3,
        Status::Skipped if t.skipped_untried() => 8,
        Status::Skipped => 4,
        Status::Succeeded if t.migrations_run > 0 => 5,
        Status::Succeeded => 6,
        Status::NotStarted => 7,
    }
}

/// Where a row is listed: by its rank, the tenants skipped untried among the skipped ones.
fn place(t: &FinalTenant) -> usize {
    match rank(t) {
        8 => 4,
        r => r,
    }
}

/// The groups that may be summarised as counts, by rank, and how they are named then. The
/// tenants the breaker skipped untried are one line per host below the table as well: a
/// cut-off host of 5,000 tenants is not 5,000 rows.
const SUMMARISED: [(usize, &str); 4] = [
    (8, "skipped untried (host cut off)"),
    (5, "succeeded (changed)"),
    (6, "succeeded (already at the target)"),
    (7, "not started"),
];

/// The rows that need a look past the first screenful, by rank, as they are counted.
const LOOK_PAST_SCREENFUL: [&str; 5] = [
    "more failed",
    "more rolled back",
    "more rollback failed",
    "more stopped",
    "more skipped",
];

/// The rows to list, in order, and the groups left out: (name, count, first few ids).
/// What needs a look comes first, a screenful of it at most: 100,000 failed tenants made
/// 100,000 lines.
fn listed<'r>(report: &'r RunReport, rows: Rows<'_>) -> (Vec<&'r FinalTenant>, Vec<(&'static str, Vec<&'r str>)>) {
    let mut sorted: Vec<&FinalTenant> = report.tenants.iter().collect();
    sorted.sort_by_key(|t| place(t));
    if matches!(rows, Rows::All) || sorted.len() <= SCREENFUL {
        return (sorted, Vec::new());
    }
    let look = sorted.iter().filter(|t| rank(t) < 5).count();
    let mut listed: Vec<&FinalTenant> = sorted.iter().take(look.min(SCREENFUL)).copied().collect();
    let mut hidden = Vec::new();
    for (r, name) in LOOK_PAST_SCREENFUL.iter().enumerate() {
        let past: Vec<&str> = sorted[listed.len()..look]
            .iter()
            .filter(|t| rank(t) == r)
            .map(|t| t.id.as_str())
            .collect();
        if !past.is_empty() {
            hidden.push((*name, past));
        }
    }
    let group = |rank_of| sorted.iter().filter(move |t| rank(t) == rank_of).copied();
    let mut room = SCREENFUL.saturating_sub(look);
    for (r, name) in SUMMARISED {
        let n = group(r).count();
        if n <= room {
            room -= n;
            listed.extend(group(r));
        } else {
            hidden.push((name, group(r).map(|t| t.id.as_str()).collect()));
        }
    }
    (listed, hidden)
}

/// The final version, and the migration the tenant is left dirty at.
fn final_version(t: &FinalTenant) -> String {
    match t.dirty {
        Some(d) => format!("{} (dirty at {d})", v(t.final_version)),
        None => v(t.final_version),
    }
}

fn detail(t: &FinalTenant) -> String {
    let mut out = String::new();
    let error = t.error.as_deref().unwrap_or_default();
    match (t.during, t.failed_migration) {
        // Before any migration ran, or between two: where, and where it was left.
        (Some(during), m) => {
            let mut at = Vec::new();
            if let Some(m) = m {
                at.push(format!("before migration {m}"));
            }
            if t.final_version.is_none() {
                at.push("version unknown".to_owned());
            }
            let at = if at.is_empty() {
                String::new()
            } else {
                format!(" ({})", at.join(", "))
            };
            let text = during.with_error(error);
            let (head, tail) = text.split_once(": ").unwrap_or((&text, ""));
            let _ = write!(out, "{head}{at}: {tail}");
        }
        (None, Some(m)) => {
            let _ = write!(out, "migration {m}: {error}");
        }
        // A refused tenant: its problem in a few words, the grouped message says the rest.
        (None, None) => match &t.refusal {
            Some(r) => {
                let _ = write!(out, "{} (see below)", r.tag());
            }
            None => out.push_str(error),
        },
    }
    let sep = if out.is_empty() { "" } else { "; " };
    match (t.rollback, &t.rollback_error) {
        (Some([from, to]), None) => {
            let _ = write!(out, "{sep}rolled back {} -> {}", v(from), v(to));
        }
        (Some([_, to]), Some(e)) => {
            let _ = write!(out, "{sep}rollback failed, left at {}: {e}", v(to));
        }
        (None, _) => {}
    }
    // Reports a ledger kept before errors were made printable may hold raw control bytes.
    crate::model::text::printable(&out)
}

/// The report as JUnit XML, so a CI system shows a rollout as it shows a test run: one
/// test suite per wave, one test case per tenant (its class name the run), a failed or
/// rolled-back tenant as a failure with the database's error, a skipped, stopped or
/// not-started tenant as skipped with why.
pub fn junit(report: &RunReport) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut xml = Report::new(format!("fleetmig {} {}", report.command, report.run_id));
    xml.set_time(std::time::Duration::from_millis(report.summary.elapsed_ms));
    let mut waves: std::collections::BTreeMap<usize, TestSuite> = std::collections::BTreeMap::new();
    for t in &report.tenants {
        let mut status = match t.status {
            Status::Succeeded => TestCaseStatus::success(),
            Status::Failed | Status::RolledBack | Status::RollbackFailed => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type(t.status.name());
                s
            }
            Status::Skipped | Status::NotStarted | Status::Stopped => {
                let mut s = TestCaseStatus::skipped();
                s.set_type(t.status.name());
                s
            }
        };
        let said = detail(t);
        if !said.is_empty() {
            status.set_message(said.clone());
            status.set_description(said);
        }
        let mut case = TestCase::new(t.id.clone(), status);
        case.set_classname(format!("fleetmig.{}.wave{}", report.command, t.wave));
        case.add_property(("start_version", v(t.start_version).as_str()));
        case.add_property(("final_version", final_version(t).as_str()));
        waves
            .entry(t.wave)
            .or_insert_with(|| TestSuite::new(format!("wave {}", t.wave)))
            .add_test_case(case);
    }
    xml.add_test_suites(waves.into_values());
    xml.to_string().expect("a report in memory serializes")
}

/// How many ids a summarised group names.
const NAMED: usize = 3;

/// The report as a text table (failures first), with counts per wave and the stop reason.
/// The line that says which migrations a run applied: its set's fingerprint shortened as
/// checksums are in text (`runs --format json` has it whole), and the git commit:
/// `migrations: set 3f2a9c0d1e4b, git commit 9e1c… with uncommitted changes`.
pub fn source_line(s: &crate::model::record::RunSource) -> String {
    let git = match &s.git_commit {
        Some(c) if s.git_dirty => format!(", git commit {c} with uncommitted changes"),
        Some(c) => format!(", git commit {c}"),
        None => String::new(),
    };
    let short: String = s.fingerprint.chars().take(12).collect();
    format!("migrations: set {short}{git}\n")
}

pub fn text(report: &RunReport, rows: Rows<'_>) -> String {
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_header(vec!["TENANT", "WAVE", "STATUS", "START", "FINAL", "DETAIL"]);
    let rows_kind = rows;
    let (rows, hidden) = listed(report, rows);
    for r in &rows {
        t.add_row(vec![
            r.id.clone(),
            r.wave.to_string(),
            r.status.name().to_owned(),
            v(r.start_version),
            final_version(r),
            detail(r),
        ]);
    }
    if !rows.is_empty() {
        let table: Vec<String> = t
            .to_string()
            .lines()
            .map(|l| l.trim_end().trim_start_matches(' ').to_owned())
            .collect();
        let _ = writeln!(out, "{}", table.join("\n"));
    }
    for (name, ids) in &hidden {
        let named = ids.iter().take(NAMED).copied().collect::<Vec<_>>().join(", ");
        let more = match ids.len().saturating_sub(NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let _ = writeln!(out, "{} {name}: {named}{more}", ids.len());
    }
    if let (false, Rows::Screenful { more }) = (hidden.is_empty(), rows_kind) {
        let _ = writeln!(out, "({more})");
    }
    for w in &report.waves {
        let counts: Vec<String> = w.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let canary = if w.canary { " (canary)" } else { "" };
        let _ = writeln!(
            out,
            "wave {}{canary}: {} tenant(s): {}",
            w.wave,
            w.tenants,
            counts.join(", ")
        );
    }
    for line in report.hosts_cut_off.iter().map(cut_off_line) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "stop reason: {}",
        crate::model::text::printable(&report.stop_reason.to_string())
    );
    out
}

/// A host the breaker cut off, as the final report says it.
fn cut_off_line(h: &crate::model::run::HostCutOff) -> String {
    let printable = crate::model::text::printable;
    format!(
        "host `{}` cut off at {} after {} failed connection attempt(s) in a row ({}): {} tenant(s) skipped untried{}",
        printable(&h.host),
        at(h.at_ms),
        h.failures,
        crate::model::text::printable_bounded(&h.error),
        h.skipped,
        if h.restored {
            "; a later tenant connected, and it was restored"
        } else {
            ""
        }
    )
}

/// When in the run a host was cut off: `+12.3s` from its start, `?` when not known.
fn at(ms: Option<u64>) -> String {
    ms.map_or_else(|| "?".to_owned(), |ms| format!("+{:.1}s", ms as f64 / 1000.0))
}

/// The Markdown table of the hosts the breaker cut off; empty when none was.
fn cut_off_table(report: &RunReport) -> String {
    if report.hosts_cut_off.is_empty() {
        return String::new();
    }
    let cell = |s: &str| crate::model::text::printable_bounded(s).replace('|', "\\|");
    let mut out = String::from(
        "\n## Hosts cut off (`--host-failures`)\n\n\
         | host | cut off at | failures in a row | last error | skipped untried | restored |\n\
         | --- | --- | ---: | --- | ---: | --- |\n",
    );
    for h in &report.hosts_cut_off {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            cell(&h.host).replace('`', "'"),
            at(h.at_ms),
            h.failures,
            cell(&h.error),
            h.skipped,
            if h.restored { "yes" } else { "no" }
        );
    }
    out
}

/// The report as Markdown: every tenant, failures first as in the text.
pub fn markdown(report: &RunReport) -> String {
    let mut out = format!(
        "# fleetmig {} run {}\n\nStop reason: {}\n\n",
        report.command,
        report.run_id,
        crate::model::text::printable(&report.stop_reason.to_string())
    );
    out.push_str("| wave | tenants | counts |\n| --- | --- | --- |\n");
    for w in &report.waves {
        let counts: Vec<String> = w.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            out,
            "| {}{} | {} | {} |",
            w.wave,
            if w.canary { " (canary)" } else { "" },
            w.tenants,
            counts.join(", ")
        );
    }
    out.push_str(&cut_off_table(report));
    out.push_str("\n| tenant | wave | status | start | final | detail |\n| --- | --- | --- | --- | --- | --- |\n");
    for r in listed(report, Rows::All).0 {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.id,
            r.wave,
            r.status.name(),
            v(r.start_version),
            final_version(r),
            detail(r).replace('|', "\\|")
        );
    }
    out
}

/// The report as one JSON document.
pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as the ledger kept it before failures said where they happened and the
    /// summary counted failed tenants that had run steps.
    const RECORDED_BEFORE: &str = r#"{"run_id":"r1","command":"up","stop_reason":{"kind":"max_failures","failed":1,"limit":1},
        "waves":[{"wave":1,"canary":false,"tenants":2,"counts":{"failed":1,"succeeded":1}}],
        "tenants":[
          {"id":"a","wave":1,"status":"succeeded","start_version":0,"final_version":2,"migrations_run":2},
          {"id":"b","wave":1,"status":"failed","start_version":null,"final_version":null,
           "error":"running init_sql: syntax error (code 42601)","error_code":"42601","migrations_run":0}],
        "summary":{"tenants":2,"succeeded":1,"changed":1,"failed":1,"elapsed_ms":5}}"#;

    #[test]
    fn a_report_recorded_before_phases_loads_and_prints_failures_first() {
        let report: RunReport = serde_json::from_str(RECORDED_BEFORE).unwrap();
        assert_eq!(report.tenants[1].during, None);
        assert_eq!(report.summary.failed_after_steps, 0);
        let text = text(&report, Rows::All);
        let rows: Vec<&str> = text.lines().skip(1).take(2).collect();
        assert!(
            rows[0].starts_with("b ") && rows[0].ends_with("running init_sql: syntax error (code 42601)"),
            "{text}"
        );
        assert!(rows[1].starts_with("a "), "{text}");
        let md = markdown(&report);
        assert!(md.find("| b |").unwrap() < md.find("| a |").unwrap(), "{md}");
    }

    /// A ledger written before errors were made printable, or a stop reason quoting what a
    /// server said: the text and Markdown reports show control characters escaped, each
    /// row on its line.
    #[test]
    fn raw_control_characters_in_a_kept_report_print_escaped() {
        let raw = RECORDED_BEFORE
            .replace("syntax error", r"syntax\u001b[2J\nerror")
            .replace(
                r#"{"kind":"max_failures","failed":1,"limit":1}"#,
                r#"{"kind":"gate_failed","wave":1,"detail":"check: \u001b]0;owned\u0007\nno"}"#,
            );
        let report: RunReport = serde_json::from_str(&raw).unwrap();
        for out in [text(&report, Rows::All), markdown(&report)] {
            assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out}");
            assert!(out.contains("syntax\\u{1b}[2J error"), "{out}");
            assert!(out.contains("check: \\u{1b}]0;owned\\u{7} no"), "{out}");
        }
    }
}
