//! Library calls for a Rust service: at start-up, wait until its tenants' schema is there
//! ([`wait_for`]) or migrate them itself ([`up`]); read where the fleet stands ([`status`]),
//! for a health endpoint. The same pieces the command line uses, without its printing.
//!
//! See the crate documentation for an example.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::driver::connect::{Connector, Limits};
use crate::driver::ledger::status as ledger_view;
use crate::driver::ledger::{Ledger, RecordedPolicy, RunPlan, runner};
use crate::error::Error;
use crate::exec::dispatch::{Interrupts, Policy, RunSpec, Source, dispatch};
use crate::exec::events::Events;
use crate::exec::join::Shared;
use crate::exec::run::{Inspected, RunContext, inspect_all};
use crate::exec::tenant::Action;
use crate::load;
use crate::model::fleet::{Fleet, Tenant};
use crate::model::migration::{Layout, MigrationSet, Version};
use crate::model::policy::WaveSpec;
pub use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy, StopReason};
use crate::model::record::RunSource;
use crate::model::secret::DbUrl;
pub use crate::model::sets::Sets;
use crate::plan::select::select;
use crate::plan::tenant::Target;
use crate::plan::waves::{Wave, WavePlan};

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
    /// After this many connection attempts in a row to one host failed, the host's other
    /// tenants are skipped untried (0: never); `None`: the fleet file's
    /// `rollout.host_failures`, else 3.
    pub host_failures: Option<u32>,
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
            host_failures: None,
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

/// Reads the migrations folder: one set, or a set per engine when it holds a folder per
/// engine (`postgres/`, `mysql/`, `sqlite/`).
pub fn load_migrations(dir: impl AsRef<Path>) -> Result<Sets, Error> {
    let dir = dir.as_ref();
    load::migrations::load_sets(dir, None).map_err(|source| Error::Migrations {
        dir: dir.display().to_string(),
        source,
    })
}

/// Reads the migrations folder in `layout`, or in the layout it is found to have (see
/// [`Layout`]): fleetmig's own, sqlx's, golang-migrate's, diesel's, Flyway's or dbmate's.
pub fn load_migrations_in(dir: impl AsRef<Path>, layout: Option<Layout>) -> Result<MigrationSet, Error> {
    let dir = dir.as_ref();
    load::migrations::load_in(dir, layout).map_err(|source| Error::Migrations {
        dir: dir.display().to_string(),
        source,
    })
}

/// [`selected`], each with a set in `sets` (a tenant whose engine has no folder of its
/// own is an error).
fn selected_with_sets<'f>(fleet: &'f Fleet, sets: &Sets, selectors: &[Selector]) -> Result<Vec<&'f Tenant>, Error> {
    let tenants = selected(fleet, selectors)?;
    sets.covers(tenants.iter().copied())
        .map_err(|e| Error::Usage(e.to_string()))?;
    Ok(tenants)
}

/// The selected tenants, in fleet order; none is an error, and so is a fleet with no
/// tenant at all.
pub fn selected<'f>(fleet: &'f Fleet, selectors: &[Selector]) -> Result<Vec<&'f Tenant>, Error> {
    if fleet.tenants.is_empty() {
        let source = if fleet.discover.is_some() {
            " (nor does its `discover:` query find any)"
        } else {
            ""
        };
        return Err(Error::Usage(format!(
            "`{}` lists no tenants{source}",
            fleet.path.display()
        )));
    }
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

/// `v`, read in the set's version style, when a migration has that version (or it is 0;
/// `head` is the set's head); `flag` names where it came from in the error.
pub(crate) fn check_target(set: &MigrationSet, v: Version, flag: &str) -> Result<Version, Error> {
    if v == Version::HEAD {
        return Ok(set.head());
    }
    let v = v
        .restyled(set.style())
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
    if set.is_target(v) {
        Ok(v)
    } else {
        Err(Error::Usage(format!(
            "{flag} {v}: no migration has version {v} (head is {})",
            set.head()
        )))
    }
}

/// The version to reach: `to`, else head.
pub(crate) fn target(sets: &Sets, to: Option<Version>) -> Result<Version, Error> {
    check_targets(sets, to.unwrap_or(sets.head()), "--to")
}

/// [`check_target`] for a fleet's sets: with a set per engine, `v` is `head`, 0, or a
/// version every engine's set has (select one engine's tenants, and give its folder with
/// `--migrations`, to move them alone to one of its versions).
pub(crate) fn check_targets(sets: &Sets, v: Version, flag: &str) -> Result<Version, Error> {
    match sets {
        Sets::One(set) => check_target(set, v, flag),
        Sets::PerEngine(_) if v == Version::HEAD || v == Version::ZERO => Ok(v),
        Sets::PerEngine(map) => {
            let lacking: Vec<String> = map
                .iter()
                .filter(|(_, set)| check_target(set, v, flag).is_err())
                .map(|(e, set)| format!("{e} (head {})", set.head()))
                .collect();
            if lacking.is_empty() {
                return Ok(v);
            }
            Err(Error::Usage(format!(
                "{flag} {v}: each engine has its own migrations, and {} {} no migration {v}; \
                 give `head`, 0, or a version every engine's folder has",
                lacking.join(", "),
                if lacking.len() == 1 { "has" } else { "have" }
            )))
        }
    }
}

/// A new run's id: the time in milliseconds and the process, in hex.
pub(crate) fn run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", now.as_millis(), std::process::id())
}

/// What every reading or running of tenants shares: the connector under `opts`' limits
/// and a new run id; no ledger, no retries, a transaction per migration.
pub(crate) fn context<'a>(fleet: &'a Fleet, sets: &'a Sets, opts: &Options) -> RunContext<'a> {
    RunContext {
        fleet,
        sets,
        connector: Connector::new(fleet, opts.limits.clone()).versions_of(sets),
        concurrency: opts.concurrency.max(1),
        per_tenant_tx: false,
        retry: Retry::NEVER,
        ledger: None,
        run_id: run_id(),
    }
}

/// Every tenant's history rows, read without changing anything, in the order given.
pub(crate) async fn inspect<'t>(
    fleet: &Fleet,
    sets: &Sets,
    opts: &Options,
    tenants: &[&'t Tenant],
) -> Vec<Inspected<'t>> {
    let ctx = context(fleet, sets, opts);
    let states = inspect_all(&ctx, tenants).await;
    ctx.connector.close().await;
    states
}

/// Each tenant's history and `tool`'s, read without changing anything (`adopt --dry-run`).
pub(crate) async fn inspect_adoptable<'t>(
    fleet: &Fleet,
    sets: &Sets,
    opts: &Options,
    tenants: &[&'t Tenant],
    tool: crate::model::foreign::Tool,
) -> Vec<crate::exec::run::Adoptable<'t>> {
    let ctx = context(fleet, sets, opts);
    let states = crate::exec::run::inspect_adoptable(&ctx, tenants, tool).await;
    ctx.connector.close().await;
    states
}

/// The rollout's waves: canaries (marked `canary: true`, or matching one of `canary`)
/// first, then `spec`, else the fleet file's `rollout.waves`; with what each step of the
/// spec placed.
pub(crate) fn plan_waves<'f>(
    fleet: &Fleet,
    tenants: &[&'f Tenant],
    canary: &[Selector],
    spec: Option<&WaveSpec>,
) -> Result<WavePlan<'f>, Error> {
    let is_canary = |t: &Tenant| t.canary || canary.iter().any(|s| s.matches(t));
    let spec = spec.or(fleet.rollout.waves.as_ref()).cloned().unwrap_or_default();
    Ok(crate::plan::waves::plan(tenants, &is_canary, &spec)?)
}

/// The failure and skip limits, rollback and the host breaker: those given, else the
/// fleet file's `rollout:` defaults, else the built-in ones. No gates, pause or rate.
pub(crate) fn limits_policy(
    fleet: &Fleet,
    max_failures: Option<MaxFailures>,
    max_skipped: Option<MaxSkipped>,
    rollback: Option<RollbackPolicy>,
    host_failures: Option<u32>,
) -> Policy {
    let defaults = &fleet.rollout;
    Policy {
        max_failures: max_failures.or(defaults.max_failures).unwrap_or_default(),
        max_skipped: max_skipped.or(defaults.max_skipped).unwrap_or_default(),
        rollback: rollback.or(defaults.rollback).unwrap_or_default(),
        host_failures: host_failures
            .or(defaults.host_failures)
            .unwrap_or(crate::model::policy::DEFAULT_HOST_FAILURES),
        ..Policy::default()
    }
}

/// What the ledger keeps of a run so it can be resumed: the command, target and waves.
pub(crate) fn run_plan(
    command: &str,
    action: Action<'_>,
    waves: &[Wave<'_>],
    policy: Option<RecordedPolicy>,
) -> RunPlan {
    RunPlan {
        command: match action {
            Action::Checksums(None) => "stamp --checksums".to_owned(),
            Action::Checksums(Some(v)) => format!("stamp --checksums={v}"),
            Action::Adopt(from) => format!("adopt {from}"),
            _ => command.to_owned(),
        },
        target: match action {
            Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => to,
            Action::Migrate(Target::DownSteps { .. }) | Action::Checksums(_) | Action::Adopt(_) => Version::ZERO,
        },
        waves: waves
            .iter()
            .map(|w| w.tenants.iter().map(|t| t.id.to_string()).collect())
            .collect(),
        canary_waves: waves.iter().filter(|w| w.canary).map(|w| w.number).collect(),
        policy,
        steps: match action {
            Action::Migrate(Target::DownSteps { steps }) => Some(steps),
            _ => None,
        },
        source: None,
    }
}

/// A recorded run's waves, with today's fleet file's tenants; `missing` says what a tenant
/// the file no longer lists means.
pub(crate) fn recorded_waves<'f>(
    fleet: &'f Fleet,
    plan: &RunPlan,
    missing: impl Fn(&str) -> Error,
) -> Result<Vec<Wave<'f>>, Error> {
    let mut waves = Vec::new();
    for (k, ids) in plan.waves.iter().enumerate() {
        let tenants = ids
            .iter()
            .map(|id| fleet.tenant(id).ok_or_else(|| missing(id)))
            .collect::<Result<Vec<_>, _>>()?;
        waves.push(Wave {
            number: k + 1,
            canary: plan.canary_waves.contains(&(k + 1)),
            tenants,
        });
    }
    Ok(waves)
}

/// A run ready to dispatch: its context (with the ledger recording it, if any), waves,
/// action and policy, each decided once by the caller.
pub(crate) struct Run<'f> {
    pub ctx: RunContext<'f>,
    pub waves: Vec<Wave<'f>>,
    pub action: Action<'f>,
    pub policy: Policy,
    /// The command's name, as the events, the report and the ledger give it.
    pub command: &'static str,
    /// Set when this runner claims tenants of a shared run instead of running them all.
    pub shared: Option<Shared>,
    /// The migration set's fingerprint and git commit, for the ledger.
    pub source: Option<RunSource>,
}

impl<'f> Run<'f> {
    /// The run's tenants in rollout order.
    pub(crate) fn tenants(&self) -> Vec<&'f Tenant> {
        self.waves.iter().flat_map(|w| w.tenants.iter().copied()).collect()
    }

    /// What the ledger keeps of this run.
    pub(crate) fn plan(&self, policy: Option<RecordedPolicy>) -> RunPlan {
        RunPlan {
            source: self.source.clone(),
            ..run_plan(self.command, self.action, &self.waves, policy)
        }
    }

    /// Records the run as new in `ledger`, which from then on records its tenants.
    pub(crate) async fn begin(&mut self, ledger: Ledger, policy: Option<RecordedPolicy>) -> Result<(), Error> {
        let fleet = self.ctx.fleet.path.display().to_string();
        ledger.begin_run(&self.ctx.run_id, &fleet, &self.plan(policy)).await?;
        self.ctx.ledger = Some(ledger);
        Ok(())
    }

    /// Records the run as a new shared run in `ledger`: every runner (this one first)
    /// claims its tenants there, each for `lease` at a time, under its failure limit.
    pub(crate) async fn begin_shared(
        &mut self,
        ledger: Ledger,
        policy: Option<RecordedPolicy>,
        lease: std::time::Duration,
    ) -> Result<(), Error> {
        let fleet = self.ctx.fleet.path.display().to_string();
        let limit = self.policy.max_failures.to_string();
        ledger
            .begin_shared_run(&self.ctx.run_id, &fleet, &self.plan(policy), &limit)
            .await?;
        self.ctx.ledger = Some(ledger);
        self.shared = Some(Shared {
            lease,
            max_failures: self.policy.max_failures,
            total: self.waves.iter().map(|w| w.tenants.len()).sum(),
            owner: runner(),
        });
        Ok(())
    }

    /// Runs it, announcing what happens on `events`, and returns its report.
    pub(crate) async fn dispatch(&self, events: &Events, interrupts: Interrupts) -> RunReport {
        let spec = RunSpec {
            ctx: &self.ctx,
            waves: &self.waves,
            action: self.action,
            policy: &self.policy,
            command: self.command,
            events,
            source: self.shared.as_ref().map_or(Source::Waves, Source::Shared),
        };
        dispatch(spec, interrupts).await
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

/// Where every selected tenant stands against the target, from their history tables
/// alone (no ledger).
pub(crate) async fn assess(fleet: &Fleet, sets: &Sets, opts: &Options) -> Result<FleetStatus, Error> {
    let tenants = selected_with_sets(fleet, sets, &opts.select)?;
    let to = target(sets, opts.to)?;
    let ctx = context(fleet, sets, opts);
    let states = inspect_all(&ctx, &tenants).await;
    let mut status = FleetStatus::assess_sets(
        sets,
        to,
        states
            .into_iter()
            .map(|(t, rows)| (t.id.to_string(), t.engine, rows.map_err(|e| e.to_string()))),
    );
    // Repeatable migrations count only at the head, where `up` runs them.
    let at_head: Vec<&Tenant> = tenants
        .iter()
        .copied()
        .filter(|t| sets.resolve(t.engine, to) == sets.of(t.engine).head())
        .collect();
    status.note_repeatables(&crate::exec::run::stale_repeatables(&ctx, &at_head).await);
    ctx.connector.close().await;
    Ok(status)
}

/// Whether every selected tenant's real catalog is what its version says: each compared
/// with the reference for its engine and version (see [`crate::exec::drift`]).
pub async fn drift(
    fleet: &Fleet,
    sets: &Sets,
    opts: &Options,
    drift: &crate::exec::drift::DriftOptions,
) -> Result<crate::model::drift::DriftReport, Error> {
    let tenants = selected_with_sets(fleet, sets, &opts.select)?;
    let ctx = context(fleet, sets, opts);
    let report = crate::exec::drift::drift(&ctx, &tenants, drift).await;
    ctx.connector.close().await;
    Ok(report)
}

/// Where every selected tenant stands against the target, read with a few queries per
/// pooled PostgreSQL host. Adds what the fleet's ledger (its `ledger:`, else the SQLite
/// file beside the fleet file) knows, when it exists and can be read.
pub async fn status(fleet: &Fleet, sets: &Sets, opts: &Options) -> Result<FleetStatus, Error> {
    let mut status = assess(fleet, sets, opts).await?;
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
pub async fn wait_for(fleet: &Fleet, sets: &Sets, opts: &Options, wait: &WaitOptions) -> Result<WaitOutcome, Error> {
    watch(fleet, sets, opts, wait, &mut |_| {}).await
}

/// [`wait_for`], handing each read of the fleet to `seen` as it comes.
pub(crate) async fn watch(
    fleet: &Fleet,
    sets: &Sets,
    opts: &Options,
    wait: &WaitOptions,
    seen: &mut (dyn FnMut(&FleetStatus) + Send),
) -> Result<WaitOutcome, Error> {
    let tenants = selected_with_sets(fleet, sets, &opts.select)?;
    let to = target(sets, opts.to)?;
    let ctx = context(fleet, sets, opts);
    let outcome = crate::exec::wait::wait(&ctx, &tenants, to, *wait, seen).await;
    ctx.connector.close().await;
    Ok(outcome)
}

/// Applies pending migrations to the selected tenants, as `fleetmig up` does. A failing
/// tenant is in the report, not an `Err`: check [`RunReport::is_success`].
pub async fn up(fleet: &Fleet, sets: &Sets, opts: &Options, up: &UpOptions) -> Result<RunReport, Error> {
    let tenants = selected_with_sets(fleet, sets, &opts.select)?;
    let to = target(sets, opts.to)?;
    let mut ctx = context(fleet, sets, opts);
    ctx.retry = up.retry;
    let mut run = Run {
        ctx,
        waves: plan_waves(fleet, &tenants, &[], None)?.waves,
        action: Action::Migrate(Target::Up { to }),
        policy: limits_policy(fleet, up.max_failures, up.max_skipped, up.rollback, up.host_failures),
        command: "up",
        shared: None,
        source: Some(RunSource {
            fingerprint: sets.fingerprint(),
            ..RunSource::default()
        }),
    };
    if let Some(url) = &up.ledger {
        let ledger = Ledger::open(url, opts.limits.connect_timeout).await?;
        run.begin(ledger, None).await?;
    }
    // No Ctrl-C here: the service owns its signals, and a dropped sender never fires.
    let (_, interrupts) = tokio::sync::mpsc::unbounded_channel();
    let report = run.dispatch(&Events::none(), interrupts).await;
    run.ctx.connector.close().await;
    if let Some(ledger) = &run.ctx.ledger {
        ledger.close().await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_plan_names_the_command_and_its_target_as_resume_reads_them() {
        let up = run_plan("up", Action::Migrate(Target::Up { to: Version::int(4) }), &[], None);
        assert_eq!(
            (up.command.as_str(), up.target, up.steps),
            ("up", Version::int(4), None)
        );
        let steps = run_plan("down", Action::Migrate(Target::DownSteps { steps: 2 }), &[], None);
        assert_eq!(
            (steps.command.as_str(), steps.target, steps.steps),
            ("down", Version::ZERO, Some(2))
        );
        let all = run_plan("stamp", Action::Checksums(None), &[], None);
        assert_eq!(all.command, "stamp --checksums");
        let one = run_plan("stamp", Action::Checksums(Some(Version::int(3))), &[], None);
        assert_eq!(one.command, "stamp --checksums=3");
    }
}
