//! The final report of `up` and `down`: a table for people, JSON or Markdown for files.

use std::fmt::Write;

use comfy_table::Table;
use comfy_table::presets::NOTHING;

use crate::exec::dispatch::{RunReport, Status};
use crate::model::migration::Version;

fn v(v: Option<Version>) -> String {
    v.map_or("?".to_owned(), |v| v.to_string())
}

/// Which tenants the table lists: all of them for small runs, otherwise those that need a look.
fn listed(report: &RunReport, limit: usize) -> Vec<&crate::exec::dispatch::FinalTenant> {
    if report.tenants.len() <= limit {
        return report.tenants.iter().collect();
    }
    report
        .tenants
        .iter()
        .filter(|t| t.status != Status::Succeeded)
        .take(limit)
        .collect()
}

/// The final version, and the migration the tenant is left dirty at.
fn final_version(t: &crate::exec::dispatch::FinalTenant) -> String {
    match t.dirty {
        Some(d) => format!("{} (dirty at {d})", v(t.final_version)),
        None => v(t.final_version),
    }
}

fn detail(t: &crate::exec::dispatch::FinalTenant) -> String {
    let mut out = String::new();
    if let Some(m) = t.failed_migration {
        let _ = write!(out, "migration {m}: ");
    }
    if let Some(e) = &t.error {
        out.push_str(e);
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
    out
}

/// The report as a text table, with counts per wave and the stop reason.
pub fn text(report: &RunReport) -> String {
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_header(vec!["TENANT", "WAVE", "STATUS", "START", "FINAL", "DETAIL"]);
    let rows = listed(report, 200);
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
    if rows.len() < report.tenants.len() {
        let _ = writeln!(
            out,
            "({} more tenant(s) not listed; --report FILE has them all)",
            report.tenants.len() - rows.len()
        );
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
    let _ = writeln!(out, "stop reason: {}", report.stop_reason);
    out
}

/// The report as Markdown.
pub fn markdown(report: &RunReport) -> String {
    let mut out = format!(
        "# fleetmig {} run {}\n\nStop reason: {}\n\n",
        report.command, report.run_id, report.stop_reason
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
    out.push_str("\n| tenant | wave | status | start | final | detail |\n| --- | --- | --- | --- | --- | --- |\n");
    for r in &report.tenants {
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
