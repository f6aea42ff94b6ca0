//! OpenMetrics text for Prometheus: a run's outcome (`up`/`down --metrics-file`) and where
//! the fleet stands (`status --format openmetrics`), for the node exporter's textfile
//! collector or a pushgateway. Every family has its `# TYPE` and
//! `# HELP`, label values are escaped as the format says, and the text ends in `# EOF`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use crate::model::fleet::{Engine, Fleet};
use crate::model::migration::Version;
use crate::model::run::{RunReport, Status};
use crate::plan::status::FleetStatus;
use crate::plan::tenant::Condition;

/// The labels every tenant sample has; `--metric-labels` may not take them.
const OWN_LABELS: [&str; 4] = ["tenant", "host", "engine", "state"];

/// Every state a tenant can be in, each counted even when no tenant is in it, so a
/// dashboard's series do not vanish.
const STATES: [Condition; 7] = [
    Condition::Current,
    Condition::Behind,
    Condition::Ahead,
    Condition::Drifted,
    Condition::Dirty,
    Condition::Unreachable,
    Condition::SchemaDrift,
];

/// A label value escaped for the exposition format: `\`, `"` and line feeds.
pub fn label(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The run's outcome: tenants per final status, duration, when it finished, and an info
/// family with its id, command, target and stop reason.
pub fn run(report: &RunReport, target: Option<&str>, finished: SystemTime) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let counts = [
        (Status::Succeeded, s.succeeded),
        (Status::Failed, s.failed),
        (Status::RolledBack, s.rolled_back),
        (Status::RollbackFailed, s.rollback_failed),
        (Status::Skipped, s.skipped),
        (Status::NotStarted, s.not_started),
        (Status::Stopped, s.stopped),
    ];
    out.push_str(
        "# TYPE fleetmig_run_tenants gauge\n# HELP fleetmig_run_tenants Tenants of the run by final status.\n",
    );
    for (status, n) in counts {
        let _ = writeln!(out, "fleetmig_run_tenants{{status=\"{}\"}} {n}", status.name());
    }
    out.push_str("# TYPE fleetmig_run_changed_tenants gauge\n# HELP fleetmig_run_changed_tenants Succeeded tenants that ran at least one step.\n");
    let _ = writeln!(out, "fleetmig_run_changed_tenants {}", s.changed);
    out.push_str(
        "# TYPE fleetmig_run_duration_seconds gauge\n# HELP fleetmig_run_duration_seconds How long the run took.\n",
    );
    let _ = writeln!(out, "fleetmig_run_duration_seconds {:.3}", s.elapsed_ms as f64 / 1000.0);
    out.push_str("# TYPE fleetmig_run_success gauge\n# HELP fleetmig_run_success 1 when every tenant reached the target, else 0.\n");
    let _ = writeln!(out, "fleetmig_run_success {}", u8::from(report.is_success()));
    let at = finished.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    out.push_str(
        "# TYPE fleetmig_run_finished_timestamp_seconds gauge\n# HELP fleetmig_run_finished_timestamp_seconds When the run ended, in seconds since the epoch.\n",
    );
    let _ = writeln!(out, "fleetmig_run_finished_timestamp_seconds {at:.3}");
    let reason = serde_json::to_value(&report.stop_reason)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default();
    out.push_str("# TYPE fleetmig_run info\n# HELP fleetmig_run The run: its id, command, target and stop reason.\n");
    let _ = writeln!(
        out,
        "fleetmig_run_info{{run_id=\"{}\",command=\"{}\",target=\"{}\",stop_reason=\"{}\"}} 1",
        label(&report.run_id),
        label(&report.command),
        label(target.unwrap_or("")),
        label(&reason)
    );
    out.push_str("# EOF\n");
    out
}

/// A `--metric-labels` name that cannot be a label of fleetmig's samples.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--metric-labels: {0}")]
pub struct BadLabel(String);

/// `--metric-labels`: each a valid Prometheus label name, none of fleetmig's own, none twice.
pub fn check_label_names(names: &[String]) -> Result<(), BadLabel> {
    for (i, name) in names.iter().enumerate() {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !valid {
            return Err(BadLabel(format!(
                "`{name}` is not a Prometheus label name (letters, digits and `_`, not starting with a digit or `__`)"
            )));
        }
        if OWN_LABELS.contains(&name.as_str()) {
            return Err(BadLabel(format!(
                "`{name}` is one of fleetmig's own labels ({})",
                OWN_LABELS.join(", ")
            )));
        }
        if names[..i].contains(name) {
            return Err(BadLabel(format!("`{name}` is named twice")));
        }
    }
    Ok(())
}

/// Each tenant's label pairs, rendered once: tenant, host, engine, then the chosen fleet
/// labels (empty for a tenant that has none).
pub struct TenantLabels {
    by_id: HashMap<String, String>,
}

impl TenantLabels {
    pub fn of(fleet: &Fleet, chosen: &[String]) -> TenantLabels {
        let by_id = fleet
            .tenants
            .iter()
            .map(|t| {
                let host = match (&t.host, t.engine) {
                    (Some(host), _) => host.clone(),
                    (None, Engine::Sqlite) => "local".to_owned(),
                    (None, _) => {
                        let url = t.url.url();
                        format!("{}:{}", url.host_str().unwrap_or(""), url.port().unwrap_or(0))
                    }
                };
                let mut pairs = format!(
                    "tenant=\"{}\",host=\"{}\",engine=\"{}\"",
                    label(t.id.as_str()),
                    label(&host),
                    t.engine
                );
                for name in chosen {
                    let value = t.labels.get(name).map(String::as_str).unwrap_or("");
                    pairs.push_str(&format!(",{name}=\"{}\"", label(value)));
                }
                (t.id.as_str().to_owned(), pairs)
            })
            .collect();
        TenantLabels { by_id }
    }

    fn get(&self, id: &str) -> String {
        self.by_id
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("tenant=\"{}\"", label(id)))
    }
}

/// One family's `# TYPE` and `# HELP` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}");
}

/// `status --format openmetrics`: per tenant its version, migrations behind and state;
/// tenants per state; the head and target; when the fleet was read. With `lagging`, the
/// per-tenant families hold the tenants that are not current only.
pub fn status(status: &FleetStatus, labels: &TenantLabels, lagging: bool, read: SystemTime) -> String {
    let mut out = String::new();
    let shown: Vec<_> = status
        .tenants
        .iter()
        .filter(|t| !lagging || t.condition != Condition::Current)
        .map(|t| (t, labels.get(&t.id)))
        .collect();
    family(
        &mut out,
        "fleetmig_tenant_version",
        "gauge",
        "The highest migration a tenant holds cleanly, for whole-number versions (absent when it could not be read; the state's version label has any version).",
    );
    for (t, pairs) in &shown {
        if let Some(v) = t.version.and_then(Version::as_int) {
            let _ = writeln!(out, "fleetmig_tenant_version{{{pairs}}} {v}");
        }
    }
    family(
        &mut out,
        "fleetmig_tenant_behind",
        "gauge",
        "Migrations up to the target a tenant has not applied cleanly (absent when it could not be read).",
    );
    for (t, pairs) in &shown {
        if let Some(n) = t.behind_by {
            let _ = writeln!(out, "fleetmig_tenant_behind{{{pairs}}} {n}");
        }
    }
    family(
        &mut out,
        "fleetmig_tenant_state",
        "gauge",
        "1 for a tenant's state (current, behind, ahead, drifted, dirty, unreachable or schema_drift) and version (empty when it could not be read).",
    );
    for (t, pairs) in &shown {
        let version = t.version.map(|v| label(&v.text())).unwrap_or_default();
        let _ = writeln!(
            out,
            "fleetmig_tenant_state{{{pairs},state=\"{}\",version=\"{version}\"}} 1",
            t.condition.name()
        );
    }
    family(&mut out, "fleetmig_tenants", "gauge", "Tenants per state.");
    for state in STATES {
        let n = status.tenants.iter().filter(|t| t.condition == state).count();
        let _ = writeln!(out, "fleetmig_tenants{{state=\"{}\"}} {n}", state.name());
    }
    heads(&mut out, status);
    family(
        &mut out,
        "fleetmig_status_timestamp_seconds",
        "gauge",
        "When the fleet was read, in seconds since the epoch.",
    );
    let at = read.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let _ = writeln!(out, "fleetmig_status_timestamp_seconds {at:.3}");
    out.push_str("# EOF\n");
    out
}

/// The migration set's head (one per engine when each engine has its own set) and the
/// version the tenants are measured against, as labels: versions need not be numbers.
fn heads(out: &mut String, status: &FleetStatus) {
    family(
        out,
        "fleetmig_set",
        "info",
        "The migration set: its head and the target tenants are measured against (per engine when each has its own set).",
    );
    let target = |head: Version| match status.target == Version::HEAD {
        true => head,
        false => status.target,
    };
    if status.heads.is_empty() {
        let (head, target) = (status.head.text(), target(status.head).text());
        let _ = writeln!(
            out,
            "fleetmig_set_info{{head=\"{}\",target=\"{}\"}} 1",
            label(&head),
            label(&target)
        );
    }
    for (engine, head) in &status.heads {
        let (h, t) = (head.text(), target(*head).text());
        let _ = writeln!(
            out,
            "fleetmig_set_info{{engine=\"{engine}\",head=\"{}\",target=\"{}\"}} 1",
            label(&h),
            label(&t)
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
