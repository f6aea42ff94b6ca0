//! What a run did: each tenant's outcome and final status, the counts, and the run's
//! report, in the one vocabulary the events, the ledger and every report share.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::db_error::DbError;
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
use crate::model::policy::StopReason;
use crate::model::refusal::Refusal;

/// Why a tenant was left alone. In JSON it sits flat in the tenant's outcome:
/// `"reason": "refused"` with its `refusal`, or `"reason": "unreachable"`/`"locked"` with
/// its `error`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Its history disagrees with the files (edited, unknown, dirty, out of order).
    Refused {
        refusal: Refusal,
    },
    Unreachable {
        error: DbError,
    },
    Locked {
        error: DbError,
    },
}

impl SkipReason {
    pub fn message(&self) -> String {
        match self {
            SkipReason::Refused { refusal } => refusal.to_string(),
            SkipReason::Unreachable { error } | SkipReason::Locked { error } => error.to_string(),
        }
    }

    /// [`SkipReason::message`] for a person's line: checksums cut short (JSON keeps them whole).
    pub fn brief(&self) -> String {
        match self {
            SkipReason::Refused { refusal } => refusal.brief(),
            other => other.message(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::Refused {
                refusal: Refusal::Dirty { .. },
            } => "dirty",
            SkipReason::Refused {
                refusal: Refusal::Foreign { .. },
            } => "not adopted",
            SkipReason::Refused { .. } => "drifted",
            SkipReason::Unreachable { .. } => "unreachable",
            SkipReason::Locked { .. } => "locked",
        }
    }
}

/// How one tenant's part of a run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Reached the target (possibly with nothing to do).
    Succeeded,
    /// A step failed, or the tenant failed before one could run (`during` says where).
    /// `dirty`: it could not roll back and left a dirty history row.
    Failed {
        /// The migration that failed, or was to run when the failure came (a retry that
        /// could not reconnect); `None` when no migration was concerned. `failed_migration`
        /// in JSON as in the run report.
        #[serde(rename = "failed_migration")]
        version: Option<Version>,
        during: Phase,
        error: DbError,
        dirty: bool,
    },
    Skipped {
        #[serde(flatten)]
        reason: SkipReason,
    },
    /// The run stopped before this tenant's first step.
    NotStarted,
    /// The run stopped between two of this tenant's steps: every step is whole, the
    /// target was not reached.
    Stopped,
}

/// Where in its part of a run a tenant failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Opening a session: reaching the server, running `init_sql`.
    Connecting,
    /// Taking the tenant's lock.
    Locking,
    /// Reading (or creating) its history table.
    ReadingHistory,
    /// Running or undoing a migration.
    Migrating,
    /// Writing history rows without running SQL (`stamp`).
    Stamping,
}

impl Phase {
    /// "connecting", for reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Locking => "locking",
            Phase::ReadingHistory => "reading its history",
            Phase::Migrating => "migrating",
            Phase::Stamping => "stamping",
        }
    }

    /// "while connecting: {error}", without saying "connecting" twice when the error's
    /// own operation is the phase.
    pub fn with_error(self, error: &str) -> String {
        let error = error
            .strip_prefix(self.name())
            .and_then(|e| e.strip_prefix(": "))
            .unwrap_or(error);
        format!("while {}: {error}", self.name())
    }
}

/// One step that ran to completion.
#[derive(Debug, Clone, Serialize)]
pub struct StepDone {
    /// For a repeatable migration, the version the tenant was at when it ran.
    pub version: Version,
    pub name: String,
    pub direction: Direction,
    pub duration_ms: u64,
    /// A repeatable migration (Flyway's `R__`), run again because its checksum changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeatable: bool,
}

/// Everything a run did to one tenant. In JSON its fields sit flat in `tenant_finished`,
/// the id as `tenant` like every tenant event.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    #[serde(rename = "tenant")]
    pub id: TenantId,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Its version when the run reached it; `None` when it could not be read.
    pub start_version: Option<Version>,
    /// Its version when the run left it, as its history table says.
    pub final_version: Option<Version>,
    pub steps: Vec<StepDone>,
}

impl TenantReport {
    pub fn changed(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Its history records another version without a migration run (`stamp`, `adopt`).
    pub fn recorded_only(&self) -> bool {
        self.steps.is_empty() && self.start_version.is_some() && self.start_version != self.final_version
    }
}

/// Counts for the end of a run (or a wave): each tenant counted once, under the status the
/// final report gives it, so the run's last event, its report, `report RUN` and `runs`
/// agree. A tenant a rollback brought back counts as `rolled_back`, not as what it did
/// before.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Summary {
    pub tenants: usize,
    pub succeeded: usize,
    /// Succeeded tenants that ran at least one step.
    pub changed: usize,
    pub failed: usize,
    /// Failed tenants that ran at least one step first: moved, but neither back where they
    /// started nor at the target.
    pub failed_after_steps: usize,
    pub rolled_back: usize,
    pub rollback_failed: usize,
    pub skipped: usize,
    pub not_started: usize,
    pub stopped: usize,
    pub elapsed_ms: u64,
}

impl Summary {
    pub fn of<'r>(reports: impl IntoIterator<Item = &'r TenantReport>, elapsed: Duration) -> Self {
        let mut s = Summary {
            elapsed_ms: elapsed.as_millis() as u64,
            ..Summary::default()
        };
        for r in reports {
            s.tenants += 1;
            match r.outcome {
                Outcome::Succeeded => {
                    s.succeeded += 1;
                    s.changed += usize::from(r.changed());
                }
                Outcome::Failed { .. } => {
                    s.failed += 1;
                    s.failed_after_steps += usize::from(r.changed());
                }
                Outcome::Skipped { .. } => s.skipped += 1,
                Outcome::NotStarted => s.not_started += 1,
                Outcome::Stopped => s.stopped += 1,
            }
        }
        s
    }

    /// True when every tenant reached the target.
    pub fn is_success(&self) -> bool {
        self.succeeded == self.tenants
    }

    /// A run's final stop reason given these counts: never `Completed` while a tenant did
    /// not reach the target.
    pub fn settle(&self, reason: StopReason) -> StopReason {
        reason.settle(
            self.tenants - self.succeeded,
            self.failed + self.rolled_back + self.rollback_failed,
            self.skipped,
        )
    }
}

/// Where a tenant ended, as the final report tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Succeeded,
    Failed,
    RolledBack,
    RollbackFailed,
    NotStarted,
    Skipped,
    /// Stopped between two migrations by a stop, and not rolled back.
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
            Status::RollbackFailed => "rollback_failed",
            Status::NotStarted => "not_started",
            Status::Skipped => "skipped",
            Status::Stopped => "stopped",
        }
    }
}

/// One tenant's line in the final report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalTenant {
    pub id: String,
    pub wave: usize,
    pub status: Status,
    pub start_version: Option<Version>,
    /// What the tenant's history table says after the run (and any rollback): the highest
    /// migration it holds cleanly.
    pub final_version: Option<Version>,
    /// The migration it is left dirty at (failed part way outside a transaction), if any:
    /// later runs refuse it until `fleetmig stamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Version>,
    /// The migration that failed, for `failed` and rolled-back failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_migration: Option<Version>,
    /// Where it failed when that was not in a migration (connecting, locking, reading its
    /// history). Reports recorded before this was kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<Phase>,
    /// Why a tenant was refused (drifted, dirty, ...), for the report that groups tenants
    /// with the same problem; `error` says it in words. Kept in the ledger so `report RUN`
    /// groups them too; reports recorded before it was kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// The error: the database's code and message, or why the tenant was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The database's SQLSTATE (SQLite: its error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// MySQL's and MariaDB's error number (1205, ...), beside their often generic SQLSTATE.
    /// Reports recorded before it was kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_number: Option<u16>,
    /// PostgreSQL's DETAIL and HINT, each printable and bounded as in `error`, for the HTML
    /// report that shows them apart. Reports recorded before they were kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `[from, to]` when a rollback ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<[Option<Version>; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<String>,
    pub migrations_run: usize,
    /// When this runner started and finished the tenant, in ms from the run's start, for
    /// the report's timeline. `None` for a tenant the run never started, and in reports
    /// recorded before timing was kept or assembled from a shared run's ledger rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// `[start, end]` of its rollback, when one ran, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_ms: Option<[u64; 2]>,
}

impl FinalTenant {
    /// Tenant `id` of `wave` with `status`, between versions `start` and `end`, and
    /// nothing else to say yet (no error, no rollback, no migration run).
    pub fn new(id: String, wave: usize, status: Status, start: Option<Version>, end: Option<Version>) -> Self {
        FinalTenant {
            id,
            wave,
            status,
            start_version: start,
            final_version: end,
            dirty: None,
            failed_migration: None,
            during: None,
            refusal: None,
            error: None,
            error_code: None,
            error_number: None,
            detail: None,
            hint: None,
            rollback: None,
            rollback_error: None,
            migrations_run: 0,
            started_ms: None,
            finished_ms: None,
            rollback_ms: None,
        }
    }
}

/// Counts for one wave, and when it ran with the gates after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaveReport {
    pub wave: usize,
    pub canary: bool,
    pub tenants: usize,
    pub counts: std::collections::BTreeMap<String, usize>,
    /// When the wave started and its last tenant ended, in ms from the run's start; `None`
    /// for a wave the run never reached, and as for [`FinalTenant::started_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The gates that ran after the wave, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateReport>,
}

impl WaveReport {
    /// Wave `wave` with its counts, and no timing yet.
    pub fn new(wave: usize, canary: bool, tenants: usize, counts: std::collections::BTreeMap<String, usize>) -> Self {
        WaveReport {
            wave,
            canary,
            tenants,
            counts,
            started_ms: None,
            finished_ms: None,
            gates: Vec::new(),
        }
    }
}

/// The gates between waves, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Bake,
    Check,
    Confirm,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::Bake => "bake",
            Gate::Check => "check",
            Gate::Confirm => "confirm",
        }
    }
}

/// One gate after a wave, as it ended: for the timeline, which marks bakes and gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    pub gate: Gate,
    pub passed: bool,
    /// What it said: "passed on 12/12", "check returned false on tenant `a1`", "interrupted".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// In ms from the run's start.
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// The report of a whole run: every selected tenant exactly once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub command: String,
    pub stop_reason: StopReason,
    pub waves: Vec<WaveReport>,
    pub tenants: Vec<FinalTenant>,
    pub summary: Summary,
    /// The hosts the breaker cut off (`--host-failures`), in the order it did. Reports
    /// recorded before the breaker was kept have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_cut_off: Vec<HostCutOff>,
}

/// A host the breaker cut off in a run: after `failures` connection attempts in a row could not
/// connect to it, its tenants not started yet were skipped as `unreachable` without being
/// tried (`skipped` of them, nothing touched), until a probe connected (`restored`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCutOff {
    /// The server's key (`Tenant::server_key`): a named host, an engine's host and port,
    /// or a SQLite file; never a URL's credentials.
    pub host: String,
    /// When it was first cut off, in ms from the run's start; not known in a shared run's
    /// whole report (each runner has its own breaker) and in reports recorded before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// The consecutive connection failures that tripped it (the last cut-off's).
    pub failures: u32,
    /// The last of those failures' error.
    pub error: String,
    /// Tenants skipped without being tried while it was cut off.
    pub skipped: usize,
    /// A later tenant (the probe, or one in flight) connected: it was open again at the end.
    pub restored: bool,
}

impl FinalTenant {
    /// Skipped untried by the breaker, its host cut off (see [`DbError::host_cut_off`]).
    pub fn skipped_untried(&self) -> bool {
        self.status == Status::Skipped
            && (self.error.as_deref())
                .and_then(|e| e.strip_prefix("unreachable: host `"))
                .is_some_and(|e| e.contains("` cut off: not tried"))
    }
}

impl HostCutOff {
    /// The hosts cut off, as the tenants the breakers skipped untried say them (their errors
    /// name the host, the failed attempts and the last error): for a shared run's whole
    /// report, assembled from the ledger's rows. When and whether a probe restored it later
    /// are not known there.
    pub fn from_untried(tenants: &[FinalTenant]) -> Vec<HostCutOff> {
        let mut hosts: Vec<HostCutOff> = Vec::new();
        for t in tenants.iter().filter(|t| t.skipped_untried()) {
            let error = t.error.as_deref().unwrap_or_default();
            let Some((host, rest)) = error
                .strip_prefix("unreachable: host `")
                .and_then(|e| e.split_once("` cut off: not tried: "))
            else {
                continue;
            };
            match hosts.iter_mut().find(|h| h.host == host) {
                Some(h) => h.skipped += 1,
                None => hosts.push(HostCutOff {
                    host: host.to_owned(),
                    at_ms: None,
                    failures: rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0),
                    error: rest.split_once(", the last: ").map_or(rest, |(_, e)| e).to_owned(),
                    skipped: 1,
                    restored: false,
                }),
            }
        }
        hosts
    }
}

impl RunReport {
    /// True when every tenant reached the target.
    pub fn is_success(&self) -> bool {
        !self.stop_reason.is_early() && self.tenants.iter().all(|t| t.status == Status::Succeeded)
    }
}

/// The run's counts, from each tenant's final status: the one count every report shows.
pub fn summarize(tenants: &[FinalTenant], elapsed: Duration) -> Summary {
    let mut s = Summary {
        tenants: tenants.len(),
        elapsed_ms: elapsed.as_millis() as u64,
        ..Summary::default()
    };
    for t in tenants {
        match t.status {
            Status::Succeeded => {
                s.succeeded += 1;
                // Or recorded at another version without running SQL (`stamp`, `adopt`).
                s.changed += usize::from(
                    t.migrations_run > 0 || (t.start_version.is_some() && t.start_version != t.final_version),
                );
            }
            Status::Failed => {
                s.failed += 1;
                s.failed_after_steps += usize::from(t.migrations_run > 0);
            }
            Status::RolledBack => s.rolled_back += 1,
            Status::RollbackFailed => s.rollback_failed += 1,
            Status::Skipped => s.skipped += 1,
            Status::NotStarted => s.not_started += 1,
            Status::Stopped => s.stopped += 1,
        }
    }
    s
}

/// The migration an outcome leaves (or found) the tenant dirty at.
pub fn dirty_at(outcome: &Outcome) -> Option<Version> {
    match outcome {
        Outcome::Failed {
            version, dirty: true, ..
        } => *version,
        Outcome::Skipped {
            reason: SkipReason::Refused {
                refusal: Refusal::Dirty { version },
            },
        } => Some(*version),
        _ => None,
    }
}
