//! The one event type the executor emits and every reporter consumes, and the outcomes
//! it carries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::driver::error::DbError;
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
use crate::plan::policy::StopReason;
use crate::plan::tenant::Refusal;

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
    pub version: Version,
    pub name: String,
    pub direction: Direction,
    pub duration_ms: u64,
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
    pub fn of(reports: &[TenantReport], elapsed: Duration) -> Self {
        let mut s = Summary {
            tenants: reports.len(),
            elapsed_ms: elapsed.as_millis() as u64,
            ..Summary::default()
        };
        for r in reports {
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

/// A change of state in a run, in the order it happened. Every event about one tenant
/// carries the tenant's id (`tenant`) and its wave (`wave`), with the rest flat beside
/// them; `docs/events.schema.json` documents each one as JSON Lines print it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        command: String,
        target: Option<Version>,
        tenants: usize,
    },
    TenantStarted {
        tenant: TenantId,
        wave: usize,
    },
    StepStarted {
        tenant: TenantId,
        wave: usize,
        version: Version,
        name: String,
        direction: Direction,
        index: usize,
        total: usize,
    },
    StepFinished {
        tenant: TenantId,
        wave: usize,
        version: Version,
        direction: Direction,
        duration_ms: u64,
    },
    /// A tenant's attempt ended on a transient error; attempt `attempt` (2 for the first
    /// retry) starts after `wait_ms`, from a fresh read of its history. Every retry says
    /// so, a rollback's too.
    StepRetried {
        tenant: TenantId,
        wave: usize,
        attempt: u32,
        wait_ms: u64,
        error: DbError,
    },
    TenantFinished {
        wave: usize,
        #[serde(flatten)]
        report: TenantReport,
    },
    WaveStarted {
        wave: usize,
        canary: bool,
        tenants: usize,
    },
    WaveFinished {
        wave: usize,
        summary: Summary,
    },
    /// The run stops dispatching: no new tenant starts, in-flight ones stop at a safe point.
    Stopping {
        reason: StopReason,
    },
    RollbackStarted {
        tenants: usize,
    },
    TenantRolledBack {
        tenant: TenantId,
        wave: usize,
        from: Option<Version>,
        to: Option<Version>,
        error: Option<String>,
    },
    RunFinished {
        summary: Summary,
        stop_reason: StopReason,
    },
    /// A gate after wave `wave` begins: the run waits on it before the next wave.
    GateStarted {
        wave: usize,
        #[serde(flatten)]
        gate: GateStart,
    },
    /// The check gate has passed on `passed` of the `total` tenants it runs on.
    GateProgress {
        wave: usize,
        gate: Gate,
        passed: usize,
        total: usize,
    },
    /// A gate ended: `passed` lets the run go on; `detail` says why not (or, for a check,
    /// on how many tenants it passed).
    GateFinished {
        wave: usize,
        gate: Gate,
        passed: bool,
        detail: Option<String>,
        elapsed_ms: u64,
    },
}

/// The gates between waves, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Bake,
    Check,
    Confirm,
}

/// A gate as it starts, with what it waits on.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum GateStart {
    /// The pause after a wave: `duration_ms` long, over at `until_ms` (Unix epoch ms).
    Bake { duration_ms: u64, until_ms: u64 },
    /// The `--check` query, run on each of the `total` tenants of the wave that succeeded.
    Check { query: String, total: usize },
    /// The operator is asked whether to start the next wave.
    Confirm {
        #[serde(flatten)]
        next: NextWave,
    },
}

impl GateStart {
    pub fn gate(&self) -> Gate {
        match self {
            GateStart::Bake { .. } => Gate::Bake,
            GateStart::Check { .. } => Gate::Check,
            GateStart::Confirm { .. } => Gate::Confirm,
        }
    }
}

/// What the next wave holds, for the operator asked to start it.
#[derive(Debug, Clone, Serialize)]
pub struct NextWave {
    pub next_wave: usize,
    pub canary: bool,
    pub tenants: usize,
    /// Its first tenants (at most [`NextWave::FIRST`]), in the order they start.
    pub first_tenants: Vec<TenantId>,
    /// Servers its tenants live on (SQLite files not counted).
    pub hosts: usize,
    /// Its engines, sorted.
    pub engines: Vec<String>,
}

impl NextWave {
    pub const FIRST: usize = 5;
}

/// An event and when it happened (milliseconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Stamped {
    pub at_ms: u64,
    pub event: Event,
}

/// The executor's end of the event stream. Sending never blocks and never fails the run:
/// a reporter that went away simply stops receiving.
#[derive(Debug, Clone)]
pub struct Events {
    tx: Option<mpsc::UnboundedSender<Stamped>>,
    /// Only `step_retried` passes: a rollback's own steps are reported by the dispatcher as
    /// `tenant_rolled_back`, but its retries must not be silent.
    retries_only: bool,
}

impl Events {
    pub fn channel() -> (Events, mpsc::UnboundedReceiver<Stamped>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Events {
                tx: Some(tx),
                retries_only: false,
            },
            rx,
        )
    }

    /// Events that go nowhere, for library callers that want only the result.
    pub fn none() -> Events {
        Events {
            tx: None,
            retries_only: false,
        }
    }

    /// The same stream, passing only `step_retried`.
    pub fn retries_only(&self) -> Events {
        Events {
            tx: self.tx.clone(),
            retries_only: true,
        }
    }

    pub fn emit(&self, event: Event) {
        if self.retries_only && !matches!(event, Event::StepRetried { .. }) {
            return;
        }
        if let Some(tx) = &self.tx {
            let at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let _ = tx.send(Stamped { at_ms, event });
        }
    }
}
