//! One tenant's part of a run: open, lock, read, plan, step, release; retried from a fresh
//! read when the trouble was transient.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::driver::connect::{Access, AnySession, Connector, Limits};
use crate::driver::session::{StepFailed, Undo};
use crate::exec::events::{Event, Events};
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Tenant, TenantId};
use crate::model::foreign::{Adoption, Tool};
use crate::model::migration::{Applied, Direction, MigrationSet, Version, VersionStyle};
use crate::model::refusal::Refusal;
use crate::model::run::{Outcome, Phase, SkipReason, StepDone, TenantReport};
use crate::model::sets::Sets;
use crate::plan::tenant::{self as plan, Target};

/// What a run does to each tenant; `'a`: what it borrows (`adopt`'s revision map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Migrate(Target),
    /// Record the tenant as being at this version without running SQL.
    Stamp(Version),
    /// Record the files' checksums for the migrations the tenant has (or only this one),
    /// keeping its version.
    Checksums(Option<Version>),
    /// Record what another tool's history table says is applied, without running SQL.
    Adopt(Adoption<'a>),
}

impl<'a> Action<'a> {
    /// This action as a tenant of `engine` takes it: [`Version::HEAD`] is its set's head,
    /// other versions are read in its set's style.
    pub fn resolved(self, sets: &Sets, engine: Engine) -> Action<'a> {
        let v = |to| sets.resolve(engine, to);
        match self {
            Action::Migrate(target) => Action::Migrate(target.map(v)),
            Action::Stamp(to) => Action::Stamp(v(to)),
            Action::Checksums(only) => Action::Checksums(only.map(v)),
            Action::Adopt(tool) => Action::Adopt(tool),
        }
    }
}

/// How a tenant is tried again after a transient error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How long after its first transient error a tenant is still tried again (`--retry-for`):
    /// long enough to ride out a server restart or a failover.
    pub within: Duration,
    /// At most this many more attempts (`--retries`); `None`: as many as `within` allows.
    pub attempts: Option<u32>,
}

impl Retry {
    /// One attempt only.
    pub const NEVER: Retry = Retry {
        within: Duration::ZERO,
        attempts: Some(0),
    };

    /// The default: a minute of capped, jittered backoff, no cap on the count.
    pub const DEFAULT: Retry = Retry {
        within: Duration::from_secs(60),
        attempts: None,
    };
}

impl Default for Retry {
    fn default() -> Self {
        Retry::DEFAULT
    }
}

/// What a tenant's task has done so far, kept outside it: a task abandoned mid-step (a
/// second interrupt drops it) is reported from this and a fresh read of its history.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The version its first attempt found.
    pub start: Option<Version>,
    /// Where its plan goes.
    pub to: Option<Version>,
    /// The steps that completed, in order.
    pub steps: Vec<StepDone>,
}

/// The progress of each tenant of a run in flight.
pub type Tracker = Mutex<std::collections::HashMap<TenantId, Progress>>;

/// Everything a tenant task needs besides the tenant and the connector.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub set: &'a MigrationSet,
    pub action: Action<'a>,
    /// All of a tenant's steps in one transaction (PostgreSQL, SQLite).
    pub per_tenant_tx: bool,
    /// When to try again after a transient error.
    pub retry: Retry,
    pub run_id: &'a str,
    /// The wave the tenant belongs to, for its events.
    pub wave: usize,
    pub events: &'a Events,
    /// Set by the dispatcher; read here at safe points only.
    pub stop: &'a AtomicBool,
    /// Where the task notes its progress, when the caller may abandon it.
    pub progress: Option<&'a Tracker>,
    /// What each attempt tells the dispatcher of the tenant's host, and whether the host is
    /// cut off (the breaker, `--host-failures`).
    pub host: Option<&'a dyn HostWatch>,
}

/// The dispatcher's side of a tenant's connection attempts: the breaker counts each
/// attempt that cannot connect, and a tenant stops retrying once its host is cut off.
pub trait HostWatch: Send + Sync {
    /// An attempt reached the server: a session opened, or the server answered with an error.
    fn reached(&self);
    /// An attempt could not connect at all (refused, timed out, no route).
    fn unreached(&self, error: &DbError);
    /// The host is cut off: no more attempts.
    fn cut_off(&self) -> bool;
}

/// The longest wait between two attempts on one tenant.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The wait before attempt `attempt` (1-based): 200 ms doubling up to 5 s, with a jitter
/// that differs per tenant so retried tenants do not come back in step.
fn backoff(tenant: &TenantId, attempt: u32) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tenant.as_str(), attempt).hash(&mut h);
    let base = (200u64 << attempt.saturating_sub(1).min(6)).min(BACKOFF_MAX.as_millis() as u64 * 2 / 3);
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
        } if error.is_transient() => Some(error),
        _ => None,
    }
}

/// Runs the job on one tenant, whose start the caller has announced (in its turn). Never
/// returns an error: whatever happens is its outcome.
pub async fn run_announced(tenant: &Tenant, connector: &Connector, job: Job<'_>) -> TenantReport {
    // The undo a failed step's session could not finish, for the next attempt to finish first.
    let pending: Mutex<Option<Undo>> = Mutex::default();
    // `--lock-wait` is one budget for all of a tenant's attempts: a lock still held when it
    // is spent ends the tenant, however much of `--retry-for` is left.
    let lock_deadline = tokio::time::Instant::now() + connector.limits.lock_wait;
    let undoing = |report: &TenantReport| match &report.outcome {
        // Its host cut off while it waited to try again: nothing was touched, it stops here.
        Outcome::Skipped {
            reason: SkipReason::Unreachable { .. },
        } if job.host.is_some_and(|h| h.cut_off()) => None,
        Outcome::Failed { error, dirty: true, .. }
            if error.is_transient() && pending.lock().expect("not poisoned").is_some() =>
        {
            Some(error.clone())
        }
        Outcome::Skipped {
            reason: SkipReason::Locked { .. },
        } if tokio::time::Instant::now() >= lock_deadline => None,
        _ => retryable(report).cloned(),
    };
    with_retries(
        &tenant.id,
        job.wave,
        job.retry,
        job.events,
        job.stop,
        undoing,
        |retry_deadline| {
            let limits = attempt_limits(&connector.limits, lock_deadline, retry_deadline);
            let pending = &pending;
            async move { attempt(tenant, connector, job, pending, &limits).await }
        },
    )
    .await
}

/// The limits of one attempt: what is left of the tenant's `--lock-wait`, and on a retry
/// a `lock_timeout` no longer than what is left of `--retry-for`, so a table lock that
/// outlasts the retries costs about `--retry-for` in all, not a `lock_timeout` more.
fn attempt_limits(
    run: &Limits,
    lock_deadline: tokio::time::Instant,
    retry_deadline: Option<tokio::time::Instant>,
) -> Limits {
    let now = tokio::time::Instant::now();
    let mut limits = run.clone();
    limits.lock_wait = lock_deadline.saturating_duration_since(now);
    if let Some(deadline) = retry_deadline {
        let left = deadline.saturating_duration_since(now).max(Duration::from_millis(1));
        if !limits.lock_timeout.is_zero() {
            limits.lock_timeout = limits.lock_timeout.min(left);
        }
    }
    limits
}

/// Tries a tenant, and again after each transient error while the retry budget lasts and
/// the run is not stopping; each new try is announced. Every try starts from a fresh read
/// of the tenant's history, and the reports of all tries are merged into one.
async fn with_retries<F, Fut>(
    id: &TenantId,
    wave: usize,
    retry: Retry,
    events: &Events,
    stop: &AtomicBool,
    retryable: impl Fn(&TenantReport) -> Option<DbError>,
    mut attempt: F,
) -> TenantReport
where
    F: FnMut(Option<tokio::time::Instant>) -> Fut,
    Fut: std::future::Future<Output = TenantReport>,
{
    let mut report = attempt(None).await;
    let mut first_error: Option<tokio::time::Instant> = None;
    for n in 1.. {
        let Some(error) = retryable(&report) else { break };
        let since = *first_error.get_or_insert_with(tokio::time::Instant::now);
        let wait = backoff(id, n);
        if retry.attempts.is_some_and(|max| n > max) || since.elapsed() + wait > retry.within {
            if n > 1 {
                gave_up(&mut report, n, since.elapsed(), retry);
            }
            break;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        events.emit(Event::StepRetried {
            tenant: id.clone(),
            wave,
            attempt: n + 1,
            wait_ms: wait.as_millis() as u64,
            error,
        });
        if !pause(wait, stop).await {
            break;
        }
        let next = attempt(Some(since + retry.within)).await;
        report = merge(report, next);
    }
    report
}

/// Says on the last error of a tenant given up on how many attempts it had, and in what time.
fn gave_up(report: &mut TenantReport, attempts: u32, spent: Duration, retry: Retry) {
    let error = match &mut report.outcome {
        Outcome::Failed { error, .. }
        | Outcome::Skipped {
            reason: SkipReason::Unreachable { error } | SkipReason::Locked { error },
        } => error,
        _ => return,
    };
    let budget = match retry.attempts {
        Some(max) if attempts > max => format!("--retries {max}"),
        _ => format!("--retry-for {}", humantime::format_duration(retry.within)),
    };
    let spent = Duration::from_millis(spent.as_millis() as u64);
    error.message = format!(
        "{}; given up after {attempts} attempts over {} since the first error ({budget})",
        error.message,
        humantime::format_duration(spent)
    );
}

/// Resolves once the run is stopping (checked every 50 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps for `wait`, waking early when the run starts stopping; false then.
async fn pause(wait: Duration, stop: &AtomicBool) -> bool {
    const TICK: Duration = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        tokio::time::sleep(left.min(TICK)).await;
    }
}

/// Joins a retry onto what earlier attempts did. A tenant that earlier attempts changed, or
/// may have changed (a statement whose answer was lost), is never skipped or not started:
/// it failed (the later attempt could not reach it or read it, or found it dirty) or
/// stopped (the run stopped before the later attempt's first step), at the version its
/// committed steps took it to when the later attempt could not read one, and unknown when
/// a lost answer left it so.
fn merge(earlier: TenantReport, mut later: TenantReport) -> TenantReport {
    if matches!(later.outcome, Outcome::NotStarted) && later.start_version.is_none() && later.final_version.is_none() {
        return stopped_before_reading(earlier);
    }
    if earlier.start_version.is_some() {
        later.start_version = earlier.start_version;
    }
    let lost = match &earlier.outcome {
        Outcome::Failed { error, .. } if crate::driver::connect::is_no_answer(error) => Some(error.clone()),
        _ => None,
    };
    if later.final_version.is_none() && lost.is_none() {
        later.final_version = earlier.final_version;
    }
    if earlier.changed() || lost.is_some() {
        // The migration the earlier attempt failed at is the one the later did not get to.
        let at = match &earlier.outcome {
            Outcome::Failed { version, .. } => *version,
            _ => None,
        };
        let moved = earlier.changed() || later.final_version != later.start_version;
        later.outcome = after_a_change(later.outcome, moved, lost, at);
    }
    let mut steps = earlier.steps;
    steps.append(&mut later.steps);
    later.steps = steps;
    later
}

/// A later attempt that saw the stop before it could read anything adds nothing: a tenant
/// that changed and whose failed step left nothing behind stopped between migrations, at
/// the version its committed steps reached; any other stays as the earlier attempt left it.
fn stopped_before_reading(earlier: TenantReport) -> TenantReport {
    let clean = matches!(&earlier.outcome, Outcome::Failed { dirty: false, error, .. }
        if !crate::driver::connect::is_no_answer(error));
    if earlier.changed() && clean {
        return TenantReport {
            outcome: Outcome::Stopped,
            ..earlier
        };
    }
    earlier
}

/// The outcome of a later attempt on a tenant that earlier attempts changed or may have
/// changed (`lost`: the error whose answer was lost): never skipped or not started. `moved`:
/// the tenant is not where it was before the first attempt; `at`: the migration the earlier
/// attempt failed at.
fn after_a_change(outcome: Outcome, moved: bool, lost: Option<DbError>, at: Option<Version>) -> Outcome {
    match outcome {
        Outcome::NotStarted if moved => Outcome::Stopped,
        // Read again: the step whose answer was lost had not happened.
        Outcome::NotStarted => Outcome::NotStarted,
        Outcome::Skipped {
            reason: SkipReason::Refused {
                refusal: refusal @ Refusal::Dirty { version },
            },
        } => Outcome::Failed {
            version: Some(version),
            during: Phase::Migrating,
            error: DbError::new(ErrorKind::Sql, "reading fleetmig_history", refusal.to_string()),
            dirty: true,
        },
        // Not read again: what the lost answer left stays unknown.
        Outcome::Skipped {
            reason: SkipReason::Unreachable { error } | SkipReason::Locked { error },
        } if lost.is_some() => {
            let mut first = lost.expect("matched");
            first.message = format!("{}; tried again: {error}", first.message);
            Outcome::Failed {
                version: at,
                during: Phase::Migrating,
                error: first,
                dirty: false,
            }
        }
        Outcome::Skipped { reason } => {
            let (during, error) = match reason {
                SkipReason::Unreachable { error } | SkipReason::Locked { error } => (opening(&error), error),
                SkipReason::Refused { refusal } => (
                    Phase::ReadingHistory,
                    DbError::new(ErrorKind::Sql, "reading fleetmig_history", refusal.to_string()),
                ),
            };
            Outcome::Failed {
                version: at,
                during,
                error,
                dirty: false,
            }
        }
        other => other,
    }
}

/// Where opening a session failed: the drivers' operations name it.
fn opening(error: &DbError) -> Phase {
    if error.kind == ErrorKind::Locked || error.op.contains("lock") {
        Phase::Locking
    } else if error.op.contains("fleetmig_history") {
        Phase::ReadingHistory
    } else {
        Phase::Connecting
    }
}

/// A tenant whose database answered but failed before any migration ran.
fn failed_before_any_step(tenant: &Tenant, error: DbError, during: Phase) -> TenantReport {
    TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Failed {
            version: None,
            during,
            error,
            dirty: false,
        },
        start_version: None,
        final_version: None,
        steps: vec![],
    }
}

/// One attempt on a tenant: open and lock it, finish an undo an earlier attempt left,
/// read its history and do the job's action.
async fn attempt(
    tenant: &Tenant,
    connector: &Connector,
    job: Job<'_>,
    pending: &Mutex<Option<Undo>>,
    limits: &Limits,
) -> TenantReport {
    if let Action::Checksums(_) = job.action {
        if let Some(report) = nothing_to_record(tenant, connector).await {
            return report;
        }
    }
    let mut session = match open(tenant, connector, job, limits).await {
        Ok(session) => session,
        Err(report) => return report,
    };
    let report = match finish_undo(&mut session, tenant, pending, connector.style(tenant.engine)).await {
        Err(report) => report,
        Ok(Ok(applied)) => act(&mut session, tenant, &applied, job, pending).await,
        Ok(Err(error)) => failed_before_any_step(tenant, error, Phase::ReadingHistory),
    };
    session.release().await;
    report
}

/// Nothing to record on a tenant without history: opening it to write would create its
/// schema (or file) and history table. `None` otherwise; an error is left to the attempt.
async fn nothing_to_record(tenant: &Tenant, connector: &Connector) -> Option<TenantReport> {
    match inspect(tenant, connector).await {
        Ok(rows) if rows.is_empty() => Some(TenantReport {
            id: tenant.id.clone(),
            outcome: Outcome::Succeeded,
            start_version: Some(Version::ZERO),
            final_version: Some(Version::ZERO),
            steps: vec![],
        }),
        _ => None,
    }
}

/// Opens and locks the tenant to write, or the report of why not.
/// Opening waits for the tenant's lock (up to --lock-wait) and for the server (up to
/// --connect-timeout): a stop ends the wait, as nothing has run yet. A session dropped
/// part way is closed, never reused, and whatever lock it took goes with it.
async fn open(
    tenant: &Tenant,
    connector: &Connector,
    job: Job<'_>,
    limits: &Limits,
) -> Result<AnySession, TenantReport> {
    let opened = tokio::select! {
        opened = connector.open_within(tenant, Access::Write, limits) => opened,
        () = stopped(job.stop) => {
            return Err(TenantReport {
                id: tenant.id.clone(),
                outcome: Outcome::NotStarted,
                start_version: None,
                final_version: None,
                steps: vec![],
            });
        }
    };
    if let Some(host) = job.host {
        match &opened {
            Err(e) if !e.answered() => host.unreached(e),
            _ => host.reached(),
        }
    }
    match opened {
        Ok(s) => Ok(s),
        // The database answered but refused to set up (init_sql, creating the history table).
        Err(error) if error.kind == ErrorKind::Sql => {
            let during = opening(&error);
            Err(failed_before_any_step(tenant, error, during))
        }
        Err(e) => Err(skipped(tenant, e, None)),
    }
}

/// Reads the tenant's history, first finishing the undo an earlier attempt's session could
/// not, if the history still marks that step dirty. `Err`: the report of an undo that
/// failed again (kept for the next attempt; the caller releases the session); `Ok`: the
/// history, or why it cannot be read.
async fn finish_undo(
    session: &mut AnySession,
    tenant: &Tenant,
    pending: &Mutex<Option<Undo>>,
    style: VersionStyle,
) -> Result<Result<Vec<Applied>, DbError>, TenantReport> {
    let applied = session.applied(style).await;
    let undo = pending.lock().expect("not poisoned").take();
    let (Some(undo), Ok(rows)) = (undo, &applied) else {
        return Ok(applied);
    };
    if !rows.iter().any(|a| a.version == undo.version && a.dirty) {
        return Ok(applied);
    }
    if let Err(error) = session.undo(&undo).await {
        let at = plan::version_of(rows);
        let report = TenantReport {
            id: tenant.id.clone(),
            outcome: Outcome::Failed {
                version: Some(undo.version),
                during: Phase::Migrating,
                error,
                dirty: true,
            },
            start_version: Some(at),
            final_version: Some(at),
            steps: vec![],
        };
        *pending.lock().expect("not poisoned") = Some(undo);
        return Err(report);
    }
    Ok(session.applied(style).await)
}

/// Does the job's action on a tenant whose history is `applied`.
async fn act(
    session: &mut AnySession,
    tenant: &Tenant,
    applied: &[Applied],
    job: Job<'_>,
    pending: &Mutex<Option<Undo>>,
) -> TenantReport {
    match job.action {
        Action::Migrate(target) => migrate(session, tenant, applied, target, job, pending).await,
        Action::Stamp(to) => stamp(session, tenant, applied, plan::stamp(job.set, to), to, job).await,
        Action::Checksums(only) => match plan::with_checksums(job.set, applied, only) {
            Ok(rows) => {
                let at = plan::version_of(applied);
                stamp(session, tenant, applied, rows, at, job).await
            }
            Err(refusal) => refused(tenant, applied, refusal),
        },
        Action::Adopt(from) => {
            let rows = match session.foreign(from.tool()).await {
                Ok(rows) => rows,
                Err(error) => return failed_before_any_step(tenant, error, Phase::ReadingHistory),
            };
            match crate::plan::adopt::adopt(job.set, applied, from, rows.as_deref()) {
                Ok((rows, at)) => stamp(session, tenant, applied, rows, at, job).await,
                Err(refusal) => refused(tenant, applied, refusal),
            }
        }
    }
}

/// A tenant left as it is, for `refusal`.
fn refused(tenant: &Tenant, applied: &[Applied], refusal: Refusal) -> TenantReport {
    let at = Some(plan::version_of(applied));
    TenantReport {
        id: tenant.id.clone(),
        outcome: Outcome::Skipped {
            reason: SkipReason::Refused { refusal },
        },
        start_version: at,
        final_version: at,
        steps: vec![],
    }
}

async fn migrate(
    session: &mut AnySession,
    tenant: &Tenant,
    applied: &[Applied],
    target: Target,
    job: Job<'_>,
    pending: &Mutex<Option<Undo>>,
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
    // A tenant migrated before `history_compat` was set gets the other tool's rows first.
    if let Err(error) = session.backfill_compat(applied, job.set).await {
        return failed_before_any_step(tenant, error, Phase::Migrating);
    }
    if let Some(tracker) = job.progress {
        let mut all = tracker.lock().expect("not poisoned");
        let known = all.entry(tenant.id.clone()).or_default();
        known.start.get_or_insert(start);
        known.to = Some(tenant_plan.to);
    }
    let steps = Steps {
        tenant,
        job,
        plan: &tenant_plan,
    };
    let report = if job.per_tenant_tx && !tenant_plan.steps.is_empty() {
        steps.in_one_transaction(session, report).await
    } else {
        steps.one_by_one(session, report, applied, pending).await
    };
    if matches!(target, Target::Up { .. }) {
        repeat(session, job, report).await
    } else {
        report
    }
}

/// After an `up` that left the tenant at its set's head: the repeatable migrations that
/// never ran on it, or ran with another checksum, in name order, each in the report as
/// a step at the head's version. A stop asked for in between is taken before the next.
async fn repeat(session: &mut AnySession, job: Job<'_>, mut report: TenantReport) -> TenantReport {
    let set = job.set;
    let at_head = matches!(report.outcome, Outcome::Succeeded) && report.final_version == Some(set.head());
    if set.repeatables().is_empty() || !at_head {
        return report;
    }
    let fail = |report: &mut TenantReport, error| {
        report.outcome = Outcome::Failed {
            version: None,
            during: Phase::Migrating,
            error,
            dirty: false,
        };
    };
    let ran = match session.repeatables().await {
        Ok(ran) => ran,
        Err(error) => {
            fail(&mut report, error);
            return report;
        }
    };
    for r in set.repeatables() {
        let checksum = r.checksum.to_hex();
        if ran.iter().any(|(name, c)| *name == r.name && *c == checksum) {
            continue;
        }
        if job.stop.load(Ordering::SeqCst) {
            report.outcome = Outcome::Stopped;
            return report;
        }
        match session.run_repeatable(r, job.run_id).await {
            Ok(took) => report.steps.push(StepDone {
                version: set.head(),
                name: r.name.clone(),
                direction: Direction::Up,
                duration_ms: took.as_millis() as u64,
                repeatable: true,
            }),
            Err(error) => {
                fail(&mut report, error);
                return report;
            }
        }
    }
    report
}

/// A tenant's planned steps being run, and what each one's start and end tell.
struct Steps<'a, 'j> {
    tenant: &'a Tenant,
    job: Job<'j>,
    plan: &'a plan::TenantPlan<'a>,
}

impl Steps<'_, '_> {
    fn started(&self, index: usize, step: &plan::Step<'_>) -> Event {
        Event::StepStarted {
            tenant: self.tenant.id.clone(),
            wave: self.job.wave,
            version: step.migration.version,
            name: step.migration.name.clone(),
            direction: step.direction,
            index: index + 1,
            total: self.plan.steps.len(),
        }
    }

    /// Emits the step's end and notes it in the report and the tracker.
    fn finished(&self, report: &mut TenantReport, step: &plan::Step<'_>, duration_ms: u64) {
        self.job.events.emit(Event::StepFinished {
            tenant: self.tenant.id.clone(),
            wave: self.job.wave,
            version: step.migration.version,
            direction: step.direction,
            duration_ms,
        });
        let done = StepDone {
            version: step.migration.version,
            name: step.migration.name.clone(),
            direction: step.direction,
            duration_ms,
            repeatable: false,
        };
        if let Some(tracker) = self.job.progress {
            let mut all = tracker.lock().expect("not poisoned");
            all.entry(self.tenant.id.clone()).or_default().steps.push(done.clone());
        }
        report.steps.push(done);
    }

    /// `--tx per-tenant`: all the steps in one transaction, whole or not at all, so the
    /// only safe point to stop is before it.
    async fn in_one_transaction(&self, session: &mut AnySession, mut report: TenantReport) -> TenantReport {
        if self.job.stop.load(Ordering::SeqCst) {
            report.outcome = Outcome::NotStarted;
            return report;
        }
        // `app` refuses such a run before it starts; a tenant moved back in between fails
        // here, before anything runs on it.
        let outside = self.plan.steps.iter().find(|s| {
            s.migration
                .script(s.direction)
                .is_some_and(|script| !script.transactional)
        });
        if let Some(step) = outside {
            report.outcome = Outcome::Failed {
                version: Some(step.migration.version),
                during: Phase::Migrating,
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
        for (index, step) in self.plan.steps.iter().enumerate() {
            self.job.events.emit(self.started(index, step));
        }
        match session.run_in_one_tx(&self.plan.steps, self.job.run_id).await {
            Ok(durations) => {
                for (step, d) in self.plan.steps.iter().zip(durations) {
                    self.finished(&mut report, step, d.as_millis() as u64);
                }
                report.final_version = Some(self.plan.to);
            }
            Err((at, error)) => {
                if crate::driver::connect::is_no_answer(&error) {
                    // The commit may have happened with its answer lost: unknown.
                    report.final_version = None;
                }
                let failed = self.plan.steps.get(at).or(self.plan.steps.last());
                // Nothing of the transaction stays: the session is closed, the database rolls back.
                report.outcome = Outcome::Failed {
                    version: failed.map(|s| s.migration.version),
                    during: Phase::Migrating,
                    error,
                    dirty: false,
                };
            }
        }
        report
    }

    /// Each step on its own, the run's stop checked between them; a failed step's undo
    /// that its session could not finish goes to `pending`.
    async fn one_by_one(
        &self,
        session: &mut AnySession,
        mut report: TenantReport,
        applied: &[Applied],
        pending: &Mutex<Option<Undo>>,
    ) -> TenantReport {
        for (index, step) in self.plan.steps.iter().enumerate() {
            if self.job.stop.load(Ordering::SeqCst) {
                report.outcome = if index == 0 {
                    Outcome::NotStarted
                } else {
                    Outcome::Stopped
                };
                break;
            }
            self.job.events.emit(self.started(index, step));
            let started = Instant::now();
            match session.run_step(*step, self.job.run_id).await {
                Ok(_) => self.finished(&mut report, step, started.elapsed().as_millis() as u64),
                Err(StepFailed { error, dirty, undo }) => {
                    *pending.lock().expect("not poisoned") = undo;
                    report.outcome = Outcome::Failed {
                        version: Some(step.migration.version),
                        during: Phase::Migrating,
                        error,
                        dirty,
                    };
                    break;
                }
            }
        }
        report.final_version = Some(reached(self.plan, &report, applied));
        if let Outcome::Failed { error, .. } = &report.outcome {
            if crate::driver::connect::is_no_answer(error) {
                // The server may have committed the step whose answer never came: unknown.
                report.final_version = None;
            }
        }
        report
    }
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
    // A step that failed outside a transaction and could not be undone left its row behind,
    // marked dirty: the tenant did not reach it, and the report names it as dirty. Undone,
    // the row is as before the step: gone going up (a rerun's dirty row too), there going
    // down.
    if let Outcome::Failed {
        version: Some(version),
        dirty,
        ..
    } = report.outcome
    {
        let failed_down = tenant_plan
            .steps
            .iter()
            .any(|s| s.migration.version == version && s.direction == Direction::Down);
        if !dirty && failed_down {
            if !versions.contains(&version) {
                versions.push(version);
            }
        } else {
            versions.retain(|v| *v != version);
        }
    }
    versions.into_iter().max().unwrap_or(Version::ZERO)
}

async fn stamp(
    session: &mut AnySession,
    tenant: &Tenant,
    applied: &[Applied],
    rows: Vec<Applied>,
    to: Version,
    job: Job<'_>,
) -> TenantReport {
    let start = plan::version_of(applied);
    let outcome = match session.stamp(&rows, job.set, job.run_id).await {
        Ok(()) => Outcome::Succeeded,
        Err(error) => Outcome::Failed {
            version: Some(to),
            during: Phase::Stamping,
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

/// A tenant's history rows and `tool`'s, read without locking or creating anything.
pub async fn inspect_foreign(
    tenant: &Tenant,
    connector: &Connector,
    tool: Tool,
) -> Result<(Vec<Applied>, Option<Vec<crate::model::foreign::ForeignRow>>), DbError> {
    let mut session = connector.open(tenant, Access::Read).await?;
    let rows = match session.applied(connector.style(tenant.engine)).await {
        Ok(applied) => session.foreign(tool).await.map(|foreign| (applied, foreign)),
        Err(e) => Err(e),
    };
    session.release().await;
    rows
}

/// The repeatable migrations a tenant ran (name, checksum), read without locking or
/// creating anything.
pub async fn inspect_repeatables(tenant: &Tenant, connector: &Connector) -> Result<Vec<(String, String)>, DbError> {
    let mut session = connector.open(tenant, Access::Read).await?;
    let rows = session.repeatables().await;
    session.release().await;
    rows
}

/// A tenant's history rows, read without locking or creating anything.
pub async fn inspect(tenant: &Tenant, connector: &Connector) -> Result<Vec<Applied>, DbError> {
    let mut session = connector.open(tenant, Access::Read).await?;
    let rows = session.applied(connector.style(tenant.engine)).await;
    session.release().await;
    rows
}

#[cfg(test)]
mod retry_tests {
    use std::cell::Cell;

    use super::*;

    fn id() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn report(outcome: Outcome, steps: &[i64], start: Option<i64>, end: Option<i64>) -> TenantReport {
        TenantReport {
            id: id(),
            outcome,
            start_version: start.map(Version::int),
            final_version: end.map(Version::int),
            steps: steps
                .iter()
                .map(|v| StepDone {
                    version: Version::int(*v),
                    name: format!("m{v}"),
                    direction: Direction::Up,
                    duration_ms: 1,
                    repeatable: false,
                })
                .collect(),
        }
    }

    fn lost() -> DbError {
        DbError::new(ErrorKind::Unreachable, "connecting", "connection refused")
    }

    fn transient_failure(at: i64) -> Outcome {
        Outcome::Failed {
            version: Some(Version::int(at)),
            during: Phase::Migrating,
            error: DbError::new(
                ErrorKind::Sql,
                "applying",
                "terminating connection due to administrator command",
            )
            .with_code("57P01"),
            dirty: false,
        }
    }

    /// Runs `with_retries` over attempts that are refused until `down_for` has passed on the
    /// (paused) clock; returns the report, the number of attempts and the retry events.
    async fn outage(retry: Retry, down_for: Duration, stop: &AtomicBool) -> (TenantReport, u32, Vec<u32>) {
        let (events, mut rx) = Events::channel();
        let began = tokio::time::Instant::now();
        let tries = Cell::new(0);
        let report = with_retries(
            &id(),
            1,
            retry,
            &events,
            stop,
            |r| retryable(r).cloned(),
            |_| {
                tries.set(tries.get() + 1);
                let up = began.elapsed() >= down_for;
                async move {
                    if up {
                        report(Outcome::Succeeded, &[1], Some(0), Some(1))
                    } else {
                        report(
                            Outcome::Skipped {
                                reason: SkipReason::Unreachable { error: lost() },
                            },
                            &[],
                            None,
                            None,
                        )
                    }
                }
            },
        )
        .await;
        let mut retries = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::StepRetried { attempt, wait_ms, .. } = e.event {
                assert!(wait_ms <= BACKOFF_MAX.as_millis() as u64, "{wait_ms}");
                retries.push(attempt);
            }
        }
        (report, tries.get(), retries)
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_shorter_than_the_retry_budget_is_ridden_out() {
        let never = AtomicBool::new(false);
        let (r, tries, retries) = outage(Retry::DEFAULT, Duration::from_secs(3), &never).await;
        assert!(matches!(r.outcome, Outcome::Succeeded), "{r:?}");
        assert!(tries >= 3, "{tries}");
        assert_eq!(retries, (2..=tries).collect::<Vec<_>>(), "each retry is announced");

        // A failover of tens of seconds: waits stay capped, so the tenant comes back soon after.
        let began = tokio::time::Instant::now();
        let (r, _, _) = outage(Retry::DEFAULT, Duration::from_secs(40), &never).await;
        assert!(matches!(r.outcome, Outcome::Succeeded), "{r:?}");
        assert!(began.elapsed() < Duration::from_secs(46), "{:?}", began.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_budget_ends_the_retries_within_it() {
        let never = AtomicBool::new(false);
        let began = tokio::time::Instant::now();
        let retry = Retry {
            within: Duration::from_secs(10),
            attempts: None,
        };
        let (r, _, _) = outage(retry, Duration::from_secs(3600), &never).await;
        assert!(matches!(r.outcome, Outcome::Skipped { .. }), "{r:?}");
        assert!(began.elapsed() <= Duration::from_secs(10), "{:?}", began.elapsed());

        let capped = Retry {
            within: Duration::from_secs(60),
            attempts: Some(2),
        };
        let (_, tries, _) = outage(capped, Duration::from_secs(3600), &never).await;
        assert_eq!(tries, 3, "--retries caps the count");
        let (_, tries, _) = outage(Retry::NEVER, Duration::from_secs(3600), &never).await;
        assert_eq!(tries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_run_ends_the_backoff_at_once() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let began = tokio::time::Instant::now();
        let (r, _, _) = outage(Retry::DEFAULT, Duration::from_secs(3600), &stop).await;
        assert!(matches!(r.outcome, Outcome::Skipped { .. }), "{r:?}");
        let took = began.elapsed();
        assert!(took < Duration::from_millis(2100), "{took:?}");
    }

    #[test]
    fn a_tenant_that_changed_is_never_skipped_or_not_started() {
        // Migration 1 committed, 2 lost its connection; the retry could not reconnect.
        let earlier = report(transient_failure(2), &[1], Some(0), Some(1));
        let later = report(
            Outcome::Skipped {
                reason: SkipReason::Unreachable { error: lost() },
            },
            &[],
            None,
            None,
        );
        let r = merge(earlier.clone(), later);
        assert!(
            matches!(&r.outcome, Outcome::Failed { version: Some(v), during: Phase::Connecting, dirty: false, error } if *v == Version::int(2) && error.kind == ErrorKind::Unreachable),
            "{r:?}"
        );
        assert_eq!(
            (r.start_version, r.final_version),
            (Some(Version::int(0)), Some(Version::int(1)))
        );
        assert_eq!(r.steps.len(), 1);

        // The retry began after the run started stopping: stopped, at its real version.
        let later = report(Outcome::NotStarted, &[], Some(1), Some(1));
        let r = merge(earlier, later);
        assert!(matches!(r.outcome, Outcome::Stopped), "{r:?}");
        assert_eq!(
            (r.start_version, r.final_version),
            (Some(Version::int(0)), Some(Version::int(1)))
        );

        // A tenant nothing had changed stays as the retry found it.
        let earlier = report(
            Outcome::Skipped {
                reason: SkipReason::Unreachable { error: lost() },
            },
            &[],
            None,
            None,
        );
        let r = merge(earlier, report(Outcome::NotStarted, &[], Some(0), Some(0)));
        assert!(matches!(r.outcome, Outcome::NotStarted), "{r:?}");
    }

    fn no_answer() -> DbError {
        DbError::new(
            ErrorKind::Sql,
            "applying 0002_b: recording history",
            format!(
                "{} 5s: the connection is presumed lost",
                crate::driver::connect::NO_ANSWER
            ),
        )
    }

    #[test]
    fn a_tenant_a_lost_answer_may_have_changed_is_never_skipped_and_a_dirty_one_read_again_is_dirty() {
        let cut = || {
            report(
                Outcome::Failed {
                    version: Some(Version::int(2)),
                    during: Phase::Migrating,
                    error: no_answer(),
                    dirty: false,
                },
                &[],
                Some(1),
                None,
            )
        };
        let unreachable = report(
            Outcome::Skipped {
                reason: SkipReason::Unreachable { error: lost() },
            },
            &[],
            None,
            None,
        );
        let r = merge(cut(), unreachable);
        assert!(
            matches!(&r.outcome, Outcome::Failed { version: Some(v), dirty: false, error, .. } if *v == Version::int(2) && crate::driver::connect::is_no_answer(error)),
            "{r:?}"
        );
        assert_eq!(
            (r.start_version, r.final_version),
            (Some(Version::int(1)), None),
            "unknown, never a guess"
        );

        // Read again, the history shows what the lost answer left: a dirty mark.
        let dirty = report(
            Outcome::Skipped {
                reason: SkipReason::Refused {
                    refusal: Refusal::Dirty {
                        version: Version::int(2),
                    },
                },
            },
            &[],
            Some(1),
            Some(1),
        );
        let r = merge(cut(), dirty.clone());
        assert!(
            matches!(
                r.outcome,
                Outcome::Failed {
                    version: Some(v),
                    dirty: true,
                    ..
                } if v == Version::int(2)
            ),
            "{r:?}"
        );
        assert_eq!(r.final_version, Some(Version::int(1)));
        // Likewise after earlier steps committed.
        let r = merge(report(transient_failure(2), &[1], Some(0), Some(1)), dirty);
        assert!(
            matches!(
                r.outcome,
                Outcome::Failed {
                    version: Some(v),
                    dirty: true,
                    ..
                } if v == Version::int(2)
            ),
            "{r:?}"
        );

        // Read again after the run began stopping: where the history says, stopped only if moved.
        let r = merge(cut(), report(Outcome::NotStarted, &[], Some(1), Some(1)));
        assert!(matches!(r.outcome, Outcome::NotStarted), "{r:?}");
        assert_eq!(r.final_version, Some(Version::int(1)));
        let r = merge(cut(), report(Outcome::NotStarted, &[], Some(2), Some(2)));
        assert!(matches!(r.outcome, Outcome::Stopped), "{r:?}");
        assert_eq!(r.final_version, Some(Version::int(2)));

        // The stop came before the retry read anything: the earlier attempt's truth stands.
        let unread = || report(Outcome::NotStarted, &[], None, None);
        let r = merge(cut(), unread());
        assert!(
            matches!(r.outcome, Outcome::Failed { .. }) && r.final_version.is_none(),
            "{r:?}"
        );
        let r = merge(report(transient_failure(2), &[1], Some(0), Some(1)), unread());
        assert!(matches!(r.outcome, Outcome::Stopped), "{r:?}");
        assert_eq!((r.final_version, r.steps.len()), (Some(Version::int(1)), 1));
    }
}
