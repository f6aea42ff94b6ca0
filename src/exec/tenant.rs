//! One tenant's part of a run: open, lock, read, plan, step, release; retried from a fresh
//! read when the trouble was transient.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// Everything a tenant task needs besides the tenant and the connector.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub set: &'a MigrationSet,
    pub action: Action,
    /// All of a tenant's steps in one transaction (PostgreSQL, SQLite).
    pub per_tenant_tx: bool,
    /// Extra attempts after a transient error.
    pub retries: u32,
    pub run_id: &'a str,
    pub events: &'a Events,
    /// Set by the dispatcher; read here at safe points only.
    pub stop: &'a AtomicBool,
}

/// SQLSTATEs (and MySQL codes) worth another attempt: the database, not the migration, said no.
const TRANSIENT_CODES: &[&str] = &[
    "40001", "40P01", "55P03", "53300", "57P01", "57P03", "1205", "1213", "1040",
];

/// True when trying the tenant again may succeed: no connection, a lock or serialization
/// conflict, too many connections. An error in a migration's SQL is not.
pub fn is_transient(e: &DbError) -> bool {
    match e.kind {
        ErrorKind::Unreachable | ErrorKind::Locked => true,
        ErrorKind::Sql => {
            e.code
                .as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c) || c.starts_with("08"))
                || e.code.is_none() && (e.message.contains("Connection reset") || e.message.contains("Broken pipe"))
        }
    }
}

/// The wait before attempt `attempt` (1-based): 200 ms doubling, with a jitter that differs
/// per tenant so retried tenants do not come back in step.
fn backoff(tenant: &Tenant, attempt: u32) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tenant.id.as_str(), attempt).hash(&mut h);
    let base = 200u64 << attempt.saturating_sub(1).min(6);
    Duration::from_millis(base + h.finish() % (base / 2 + 1))
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

/// The error that made an attempt end, when another attempt may do better.
fn retryable(report: &TenantReport) -> Option<&DbError> {
    match &report.outcome {
        Outcome::Skipped {
            reason: SkipReason::Unreachable { error } | SkipReason::Locked { error },
        } => Some(error),
        Outcome::Failed {
            error, dirty: false, ..
        } if is_transient(error) => Some(error),
        _ => None,
    }
}

/// Runs the job on one tenant. Never returns an error: whatever happens is its outcome.
pub async fn run(tenant: &Tenant, connector: &Connector, job: Job<'_>) -> TenantReport {
    job.events.emit(Event::TenantStarted {
        tenant: tenant.id.clone(),
    });
    let mut report = attempt(tenant, connector, job).await;
    for n in 1..=job.retries {
        if retryable(&report).is_none() || job.stop.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(backoff(tenant, n)).await;
        let next = attempt(tenant, connector, job).await;
        report = merge(report, next);
    }
    report
}

/// Joins a retry onto what earlier attempts did.
fn merge(earlier: TenantReport, mut later: TenantReport) -> TenantReport {
    if earlier.start_version.is_some() {
        later.start_version = earlier.start_version;
    }
    let mut steps = earlier.steps;
    steps.append(&mut later.steps);
    later.steps = steps;
    later
}

/// A tenant whose database answered but failed before any migration ran.
fn failed_before_any_step(tenant: &Tenant, error: DbError) -> TenantReport {
    TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Failed {
            version: Version::ZERO,
            error,
            dirty: false,
        },
        start_version: None,
        final_version: None,
        steps: vec![],
    }
}

async fn attempt(tenant: &Tenant, connector: &Connector, job: Job<'_>) -> TenantReport {
    let mut session = match connector.open(tenant, Access::Write).await {
        Ok(s) => s,
        // The database answered but refused to set up (init_sql, creating the history table).
        Err(error) if error.kind == ErrorKind::Sql => {
            return failed_before_any_step(tenant, error);
        }
        Err(e) => return skipped(tenant, e, None),
    };
    let report = match session.applied().await {
        Ok(applied) => match job.action {
            Action::Migrate(target) => migrate(&mut session, tenant, &applied, target, job).await,
            Action::Stamp(to) => stamp(&mut session, tenant, job.set, &applied, to, job.run_id).await,
        },
        Err(error) => failed_before_any_step(tenant, error),
    };
    session.release().await;
    report
}

async fn migrate(
    session: &mut AnySession,
    tenant: &Tenant,
    applied: &[Applied],
    target: Target,
    job: Job<'_>,
) -> TenantReport {
    let start = plan::version_of(applied);
    let mut report = TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Succeeded,
        start_version: Some(start),
        final_version: Some(start),
        steps: vec![],
    };
    let tenant_plan = match plan::plan(job.set, applied, target) {
        Ok(p) => p,
        Err(refusal) => {
            report.outcome = Outcome::Skipped {
                reason: SkipReason::Refused { refusal },
            };
            return report;
        }
    };
    let total = tenant_plan.steps.len();
    let started_event = |index: usize, step: &plan::Step<'_>| Event::StepStarted {
        tenant: tenant.id.clone(),
        version: step.migration.version,
        name: step.migration.name.clone(),
        direction: step.direction,
        index: index + 1,
        total,
    };
    let finished = |report: &mut TenantReport, step: &plan::Step<'_>, duration_ms: u64| {
        job.events.emit(Event::StepFinished {
            tenant: tenant.id.clone(),
            version: step.migration.version,
            direction: step.direction,
            duration_ms,
        });
        report.steps.push(StepDone {
            version: step.migration.version,
            name: step.migration.name.clone(),
            direction: step.direction,
            duration_ms,
        });
    };
    if job.per_tenant_tx && total > 0 {
        // One unit: it runs whole or not at all, so the only safe point is before it.
        if job.stop.load(Ordering::SeqCst) {
            report.outcome = Outcome::NotStarted;
            return report;
        }
        // `app` refuses such a run before it starts; a tenant moved back in between fails
        // here, before anything runs on it.
        let outside = tenant_plan.steps.iter().find(|s| {
            s.migration
                .script(s.direction)
                .is_some_and(|script| !script.transactional)
        });
        if let Some(step) = outside {
            report.outcome = Outcome::Failed {
                version: step.migration.version,
                error: DbError::new(
                    ErrorKind::Sql,
                    format!("migrating {}", step.migration.label()),
                    "marked `-- fleetmig: no-transaction`: it cannot join the tenant's transaction (--tx per-tenant); nothing ran",
                ),
                dirty: false,
            };
            return report;
        }
        // The steps travel together; the events say so by starting them together.
        for (index, step) in tenant_plan.steps.iter().enumerate() {
            job.events.emit(started_event(index, step));
        }
        match session.run_in_one_tx(&tenant_plan.steps, job.run_id).await {
            Ok(durations) => {
                for (step, d) in tenant_plan.steps.iter().zip(durations) {
                    finished(&mut report, step, d.as_millis() as u64);
                }
                report.final_version = Some(tenant_plan.to);
            }
            Err((at, error)) => {
                let failed = tenant_plan.steps.get(at).or(tenant_plan.steps.last());
                // Nothing of the transaction stays: the session is closed, the database rolls back.
                report.outcome = Outcome::Failed {
                    version: failed.map_or(Version::ZERO, |s| s.migration.version),
                    error,
                    dirty: false,
                };
            }
        }
        return report;
    }
    for (index, step) in tenant_plan.steps.iter().enumerate() {
        let m = step.migration;
        if job.stop.load(Ordering::SeqCst) {
            report.outcome = if index == 0 {
                Outcome::NotStarted
            } else {
                Outcome::Stopped
            };
            break;
        }
        job.events.emit(started_event(index, step));
        let started = Instant::now();
        match session.run_step(*step, job.run_id).await {
            Ok(_) => finished(&mut report, step, started.elapsed().as_millis() as u64),
            Err(error) => {
                let in_tx =
                    m.script(step.direction).is_some_and(|s| s.transactional) && tenant.engine.has_transactional_ddl();
                report.outcome = Outcome::Failed {
                    version: m.version,
                    error,
                    dirty: !in_tx,
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
    // A step that failed outside a transaction left its row behind, marked dirty: the
    // tenant did not reach it either way, and the report names it as dirty.
    if let Outcome::Failed {
        version, dirty: true, ..
    } = report.outcome
    {
        versions.retain(|v| *v != version);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind, code: Option<&str>) -> DbError {
        DbError {
            kind,
            op: "x".into(),
            code: code.map(str::to_owned),
            message: "m".into(),
        }
    }

    #[test]
    fn transient_errors_are_the_databases_not_the_migrations() {
        assert!(is_transient(&err(ErrorKind::Unreachable, None)));
        assert!(is_transient(&err(ErrorKind::Sql, Some("40001"))));
        assert!(is_transient(&err(ErrorKind::Sql, Some("55P03"))));
        assert!(is_transient(&err(ErrorKind::Sql, Some("08006"))));
        assert!(!is_transient(&err(ErrorKind::Sql, Some("42P01"))));
        assert!(!is_transient(&err(ErrorKind::Sql, None)));
    }
}
