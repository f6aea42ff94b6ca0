//! Library calls for a Rust service: at start-up, wait until its tenants' schema is there
//! ([`wait_for`]) or migrate them itself ([`up`]); read where the fleet stands ([`status`]),
//! for a health endpoint. The same pieces the command line uses, without its printing.
//!
//! See the crate documentation for an example.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::driver::connect::{Connector, Limits};
use crate::driver::ledger::status as ledger_view;
use crate::driver::ledger::{Ledger, RunPlan};
use crate::error::Error;
use crate::exec::dispatch::{Gates, Policy, RunSpec, Source, dispatch};
use crate::exec::events::Events;
use crate::exec::run::{RunContext, inspect_all};
use crate::exec::tenant::Action;
use crate::load;
use crate::model::fleet::{Fleet, Tenant};
use crate::model::migration::{MigrationSet, Version};
pub use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy, StopReason};
use crate::model::secret::DbUrl;
use crate::plan::select::select;
use crate::plan::tenant::Target;
use crate::plan::waves::waves;

pub use crate::exec::tenant::Retry;
pub use crate::exec::wait::{WaitOptions, WaitOutcome};
pub use crate::model::run::{RunReport, Status};
pub use crate::plan::select::Selector;
pub use crate::plan::status::{Condition, FleetStatus, Standing};

/// Which tenants, to which version, under which limits: what every call shares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The version to reach; `None`: the newest migration (head).
    pub to: Option<Version>,
    /// Tenants matching any of these, as `--select`; empty: every tenant.
    pub select: Vec<Selector>,
    /// Tenants read or migrated at once.
    pub concurrency: usize,
    /// Connect, lock and statement time limits.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            to: None,
            select: Vec::new(),
            concurrency: 8,
            limits: Limits::default(),
        }
    }
}

/// How [`up`] rolls out, beyond [`Options`]. The fleet file's `rollout:` section gives the
/// waves, failure and skip limits and rollback unless set here; its gates (`bake`, `check`) are for
/// people watching a rollout and are not run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// When a tenant is tried again after a transient error (connection lost, lock
    /// timeout, ...): by default for up to a minute.
    pub retry: Retry,
    pub max_failures: Option<MaxFailures>,
    /// How many skipped tenants (drifted, dirty, locked, unreachable) stop the run; `None`:
    /// the fleet file's `rollout.max_skipped`, else a skipped canary stops it.
    pub max_skipped: Option<MaxSkipped>,
    pub rollback: Option<RollbackPolicy>,
    /// Record the run in this ledger (created if missing); `None`: no ledger.
    pub ledger: Option<DbUrl>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            retry: Retry::DEFAULT,
            max_failures: None,
            max_skipped: None,
            rollback: None,
            ledger: None,
        }
    }
}

/// Reads the fleet file, and the tenants its `discover:` query finds.
pub async fn load_fleet(path: impl AsRef<Path>, connect_timeout: std::time::Duration) -> Result<Fleet, Error> {
    let path = path.as_ref();
    let file = load::fleet::load_file(path)?;
    let Some(discover) = &file.fleet.discover else {
        return Ok(file.fleet);
    };
    let rows = crate::driver::registry::fetch(&discover.url, &discover.query, connect_timeout)
        .await
        .map_err(|source| Error::Discover {
            path: path.display().to_string(),
            registry: discover.url.redacted(),
            source: Box::new(source),
        })?;
    Ok(load::discover::merge(file, rows)?)
}

/// Reads the migrations folder.
pub fn load_migrations(dir: impl AsRef<Path>) -> Result<MigrationSet, Error> {
    let dir = dir.as_ref();
    load::migrations::load(dir).map_err(|source| Error::Migrations {
        dir: dir.display().to_string(),
        source,
    })
}

/// The selected tenants, in fleet order; none is an error.
pub fn selected<'f>(fleet: &'f Fleet, selectors: &[Selector]) -> Result<Vec<&'f Tenant>, Error> {
    let tenants = select(&fleet.tenants, selectors);
    if tenants.is_empty() {
        let what = selectors
            .iter()
            .map(|s| format!("--select {s}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Error::Usage(format!(
            "no tenant in `{}` matches {what}",
            fleet.path.display()
        )));
    }
    Ok(tenants)
}

fn target(set: &MigrationSet, to: Option<Version>) -> Result<Version, Error> {
    let v = to.unwrap_or(set.head());
    if set.is_target(v) {
        Ok(v)
    } else {
        Err(Error::Usage(format!(
            "--to {v}: no migration has version {v} (head is {})",
            set.head()
        )))
    }
}

fn run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", now.as_millis(), std::process::id())
}

fn context<'a>(fleet: &'a Fleet, set: &'a MigrationSet, opts: &Options) -> RunContext<'a> {
    RunContext {
        fleet,
        set,
        connector: Connector::new(fleet, opts.limits.clone()),
        concurrency: opts.concurrency.max(1),
        per_tenant_tx: false,
        retry: Retry::NEVER,
        ledger: None,
        run_id: run_id(),
    }
}

/// What the ledger at `url` says about tenants that are not current: since when a run left
/// each short, and its last error. Reads only: a ledger that does not exist yet gives
/// nothing and is not created.
pub async fn annotate(status: &mut FleetStatus, url: &DbUrl) -> Result<(), Error> {
    annotate_within(status, url, Limits::default().connect_timeout).await
}

/// [`annotate`], giving up on a ledger that does not answer within `limit`.
pub async fn annotate_within(status: &mut FleetStatus, url: &DbUrl, limit: std::time::Duration) -> Result<(), Error> {
    if let Some(rows) = ledger_view::unsettled_rows(url, limit).await? {
        status.annotate(&crate::plan::status::ledger_notes(&rows));
    }
    Ok(())
}

/// Where every selected tenant stands against the target, read with a few queries per
/// pooled PostgreSQL host. Adds what the fleet's ledger (its `ledger:`, else the SQLite
/// file beside the fleet file) knows, when it exists and can be read.
pub async fn status(fleet: &Fleet, set: &MigrationSet, opts: &Options) -> Result<FleetStatus, Error> {
    let tenants = selected(fleet, &opts.select)?;
    let to = target(set, opts.to)?;
    let ctx = context(fleet, set, opts);
    let states = inspect_all(&ctx, &tenants).await;
    ctx.connector.close().await;
    let mut status = FleetStatus::assess(
        set,
        to,
        states
            .into_iter()
            .map(|(t, rows)| (t.id.to_string(), rows.map_err(|e| e.to_string()))),
    );
    let url = ledger_view::fleet_ledger_url(fleet);
    if let Err(e) = annotate_within(&mut status, &url, opts.limits.connect_timeout).await {
        tracing::warn!("{}", crate::error::render(&e));
    }
    Ok(status)
}

/// Waits until every selected tenant holds every migration up to the target (tenants
/// further along count as there; drifted, dirty and unreachable ones do not), reading the
/// fleet every `wait.interval`, for at most `wait.timeout`. `Ok` either way: look at
/// [`WaitOutcome::arrived`] and [`WaitOutcome::laggards`].
pub async fn wait_for(
    fleet: &Fleet,
    set: &MigrationSet,
    opts: &Options,
    wait: &WaitOptions,
) -> Result<WaitOutcome, Error> {
    let tenants = selected(fleet, &opts.select)?;
    let to = target(set, opts.to)?;
    let ctx = context(fleet, set, opts);
    let outcome = crate::exec::wait::wait(&ctx, &tenants, to, *wait, &mut |_| {}).await;
    ctx.connector.close().await;
    Ok(outcome)
}

/// Applies pending migrations to the selected tenants, as `fleetmig up` does. A failing
/// tenant is in the report, not an `Err`: check [`RunReport::is_success`].
pub async fn up(fleet: &Fleet, set: &MigrationSet, opts: &Options, up: &UpOptions) -> Result<RunReport, Error> {
    let tenants = selected(fleet, &opts.select)?;
    let to = target(set, opts.to)?;
    let spec = fleet.rollout.waves.clone().unwrap_or_default();
    let planned = waves(&tenants, &|t: &Tenant| t.canary, &spec);
    let policy = Policy {
        max_failures: up.max_failures.or(fleet.rollout.max_failures).unwrap_or_default(),
        max_skipped: up.max_skipped.or(fleet.rollout.max_skipped).unwrap_or_default(),
        rollback: up.rollback.or(fleet.rollout.rollback).unwrap_or_default(),
        pause_after: None,
        gates: Gates::default(),
        rate: None,
    };
    let mut ctx = context(fleet, set, opts);
    ctx.retry = up.retry;
    if let Some(url) = &up.ledger {
        let ledger = Ledger::open(url, opts.limits.connect_timeout).await?;
        let plan = RunPlan {
            command: "up".to_owned(),
            target: to.0,
            waves: planned
                .iter()
                .map(|w| w.tenants.iter().map(|t| t.id.to_string()).collect())
                .collect(),
            canary_waves: planned.iter().filter(|w| w.canary).map(|w| w.number).collect(),
            policy: None,
            steps: None,
        };
        ledger
            .begin_run(&ctx.run_id, &fleet.path.display().to_string(), &plan)
            .await?;
        ctx.ledger = Some(ledger);
    }
    // No Ctrl-C here: the service owns its signals, and a dropped sender never fires.
    let (_, interrupts) = tokio::sync::mpsc::unbounded_channel();
    let action = Action::Migrate(Target::Up { to });
    let events = Events::none();
    let spec = RunSpec {
        ctx: &ctx,
        waves: &planned,
        action,
        policy: &policy,
        command: "up",
        events: &events,
        source: Source::Waves,
    };
    let report = dispatch(spec, interrupts).await;
    ctx.connector.close().await;
    if let Some(ledger) = &ctx.ledger {
        ledger.close().await;
    }
    Ok(report)
}
