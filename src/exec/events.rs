//! The one event type the executor emits and every reporter consumes, and the outcomes
//! it carries.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::model::db_error::DbError;
use crate::model::fleet::TenantId;
use crate::model::migration::{Direction, Version};
use crate::model::policy::StopReason;
use crate::model::run::{Summary, TenantReport};

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
    /// The change window (`--window`, `rollout.window`) is closed: no tenant starts until
    /// `opens_at` (in the window's zone; `opens_at_ms`: Unix epoch ms). Tenants in flight
    /// go on. Said once per closed spell, by wave `wave`, whose tenants wait.
    WindowWait {
        wave: usize,
        window: String,
        opens_at: String,
        opens_at_ms: u64,
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
    /// The breaker cut host `host` off (`--host-failures`): `failures` of its tenants in a
    /// row could not connect, the last with `error`. Its tenants not started yet are skipped
    /// as `unreachable` without being tried; one may probe it after `probe_after_ms`.
    HostCutOff {
        host: String,
        failures: u32,
        error: String,
        probe_after_ms: u64,
    },
    /// A tenant of a cut-off host connected (a probe, or one in flight): its tenants start again.
    HostRestored {
        host: String,
    },
}

pub use crate::model::run::Gate;

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
