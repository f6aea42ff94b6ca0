//! OpenMetrics text for Prometheus: a run's outcome (`up`/`down --metrics-file`), for the
//! node exporter's textfile collector or a pushgateway. Every family has its `# TYPE` and
//! `# HELP`, label values are escaped as the format says, and the text ends in `# EOF`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::run::{RunReport, Status};

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

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
