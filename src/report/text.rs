//! Plain lines for people: one per finished tenant, and a summary.

use std::io::Write;

use crate::exec::events::{Event, Outcome, Stamped, Summary, TenantReport};
use crate::model::migration::Direction;

/// Renders run events as lines of text.
pub struct TextReporter {
    /// Width of the tenant-id column.
    id_width: usize,
    /// True for `stamp`, whose tenants change history rather than run steps.
    stamping: bool,
    /// Tenants in the run, to leave out the wave line of a run that is one wave.
    total: usize,
}

impl TextReporter {
    pub fn new(id_width: usize) -> Self {
        TextReporter {
            id_width: id_width.max(6),
            stamping: false,
            total: 0,
        }
    }

    pub fn write_event(&mut self, out: &mut dyn Write, stamped: &Stamped) -> std::io::Result<()> {
        match &stamped.event {
            Event::RunStarted {
                run_id,
                command,
                target,
                tenants,
            } => {
                self.stamping = command == "stamp";
                self.total = *tenants;
                let target = target.map(|t| format!(", target {t}")).unwrap_or_default();
                writeln!(out, "fleetmig {command}: {tenants} tenant(s){target} (run {run_id})")
            }
            Event::TenantFinished { report } => writeln!(out, "{}", self.tenant_line(report)),
            Event::RunFinished { summary, .. } if self.stamping => writeln!(
                out,
                "{} tenant(s) stamped, {} failed, {} skipped.",
                summary.succeeded, summary.failed, summary.skipped
            ),
            Event::RunFinished { summary, .. } => writeln!(out, "{}", summary_line(summary)),
            Event::WaveStarted {
                canary: false, tenants, ..
            } if *tenants == self.total => Ok(()),
            Event::WaveStarted { wave, canary, tenants } => {
                writeln!(
                    out,
                    "wave {wave}{}: {tenants} tenant(s)",
                    if *canary { " (canary)" } else { "" }
                )
            }
            Event::Stopping { reason } => writeln!(out, "stopping: {reason}"),
            Event::RollbackStarted { tenants } => writeln!(out, "rolling back {tenants} tenant(s)"),
            Event::TenantRolledBack {
                tenant,
                from,
                to,
                error,
            } => {
                let id = format!("{:width$}", tenant.as_str(), width = self.id_width);
                let v = |v: &Option<crate::model::migration::Version>| v.map_or("?".to_owned(), |v| v.to_string());
                match error {
                    None => writeln!(out, "  {id}  rolled back {} -> {}", v(from), v(to)),
                    Some(e) => writeln!(out, "  {id}  ROLLBACK FAILED at {}: {e}", v(to)),
                }
            }
            Event::TenantStarted { .. }
            | Event::StepStarted { .. }
            | Event::StepFinished { .. }
            | Event::WaveFinished { .. } => Ok(()),
        }
    }

    pub fn tenant_line(&self, r: &TenantReport) -> String {
        let id = format!("{:width$}", r.id.as_str(), width = self.id_width);
        let v = |v: Option<crate::model::migration::Version>| v.map_or("?".to_owned(), |v| v.to_string());
        match &r.outcome {
            Outcome::Succeeded if self.stamping => {
                format!(
                    "  {id}  stamped at {} (history said {})",
                    v(r.final_version),
                    v(r.start_version)
                )
            }
            Outcome::Succeeded if r.steps.is_empty() => format!("  {id}  at {}, nothing to do", v(r.final_version)),
            Outcome::Succeeded => {
                let verb = if r.steps[0].direction == Direction::Up {
                    "applied"
                } else {
                    "reverted"
                };
                let ms: u64 = r.steps.iter().map(|s| s.duration_ms).sum();
                format!(
                    "  {id}  {} -> {}  {} {verb} in {ms} ms",
                    v(r.start_version),
                    v(r.final_version),
                    r.steps.len()
                )
            }
            Outcome::Failed { error, dirty, .. } => {
                let dirty = if *dirty {
                    " [dirty: fix by hand, then `fleetmig stamp`]"
                } else {
                    ""
                };
                format!("  {id}  FAILED {error}; left at {}{dirty}", v(r.final_version))
            }
            Outcome::Skipped { reason } => {
                format!("  {id}  SKIPPED ({}): {}", reason.name(), reason.message())
            }
            Outcome::NotStarted => format!("  {id}  not started"),
            Outcome::Stopped => format!("  {id}  stopped at {} (target not reached)", v(r.final_version)),
        }
    }
}

/// The run's last line.
pub fn summary_line(s: &Summary) -> String {
    let secs = s.elapsed_ms as f64 / 1000.0;
    if s.is_success() && s.changed == 0 {
        return format!(
            "Nothing to do: all {} tenant(s) already at the target ({secs:.2} s).",
            s.tenants
        );
    }
    let mut line = format!(
        "{} tenant(s): {} changed, {} already at the target, {} failed, {} skipped",
        s.tenants,
        s.changed,
        s.succeeded - s.changed,
        s.failed,
        s.skipped
    );
    if s.not_started + s.stopped > 0 {
        line.push_str(&format!(
            ", {} not started, {} stopped part way",
            s.not_started, s.stopped
        ));
    }
    line + &format!(" ({secs:.2} s).")
}
