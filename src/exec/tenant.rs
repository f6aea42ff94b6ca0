//! One tenant's part of a run: open, lock, read, plan, step, release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::driver::connect::{Access, AnySession, Connector};
use crate::driver::error::{DbError, ErrorKind};
use crate::exec::events::{Event, Events, Outcome, SkipReason, StepDone, TenantReport};
use crate::model::fleet::Tenant;
use crate::model::migration::{Applied, Direction, MigrationSet, Version};
use crate::plan::tenant::{self as plan, Target};

/// What a run does to each tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Migrate(Target),
    /// Record the tenant as being at this version without running SQL.
    Stamp(Version),
}

fn skipped(tenant: &Tenant, error: DbError, start: Option<Version>) -> TenantReport {
    let reason = match error.kind {
        ErrorKind::Locked => SkipReason::Locked { error },
        _ => SkipReason::Unreachable { error },
    };
    TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Skipped { reason },
        start_version: start,
        final_version: start,
        steps: vec![],
    }
}

/// Runs `action` on one tenant. Never returns an error: whatever happens is its outcome.
pub async fn run(
    tenant: &Tenant,
    set: &MigrationSet,
    action: Action,
    connector: &Connector,
    run_id: &str,
    events: &Events,
    stop: &AtomicBool,
) -> TenantReport {
    events.emit(Event::TenantStarted {
        tenant: tenant.id.clone(),
    });
    let mut session = match connector.open(tenant, Access::Write).await {
        Ok(s) => s,
        Err(e) => return skipped(tenant, e, None),
    };
    let report = match session.applied().await {
        Ok(applied) => match action {
            Action::Migrate(target) => migrate(&mut session, tenant, set, &applied, target, run_id, events, stop).await,
            Action::Stamp(to) => stamp(&mut session, tenant, set, &applied, to, run_id).await,
        },
        Err(e) => TenantReport {
            id: tenant.id.clone(),
            outcome: Outcome::Failed {
                version: Version::ZERO,
                error: e,
                dirty: false,
            },
            start_version: None,
            final_version: None,
            steps: vec![],
        },
    };
    session.release().await;
    report
}

#[expect(
    clippy::too_many_arguments,
    reason = "private step of `run`; a struct would only rename its arguments"
)]
async fn migrate(
    session: &mut AnySession,
    tenant: &Tenant,
    set: &MigrationSet,
    applied: &[Applied],
    target: Target,
    run_id: &str,
    events: &Events,
    stop: &AtomicBool,
) -> TenantReport {
    let start = plan::version_of(applied);
    let mut report = TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Succeeded,
        start_version: Some(start),
        final_version: Some(start),
        steps: vec![],
    };
    let tenant_plan = match plan::plan(set, applied, target) {
        Ok(p) => p,
        Err(refusal) => {
            report.outcome = Outcome::Skipped {
                reason: SkipReason::Refused { refusal },
            };
            return report;
        }
    };
    let total = tenant_plan.steps.len();
    for (index, step) in tenant_plan.steps.iter().enumerate() {
        let m = step.migration;
        if stop.load(Ordering::SeqCst) {
            report.outcome = if index == 0 {
                Outcome::NotStarted
            } else {
                Outcome::Stopped
            };
            break;
        }
        events.emit(Event::StepStarted {
            tenant: tenant.id.clone(),
            version: m.version,
            name: m.name.clone(),
            direction: step.direction,
            index: index + 1,
            total,
        });
        let started = Instant::now();
        match session.run_step(*step, run_id).await {
            Ok(_) => {
                let duration_ms = started.elapsed().as_millis() as u64;
                events.emit(Event::StepFinished {
                    tenant: tenant.id.clone(),
                    version: m.version,
                    direction: step.direction,
                    duration_ms,
                });
                report.steps.push(StepDone {
                    version: m.version,
                    name: m.name.clone(),
                    direction: step.direction,
                    duration_ms,
                });
            }
            Err(error) => {
                let dirty = !(m.script(step.direction).is_some_and(|s| s.transactional)
                    && tenant.engine.has_transactional_ddl());
                report.outcome = Outcome::Failed {
                    version: m.version,
                    error,
                    dirty,
                };
                break;
            }
        }
    }
    report.final_version = Some(reached(&tenant_plan, &report, applied));
    report
}

/// The version the tenant is at after the steps that completed.
fn reached(tenant_plan: &plan::TenantPlan<'_>, report: &TenantReport, applied: &[Applied]) -> Version {
    if matches!(report.outcome, Outcome::Succeeded) {
        return tenant_plan.to;
    }
    let mut versions: Vec<Version> = applied.iter().map(|a| a.version).collect();
    for step in &report.steps {
        match step.direction {
            Direction::Up => versions.push(step.version),
            Direction::Down => versions.retain(|v| *v != step.version),
        }
    }
    // A step that failed outside a transaction left its row behind, marked dirty.
    if let Outcome::Failed {
        version, dirty: true, ..
    } = report.outcome
    {
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    versions.into_iter().max().unwrap_or(Version::ZERO)
}

async fn stamp(
    session: &mut AnySession,
    tenant: &Tenant,
    set: &MigrationSet,
    applied: &[Applied],
    to: Version,
    run_id: &str,
) -> TenantReport {
    let start = plan::version_of(applied);
    let rows = plan::stamp(set, to);
    let outcome = match session.stamp(&rows, run_id).await {
        Ok(()) => Outcome::Succeeded,
        Err(error) => Outcome::Failed {
            version: to,
            error,
            dirty: false,
        },
    };
    let final_version = if matches!(outcome, Outcome::Succeeded) {
        to
    } else {
        start
    };
    TenantReport {
        id: tenant.id.clone(),
        outcome,
        start_version: Some(start),
        final_version: Some(final_version),
        steps: vec![],
    }
}

/// A tenant's history rows, read without locking or creating anything.
pub async fn inspect(tenant: &Tenant, connector: &Connector) -> Result<Vec<Applied>, DbError> {
    let mut session = connector.open(tenant, Access::Read).await?;
    let rows = session.applied().await;
    session.release().await;
    rows
}
