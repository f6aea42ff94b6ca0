//! `status` and `wait` for people and machines: the tenants-per-version bar chart, the
//! tenant table, and the JSON documents.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use serde::Serialize;

use crate::exec::wait::WaitOutcome;
use crate::model::fleet::Engine;
use crate::model::migration::Version;
use crate::model::sets::Sets;
use crate::plan::status::{Condition, FleetStatus, Standing};
use crate::report::refusals::{Refused, grouped};

/// The longest bar of the chart, in terminal cells.
const BAR_WIDTH: usize = 40;

/// One tenant's line in `status --format json`'s `tenants`: the original shape.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub id: String,
    /// Highest applied version, 0 when none (or unknown, for an unreachable tenant).
    pub version: Version,
    /// current, behind, ahead, drifted, dirty or unreachable.
    pub state: &'static str,
    /// Migrations still to apply to reach the target (behind tenants only).
    pub pending: usize,
    /// The migration it is dirty at; `version` is the highest it holds cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// With a set per engine: the tenant's engine, whose set it is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// With a set per engine: the head of the tenant's engine's set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<Version>,
}

/// The last error the ledger holds for a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct LastErrorDoc {
    pub run_id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: i64,
    pub error: String,
}

/// A tenant that is not current, in `status --format json`'s `lagging`.
#[derive(Debug, Clone, Serialize)]
pub struct LagRow {
    pub id: String,
    /// `null` when unreachable.
    pub version: Option<Version>,
    pub state: &'static str,
    /// Migrations up to the target not applied cleanly; `null` when unreachable.
    pub behind_by: Option<usize>,
    /// The migration it is dirty at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Version>,
    /// When a run first left it short, from the ledger (RFC 3339, UTC); `null` when unknown.
    pub since: Option<String>,
    pub since_ms: Option<i64>,
    pub last_error: Option<LastErrorDoc>,
    pub detail: Option<String>,
    /// With a set per engine: the tenant's engine and its set's head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<Version>,
}

/// The `status --format json` document.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// The set's head; `"head"` with a set per engine (see `heads`).
    pub head: Version,
    pub target: Version,
    /// With a set per engine: each engine's head.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<Engine, Version>,
    /// Tenants per state (states with none left out).
    pub counts: BTreeMap<Condition, usize>,
    /// Readable tenants per version (with a set per engine, of every set: see `histograms`).
    pub histogram: BTreeMap<Version, usize>,
    /// With a set per engine: readable tenants per version of each engine's set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<Engine, BTreeMap<Version, usize>>,
    /// Every selected tenant, or with `--lagging` only those not current.
    pub tenants: Vec<StatusRow>,
    pub lagging: Vec<LagRow>,
    /// Why the ledger could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_error: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn status_row(t: &Standing) -> StatusRow {
    StatusRow {
        id: t.id.clone(),
        version: t.version.unwrap_or(Version::ZERO),
        state: t.condition.name(),
        pending: t.pending(),
        dirty: t.dirty,
        detail: t.detail.clone(),
        engine: t.against.map(|a| a.0),
        head: t.against.map(|a| a.1),
    }
}

fn lag_row(t: &Standing) -> LagRow {
    LagRow {
        id: t.id.clone(),
        version: t.version,
        state: t.condition.name(),
        behind_by: t.behind_by,
        dirty: t.dirty,
        since: t.note.since_ms.map(rfc3339),
        since_ms: t.note.since_ms,
        last_error: t.note.last_error.as_ref().map(|e| LastErrorDoc {
            run_id: e.run_id.clone(),
            at: rfc3339(e.at_ms),
            at_ms: e.at_ms,
            error: e.error.clone(),
        }),
        detail: t.detail.clone(),
        engine: t.against.map(|a| a.0),
        head: t.against.map(|a| a.1),
    }
}

pub fn status_doc(status: &FleetStatus, lagging_only: bool, ledger_error: Option<String>) -> StatusDoc {
    StatusDoc {
        head: status.head,
        target: status.target,
        heads: status.heads.clone(),
        counts: status.counts(),
        histogram: status.histogram(),
        histograms: status.histograms(),
        tenants: status
            .tenants
            .iter()
            .filter(|t| !lagging_only || !t.is_current())
            .map(status_row)
            .collect(),
        lagging: status.lagging().map(lag_row).collect(),
        ledger_error,
    }
}

/// A bar `count / max` of [`BAR_WIDTH`], in eighths of a cell; at least a sliver when not 0.
fn bar(count: usize, max: usize) -> String {
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = (count * BAR_WIDTH * 8).div_ceil(max.max(1)).max(usize::from(count > 0));
    let mut out = "█".repeat(eighths / 8);
    out.push_str(PARTS[eighths % 8]);
    let cells = eighths.div_ceil(8);
    out.push_str(&" ".repeat(BAR_WIDTH - cells));
    out
}

/// Tenants per version as a bar chart, newest version first; unreachable tenants last.
/// With a set per engine, one chart per engine, each against its own head.
pub fn histogram_text(status: &FleetStatus) -> String {
    if status.heads.is_empty() {
        let title = format!("Tenants by version (target {}, head {}):", status.target, status.head);
        return chart(
            &title,
            &status.histogram(),
            status.target,
            status.count(Condition::Unreachable),
        );
    }
    let histograms = status.histograms();
    let mut out = String::new();
    for (engine, head) in &status.heads {
        let target = if status.target == Version::HEAD {
            *head
        } else {
            status.target
        };
        let unreachable = status
            .tenants
            .iter()
            .filter(|t| t.condition == Condition::Unreachable && t.against.is_some_and(|a| a.0 == *engine))
            .count();
        let empty = BTreeMap::new();
        let hist = histograms.get(engine).unwrap_or(&empty);
        if hist.is_empty() && unreachable == 0 {
            continue;
        }
        let title = format!("{engine} tenants by version (target {target}, head {head}):");
        out.push_str(&chart(&title, hist, target, unreachable));
    }
    out
}

fn chart(title: &str, hist: &BTreeMap<Version, usize>, target: Version, unreachable: usize) -> String {
    let mut lines: Vec<(String, usize, &str)> = hist
        .iter()
        .rev()
        .map(|(v, n)| {
            let mark = if *v == target { " target" } else { "" };
            (v.to_string(), *n, mark)
        })
        .collect();
    if unreachable > 0 {
        lines.push(("?".to_owned(), unreachable, " unreachable"));
    }
    let max = lines.iter().map(|l| l.1).max().unwrap_or(0);
    let label = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let count = lines.iter().map(|l| l.1.to_string().len()).max().unwrap_or(0);
    let mut out = format!("{title}\n");
    for (v, n, mark) in lines {
        let _ = writeln!(out, "  {v:>label$} {} {n:>count$}{mark}", bar(n, max));
    }
    out
}

fn one_line(text: &str) -> String {
    crate::model::text::printable(text)
}

/// The DETAIL cell: a refused tenant's problem in a few words (the grouped message below the
/// table says the rest), another's detail whole; then its last error.
fn detail_text(t: &Standing) -> String {
    let mut parts = Vec::new();
    match (&t.refusal, &t.detail) {
        (Some(r), _) => parts.push(format!("{} (see below)", r.tag())),
        (None, Some(d)) => parts.push(one_line(d)),
        (None, None) => {}
    }
    // A run that skipped a refused tenant recorded the refusal as its error: the grouped
    // message says it once, with the checksums cut short.
    let repeats_refusal = |e: &str| t.refusal.is_some() && (e.starts_with("drifted: ") || e.starts_with("dirty: "));
    if let Some(e) = t.note.last_error.as_ref().filter(|e| !repeats_refusal(&e.error)) {
        parts.push(format!(
            "last error (run {}, {}): {}",
            e.run_id,
            rfc3339(e.at_ms),
            one_line(&e.error)
        ));
    }
    parts.join("; ")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.iter().copied().map(Cell::new));
    t
}

fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tenant's version, and the migration it is dirty at, as the run's report shows them.
fn version_text(t: &Standing) -> String {
    let mut text = match t.dirty {
        Some(d) => format!("{} (dirty at {d})", opt(t.version)),
        None => opt(t.version),
    };
    if let Some((engine, head)) = t.against {
        let _ = write!(text, " ({engine}, head {head})");
    }
    text
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("?".to_owned(), |v| v.to_string())
}

/// `status` for people: the chart, the tenant table (only the lagging ones with
/// `lagging_only`), the refused tenants grouped by problem with what to do, and a summary.
pub fn status_text(sets: &Sets, status: &FleetStatus, lagging_only: bool, ledger_error: Option<&str>) -> String {
    let mut out = histogram_text(status);
    let rows: Vec<&Standing> = status
        .tenants
        .iter()
        .filter(|t| !lagging_only || !t.is_current())
        .collect();
    if !rows.is_empty() {
        let mut t = table(&["TENANT", "VERSION", "BEHIND", "STATE", "SINCE", "DETAIL"]);
        for r in rows {
            t.add_row(vec![
                r.id.clone(),
                version_text(r),
                opt(r.behind_by),
                r.condition.name().to_owned(),
                r.note.since_ms.map(rfc3339).unwrap_or_default(),
                detail_text(r),
            ]);
        }
        let _ = writeln!(out, "\n{}", trim_lines(&t.to_string()));
    }
    let refused: Vec<Refused> = status
        .tenants
        .iter()
        .filter_map(|t| {
            t.refusal.as_ref().map(|refusal| Refused {
                id: &t.id,
                refusal,
                at: t.version,
            })
        })
        .collect();
    if !refused.is_empty() {
        let _ = write!(
            out,
            "\nLeft alone until their problem is solved:\n{}",
            grouped(sets, &refused)
        );
    }
    let current = status.count(Condition::Current);
    let _ = write!(
        out,
        "\n{current} of {} tenant(s) current at {}.",
        status.tenants.len(),
        status.target
    );
    let others: Vec<String> = status
        .counts()
        .into_iter()
        .filter(|(c, _)| *c != Condition::Current)
        .map(|(c, n)| format!("{n} {}", c.name()))
        .collect();
    if !others.is_empty() {
        let _ = write!(out, " Not current: {}.", others.join(", "));
    }
    out.push('\n');
    if let Some(e) = ledger_error {
        let _ = writeln!(out, "The ledger could not be read (no SINCE or last errors): {e}");
    }
    out
}

/// A tenant that had not arrived when `wait` gave up.
#[derive(Debug, Clone, Serialize)]
pub struct LaggardRow {
    pub id: String,
    pub version: Option<Version>,
    pub state: &'static str,
    pub behind_by: Option<usize>,
    /// The migration it is dirty at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Version>,
    pub detail: Option<String>,
}

/// The `wait --format json` document.
#[derive(Debug, Clone, Serialize)]
pub struct WaitDoc {
    /// Every selected tenant arrived at the target.
    pub arrived: bool,
    pub target: Version,
    pub waited_ms: u128,
    pub polls: usize,
    pub tenants: usize,
    pub laggards: Vec<LaggardRow>,
}

pub fn wait_doc(outcome: &WaitOutcome) -> WaitDoc {
    WaitDoc {
        arrived: outcome.arrived,
        target: outcome.status.target,
        waited_ms: outcome.waited.as_millis(),
        polls: outcome.polls,
        tenants: outcome.status.tenants.len(),
        laggards: outcome
            .laggards()
            .map(|t| LaggardRow {
                id: t.id.clone(),
                version: t.version,
                state: t.condition.name(),
                behind_by: t.behind_by,
                dirty: t.dirty,
                detail: t.detail.clone(),
            })
            .collect(),
    }
}

/// `wait`'s progress for people: a line each time the number of tenants still short
/// changes.
#[derive(Debug)]
pub struct WaitProgress {
    enabled: bool,
    /// Tenants short at the last line written.
    shown: Option<usize>,
}

impl WaitProgress {
    pub fn new(enabled: bool) -> Self {
        WaitProgress { enabled, shown: None }
    }

    /// Notes one reading of the fleet. Progress is best effort: a failed write is ignored.
    pub fn read(&mut self, status: &FleetStatus, out: &mut dyn std::io::Write) {
        let short = status.laggards().count();
        if !self.enabled || short == 0 || self.shown == Some(short) {
            return;
        }
        self.shown = Some(short);
        let _ = writeln!(
            out,
            "Waiting: {short} of {} tenant(s) have not reached {}.",
            status.tenants.len(),
            status.target
        );
        let _ = out.flush();
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

pub fn wait_text(outcome: &WaitOutcome) -> String {
    let status = &outcome.status;
    let n = status.tenants.len();
    if outcome.arrived {
        return format!(
            "All {n} tenant(s) have reached {} (waited {}).\n",
            status.target,
            seconds(outcome.waited)
        );
    }
    let laggards: Vec<&Standing> = outcome.laggards().collect();
    let mut t = table(&["TENANT", "VERSION", "BEHIND", "STATE", "DETAIL"]);
    for r in &laggards {
        t.add_row(vec![
            r.id.clone(),
            version_text(r),
            opt(r.behind_by),
            r.condition.name().to_owned(),
            r.detail.as_deref().map(one_line).unwrap_or_default(),
        ]);
    }
    format!(
        "Timed out after {}: {} of {n} tenant(s) have not reached {}:\n{}\n",
        seconds(outcome.waited),
        laggards.len(),
        status.target,
        trim_lines(&t.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::status::{Failure, LedgerNote};

    fn standing(id: &str, condition: Condition, version: Option<i64>, behind_by: Option<usize>) -> Standing {
        Standing {
            id: id.into(),
            condition,
            version: version.map(Version::int),
            behind_by,
            dirty: None,
            detail: None,
            refusal: None,
            note: LedgerNote::default(),
            against: None,
        }
    }

    fn fleet() -> FleetStatus {
        let mut tenants: Vec<Standing> = (0..30)
            .map(|i| standing(&format!("c{i:02}"), Condition::Current, Some(7), Some(0)))
            .collect();
        let mut behind = standing("late", Condition::Behind, Some(5), Some(2));
        behind.note = LedgerNote {
            since_ms: Some(1_700_000_000_000),
            last_error: Some(Failure {
                run_id: "r9".into(),
                at_ms: 1_700_000_100_000,
                error: "applying 0006_x: syntax error\nat line 2".into(),
            }),
            in_flight: None,
        };
        tenants.push(behind);
        let mut drifted = standing("edited", Condition::Drifted, Some(3), Some(4));
        drifted.detail = Some("migration 2 was edited after it was applied".into());
        tenants.push(drifted);
        let mut gone = standing("gone", Condition::Unreachable, None, None);
        gone.detail = Some("connecting: refused".into());
        tenants.push(gone);
        FleetStatus {
            head: Version::int(7),
            heads: BTreeMap::new(),
            target: Version::int(7),
            tenants,
        }
    }

    use crate::model::migration::MigrationSet;

    fn set(n: i64) -> MigrationSet {
        crate::model::migration::test_set(&vec![false; n as usize])
    }

    fn rows(set: &MigrationSet, to: i64) -> Vec<crate::model::migration::Applied> {
        set.iter()
            .filter(|m| m.version <= Version::int(to))
            .map(crate::model::migration::Migration::applied)
            .collect()
    }

    /// Twelve tenants whose migration 3 was edited, two dirty at 5, and two current.
    fn drifted_fleet(set: &MigrationSet) -> FleetStatus {
        let mut tenants: Vec<(String, Result<_, String>)> = Vec::new();
        for i in 0..12 {
            let mut r = rows(set, 7);
            r[2].checksum = "9f8e7d6c5b4a".repeat(5) + "0123";
            tenants.push((format!("shop{i:02}"), Ok(r)));
        }
        for id in ["d1", "d2"] {
            let mut r = rows(set, 5);
            r[4].dirty = true;
            tenants.push((id.to_owned(), Ok(r)));
        }
        tenants.push(("ok1".to_owned(), Ok(rows(set, 7))));
        tenants.push(("ok2".to_owned(), Ok(rows(set, 7))));
        FleetStatus::assess(set, Version::int(7), tenants)
    }

    #[test]
    fn status_groups_tenants_with_the_same_problem() {
        let set = set(7);
        let status = drifted_fleet(&set);
        insta::assert_snapshot!(status_text(&set.clone().into(), &status, true, None), @r"
            Tenants by version (target 7, head 7):
              7 ████████████████████████████████████████ 14 target
              4 █████▊                                    2

            TENANT  VERSION         BEHIND  STATE    SINCE  DETAIL
            shop00  7               0       drifted         migration 3 edited (see below)
            shop01  7               0       drifted         migration 3 edited (see below)
            shop02  7               0       drifted         migration 3 edited (see below)
            shop03  7               0       drifted         migration 3 edited (see below)
            shop04  7               0       drifted         migration 3 edited (see below)
            shop05  7               0       drifted         migration 3 edited (see below)
            shop06  7               0       drifted         migration 3 edited (see below)
            shop07  7               0       drifted         migration 3 edited (see below)
            shop08  7               0       drifted         migration 3 edited (see below)
            shop09  7               0       drifted         migration 3 edited (see below)
            shop10  7               0       drifted         migration 3 edited (see below)
            shop11  7               0       drifted         migration 3 edited (see below)
            d1      4 (dirty at 5)  3       dirty           migration 5 dirty (see below)
            d2      4 (dirty at 5)  3       dirty           migration 5 dirty (see below)

            Left alone until their problem is solved:
            migration 3 was edited after it was applied: `migrations/0003_m3.up.sql` is 491caedab863 now, was 9f8e7d6c5b4a when applied
              12 tenants: shop00, shop01, shop02 and 9 more
              - an edit by mistake: restore the file, `git checkout -- migrations/0003_m3.up.sql`
              - a deliberate change: record the file as applied, `fleetmig stamp --checksums=3` (every tenant that has migration 3)

            migration 5 is dirty (it failed part way)
              2 tenants: d1, d2
              - check by hand whether it took effect; if it did: `fleetmig stamp 5 --select id=d1 --select id=d2`
              - if it did not: `fleetmig stamp 4 --select id=d1 --select id=d2`

            2 of 16 tenant(s) current at 7. Not current: 12 drifted, 2 dirty.
        ");
        let doc = serde_json::to_value(status_doc(&status, true, None)).unwrap();
        let detail = doc["tenants"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&("9f8e7d6c5b4a".repeat(5) + "0123")),
            "JSON keeps whole checksums: {detail}"
        );
        assert!(
            detail.contains(&set.get(Version::int(3)).unwrap().checksum.to_hex()),
            "{detail}"
        );
    }

    #[test]
    fn bars_scale_to_the_widest() {
        assert_eq!(bar(40, 40).trim_end(), "█".repeat(40));
        assert_eq!(bar(20, 40).trim_end(), "█".repeat(20));
        assert_eq!(bar(1, 1000).trim_end(), "▏");
        assert_eq!(bar(0, 10).trim_end(), "");
        assert_eq!(bar(3, 16).trim_end(), "███████▌");
        for n in [0, 1, 7, 13, 40] {
            assert_eq!(bar(n, 40).chars().count(), BAR_WIDTH);
        }
    }

    #[test]
    fn status_text_lagging_only() {
        insta::assert_snapshot!(status_text(&set(7).into(), &fleet(), true, None), @r"
        Tenants by version (target 7, head 7):
          7 ████████████████████████████████████████ 30 target
          5 █▍                                        1
          3 █▍                                        1
          ? █▍                                        1 unreachable

        TENANT  VERSION  BEHIND  STATE        SINCE                 DETAIL
        late    5        2       behind       2023-11-14T22:13:20Z  last error (run r9, 2023-11-14T22:15:00Z): applying 0006_x: syntax error at line 2
        edited  3        4       drifted                            migration 2 was edited after it was applied
        gone    ?        ?       unreachable                        connecting: refused

        30 of 33 tenant(s) current at 7. Not current: 1 behind, 1 drifted, 1 unreachable.
        ");
    }

    #[test]
    fn status_doc_keeps_the_old_fields_and_adds_the_new() {
        let doc = serde_json::to_value(status_doc(&fleet(), false, None)).unwrap();
        assert_eq!(doc["head"], 7);
        assert_eq!(doc["tenants"].as_array().unwrap().len(), 33);
        assert_eq!(
            doc["tenants"][30],
            serde_json::json!({"id": "late", "version": 5, "state": "behind", "pending": 2})
        );
        assert_eq!(
            doc["tenants"][32],
            serde_json::json!({"id": "gone", "version": 0, "state": "unreachable", "pending": 0, "detail": "connecting: refused"})
        );
        assert_eq!(doc["histogram"], serde_json::json!({"3": 1, "5": 1, "7": 30}));
        assert_eq!(
            doc["counts"],
            serde_json::json!({"current": 30, "behind": 1, "drifted": 1, "unreachable": 1})
        );
        assert_eq!(
            doc["lagging"][0],
            serde_json::json!({
                "id": "late", "version": 5, "state": "behind", "behind_by": 2,
                "since": "2023-11-14T22:13:20Z", "since_ms": 1_700_000_000_000i64,
                "last_error": {"run_id": "r9", "at": "2023-11-14T22:15:00Z", "at_ms": 1_700_000_100_000i64,
                               "error": "applying 0006_x: syntax error\nat line 2"},
                "detail": null
            })
        );
        assert_eq!(doc["lagging"][2]["version"], serde_json::Value::Null);
        let lagging_only = serde_json::to_value(status_doc(&fleet(), true, None)).unwrap();
        assert_eq!(lagging_only["tenants"].as_array().unwrap().len(), 3);
        assert_eq!(lagging_only["histogram"], doc["histogram"]);
    }

    #[test]
    fn wait_text_lists_the_laggards() {
        let outcome = WaitOutcome {
            arrived: false,
            waited: Duration::from_millis(5_004),
            polls: 6,
            status: fleet(),
        };
        insta::assert_snapshot!(wait_text(&outcome), @r"
        Timed out after 5.0s: 3 of 33 tenant(s) have not reached 7:
        TENANT  VERSION  BEHIND  STATE        DETAIL
        late    5        2       behind
        edited  3        4       drifted      migration 2 was edited after it was applied
        gone    ?        ?       unreachable  connecting: refused
        ");
        let doc = serde_json::to_value(wait_doc(&outcome)).unwrap();
        assert_eq!(doc["arrived"], false);
        assert_eq!(doc["laggards"].as_array().unwrap().len(), 3);
        assert_eq!(doc["laggards"][0]["behind_by"], 2);
    }
}
