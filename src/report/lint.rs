//! `lint`'s output: text (`file:line:column: severity rule: message`, the statement, the
//! safe pattern and where it runs), a JSON document, and GitHub workflow annotations.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::model::lint::{Finding, LintReport, Linted, Reach, Severity};

/// The report for people. Allowed findings are counted, not shown (JSON lists them).
pub fn text(report: &LintReport) -> String {
    let mut out = String::new();
    for l in report.findings.iter().filter(|l| l.finding.is_live()) {
        let _ = write!(out, "{}", finding_text(l));
    }
    let _ = writeln!(out, "{}", summary(report));
    out
}

/// One finding's lines.
pub fn finding_text(l: &Linted) -> String {
    let f = &l.finding;
    let info = f.rule.info();
    let mut out = format!(
        "{}:{}:{}: {} {}: {}\n",
        f.file.display(),
        f.line,
        f.column,
        info.severity.name(),
        info.id,
        f.message
    );
    for line in f.statement.lines() {
        let _ = writeln!(out, "    | {line}");
    }
    let _ = writeln!(out, "    why: {}", info.why);
    let _ = writeln!(out, "    safe: {}", info.safe);
    let _ = writeln!(out, "    runs on: {}", reach_text(&l.reach));
    out
}

/// The closing line: counts by severity, and the allowed ones.
pub fn summary(report: &LintReport) -> String {
    let errors = report.errors().count();
    let warnings = report.live().count() - errors;
    let allowed = report.findings.len() - report.live().count();
    let mut line = format!(
        "lint: {} file(s), {errors} error(s), {warnings} warning(s)",
        report.files
    );
    if allowed > 0 {
        let _ = write!(
            line,
            ", {allowed} allowed by `-- fleetmig: allow` (--format json lists them)"
        );
    }
    if report.unsurveyed > 0 {
        let _ = write!(
            line,
            "; {} tenant(s) could not be surveyed: every migration up to the target was linted for them",
            report.unsurveyed
        );
    }
    line
}

/// "12 tenants (db1: 8, 4 at once; db2: 4, 2 at once)", or why there are no counts.
pub fn reach_text(reach: &Reach) -> String {
    match reach {
        Reach::Unknown { why } => format!("unknown ({why})"),
        Reach::Surveyed {
            tenants,
            unreachable,
            hosts,
        } => {
            let mut out = format!("{tenants} tenant(s)");
            if !hosts.is_empty() {
                let per: Vec<String> = hosts
                    .iter()
                    .map(|h| format!("{}: {}, {} at once", h.host, h.tenants, h.at_once))
                    .collect();
                let _ = write!(out, " ({})", per.join("; "));
            }
            if *unreachable > 0 {
                let _ = write!(out, "; {unreachable} more could not be surveyed, so it may run on more");
            }
            out
        }
    }
}

/// The JSON document: every finding, allowed ones with their reason, and the counts.
pub fn json(report: &LintReport) -> Value {
    let findings: Vec<Value> = report.findings.iter().map(finding_json).collect();
    let errors = report.errors().count();
    json!({
        "files": report.files,
        "unsurveyed": report.unsurveyed,
        "errors": errors,
        "warnings": report.live().count() - errors,
        "allowed": report.findings.len() - report.live().count(),
        "findings": findings,
    })
}

fn finding_json(l: &Linted) -> Value {
    let f = &l.finding;
    let info = f.rule.info();
    json!({
        "file": f.file.display().to_string(),
        "version": f.version,
        "line": f.line,
        "column": f.column,
        "rule": info.id,
        "severity": info.severity,
        "message": f.message,
        "why": info.why,
        "safe_pattern": info.safe,
        "statement": f.statement,
        "suppressed": f.suppressed.is_some(),
        "reason": f.suppressed,
        "reach": l.reach,
    })
}

/// GitHub workflow commands, one per live finding.
pub fn github(report: &LintReport) -> String {
    let mut out = String::new();
    for l in report.findings.iter().filter(|l| l.finding.is_live()) {
        let _ = writeln!(out, "{}", annotation(l));
    }
    out
}

fn annotation(l: &Linted) -> String {
    let f: &Finding = &l.finding;
    let info = f.rule.info();
    let level = match info.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let message = format!(
        "{}\n{}\nsafe: {}\nruns on: {}",
        f.message,
        info.why,
        info.safe,
        reach_text(&l.reach)
    );
    format!(
        "::{level} file={},line={},col={},title={}::{}",
        property(&f.file.display().to_string()),
        f.line,
        f.column,
        property(info.id),
        data(&message)
    )
}

/// Escapes a workflow command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}
