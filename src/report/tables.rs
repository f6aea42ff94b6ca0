//! Tables and documents for `plan`, `history` and `runs`.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use serde::Serialize;

use crate::model::migration::{MigrationSet, Version};
use crate::model::refusal::Refusal;
use crate::model::sets::Sets;
use crate::model::window::Window;
use crate::plan::waves::{StepPlaced, WavePlan};
use crate::report::refusals::{Refused, grouped};
use jiff::Timestamp;

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
    /// Why a readable tenant is refused, for the grouped message under the table.
    #[serde(skip)]
    pub refusal: Option<Refusal>,
}

/// What a tenant would run: a range and a count past two migrations (`0001..0285, 285
/// migrations`), every migration with `verbose`.
fn would_run(steps: &[String], verbose: bool) -> String {
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
        return "nothing".to_owned();
    };
    if verbose || steps.len() <= 2 {
        return steps.join(", ");
    }
    let version = |label: &str| label.split('_').next().unwrap_or(label).to_owned();
    let down = if first.ends_with(" (down)") { " (down)" } else { "" };
    format!(
        "{}..{}{down}, {} migrations",
        version(first),
        version(last),
        steps.len()
    )
}

/// `plan` for people; `verbose` lists every migration a tenant would run. Refused tenants
/// are grouped by problem under the table, with what to do.
pub fn plan_text(sets: &Sets, rows: &[PlanRow], verbose: bool) -> String {
    let mut t = table(&["WAVE", "TENANT", "FROM", "TO", "WOULD RUN"]);
    let v = |v: Option<Version>| v.map_or("?".to_owned(), |v| v.to_string());
    for r in rows {
        let what = match (&r.refusal, &r.refused) {
            (Some(refusal), _) => format!("nothing: {} (see below)", refusal.tag()),
            (None, Some(why)) => format!("nothing: {why}"),
            (None, None) => would_run(&r.steps, verbose),
        };
        t.add_row(vec![r.wave.to_string(), r.id.clone(), v(r.from), v(r.to), what]);
    }
    let steps: usize = rows.iter().map(|r| r.steps.len()).sum();
    let ranges = !verbose && rows.iter().any(|r| r.refused.is_none() && r.steps.len() > 2);
    let refused: Vec<Refused> = rows
        .iter()
        .filter_map(|r| {
            r.refusal.as_ref().map(|refusal| Refused {
                id: &r.id,
                refusal,
                at: r.from,
            })
        })
        .collect();
    let problems = if refused.is_empty() {
        String::new()
    } else {
        format!(
            "\nLeft alone until their problem is solved:\n{}\n",
            grouped(sets, &refused)
        )
    };
    format!(
        "{}\n{problems}{steps} step(s) over {} tenant(s); nothing was changed.{}\n",
        trim_lines(&t.to_string()),
        rows.len(),
        if ranges {
            " `plan --verbose` lists every migration."
        } else {
            ""
        }
    )
}

/// One wave in `plan`: its number, whether it is the canary wave, its size, and the step
/// of the spec that formed it (`None`: the canaries, or the last wave of a size-only spec).
#[derive(Debug, Clone, Serialize)]
pub struct PlanWave {
    pub wave: usize,
    pub canary: bool,
    pub tenants: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// `plan`'s waves and what each step of the spec did.
pub fn plan_waves(planned: &WavePlan<'_>) -> Vec<PlanWave> {
    planned
        .waves
        .iter()
        .map(|w| PlanWave {
            wave: w.number,
            canary: w.canary,
            tenants: w.tenants.len(),
            step: planned
                .steps
                .iter()
                .find(|s| s.wave == Some(w.number))
                .map(|s| s.step.clone()),
        })
        .collect()
}

/// A step of the spec that placed no tenant, as a line for people: one that matched none
/// of the selected tenants (most likely a typo) is a warning; one whose tenants earlier
/// waves took, a note.
pub fn step_warnings(steps: &[StepPlaced]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.placed == 0)
        .map(|s| match s.matched {
            Some(0) => format!("warning: wave selector `{}` matched no selected tenant", s.step),
            Some(n) => format!(
                "note: wave selector `{}` placed no tenant: its {n} tenant(s) are in earlier waves",
                s.step
            ),
            None => format!("note: wave `{}` placed no tenant: earlier waves reached it", s.step),
        })
        .collect()
}

/// The waves under `plan`'s table, when the spec has selectors (a size-only spec's waves
/// are plain from the table's WAVE column).
pub fn waves_text(waves: &[PlanWave], steps: &[StepPlaced]) -> String {
    if !steps.iter().any(|s| s.matched.is_some()) {
        return String::new();
    }
    let mut t = table(&["WAVE", "TENANTS", "FROM"]);
    for w in waves {
        let from = match (&w.step, w.canary) {
            (_, true) => "canaries".to_owned(),
            (Some(step), false) => step.clone(),
            (None, false) => "the rest".to_owned(),
        };
        t.add_row(vec![w.wave.to_string(), w.tenants.to_string(), from]);
    }
    let mut out = format!("\n{}\n", trim_lines(&t.to_string()));
    for line in step_warnings(steps) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The fleet file's change window as `plan` shows it: open or closed at `now`, and until
/// when (in the window's zone).
#[derive(Debug, Clone, Serialize)]
pub struct PlanWindow {
    pub window: String,
    pub open: bool,
    /// When it closes, if open now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<String>,
    /// When it opens next, if closed now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
}

pub fn plan_window(window: &Window, now: Timestamp) -> PlanWindow {
    let zoned = |t: Timestamp| t.to_zoned_datetime(window.zone().clone()).to_string();
    let closes_at = window.closes(now);
    PlanWindow {
        window: window.to_string(),
        open: closes_at.is_some(),
        closes_at: closes_at.map(zoned),
        opens_at: match closes_at {
            Some(_) => None,
            None => window.next_open(now).map(zoned),
        },
    }
}

/// [`PlanWindow`]'s line under `plan`'s table.
pub fn window_text(w: &PlanWindow) -> String {
    match (&w.closes_at, &w.opens_at) {
        (Some(close), _) => format!("change window `{}`: open now, until {close}\n", w.window),
        (None, Some(open)) => format!(
            "change window `{}`: closed now; `up` starts no tenant before {open}\n",
            w.window
        ),
        (None, None) => format!("change window `{}`: closed\n", w.window),
    }
}

/// One migration's line in `history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub version: Version,
    pub name: String,
    pub reversible: bool,
    /// Irreversible because its down script holds no statement (not because it has none).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_down: bool,
    pub transactional: bool,
    pub checksum: String,
}

pub fn history_rows(set: &MigrationSet) -> Vec<HistoryRow> {
    set.iter()
        .map(|m| HistoryRow {
            version: m.version,
            name: m.name.clone(),
            reversible: m.is_reversible(),
            empty_down: m.empty_down,
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
            match (r.reversible, r.empty_down) {
                (true, _) => "yes",
                (false, true) => "no (empty down)",
                (false, false) => "no",
            }
            .to_owned(),
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
fn not_ok(r: &crate::model::record::RunRow) -> String {
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

pub fn runs_text(runs: &[crate::model::record::RunRow]) -> String {
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
        "MIGRATIONS",
    ]);
    let time = |ms: i64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    for r in runs {
        t.add_row(vec![
            r.run_id.clone(),
            r.command.clone(),
            match (r.steps, r.target) {
                (Some(n), _) => format!("-{n} step{}", if n == 1 { "" } else { "s" }),
                (None, Some(v)) => v.to_string(),
                (None, None) => String::new(),
            },
            time(r.started_ms),
            r.finished_ms.map_or("unfinished".to_owned(), time),
            r.tenants.to_string(),
            r.succeeded.to_string(),
            not_ok(r),
            crate::model::text::printable(r.stop_reason.as_deref().unwrap_or_default()),
            crate::model::text::printable(&r.runner),
            r.source.as_ref().map(source_short).unwrap_or_default(),
        ]);
    }
    if runs.is_empty() {
        return "No runs in the ledger yet.\n".to_owned();
    }
    format!("{}\n", trim_lines(&t.to_string()))
}

/// A run's migration set in a few characters: its fingerprint's first 12, and the git
/// commit's first 10 with `+` when the folder had uncommitted changes: `3f2a9c0d1e4b
/// git:9e1c2b7a4f+`.
pub fn source_short(s: &crate::model::record::RunSource) -> String {
    let fingerprint: String = s.fingerprint.chars().take(12).collect();
    match &s.git_commit {
        Some(commit) => {
            let commit: String = commit.chars().take(10).collect();
            format!("{fingerprint} git:{commit}{}", if s.git_dirty { "+" } else { "" })
        }
        None => fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_says_whether_the_window_is_open_and_until_when() {
        let window: Window = "Mon-Fri 02:00-05:00 Europe/Copenhagen".parse().unwrap();
        let open = plan_window(&window, "2026-01-14T02:00:00Z".parse().unwrap());
        assert_eq!(
            window_text(&open),
            "change window `Mon-Fri 02:00-05:00 Europe/Copenhagen`: open now, until \
             2026-01-14T05:00:00+01:00[Europe/Copenhagen]\n"
        );
        let closed = plan_window(&window, "2026-01-16T12:00:00Z".parse().unwrap());
        assert!(!closed.open);
        assert_eq!(
            closed.opens_at.as_deref(),
            Some("2026-01-19T02:00:00+01:00[Europe/Copenhagen]")
        );
        assert!(window_text(&closed).contains("closed now; `up` starts no tenant before 2026-01-19T02:00"));
    }

    fn row(wave: usize, id: &str, from: i64, to: i64, steps: &[&str]) -> PlanRow {
        PlanRow {
            id: id.into(),
            wave,
            from: Some(Version::int(from)),
            to: Some(Version::int(to)),
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            refused: None,
            refusal: None,
        }
    }

    fn rows() -> Vec<PlanRow> {
        let all: Vec<String> = (1..=285).map(|v| format!("{v:04}_m{v}")).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        vec![
            row(1, "fresh", 0, 285, &all),
            row(1, "late", 282, 285, &all[282..]),
            row(2, "almost", 284, 285, &all[284..]),
            row(
                2,
                "back",
                285,
                280,
                &[
                    "0285_m285 (down)",
                    "0284_m284 (down)",
                    "0283_m283 (down)",
                    "0282_m282 (down)",
                    "0281_m281 (down)",
                ],
            ),
            row(2, "done", 285, 285, &[]),
            edited("edit1"),
            edited("edit2"),
        ]
    }

    /// A tenant whose applied migration 3 differs from its file.
    fn edited(id: &str) -> PlanRow {
        let refusal = Refusal::Modified {
            version: Version::int(3),
            path: "migrations/0003_m3.up.sql".into(),
            recorded: "ab".repeat(32),
            file_checksum: "cd".repeat(32),
        };
        PlanRow {
            refused: Some(refusal.to_string()),
            refusal: Some(refusal),
            ..row(2, id, 280, 280, &[])
        }
    }

    #[test]
    fn runs_show_a_stop_reasons_control_characters_escaped() {
        let run = crate::model::record::RunRow {
            run_id: "r1".into(),
            command: "up".into(),
            target: Some(Version::int(2)),
            steps: None,
            runner: "ops@vm".into(),
            started_ms: 0,
            finished_ms: Some(1),
            stop_reason: Some("wave 1: check failed: \x1b[2Jboom\nnext".into()),
            tenants: 1,
            succeeded: 0,
            failed: 1,
            rolled_back: 0,
            rollback_failed: 0,
            skipped: 0,
            not_started: 0,
            stopped: 0,
            source: Some(crate::model::record::RunSource {
                fingerprint: "0123456789abcdef".into(),
                git_commit: Some("fedcba9876543210".into()),
                git_dirty: true,
            }),
        };
        let out = runs_text(&[run]);
        assert!(out.contains("0123456789ab git:fedcba9876+"), "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("check failed: \\u{1b}[2Jboom next"), "{out}");
    }

    #[test]
    fn plan_summarises_each_tenants_migrations_as_a_range() {
        let rows = rows();
        insta::assert_snapshot!(plan_text(&MigrationSet::new(vec![]).unwrap().into(), &rows, false), @r"
            WAVE  TENANT  FROM  TO   WOULD RUN
            1     fresh   0     285  0001..0285, 285 migrations
            1     late    282   285  0283..0285, 3 migrations
            2     almost  284   285  0285_m285
            2     back    285   280  0285..0281 (down), 5 migrations
            2     done    285   285  nothing
            2     edit1   280   280  nothing: migration 3 edited (see below)
            2     edit2   280   280  nothing: migration 3 edited (see below)

            Left alone until their problem is solved:
            migration 3 was edited after it was applied: `migrations/0003_m3.up.sql` is cdcdcdcdcdcd now, was abababababab when applied
              2 tenants: edit1, edit2
              - an edit by mistake: restore the file, `git checkout -- migrations/0003_m3.up.sql`
              - a deliberate change: record the file as applied, `fleetmig stamp --checksums=3 --select id=edit1 --select id=edit2`

            294 step(s) over 7 tenant(s); nothing was changed. `plan --verbose` lists every migration.
        ");
        let json = serde_json::to_value(&rows[5]).unwrap();
        assert_eq!(
            json["refused"],
            rows[5].refused.as_deref().unwrap(),
            "JSON keeps the whole message"
        );
        assert!(json["refused"].as_str().unwrap().contains(&"ab".repeat(32)));
        assert_eq!(json.get("refusal"), None);
    }

    #[test]
    fn plan_verbose_lists_every_migration() {
        let text = plan_text(&MigrationSet::new(vec![]).unwrap().into(), &rows()[1..2], true);
        insta::assert_snapshot!(text, @r"
        WAVE  TENANT  FROM  TO   WOULD RUN
        1     late    282   285  0283_m283, 0284_m284, 0285_m285
        3 step(s) over 1 tenant(s); nothing was changed.
        ");
    }
}

/// One tenant's line in `adopt --dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptRow {
    pub id: String,
    /// The versions it would record, oldest first.
    pub record: Vec<Version>,
    /// The version that puts it at.
    pub at: Option<Version>,
    /// Why it would be refused (or could not be read), if it would.
    pub refused: Option<String>,
}

/// What `adopt` would do on `tenant`, from its read and planned histories.
pub fn adopt_row(
    tenant: &crate::model::fleet::Tenant,
    tool: crate::model::foreign::Tool,
    planned: Result<
        Result<(Vec<crate::model::migration::Applied>, Version), crate::model::refusal::Refusal>,
        crate::model::db_error::DbError,
    >,
) -> AdoptRow {
    let id = tenant.id.to_string();
    match planned {
        Ok(Ok((rows, at))) => AdoptRow {
            id,
            record: rows.iter().map(|r| r.version).collect(),
            at: Some(at),
            refused: None,
        },
        Ok(Err(refusal)) => AdoptRow {
            id,
            record: Vec::new(),
            at: None,
            refused: Some(refusal.to_string()),
        },
        Err(error) => AdoptRow {
            id,
            record: Vec::new(),
            at: None,
            refused: Some(format!("reading its history and {}: {error}", tool.table())),
        },
    }
}

/// `adopt --dry-run` as a table: what each tenant would record.
pub fn adopt_text(from: crate::model::foreign::Adoption<'_>, rows: &[AdoptRow]) -> String {
    let mut t = table(&["TENANT", "WOULD RECORD", "AT", "DETAIL"]);
    for r in rows {
        let record = match (r.record.first(), r.record.last()) {
            (Some(first), Some(last)) if r.record.len() > 1 => {
                format!("{} migrations, {first}..{last}", r.record.len())
            }
            (Some(one), _) => format!("1 migration, {one}"),
            _ => "-".to_owned(),
        };
        t.add_row(vec![
            r.id.clone(),
            record,
            r.at.map_or("-".to_owned(), |v| v.to_string()),
            r.refused.clone().unwrap_or_default(),
        ]);
    }
    let refused = rows.iter().filter(|r| r.refused.is_some()).count();
    format!(
        "{}\nadopt {from} --dry-run: {} tenant(s) would be adopted, {refused} refused; nothing was written.\n",
        trim_lines(&t.to_string()),
        rows.len() - refused
    )
}
