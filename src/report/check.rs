//! `check`'s report: a table per engine with each migration's verdict and time, the diff or
//! the error under the migration it belongs to, and a closing count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};

use crate::model::check::{CheckReport, Verdict};

/// The report for people.
pub fn text(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for engine in &report.engines {
        let _ = writeln!(out, "{} ({})", engine.engine, engine.scratch);
        let mut t = Table::new();
        t.load_preset(NOTHING)
            .set_header(["MIGRATION", "VERDICT", "TIME"].map(Cell::new));
        let mut details = Vec::new();
        for m in &engine.migrations {
            *counts.entry(m.verdict.name()).or_default() += 1;
            t.add_row(vec![
                m.label.clone(),
                m.verdict.name().to_owned(),
                format!("{}ms", m.took.as_millis()),
            ]);
            let lines = detail(&m.verdict);
            if !lines.is_empty() {
                details.push((m.label.clone(), lines));
            }
        }
        if !engine.migrations.is_empty() {
            for line in t.to_string().lines() {
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        for (label, lines) in details {
            let _ = writeln!(out, "  {label}:");
            for line in lines {
                let _ = writeln!(out, "    {line}");
            }
        }
        if let Some(error) = &engine.error {
            let _ = writeln!(out, "  error: {error}");
        }
        out.push('\n');
    }
    let total: usize = counts.values().sum();
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    let verdict = if report.passes() { "passed" } else { "FAILED" };
    let strict = if report.strict { " (--strict)" } else { "" };
    let _ = writeln!(
        out,
        "check {verdict}{strict}: {total} migration(s) on {} engine(s): {}",
        report.engines.len(),
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );
    out
}

/// What to show under a migration's row: its diff or its error.
fn detail(verdict: &Verdict) -> Vec<String> {
    match verdict {
        Verdict::DownIncomplete { diff } | Verdict::RedoDiffers { diff } => {
            diff.iter().map(|d| format!("- {d}")).collect()
        }
        Verdict::UpFails { error } | Verdict::DownFails { error } | Verdict::RedoFails { error } => {
            vec![error.clone()]
        }
        Verdict::Irreversible { empty_down: true } => vec!["its down script holds no statement".to_owned()],
        Verdict::Irreversible { empty_down: false } => vec!["it has no down script".to_owned()],
        Verdict::Ok | Verdict::NotChecked => Vec::new(),
    }
}

/// Each failure, on one line: `sqlite 0002_audit: down-incomplete (index users_email_idx
/// left behind)`, for a refusal's message.
pub fn failures(report: &CheckReport) -> Vec<String> {
    let mut out = Vec::new();
    for engine in &report.engines {
        if let Some(error) = &engine.error {
            out.push(format!("{}: {error}", engine.engine));
        }
        for m in engine.migrations.iter().filter(|m| !m.verdict.passes(report.strict)) {
            let details = detail(&m.verdict);
            let why = match details.as_slice() {
                [] => String::new(),
                lines => format!(" ({})", lines.join("; ").trim_start_matches("- ").replace("; - ", "; ")),
            };
            out.push(format!("{} {}: {}{why}", engine.engine, m.label, m.verdict.name()));
        }
    }
    out
}

/// The report as one JSON document.
pub fn json(report: &CheckReport) -> String {
    let mut value = serde_json::to_value(report).expect("a check report serialises");
    value["passed"] = serde_json::Value::Bool(report.passes());
    value.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::catalog::{Difference, Kind};
    use crate::model::check::{EngineCheck, MigrationCheck};
    use crate::model::fleet::Engine;
    use crate::model::migration::Version;

    fn report() -> CheckReport {
        let m = |n: i64, label: &str, verdict| MigrationCheck {
            version: Version::int(n),
            label: label.into(),
            verdict,
            took: Duration::from_millis(3),
        };
        CheckReport {
            strict: false,
            engines: vec![EngineCheck {
                engine: Engine::Sqlite,
                scratch: "temporary file".into(),
                migrations: vec![
                    m(1, "0001_users", Verdict::Ok),
                    m(
                        2,
                        "0002_email_index",
                        Verdict::DownIncomplete {
                            diff: vec![Difference::Extra {
                                kind: Kind::Index,
                                name: "users_email_idx".into(),
                            }],
                        },
                    ),
                ],
                error: None,
            }],
        }
    }

    #[test]
    fn text_shows_verdicts_and_the_diff_under_its_migration() {
        let text = text(&report());
        assert!(text.contains("\n 0002_email_index  down-incomplete  3ms\n"), "{text}");
        assert!(
            text.contains("  0002_email_index:\n    - index users_email_idx left behind"),
            "{text}"
        );
        assert!(
            text.ends_with("check FAILED: 2 migration(s) on 1 engine(s): 1 down-incomplete, 1 ok\n"),
            "{text}"
        );
    }

    #[test]
    fn json_carries_the_verdict_the_diff_and_the_outcome() {
        let v: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(v["passed"], false);
        let m = &v["engines"][0]["migrations"][1];
        assert_eq!(m["verdict"], "down-incomplete");
        assert_eq!(m["version"], 2);
        assert_eq!(m["diff"][0]["change"], "extra");
        assert_eq!(m["diff"][0]["kind"], "index");
        assert_eq!(m["duration_ms"], 3);
    }
}
