//! Commands: load, plan, run, report. Returns what each came to; `main` prints errors and exits with `exit::code`.

use std::io::{IsTerminal, Write};

use indicatif::ProgressDrawTarget;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::{Cli, Command, Format, Global, Rollout, TxMode};
use crate::driver::connect::{Connector, Limits};
use crate::driver::ledger::{Ledger, RunPlan};
use crate::driver::offline;
use crate::error::Error;
use crate::exec::dispatch::{Gates, Policy, Rate, RunSpec, Source, can_confirm, dispatch};
use crate::exec::events::Events;
use crate::exec::run::{Inspected, RunContext, inspect_all};
use crate::exec::tenant::{Action, Retry};
use crate::load;
use crate::model::fleet::{Engine, Fleet, Ident, Tenant};
use crate::model::migration::{Direction, Migration, MigrationSet, Version};
use crate::model::policy::WaveSpec;
use crate::model::policy::{MaxFailures, MaxSkipped, RollbackPolicy};
use crate::model::refusal::Refusal;
use crate::model::run::RunReport;
use crate::model::secret::DbUrl;
use crate::plan::select::select;
use crate::plan::tenant::{self as plan, Target};
use crate::plan::waves::{Wave, waves};
use crate::report::json::write_event;
use crate::report::progress::ProgressReporter;
use crate::report::run as run_report;
use crate::report::run::Rows;
use crate::report::tables::{self, PlanRow};
use crate::report::text::TextReporter;

mod resume;
mod shared;
mod signals;

use exit::Outcome;

pub mod exit;

fn load_migrations(dir: &Path) -> Result<MigrationSet, Error> {
    load::migrations::load(dir).map_err(|source| Error::Migrations {
        dir: dir.display().to_string(),
        source,
    })
}

/// The fleet: the file's tenants, then those its `discover:` query finds. A registry that
/// cannot answer is a setup error, like a bad fleet file.
async fn load_fleet(g: &Global) -> Result<Fleet, Error> {
    crate::api::load_fleet(&g.fleet, g.connect_timeout).await
}

fn check_target(set: &MigrationSet, v: Version, flag: &str) -> Result<Version, Error> {
    if set.is_target(v) {
        Ok(v)
    } else {
        Err(Error::Usage(format!(
            "{flag} {v}: no migration has version {v} (head is {})",
            set.head()
        )))
    }
}

fn selected<'f>(fleet: &'f Fleet, g: &Global) -> Result<Vec<&'f Tenant>, Error> {
    let tenants = select(&fleet.tenants, &g.select);
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
    if tenants.is_empty() {
        let what = g
            .select
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

fn limits(g: &Global) -> Limits {
    Limits {
        connect_timeout: g.connect_timeout,
        lock_wait: g.lock_wait,
        lock_budget: g.lock_wait,
        lock_timeout: g.lock_timeout,
        statement_timeout: g.statement_timeout,
    }
}

fn new_run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", now.as_millis(), std::process::id())
}

/// Runs a parsed command line, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let g = &cli.global;
    if g.concurrency == 0 {
        return Err(Error::Usage("--concurrency must be at least 1".into()));
    }
    match &cli.command {
        Command::New { name } => {
            let folder_error = |source| Error::Migrations {
                dir: g.migrations.display().to_string(),
                source,
            };
            if !g.migrations.exists() {
                std::fs::create_dir_all(&g.migrations).map_err(|source| {
                    folder_error(load::migrations::MigrationsError::Write {
                        path: g.migrations.clone(),
                        source,
                    })
                })?;
            }
            let set = load::migrations::load_unwritten(&g.migrations).map_err(folder_error)?;
            let (up, down) =
                load::migrations::create(&g.migrations, &set, name, SystemTime::now()).map_err(folder_error)?;
            writeln!(out, "{}\n{}", up.display(), down.display())?;
            Ok(Outcome::Done)
        }
        Command::History => {
            let set = load_migrations(&g.migrations)?;
            let rows = tables::history_rows(&set);
            match g.format {
                Format::Json => writeln!(out, "{}", serde_json::json!({ "migrations": rows }))?,
                Format::Text => write!(out, "{}", tables::history_text(&rows))?,
            }
            Ok(Outcome::Done)
        }
        Command::Sql {
            from,
            to,
            engine,
            schema,
        } => {
            let set = load_migrations(&g.migrations)?;
            let from = check_target(&set, *from, "--from")?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let engine = match engine {
                Some(e) => Engine::from(*e),
                None => {
                    let fleet = load_fleet(g).await?;
                    let mut engines: Vec<Engine> = selected(&fleet, g)?.iter().map(|t| t.engine).collect();
                    engines.sort();
                    engines.dedup();
                    match engines.as_slice() {
                        [one] => *one,
                        _ => {
                            return Err(Error::Usage(
                                "the selected tenants use several engines: give --engine".into(),
                            ));
                        }
                    }
                }
            };
            let namespace = schema
                .as_deref()
                .map(|s| Ident::new(s).map_err(|m| Error::Usage(format!("--schema: {m}"))))
                .transpose()?;
            let script = offline::script(engine, &set, from, to, namespace.as_ref())
                .map_err(|r| Error::Refused(r.to_string()))?;
            write!(out, "{script}")?;
            Ok(Outcome::Done)
        }
        Command::Plan {
            to,
            canary,
            waves: spec,
            verbose,
        } => {
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let is_canary = |t: &Tenant| t.canary || canary.iter().any(|s| s.matches(t));
            let spec = spec.clone().or_else(|| fleet.rollout.waves.clone()).unwrap_or_default();
            let waves = waves(&tenants, &is_canary, &spec);
            let ordered: Vec<&Tenant> = waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
            let wave_of: Vec<usize> = waves.iter().flat_map(|w| w.tenants.iter().map(|_| w.number)).collect();
            let ctx = context(g, &fleet, &set);
            let states = inspect_all(&ctx, &ordered).await;
            ctx.connector.close().await;
            plan_command(&set, to, states, &wave_of, g.format, *verbose, out)
        }
        Command::Status { to, lagging } => {
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let ctx = context(g, &fleet, &set);
            let states = inspect_all(&ctx, &tenants).await;
            ctx.connector.close().await;
            status_command(g, &fleet, &set, to, states, *lagging, out).await
        }
        Command::Wait { to, timeout, interval } => {
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let ctx = context(g, &fleet, &set);
            let opts = crate::exec::wait::WaitOptions {
                timeout: *timeout,
                interval: *interval,
            };
            let mut progress = crate::report::status::WaitProgress::new(g.format == Format::Text);
            let outcome = crate::exec::wait::wait(&ctx, &tenants, to, opts, &mut |s| progress.read(s, out)).await;
            ctx.connector.close().await;
            wait_command(&outcome, g.format, out)
        }
        Command::Up {
            to,
            resume: None,
            rollout,
            together,
        } if together.is_shared() => shared::up(g, *to, rollout, together, out).await,
        Command::Up {
            resume: Some(run),
            rollout,
            ..
        } => {
            let set = load_migrations(&g.migrations)?;
            let mut fleet = load_fleet(g).await?;
            if !g.select.is_empty() {
                return Err(Error::Usage(
                    "--resume runs the run's own tenants: drop --select".into(),
                ));
            }
            let Some(ledger) = open_ledger_if_any(g, &fleet).await? else {
                return Err(Error::Usage(
                    "there is no ledger yet, so no run to resume (no run has been recorded)".into(),
                ));
            };
            let run_id = match run.as_str() {
                "" => ledger
                    .last_unfinished()
                    .await?
                    .ok_or_else(|| Error::Usage("the ledger holds no unfinished run to resume".into()))?,
                id => id.to_owned(),
            };
            let plan = ledger
                .plan(&run_id)
                .await?
                .ok_or_else(|| Error::Usage(format!("the ledger holds no run `{run_id}`")))?;
            if plan.command != "up" {
                return Err(Error::Usage(format!(
                    "run `{run_id}` was a `{}`; only `up` runs resume",
                    plan.command
                )));
            }
            // Runs recorded before the ledger kept the policy go on under today's flags.
            let kept;
            let rollout = match &plan.policy {
                Some(recorded) => {
                    kept = resume::resumed(&run_id, recorded, rollout)?;
                    // The recorded policy is whole: a bake or check added to the fleet
                    // file since the run started is not this run's.
                    fleet.rollout = Default::default();
                    &kept
                }
                None => rollout,
            };
            let to = check_target(&set, Version(plan.target), "--resume: the run's target")?;
            let mut waves = Vec::new();
            for (k, ids) in plan.waves.iter().enumerate() {
                let tenants = ids
                    .iter()
                    .map(|id| {
                        fleet.tenant(id).ok_or_else(|| {
                            Error::Usage(format!(
                                "run `{run_id}` included tenant `{id}`, which the fleet file no longer lists"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                waves.push(Wave {
                    number: k + 1,
                    canary: plan.canary_waves.contains(&(k + 1)),
                    tenants,
                });
            }
            let tenants: Vec<&Tenant> = waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
            let resume = Resume {
                run_id,
                waves,
                ledger,
                shared: None,
            };
            let action = Action::Migrate(Target::Up { to });
            let report = execute(
                g,
                &fleet,
                &set,
                &tenants,
                action,
                "up",
                Some(rollout),
                Some(resume),
                out,
            )
            .await?;
            Ok(Outcome::Run(Box::new(report)))
        }
        Command::Up {
            to,
            resume: None,
            rollout,
            ..
        } => {
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let action = Action::Migrate(Target::Up { to });
            let report = execute(g, &fleet, &set, &tenants, action, "up", Some(rollout), None, out).await?;
            Ok(Outcome::Run(Box::new(report)))
        }
        Command::Runs { limit } => {
            let fleet = load_fleet(g).await?;
            let runs = match open_ledger_if_any(g, &fleet).await? {
                Some(ledger) => ledger.runs(*limit).await?,
                None => Vec::new(),
            };
            match g.format {
                Format::Json => writeln!(out, "{}", serde_json::json!({ "runs": runs }))?,
                Format::Text => write!(out, "{}", tables::runs_text(&runs))?,
            }
            Ok(Outcome::Done)
        }
        Command::Report { run, all } => {
            let fleet = load_fleet(g).await?;
            let report = match open_ledger_if_any(g, &fleet).await? {
                Some(ledger) => ledger.report(run).await?,
                None => None,
            };
            let Some(report) = report else {
                return Err(Error::Usage(format!(
                    "the ledger holds no finished run `{run}` (see `fleetmig runs`)"
                )));
            };
            match g.format {
                Format::Json => writeln!(out, "{}", run_report::json(&report))?,
                Format::Text => {
                    let more = format!("{} lists every tenant", report_command(g, run));
                    let rows = if *all {
                        Rows::All
                    } else {
                        Rows::Screenful { more: &more }
                    };
                    // The grouped problems' advice reads the migrations folder when there is one.
                    let set = load_migrations(&g.migrations)
                        .or_else(|_| MigrationSet::new(Vec::new()))
                        .expect("an empty set has no duplicates");
                    let grouped = crate::report::refusals::run_text(&set, &report);
                    write!(out, "{}{grouped}", run_report::text(&report, rows))?
                }
            }
            Ok(Outcome::Run(Box::new(report)))
        }
        Command::Down { to, steps, rollout } => {
            // Undoing a down means running up scripts again: an operator does that
            // deliberately, with `up --to`, not as a side effect of a stop.
            if let Some(policy) = rollout.rollback.filter(|p| *p != RollbackPolicy::None) {
                return Err(Error::Usage(format!(
                    "down --rollback {}: only `up` rolls back; a `down` that stops leaves each tenant where it stopped (the report says where), and `fleetmig up --to VERSION` takes tenants forward again",
                    policy.name()
                )));
            }
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let target = match (to, steps) {
                (Some(to), _) => Target::Down {
                    to: check_target(&set, *to, "--to")?,
                },
                (None, Some(steps)) => Target::DownSteps { steps: *steps },
                (None, None) => return Err(Error::Usage("give --to or --steps".into())),
            };
            refuse_irreversible(g, &fleet, &set, &tenants, target).await?;
            confirm_down_to_zero(g, &fleet, &set, &tenants, target, rollout.yes).await?;
            let report = execute(
                g,
                &fleet,
                &set,
                &tenants,
                Action::Migrate(target),
                "down",
                Some(rollout),
                None,
                out,
            )
            .await?;
            Ok(Outcome::Run(Box::new(report)))
        }
        Command::Stamp { version, checksums } => {
            let set = load_migrations(&g.migrations)?;
            let fleet = load_fleet(g).await?;
            let tenants = selected(&fleet, g)?;
            let action = match (version, checksums) {
                (_, Some(only)) => {
                    Action::Checksums(only.map(|v| check_target(&set, v, "stamp --checksums")).transpose()?)
                }
                (Some(v), None) => Action::Stamp(check_target(&set, *v, "stamp")?),
                (None, None) => unreachable!("clap requires VERSION or --checksums"),
            };
            let report = execute(g, &fleet, &set, &tenants, action, "stamp", None, None, out).await?;
            Ok(Outcome::Run(Box::new(report)))
        }
    }
}

fn context<'a>(g: &Global, fleet: &'a Fleet, set: &'a MigrationSet) -> RunContext<'a> {
    RunContext {
        fleet,
        set,
        connector: Connector::new(fleet, limits(g)),
        concurrency: g.concurrency,
        per_tenant_tx: false,
        retry: Retry::NEVER,
        ledger: None,
        run_id: new_run_id(),
    }
}

/// A run picked up again from the ledger.
struct Resume<'f> {
    run_id: String,
    waves: Vec<Wave<'f>>,
    ledger: Ledger,
    /// Set when this runner claims tenants of a shared run instead of running them all.
    shared: Option<crate::exec::join::Shared>,
}

/// The ledger: `--ledger`, else the fleet file's `ledger:`, else a SQLite file beside it.
async fn open_ledger(g: &Global, fleet: &Fleet) -> Result<Ledger, Error> {
    let url = ledger_location(g, fleet)?;
    Ok(Ledger::open(&url, g.connect_timeout).await?)
}

/// The ledger for a command that only reads it (`runs`, `report`, `up --resume`): `None`
/// when it is a SQLite file that does not exist yet, which such a command does not create.
async fn open_ledger_if_any(g: &Global, fleet: &Fleet) -> Result<Option<Ledger>, Error> {
    let url = ledger_location(g, fleet)?;
    if url.scheme() == "sqlite" && !Path::new(url.url().path()).exists() {
        return Ok(None);
    }
    Ok(Some(Ledger::open(&url, g.connect_timeout).await?))
}

/// Where the ledger is: `--ledger` (or `FLEETMIG_LEDGER`), read like the fleet file's
/// `ledger:` (a relative SQLite path from the current folder), else the fleet file's.
fn ledger_location(g: &Global, fleet: &Fleet) -> Result<DbUrl, Error> {
    match &g.ledger {
        Some(text) => load::fleet::ledger_url(text, Path::new(".")).map_err(|m| Error::Usage(format!("--ledger: {m}"))),
        None => Ok(crate::driver::ledger::status::fleet_ledger_url(fleet)),
    }
}

/// `--tx per-tenant` needs transactional DDL, and no step a tenant would run marked
/// `no-transaction`. Only steps still to run matter: a no-transaction migration a tenant
/// applied long ago does not stand in the way. When the set has such a migration within
/// reach, each tenant's history is read to tell; the first tenant that would run one is
/// named, with the migration, and nothing runs.
async fn check_per_tenant_tx(
    g: &Global,
    fleet: &Fleet,
    set: &MigrationSet,
    tenants: &[&Tenant],
    action: Action,
) -> Result<(), Error> {
    if let Some(t) = tenants.iter().find(|t| !t.engine.has_transactional_ddl()) {
        return Err(Error::Usage(format!(
            "--tx per-tenant: tenant `{}` is on MySQL, which commits DDL implicitly; use PostgreSQL or SQLite tenants, or --tx per-migration",
            t.id
        )));
    }
    let Action::Migrate(target) = action else { return Ok(()) };
    let in_reach = match target {
        Target::Up { to } => set.iter().any(|m| m.version <= to && !m.up.transactional),
        Target::Down { .. } | Target::DownSteps { .. } => {
            set.iter().any(|m| m.down.as_ref().is_some_and(|d| !d.transactional))
        }
    };
    if !in_reach {
        return Ok(());
    }
    let ctx = context(g, fleet, set);
    let states = inspect_all(&ctx, tenants).await;
    ctx.connector.close().await;
    // A tenant that cannot be read or is refused is skipped by the run; should it come
    // back in between, its one transaction refuses the step (see `exec::tenant`).
    for (tenant, rows) in states {
        let Ok(rows) = rows else { continue };
        let Ok(p) = plan::plan(set, &rows, target) else {
            continue;
        };
        let step = p.steps.iter().find(|s| {
            s.migration
                .script(s.direction)
                .is_some_and(|script| !script.transactional)
        });
        if let Some(s) = step {
            return Err(Error::Usage(format!(
                "--tx per-tenant: tenant `{}` would run migration {} (`{}`), which is marked `-- fleetmig: no-transaction` and cannot join a tenant's transaction; use --tx per-migration, or take that tenant past it first",
                tenant.id,
                s.migration.version,
                script_path(s.migration, s.direction).display()
            )));
        }
    }
    Ok(())
}

/// The file of a migration's script in `direction`: its down script sits beside its up
/// script, named alike.
fn script_path(m: &Migration, direction: Direction) -> std::path::PathBuf {
    let up = &m.path;
    match (direction, up.file_name().and_then(|n| n.to_str())) {
        (Direction::Down, Some(name)) => match name.strip_suffix(".up.sql") {
            Some(stem) => up.with_file_name(format!("{stem}.down.sql")),
            None => up.clone(),
        },
        _ => up.clone(),
    }
}

/// The waves and policy a command line asks for.
fn rollout_plan<'f>(
    fleet: &Fleet,
    tenants: &[&'f Tenant],
    rollout: Option<&Rollout>,
) -> Result<(Vec<Wave<'f>>, Policy), Error> {
    let Some(r) = rollout else {
        let policy = Policy {
            max_failures: MaxFailures::Unlimited,
            max_skipped: MaxSkipped::Limit(MaxFailures::Unlimited),
            rollback: RollbackPolicy::None,
            ..Policy::default()
        };
        return Ok((waves(tenants, &|_| false, &WaveSpec::default()), policy));
    };
    if r.confirm && !r.yes && !can_confirm() {
        return Err(Error::Usage(
            "--confirm needs a terminal to ask on; add --yes to go on without asking".into(),
        ));
    }
    let is_canary = |t: &Tenant| t.canary || r.canary.iter().any(|s| s.matches(t));
    let defaults = &fleet.rollout;
    let spec = r.waves.clone().or_else(|| defaults.waves.clone()).unwrap_or_default();
    let waves = waves(tenants, &is_canary, &spec);
    if let Some(p) = r.pause_after {
        if p == 0 || p > waves.len() {
            return Err(Error::Usage(format!(
                "--pause-after {p}: the rollout has waves 1 to {}",
                waves.len()
            )));
        }
    }
    let policy = Policy {
        max_failures: r.max_failures.or(defaults.max_failures).unwrap_or_default(),
        max_skipped: r.max_skipped.or(defaults.max_skipped).unwrap_or_default(),
        rollback: r.rollback.or(defaults.rollback).unwrap_or_default(),
        pause_after: r.pause_after,
        gates: Gates {
            bake: r.bake.or(defaults.bake),
            check: r.check.clone().or_else(|| defaults.check.clone()),
            confirm: r.confirm,
            assume_yes: r.yes,
            prompt: None,
        },
        rate: r.rate.map(|per_second| Rate {
            per_second,
            burst: r.burst.unwrap_or(per_second),
        }),
    };
    Ok((waves, policy))
}

/// `down` refuses before anything runs when any tenant would pass a migration without a
/// down script.
async fn refuse_irreversible(
    g: &Global,
    fleet: &Fleet,
    set: &MigrationSet,
    tenants: &[&Tenant],
    target: Target,
) -> Result<(), Error> {
    if let Target::Down { to } = target {
        if let Some(m) = set.iter().find(|m| m.version > to && !m.is_reversible()) {
            let refusal = Refusal::Irreversible {
                version: m.version,
                path: m.path.clone(),
            };
            return Err(Error::Refused(format!("down --to {to}: {refusal}")));
        }
        return Ok(());
    }
    let ctx = context(g, fleet, set);
    for (tenant, rows) in inspect_all(&ctx, tenants).await {
        if let Ok(rows) = rows {
            if let Err(r @ Refusal::Irreversible { .. }) = plan::plan(set, &rows, target) {
                return Err(Error::Refused(format!("tenant `{}`: {r}", tenant.id)));
            }
        }
    }
    Ok(())
}

/// A `down` that would revert every migration a tenant has (to version 0) goes on only when
/// the operator says so: asked on a terminal, else with `--yes`. Refused otherwise, naming
/// the tenants, before anything runs.
async fn confirm_down_to_zero(
    g: &Global,
    fleet: &Fleet,
    set: &MigrationSet,
    tenants: &[&Tenant],
    target: Target,
    yes: bool,
) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    let ctx = context(g, fleet, set);
    let states = inspect_all(&ctx, tenants).await;
    ctx.connector.close().await;
    let to_zero: Vec<String> = states
        .iter()
        .filter(|(_, rows)| match rows {
            Ok(rows) => plan::plan(set, rows, target).is_ok_and(|p| p.to == Version::ZERO && !p.steps.is_empty()),
            // Unread now, but reverted to nothing should it answer during the run.
            Err(_) => target == Target::Down { to: Version::ZERO },
        })
        .map(|(t, rows)| match rows {
            Ok(rows) => format!("{} (at {})", t.id, plan::version_of(rows)),
            Err(_) => format!("{} (unreachable now)", t.id),
        })
        .collect();
    if to_zero.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = to_zero.iter().map(String::as_str).collect();
    let what = format!(
        "this `down` reverts every migration of {} tenant(s), leaving them at version 0: {}",
        to_zero.len(),
        crate::report::refusals::few(&names, 10)
    );
    if !can_confirm() {
        return Err(Error::Refused(format!(
            "{what}. Add --yes to go on without a terminal to ask on"
        )));
    }
    let question = format!("{what}. Go on? [y/N] ");
    let answer = tokio::task::spawn_blocking(move || {
        eprint!("{question}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    if matches!(answer, Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes")) {
        Ok(())
    } else {
        Err(Error::Refused("down to version 0 not confirmed".into()))
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site per command; a struct would only rename them"
)]
async fn execute(
    g: &Global,
    fleet: &Fleet,
    set: &MigrationSet,
    tenants: &[&Tenant],
    action: Action,
    command: &str,
    rollout: Option<&Rollout>,
    resume: Option<Resume<'_>>,
    out: &mut (dyn Write + Send),
) -> Result<RunReport, Error> {
    let report_path = rollout.and_then(|r| r.report.as_deref());
    if let Some(path) = report_path {
        check_report_path(path)?;
    }
    let (planned, mut policy) = rollout_plan(fleet, tenants, rollout)?;
    let mut ctx = context(g, fleet, set);
    // Every refusal comes before the ledger hears of the run: a refused run leaves no run
    // behind for `--resume` to pick up.
    if let Some(r) = rollout {
        ctx.retry = Retry {
            within: r.retry_within(),
            attempts: r.retries,
        };
        if r.tx_mode() == TxMode::PerTenant {
            check_per_tenant_tx(g, fleet, set, tenants, action).await?;
            ctx.per_tenant_tx = true;
        }
    }
    if let (Some(sql), Some(first)) = (&policy.gates.check, planned.first().and_then(|w| w.tenants.first())) {
        crate::exec::dispatch::rehearse_check(&ctx, first, sql)
            .await
            .map_err(|e| {
                Error::Refused(format!(
                    "--check `{sql}` cannot run: tried on tenant `{}` before wave 1: {e}",
                    first.id
                ))
            })?;
    }
    let mut shared = None;
    let waves = match resume {
        Some(Resume {
            run_id,
            waves,
            ledger,
            shared: together,
        }) => {
            if together.is_none() {
                ledger.reopen_run(&run_id).await?;
            }
            shared = together;
            ctx.run_id = run_id;
            ctx.ledger = Some(ledger);
            waves
        }
        None => {
            let ledger = open_ledger(g, fleet).await?;
            let target = match action {
                Action::Migrate(Target::Up { to } | Target::Down { to }) | Action::Stamp(to) => to.0,
                Action::Migrate(Target::DownSteps { .. }) | Action::Checksums(_) => 0,
            };
            let plan = RunPlan {
                command: match action {
                    Action::Checksums(None) => "stamp --checksums".to_owned(),
                    Action::Checksums(Some(v)) => format!("stamp --checksums={v}"),
                    _ => command.to_owned(),
                },
                target,
                waves: planned
                    .iter()
                    .map(|w| w.tenants.iter().map(|t| t.id.to_string()).collect())
                    .collect(),
                canary_waves: planned.iter().filter(|w| w.canary).map(|w| w.number).collect(),
                policy: rollout.map(|r| resume::record(fleet, r, &policy)),
                steps: match action {
                    Action::Migrate(Target::DownSteps { steps }) => Some(steps),
                    _ => None,
                },
            };
            ledger
                .begin_run(&ctx.run_id, &fleet.path.display().to_string(), &plan)
                .await?;
            ctx.ledger = Some(ledger);
            planned
        }
    };
    let (events, mut rx) = Events::channel();
    let (interrupts, listener) = signals::listen();
    let id_width = tenants.iter().map(|t| t.id.as_str().len()).max().unwrap_or(0);
    let format = g.format;
    // Bars on a terminal (stderr, so stdout stays for the report); timestamped lines
    // otherwise; JSON Lines on request.
    let bars = format == Format::Text && std::io::stderr().is_terminal() && !ProgressDrawTarget::stderr().is_hidden();
    let progress = bars.then(|| ProgressReporter::new(ProgressDrawTarget::stderr(), id_width));
    if policy.gates.confirm {
        policy.gates.prompt = Some(match &progress {
            Some(bars) => std::sync::Arc::new(bars.prompt()),
            None => std::sync::Arc::new(crate::report::gates::PlainPrompt),
        });
    }
    let policy = policy;
    let running = async {
        let spec = RunSpec {
            ctx: &ctx,
            waves: &waves,
            action,
            policy: &policy,
            command,
            events: &events,
            source: shared.as_ref().map_or(Source::Waves, Source::Shared),
        };
        let report = dispatch(spec, interrupts).await;
        // Bounded: after an abandon, a pool may still wait on a server that stopped answering,
        // and the report must be out before the process's deadline (`signals::GRACE`).
        let closing = if report.stop_reason == crate::model::policy::StopReason::Abandoned {
            std::time::Duration::from_millis(300)
        } else {
            std::time::Duration::from_secs(2)
        };
        let _ = tokio::time::timeout(closing, ctx.connector.close()).await;
        drop(events);
        report
    };
    let reporting = async {
        if let Some(mut progress) = progress {
            while let Some(event) = rx.recv().await {
                progress.handle(&event);
            }
            progress.finish();
            return out.flush();
        }
        let mut text = TextReporter::with_timestamps(id_width);
        while let Some(event) = rx.recv().await {
            match format {
                Format::Json => write_event(out, &event)?,
                Format::Text => text.write_event(out, &event)?,
            }
        }
        out.flush()
    };
    let (report, written) = tokio::join!(running, reporting);
    drop(listener);
    let missed_end = ctx.ledger.as_ref().and_then(Ledger::missed_end);
    if let Some(why) = &missed_end {
        eprintln!(
            "warning: the ledger missed the end of run `{}`: {why}. The report printed here (and --report) is the run's only full record; `fleetmig report` cannot show it.",
            report.run_id
        );
    }
    // From here on tenants may have changed: an output that fails is reported as such,
    // never as a refusal, and every other output is still written.
    let mut unwritten = written.err().map(|e| ("standard output".to_owned(), e));
    if unwritten.is_none() && format == Format::Text && (report.stop_reason.is_early() || !report.is_success()) {
        // Rows left out must be one command away; when the ledger cannot give them, all of
        // them are printed here.
        let more = format!("{} lists every tenant", report_command(g, &report.run_id));
        let rows = match missed_end {
            None => Rows::Screenful { more: &more },
            Some(_) => Rows::All,
        };
        let grouped = crate::report::refusals::run_text(set, &report);
        if let Err(e) = write!(out, "{}{grouped}", run_report::text(&report, rows)).and_then(|()| out.flush()) {
            unwritten = Some(("standard output".to_owned(), e));
        }
    }
    if let Some(path) = report_path {
        let body = match path.extension().and_then(|e| e.to_str()) {
            Some("md") => run_report::markdown(&report),
            _ => run_report::json(&report),
        };
        if let Err(e) = std::fs::write(path, body) {
            unwritten.get_or_insert((format!("--report `{}`", path.display()), e));
        }
    }
    match unwritten {
        None => Ok(report),
        Some((target, source)) => Err(Error::Unreported {
            run_id: report.run_id.clone(),
            outcome: format!(
                "stop reason: {}; {}",
                report.stop_reason,
                crate::report::text::summary_line(&report.summary).trim_end_matches('.')
            ),
            target,
            kept: if missed_end.is_some() {
                "and the ledger missed its end (see the warning above)".to_owned()
            } else {
                format!("the ledger keeps it: `fleetmig report {}`", report.run_id)
            },
            source,
        }),
    }
}

/// The `report --all` command for a run, with the fleet file this one used; a ledger named
/// on the command line is only mentioned, as its URL may hold a password.
fn report_command(g: &Global, run_id: &str) -> String {
    let mut command = format!("`fleetmig report {run_id} --all");
    if g.fleet != Path::new("tenants.yaml") {
        command.push_str(&format!(" --fleet {}", g.fleet.display()));
    }
    command.push('`');
    if g.ledger.is_some() {
        command.push_str(" (with the same --ledger)");
    }
    command
}

/// `--report FILE` is checked before anything runs, so a run is refused rather than found
/// unreportable after its work. A file the check had to create is removed again.
pub(crate) fn check_report_path(path: &Path) -> Result<(), Error> {
    // Opening a named pipe would wait for a reader, before anything has run.
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "--report `{}`: not a regular file; give a file path for the report",
                path.display()
            )));
        }
    }
    let existed = std::fs::symlink_metadata(path).is_ok();
    match std::fs::OpenOptions::new().append(true).create(true).open(path) {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(Error::Usage(format!(
            "--report `{}`: cannot write the report there: {e}",
            path.display()
        ))),
    }
}

fn plan_command(
    set: &MigrationSet,
    to: Version,
    states: Vec<Inspected<'_>>,
    wave_of: &[usize],
    format: Format,
    verbose: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let mut any_bad = false;
    let rows: Vec<PlanRow> = states
        .into_iter()
        .zip(wave_of.iter().copied())
        .map(|((t, rows), wave)| match rows {
            Err(e) => {
                any_bad = true;
                PlanRow {
                    wave,
                    id: t.id.to_string(),
                    from: None,
                    to: None,
                    steps: vec![],
                    refused: Some(format!("unreachable: {e}")),
                    refusal: None,
                }
            }
            Ok(rows) => {
                let from = plan::version_of(&rows);
                let target = if to >= from {
                    Target::Up { to }
                } else {
                    Target::Down { to }
                };
                match plan::plan(set, &rows, target) {
                    Ok(p) => PlanRow {
                        wave,
                        id: t.id.to_string(),
                        from: Some(p.from),
                        to: Some(p.to),
                        steps: p
                            .steps
                            .iter()
                            .map(|s| match s.direction {
                                crate::model::migration::Direction::Up => s.migration.label(),
                                crate::model::migration::Direction::Down => format!("{} (down)", s.migration.label()),
                            })
                            .collect(),
                        refused: None,
                        refusal: None,
                    },
                    Err(r) => {
                        any_bad = true;
                        PlanRow {
                            wave,
                            id: t.id.to_string(),
                            from: Some(from),
                            to: Some(from),
                            steps: vec![],
                            refused: Some(r.to_string()),
                            refusal: Some(r),
                        }
                    }
                }
            }
        })
        .collect();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::json!({ "target": to, "tenants": rows }))?,
        Format::Text => write!(out, "{}", tables::plan_text(set, &rows, verbose))?,
    }
    Ok(Outcome::Fleet { all_well: !any_bad })
}

async fn status_command(
    g: &Global,
    fleet: &Fleet,
    set: &MigrationSet,
    to: Version,
    states: Vec<Inspected<'_>>,
    lagging: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    use crate::report::status as report;
    let mut status = crate::plan::status::FleetStatus::assess(
        set,
        to,
        states
            .into_iter()
            .map(|(t, rows)| (t.id.to_string(), rows.map_err(|e| e.to_string()))),
    );
    // The ledger only adds since-when and last errors: one that cannot be read is noted,
    // and a missing one is not created.
    let ledger_error = if status.all_current() {
        None
    } else {
        let annotated = match ledger_location(g, fleet) {
            Ok(url) => crate::api::annotate_within(&mut status, &url, g.connect_timeout).await,
            Err(e) => Err(e),
        };
        annotated.err().map(|e| crate::error::render(&e))
    };
    match g.format {
        Format::Json => {
            let doc = report::status_doc(&status, lagging, ledger_error);
            writeln!(out, "{}", serde_json::to_string(&doc).map_err(std::io::Error::other)?)?
        }
        Format::Text => {
            let text = report::status_text(set, &status, lagging, ledger_error.as_deref());
            write!(out, "{text}")?
        }
    }
    Ok(Outcome::Fleet {
        all_well: status.all_current(),
    })
}

fn wait_command(
    outcome: &crate::exec::wait::WaitOutcome,
    format: Format,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    use crate::report::status as report;
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&report::wait_doc(outcome)).map_err(std::io::Error::other)?
        )?,
        Format::Text => write!(out, "{}", report::wait_text(outcome))?,
    }
    Ok(Outcome::Fleet {
        all_well: outcome.arrived,
    })
}
