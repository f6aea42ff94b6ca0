//! Tables and documents for `plan`, `history` and `runs`.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use serde::Serialize;

use crate::model::migration::{MigrationSet, Version};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.iter().copied().map(Cell::new));
    t
}

/// One tenant's line in `plan`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub id: String,
    /// The rollout wave the tenant is in (1 is the canaries, when there are any).
    pub wave: usize,
    pub from: Option<Version>,
    pub to: Option<Version>,
    /// The migrations that would run, in order, as `0003_name`.
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

pub fn plan_text(rows: &[PlanRow]) -> String {
    let mut t = table(&["WAVE", "TENANT", "FROM", "TO", "WOULD RUN"]);
    let v = |v: Option<Version>| v.map_or("?".to_owned(), |v| v.to_string());
    for r in rows {
        let what = match &r.refused {
            Some(why) => format!("nothing: {why}"),
            None if r.steps.is_empty() => "nothing".to_owned(),
            None => r.steps.join(", "),
        };
        t.add_row(vec![r.wave.to_string(), r.id.clone(), v(r.from), v(r.to), what]);
    }
    let steps: usize = rows.iter().map(|r| r.steps.len()).sum();
    format!(
        "{}\n{steps} step(s) over {} tenant(s); nothing was changed.\n",
        trim_lines(&t.to_string()),
        rows.len()
    )
}

/// One migration's line in `history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub version: Version,
    pub name: String,
    pub reversible: bool,
    pub transactional: bool,
    pub checksum: String,
}

pub fn history_rows(set: &MigrationSet) -> Vec<HistoryRow> {
    set.iter()
        .map(|m| HistoryRow {
            version: m.version,
            name: m.name.clone(),
            reversible: m.is_reversible(),
            transactional: m.up.transactional,
            checksum: m.checksum.to_hex(),
        })
        .collect()
}

pub fn history_text(rows: &[HistoryRow]) -> String {
    let mut t = table(&["VERSION", "NAME", "REVERSIBLE", "TRANSACTION", "CHECKSUM"]);
    for r in rows {
        t.add_row(vec![
            r.version.to_string(),
            r.name.clone(),
            if r.reversible { "yes" } else { "no" }.to_owned(),
            if r.transactional { "yes" } else { "no" }.to_owned(),
            r.checksum[..12].to_owned(),
        ]);
    }
    format!("{}\n", trim_lines(&t.to_string()))
}

fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `fleetmig runs`: one line per run, newest first.
/// The tenants of a run that did not succeed, per status as the run's report names them.
fn not_ok(r: &crate::driver::ledger::RunRow) -> String {
    let counts = [
        (r.failed, "failed"),
        (r.rolled_back, "rolled_back"),
        (r.rollback_failed, "rollback_failed"),
        (r.skipped, "skipped"),
        (r.not_started, "not_started"),
        (r.stopped, "stopped"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

pub fn runs_text(runs: &[crate::driver::ledger::RunRow]) -> String {
    let mut t = table(&[
        "RUN",
        "COMMAND",
        "TARGET",
        "STARTED",
        "ENDED",
        "TENANTS",
        "OK",
        "NOT OK",
        "STOP REASON",
        "BY",
    ]);
    let time = |ms: i64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    for r in runs {
        t.add_row(vec![
            r.run_id.clone(),
            r.command.clone(),
            r.target.map_or(String::new(), |v| v.to_string()),
            time(r.started_ms),
            r.finished_ms.map_or("unfinished".to_owned(), time),
            r.tenants.to_string(),
            r.succeeded.to_string(),
            not_ok(r),
            r.stop_reason.clone().unwrap_or_default(),
            r.runner.clone(),
        ]);
    }
    if runs.is_empty() {
        return "No runs in the ledger yet.\n".to_owned();
    }
    format!("{}\n", trim_lines(&t.to_string()))
}
