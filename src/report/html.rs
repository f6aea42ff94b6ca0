//! The run report as one self-contained HTML page (`--report run.html`, `report RUN --html`):
//! the summary and stop reason, failures first in the database's own words, a timeline of
//! every tenant by wave with the gates between them, and the versions before and after.
//! Pure: a report in, a page out; no network at view time (inline CSS and a little JS).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::migration::Version;
use crate::model::record::RunSource;
use crate::model::run::{FinalTenant, GateReport, RunReport, Status, WaveReport};

/// Past this many tenants in a wave, the wave's rows that need no look are drawn as
/// aggregate rows: a 10,000-tenant run stays a page a browser opens at once.
pub const ROWS_PER_WAVE: usize = 500;

/// The most tenant rows the whole timeline draws one by one; later waves aggregate more.
pub const ROWS_IN_ALL: usize = 2_000;

/// The most failures listed one by one; the rest are counted by status, code and migration.
pub const FAILURES_LISTED: usize = 200;

/// At most this many aggregate rows per status in a wave.
const BUCKETS: usize = 20;

/// The page for `report`; `source`: the migration set the run applied, when known.
pub fn html(report: &RunReport, source: Option<&RunSource>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("fleetmig {} · run {}", report.command, report.run_id);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    summary(&mut out, report, source);
    cut_off(&mut out, report);
    failures(&mut out, report);
    timeline(&mut out, report);
    versions(&mut out, report);
    let _ = write!(out, "<script>{JS}</script>\n</body></html>\n");
    out
}

/// Text made safe for an element's content or a quoted attribute value.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "850 ms", "12.3 s", "4 min 05 s", "1 h 02 min".
fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn version(v: Option<Version>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

/// The CSS class of a tenant's outcome; a success that ran nothing is told apart.
fn class(t: &FinalTenant) -> &'static str {
    match t.status {
        Status::Succeeded if t.migrations_run == 0 => "s-unchanged",
        status => status_class(status),
    }
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "s-succeeded",
        Status::Failed => "s-failed",
        Status::RolledBack => "s-rolled_back",
        Status::RollbackFailed => "s-rollback_failed",
        Status::NotStarted => "s-not_started",
        Status::Skipped => "s-skipped",
        Status::Stopped => "s-stopped",
    }
}

/// The header: what ran, why it stopped, the counts, and the migration set.
fn summary(out: &mut String, report: &RunReport, source: Option<&RunSource>) {
    let s = &report.summary;
    let verdict = if report.is_success() {
        "ok"
    } else if report.stop_reason.is_failure() || s.failed + s.rollback_failed > 0 {
        "bad"
    } else {
        "warn"
    };
    let _ = write!(
        out,
        "<header id=\"summary\"><h1>fleetmig {} <span class=\"run\">run {}</span></h1>\
         <p class=\"stop {verdict}\" id=\"stop-reason\">stop reason: <b>{}</b></p>\
         <p class=\"facts\">{} tenants in {} wave{} · {}</p><ul class=\"chips\">",
        esc(&report.command),
        esc(&report.run_id),
        esc(&report.stop_reason.to_string()),
        s.tenants,
        report.waves.len(),
        if report.waves.len() == 1 { "" } else { "s" },
        duration(s.elapsed_ms),
    );
    let counts = [
        (s.succeeded, "succeeded", "s-succeeded"),
        (s.failed, "failed", "s-failed"),
        (s.rolled_back, "rolled back", "s-rolled_back"),
        (s.rollback_failed, "rollback failed", "s-rollback_failed"),
        (s.skipped, "skipped", "s-skipped"),
        (s.stopped, "stopped", "s-stopped"),
        (s.not_started, "not started", "s-not_started"),
    ];
    for (n, name, class) in counts.into_iter().filter(|c| c.0 > 0) {
        let _ = write!(out, "<li class=\"chip {class}\"><b>{n}</b> {name}</li>");
    }
    out.push_str("</ul>");
    if let Some(src) = source {
        let git = match &src.git_commit {
            Some(c) if src.git_dirty => format!(", git commit {c} with uncommitted changes"),
            Some(c) => format!(", git commit {c}"),
            None => String::new(),
        };
        let short: String = src.fingerprint.chars().take(12).collect();
        let _ = write!(
            out,
            "<p class=\"facts\">migrations: set {}{}</p>",
            esc(&short),
            esc(&git)
        );
    }
    out.push_str("</header>\n");
}

/// The hosts the breaker cut off (`--host-failures`): when, after how many failures in a
/// row, the last error, how many tenants were skipped untried, and whether a probe
/// restored the host. Nothing when none was.
fn cut_off(out: &mut String, report: &RunReport) {
    if report.hosts_cut_off.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"hosts-cut-off\"><h2>Hosts cut off <span class=\"n\">{}</span></h2>\
         <table><tr><th>host</th><th>cut off at</th><th>failures in a row</th><th>last error</th>\
         <th>skipped untried</th><th>restored</th></tr>",
        report.hosts_cut_off.len()
    );
    for h in &report.hosts_cut_off {
        let _ = write!(
            out,
            "<tr class=\"cut\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.host),
            h.at_ms
                .map_or_else(|| "?".to_owned(), |ms| format!("+{}", duration(ms))),
            h.failures,
            esc(&h.error),
            h.skipped,
            if h.restored { "yes" } else { "no" }
        );
    }
    out.push_str("</table></section>\n");
}

/// Where a failure sorts: the tenant left in the worst state first.
fn severity(status: Status) -> Option<usize> {
    match status {
        Status::RollbackFailed => Some(0),
        Status::Failed => Some(1),
        Status::RolledBack => Some(2),
        _ => None,
    }
}

/// The failures, each with the database's code, message, DETAIL and HINT; then the
/// skipped and stopped tenants with why.
fn failures(out: &mut String, report: &RunReport) {
    let mut failed: Vec<&FinalTenant> = report.tenants.iter().filter(|t| severity(t.status).is_some()).collect();
    failed.sort_by_key(|t| severity(t.status));
    let _ = write!(
        out,
        "<section id=\"failures\"><h2>Failures <span class=\"n\">{}</span></h2>",
        failed.len()
    );
    if failed.is_empty() {
        out.push_str("<p class=\"none\">No tenant failed.</p>");
    }
    for t in failed.iter().take(FAILURES_LISTED) {
        failure(out, t);
    }
    let rest = failed.get(FAILURES_LISTED..).unwrap_or_default();
    if !rest.is_empty() {
        let mut groups: BTreeMap<(&str, Option<&str>, String), usize> = BTreeMap::new();
        for t in rest {
            let key = (t.status.name(), t.error_code.as_deref(), version(t.failed_migration));
            *groups.entry(key).or_default() += 1;
        }
        let _ = write!(
            out,
            "<table class=\"more\"><caption>{} more, not listed</caption>",
            rest.len()
        );
        out.push_str("<tr><th>tenants</th><th>status</th><th>code</th><th>migration</th></tr>");
        for ((status, code, migration), n) in groups {
            let _ = write!(
                out,
                "<tr><td>{n}</td><td>{status}</td><td>{}</td><td>{}</td></tr>",
                esc(code.unwrap_or("-")),
                esc(&migration)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
    left_alone(out, report);
}

/// One failure's card.
fn failure(out: &mut String, t: &FinalTenant) {
    let _ = write!(
        out,
        "<article class=\"failure {}\" data-id=\"{}\"><h3><span class=\"tid\">{}</span> \
         <span class=\"badge {}\">{}</span> <span class=\"where\">wave {}",
        class(t),
        esc(&t.id),
        esc(&t.id),
        class(t),
        t.status.name(),
        t.wave
    );
    if let Some(m) = t.failed_migration {
        let _ = write!(out, " · migration {}", esc(&m.to_string()));
    }
    if let Some(d) = t.during {
        let _ = write!(out, " · while {}", d.name());
    }
    out.push_str("</span></h3><dl>");
    let code = match (&t.error_code, t.error_number) {
        (Some(c), Some(n)) => Some(format!("{n} ({c})")),
        (Some(c), None) => Some(c.clone()),
        (None, Some(n)) => Some(n.to_string()),
        (None, None) => None,
    };
    let fields = [
        ("code", "code", code),
        ("message", "message", t.error.as_deref().map(|e| message(e, t))),
        ("detail", "DETAIL", t.detail.clone()),
        ("hint", "HINT", t.hint.clone()),
        ("rollback", "rollback", rollback(t)),
    ];
    for (class, name, value) in fields {
        if let Some(value) = value {
            let _ = write!(out, "<dt>{name}</dt><dd class=\"{class}\">{}</dd>", esc(&value));
        }
    }
    out.push_str("</dl></article>\n");
}

/// The error line without the DETAIL and HINT it ends with when they are shown apart.
fn message(error: &str, t: &FinalTenant) -> String {
    let cut = [("; DETAIL: ", &t.detail), ("; HINT: ", &t.hint)]
        .iter()
        .filter(|(_, part)| part.is_some())
        .filter_map(|(mark, _)| error.find(mark))
        .min();
    cut.map_or(error, |at| &error[..at]).to_owned()
}

fn rollback(t: &FinalTenant) -> Option<String> {
    let [from, to] = t.rollback?;
    Some(match &t.rollback_error {
        None => format!("rolled back {} → {}", version(from), version(to)),
        Some(e) => format!("failed, left at {}: {e}", version(to)),
    })
}

/// Skipped and stopped tenants: they were not moved, or not all the way, and say why.
fn left_alone(out: &mut String, report: &RunReport) {
    let alone: Vec<&FinalTenant> = report
        .tenants
        .iter()
        .filter(|t| matches!(t.status, Status::Skipped | Status::Stopped))
        .collect();
    if alone.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"left-alone\"><h2>Skipped and stopped <span class=\"n\">{}</span></h2>\
         <table><tr><th>tenant</th><th>status</th><th>wave</th><th>version</th><th>why</th></tr>",
        alone.len()
    );
    for t in alone.iter().take(FAILURES_LISTED) {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td class=\"tid\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            class(t),
            esc(&t.id),
            t.status.name(),
            t.wave,
            esc(&version(t.final_version)),
            esc(t.error.as_deref().unwrap_or("stopped between two migrations"))
        );
    }
    if alone.len() > FAILURES_LISTED {
        let _ = write!(
            out,
            "<tr><td colspan=\"5\">{} more, not listed</td></tr>",
            alone.len() - FAILURES_LISTED
        );
    }
    out.push_str("</table></section>\n");
}

/// The timeline's scale: from the run's start to the last thing that ended.
fn span_of(report: &RunReport) -> u64 {
    let tenants = report
        .tenants
        .iter()
        .flat_map(|t| [t.finished_ms, t.rollback_ms.map(|r| r[1])])
        .flatten();
    let waves = report.waves.iter().filter_map(|w| w.finished_ms);
    let gates = report.waves.iter().flat_map(|w| w.gates.iter().map(|g| g.finished_ms));
    tenants
        .chain(waves)
        .chain(gates)
        .chain([report.summary.elapsed_ms])
        .max()
        .unwrap_or(0)
        .max(1)
}

/// A bar from `from` to `to` on a track `total` long.
fn bar(out: &mut String, class: &str, from: u64, to: u64, total: u64, title: &str) {
    let left = from as f64 * 100.0 / total as f64;
    let width = (to.saturating_sub(from) as f64 * 100.0 / total as f64).max(0.4);
    let _ = write!(
        out,
        "<div class=\"b {class}\" style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{}\"></div>",
        esc(title)
    );
}

/// Every tenant by wave, coloured by outcome, with the gates after each wave.
fn timeline(out: &mut String, report: &RunReport) {
    let total = span_of(report);
    let timed = report.tenants.iter().any(|t| t.started_ms.is_some());
    let _ = write!(
        out,
        "<section id=\"timeline\"><h2>Timeline</h2><p class=\"filter\"><label>Filter \
         <input id=\"filter\" type=\"search\" placeholder=\"tenant id or status\" autocomplete=\"off\"></label> \
         <span id=\"shown\"></span></p>"
    );
    if !timed {
        out.push_str(
            "<p class=\"none\">This report has no timing: it was recorded before fleetmig kept it, \
             or assembled from a shared run's ledger rows.</p>",
        );
    }
    out.push_str("<table class=\"tl\"><thead><tr><th>tenant</th><th>status</th><th>version</th><th class=\"axis\">");
    for k in 0..=4 {
        let _ = write!(
            out,
            "<span style=\"left:{}%\">{}</span>",
            k * 25,
            duration(total * k / 4)
        );
    }
    out.push_str("</th></tr></thead>\n");
    let mut budget = ROWS_IN_ALL;
    let mut by_wave: BTreeMap<usize, Vec<&FinalTenant>> = BTreeMap::new();
    for t in &report.tenants {
        by_wave.entry(t.wave).or_default().push(t);
    }
    // A tenant whose wave the report does not list still gets its row, under its number.
    let unlisted: Vec<WaveReport> = by_wave
        .iter()
        .filter(|(n, _)| !report.waves.iter().any(|w| w.wave == **n))
        .map(|(n, ts)| WaveReport::new(*n, false, ts.len(), BTreeMap::new()))
        .collect();
    for w in report.waves.iter().chain(&unlisted) {
        let tenants = by_wave.remove(&w.wave).unwrap_or_default();
        let limit = ROWS_PER_WAVE.min(budget);
        budget -= limit.min(tenants.len());
        wave(out, w, &tenants, limit, total);
    }
    out.push_str("</table></section>\n");
}

/// One wave's header, its tenants' rows (aggregated past `limit`), and its gates.
fn wave(out: &mut String, w: &WaveReport, tenants: &[&FinalTenant], limit: usize, total: u64) {
    let when = match (w.started_ms, w.finished_ms) {
        (Some(a), Some(b)) => format!(" · {} – {}", duration(a), duration(b)),
        _ => String::new(),
    };
    let counts: Vec<String> = w
        .counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
        .collect();
    let counts = if counts.is_empty() {
        String::new()
    } else {
        format!(" · {}", counts.join(", "))
    };
    let _ = writeln!(
        out,
        "<tbody class=\"wave\" id=\"wave-{}\"><tr class=\"wh\"><th colspan=\"4\">Wave {}{} · {} tenant{}{when}{}</th></tr>",
        w.wave,
        w.wave,
        if w.canary { " (canary)" } else { "" },
        w.tenants,
        if w.tenants == 1 { "" } else { "s" },
        esc(&counts)
    );
    let mut listed: Vec<&FinalTenant> = tenants.to_vec();
    let mut rest = Vec::new();
    if listed.len() > limit {
        // Those that need a look keep their own rows first.
        listed.sort_by_key(|t| matches!(t.status, Status::Succeeded | Status::NotStarted));
        rest = listed.split_off(limit);
        listed.sort_by_key(|t| (t.started_ms.is_none(), t.started_ms));
    }
    for t in listed {
        tenant_row(out, t, total);
    }
    aggregate(out, &rest, total);
    for g in &w.gates {
        gate_row(out, g, total);
    }
    out.push_str("</tbody>\n");
}

fn tenant_row(out: &mut String, t: &FinalTenant, total: u64) {
    let change = if t.start_version == t.final_version {
        version(t.final_version)
    } else {
        format!("{} → {}", version(t.start_version), version(t.final_version))
    };
    let id = esc(&t.id);
    let _ = write!(
        out,
        "<tr class=\"t {}\" data-id=\"{id}\" data-status=\"{}\"><td class=\"tid\">{id}</td><td>{}</td><td>{}</td><td class=\"track\">",
        class(t),
        t.status.name(),
        t.status.name(),
        esc(&change)
    );
    if let (Some(a), Some(b)) = (t.started_ms, t.finished_ms) {
        let title = format!("{} {}: {} – {}", t.id, t.status.name(), duration(a), duration(b));
        bar(out, class(t), a, b, total, &title);
    }
    if let Some([a, b]) = t.rollback_ms {
        let title = format!("{} rollback: {} – {}", t.id, duration(a), duration(b));
        bar(out, "rb", a, b, total, &title);
    }
    out.push_str("</td></tr>\n");
}

/// The tenants past a wave's row limit, by status, in runs of consecutive tenants: one
/// row each, spanning from the first start to the last end, carrying every id it stands
/// for so the filter still finds a tenant in it.
fn aggregate(out: &mut String, rest: &[&FinalTenant], total: u64) {
    let mut by_status: BTreeMap<&'static str, Vec<&FinalTenant>> = BTreeMap::new();
    for t in rest {
        by_status.entry(class(t)).or_default().push(t);
    }
    for (class, mut group) in by_status {
        group.sort_by_key(|t| (t.started_ms.is_none(), t.started_ms));
        let size = group.len().div_ceil(BUCKETS);
        for chunk in group.chunks(size) {
            let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
            let ids: Vec<String> = chunk.iter().map(|t| esc(&t.id)).collect();
            let status = first.status.name();
            let _ = write!(
                out,
                "<tr class=\"t agg {class}\" data-id=\"{}\" data-status=\"{status}\"><td class=\"tid\">{} tenants: {} … {}</td>\
                 <td>{status}</td><td></td><td class=\"track\">",
                ids.join(" "),
                chunk.len(),
                esc(&first.id),
                esc(&last.id)
            );
            let from = chunk.iter().filter_map(|t| t.started_ms).min();
            let to = chunk.iter().filter_map(|t| t.finished_ms).max();
            if let (Some(a), Some(b)) = (from, to) {
                let title = format!("{} tenants {status}: {} – {}", chunk.len(), duration(a), duration(b));
                bar(out, class, a, b, total, &title);
            }
            out.push_str("</td></tr>\n");
        }
    }
}

fn gate_row(out: &mut String, g: &GateReport, total: u64) {
    let verdict = if g.passed { "passed" } else { "did not pass" };
    let took = duration(g.finished_ms.saturating_sub(g.started_ms));
    let detail = g.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
    let text = format!("{} {took} {verdict}{detail}", g.gate.name());
    let pass = if g.passed { "pass" } else { "fail" };
    let _ = write!(
        out,
        "<tr class=\"gate gate-{} {pass}\"><td colspan=\"3\">{}</td><td class=\"track\">",
        g.gate.name(),
        esc(&text)
    );
    bar(
        out,
        &format!("g-{}", g.gate.name()),
        g.started_ms,
        g.finished_ms,
        total,
        &text,
    );
    out.push_str("</td></tr>\n");
}

/// How many tenants were at each version when the run reached them, and when it left.
fn versions(out: &mut String, report: &RunReport) {
    let mut counts: BTreeMap<(bool, Option<Version>), [usize; 2]> = BTreeMap::new();
    for t in &report.tenants {
        counts.entry((t.start_version.is_none(), t.start_version)).or_default()[0] += 1;
        counts.entry((t.final_version.is_none(), t.final_version)).or_default()[1] += 1;
    }
    let most = counts.values().flatten().copied().max().unwrap_or(1).max(1);
    out.push_str(
        "<section id=\"versions\"><h2>Versions before and after</h2><table class=\"hist\">\
         <tr><th>version</th><th>before</th><th>after</th></tr>",
    );
    for ((_, v), [before, after]) in counts {
        let name = v.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
        let _ = write!(out, "<tr data-version=\"{}\"><td>{}</td>", esc(&name), esc(&name));
        for (n, class) in [(before, "before"), (after, "after")] {
            let _ = write!(
                out,
                "<td class=\"{class}\"><div class=\"hb\" style=\"width:{:.1}%\"></div><span>{n}</span></td>",
                n as f64 * 100.0 / most as f64
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>\n");
}

const CSS: &str = r#"
:root{--ok:#2e9d4a;--okl:#a8dab4;--bad:#d93b3b;--rb:#f0a030;--rbf:#8b1a1a;--skip:#c9b037;--stop:#8a5cc7;--ns:#d4d4d4}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 24px;color:#1d1d1f;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h1 .run{font-weight:400;color:#666}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h2 .n{font-weight:400;color:#666}.facts{margin:2px 0;color:#444}
.stop{display:inline-block;margin:6px 0;padding:4px 10px;border-radius:4px}.stop.ok{background:#e3f4e7}.stop.warn{background:#fdf1d8}.stop.bad{background:#fbe0e0}
.chips{list-style:none;padding:0;margin:6px 0;display:flex;gap:6px;flex-wrap:wrap}.chip{padding:2px 8px;border-radius:10px;background:#eee;border-left:6px solid var(--c)}
.s-succeeded{--c:var(--ok)}.s-unchanged{--c:var(--okl)}.s-failed{--c:var(--bad)}.s-rolled_back{--c:var(--rb)}
.s-rollback_failed{--c:var(--rbf)}.s-skipped{--c:var(--skip)}.s-stopped{--c:var(--stop)}.s-not_started{--c:var(--ns)}
.failure{background:#fff;border:1px solid #e2e2e2;border-left:6px solid var(--c);border-radius:4px;margin:8px 0;padding:6px 12px}
.failure h3{font-size:14px;margin:2px 0 4px}.failure .where{font-weight:400;color:#555}
.badge{font-size:12px;font-weight:600;padding:1px 6px;border-radius:8px;color:#fff;background:var(--c)}
.failure dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}.failure dt{color:#666;font-weight:600}
.failure dd{margin:0;white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:2px 6px;vertical-align:middle}
.tid{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:260px}
.tl td:nth-child(2),.tl td:nth-child(3){white-space:nowrap;color:#444;font-size:12px}
.tl tr.t{border-bottom:1px solid #f0f0f0}.tl tr.t td:first-child{border-left:6px solid var(--c)}
.tl tr.wh th{background:#eef1f5;padding:6px;font-weight:600}.tl tr.agg td.tid{font-style:italic;white-space:normal;font-size:12px}
.track{position:relative;width:60%;min-width:300px;height:18px;background:repeating-linear-gradient(90deg,#fff 0,#fff 24.8%,#eee 25%)}
.axis{position:relative;height:18px}.axis span{position:absolute;top:0;font-weight:400;font-size:11px;color:#777;white-space:nowrap;transform:translateX(-50%)}
.axis span:first-child{transform:none}.axis span:last-child{transform:translateX(-100%)}
.b{position:absolute;top:3px;height:12px;border-radius:2px;min-width:2px}
.b{background:var(--c)}
.gate td{font-size:12px;color:#444;font-style:italic}.gate.fail td{color:var(--bad)}
.b.rb{background:repeating-linear-gradient(45deg,var(--rb) 0,var(--rb) 3px,#fff 3px,#fff 5px);border:1px solid var(--rb)}
.b.g-bake{background:repeating-linear-gradient(45deg,#7aa6d8 0,#7aa6d8 4px,#cfe0f3 4px,#cfe0f3 8px)}.b.g-check{background:#4a78b0}.b.g-confirm{background:#999}
.fail .b{outline:2px solid var(--bad)}
.hist{width:auto;min-width:480px}.hist td{min-width:180px}.hist td.before,.hist td.after{position:relative}
.hb{position:absolute;left:0;top:3px;bottom:3px;background:#c5d3e8;border-radius:2px}.after .hb{background:#9fcfab}.hist span{position:relative;padding-left:4px}
.filter input{font:inherit;padding:3px 6px;width:280px}#shown{color:#666;margin-left:8px}.none{color:#666}
.more caption{text-align:left;color:#666}
"#;

const JS: &str = r#"
(function () {
  var box = document.getElementById('filter');
  var rows = document.querySelectorAll('tr.t');
  var shown = document.getElementById('shown');
  function matches(row, q) {
    if (!q || row.dataset.status.indexOf(q) !== -1) return true;
    return row.dataset.id.toLowerCase().split(' ').some(function (id) { return id.indexOf(q) !== -1; });
  }
  function apply() {
    var q = box.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (row) {
      var hit = matches(row, q);
      row.hidden = !hit;
      if (hit) n += 1;
    });
    shown.textContent = q ? n + ' of ' + rows.length + ' rows match' : '';
    document.body.dataset.filter = q;
    try { history.replaceState(null, '', q ? '#filter=' + encodeURIComponent(q) : location.href.split('#')[0]); } catch (e) {}
  }
  box.addEventListener('input', apply);
  var m = /^#filter=(.*)$/.exec(location.hash);
  if (m) box.value = decodeURIComponent(m[1]);
  apply();
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::StopReason;
    use crate::model::run::{Gate, summarize};

    fn tenant(id: &str, wave: usize, status: Status, at: u64) -> FinalTenant {
        FinalTenant {
            started_ms: Some(at),
            finished_ms: Some(at + 40),
            migrations_run: 2,
            ..FinalTenant::new(
                id.to_owned(),
                wave,
                status,
                Some(Version::int(1)),
                Some(Version::int(3)),
            )
        }
    }

    fn report(tenants: Vec<FinalTenant>, waves: usize) -> RunReport {
        let summary = summarize(&tenants, std::time::Duration::from_millis(5_000));
        let waves = (1..=waves)
            .map(|w| {
                let n = tenants.iter().filter(|t| t.wave == w).count();
                WaveReport {
                    started_ms: Some(0),
                    finished_ms: Some(4_000),
                    ..WaveReport::new(w, w == 1, n, BTreeMap::new())
                }
            })
            .collect();
        RunReport {
            run_id: "r-1".into(),
            command: "up".into(),
            stop_reason: StopReason::MaxFailures { failed: 1, limit: 1 },
            waves,
            tenants,
            summary,
            hosts_cut_off: Vec::new(),
        }
    }

    #[test]
    fn every_text_is_escaped() {
        let evil = FinalTenant {
            error: Some("boom <script>document.body.dataset.pwned='1'</script>; DETAIL: x".into()),
            detail: Some("a \"quoted\" & <b>bold</b> detail".into()),
            hint: Some("it's <img src=x onerror=alert(1)>".into()),
            error_code: Some("P0001".into()),
            ..tenant("o\"brien'<x>", 1, Status::Failed, 10)
        };
        let page = html(&report(vec![evil], 1), None);
        assert!(!page.contains("<script>document"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>bold"), "{page}");
        assert!(!page.contains("o\"brien"), "{page}");
        assert!(page.contains("o&quot;brien&#39;&lt;x&gt;"), "{page}");
        assert!(page.contains("&lt;script&gt;document.body.dataset.pwned=&#39;1&#39;&lt;/script&gt;"));
        assert!(page.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; detail"));
        // The DETAIL is shown apart, not again at the end of the message.
        assert!(!page.contains("; DETAIL: x"), "{page}");
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn a_ten_thousand_tenant_run_stays_a_bounded_page() {
        let tenants: Vec<FinalTenant> = (0..10_000)
            .map(|i| {
                let (wave, status) = match i {
                    0..=9 => (1, Status::Succeeded),
                    10..=2_009 => (
                        2,
                        if i % 400 == 0 {
                            Status::Failed
                        } else {
                            Status::Succeeded
                        },
                    ),
                    _ => (3, Status::NotStarted),
                };
                let mut t = tenant(&format!("tenant-{i:05}"), wave, status, i as u64 / 4);
                if status == Status::NotStarted {
                    (t.started_ms, t.finished_ms) = (None, None);
                }
                t
            })
            .collect();
        let page = html(&report(tenants, 3), None);
        assert!(page.len() < 1_000_000, "{} bytes", page.len());
        let rows = page.matches("<tr class=\"t ").count();
        assert!(rows <= 10 + ROWS_PER_WAVE * 2 + BUCKETS * 4, "{rows} rows");
        // Every failure keeps a row of its own in the timeline and a card of its own.
        for i in (10..=2_009).filter(|i| i % 400 == 0) {
            let id = format!("tenant-{i:05}");
            assert!(
                page.contains(&format!("data-id=\"{id}\" data-status=\"failed\"")),
                "{id}"
            );
            assert!(page.contains(&format!("<article class=\"failure s-failed\" data-id=\"{id}\"")));
        }
        // An aggregated tenant can still be found by the filter.
        assert!(page.contains(" tenant-09999"));
    }

    #[test]
    fn gates_are_marked_and_versions_counted() {
        let mut r = report(
            vec![
                tenant("a", 1, Status::Succeeded, 0),
                FinalTenant {
                    final_version: Some(Version::int(1)),
                    ..tenant("b", 2, Status::RolledBack, 900)
                },
            ],
            2,
        );
        r.waves[0].gates.push(GateReport {
            gate: Gate::Bake,
            passed: true,
            detail: None,
            started_ms: 100,
            finished_ms: 800,
        });
        let page = html(&r, None);
        assert!(page.contains("<tr class=\"gate gate-bake pass\"><td colspan=\"3\">bake 700 ms passed</td>"));
        assert!(page.contains("<tr data-version=\"1\"><td>1</td><td class=\"before\"><div class=\"hb\" style=\"width:100.0%\"></div><span>2</span></td><td class=\"after\"><div class=\"hb\" style=\"width:50.0%\"></div><span>1</span>"), "{page}");
        assert!(page.contains("stop reason: <b>"));
    }

    #[test]
    fn timing_detail_and_hint_survive_the_json_the_ledger_keeps() {
        let mut r = report(
            vec![FinalTenant {
                detail: Some("Key (id)=(7) is negative.".into()),
                hint: Some("Run fix_balances() first.".into()),
                ..tenant("a", 1, Status::Failed, 5)
            }],
            1,
        );
        r.waves[0].gates.push(GateReport {
            gate: Gate::Check,
            passed: false,
            detail: Some("check returned false on tenant `a`".into()),
            started_ms: 50,
            finished_ms: 60,
        });
        let back: RunReport = serde_json::from_str(&crate::report::run::json(&r)).unwrap();
        let page = html(&back, None);
        assert_eq!(page, html(&r, None));
        assert!(page.contains("<dd class=\"hint\">Run fix_balances() first.</dd>"));
        // A report recorded before timing was kept still renders, without bars.
        let old = r#"{"run_id":"r0","command":"up","stop_reason":{"kind":"completed"},
            "waves":[{"wave":1,"canary":false,"tenants":1,"counts":{"succeeded":1}}],
            "tenants":[{"id":"a","wave":1,"status":"succeeded","start_version":0,"final_version":2,"migrations_run":2}],
            "summary":{"tenants":1,"succeeded":1,"changed":1,"elapsed_ms":5}}"#;
        let page = html(&serde_json::from_str(old).unwrap(), None);
        assert!(page.contains("This report has no timing"));
        assert!(!page.contains("class=\"b "));
        // Without its wave in the list, a tenant still has its row.
        r.waves.clear();
        assert!(html(&r, None).contains("<tr class=\"t s-failed\" data-id=\"a\""));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(3_720_000), "1 h 02 min");
    }
}
