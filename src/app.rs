//! Commands: load, plan, run, report. Each command is a short function over `api`; this
//! layer adds only the command line's options, the terminal and rendering. Returns what
//! each came to; `main` prints errors and exits with `exit::code`.

use std::io::Write;
use std::path::Path;

use crate::api::{self, Options};
use crate::cli::{Cli, Command, Global};
use crate::driver::connect::Limits;
use crate::driver::ledger::Ledger;
use crate::error::Error;
use crate::exec::wait::WaitOptions;
use crate::load;
use crate::model::fleet::{Fleet, MigrationsSource};
use crate::model::foreign::{Adoption, MapMisuse, RevisionMap, Tool};
use crate::model::migration::Version;
use crate::model::secret::DbUrl;
use crate::model::sets::Sets;

mod check;
mod checks;
mod drift;
mod execute;
mod fleet;
mod lint;
mod local;
mod notify;
mod past;
mod prompt;
mod resume;
mod shared;
mod signals;

use exit::Outcome;

pub mod exit;

/// The `fleetmig` binary: parses the command line, sets up logging, runs the command and
/// maps its outcome to the process's exit status.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(run(cli, &mut stdout));
    // Tasks still blocked (a `--confirm` read of stdin, a connection to a server that no
    // longer answers) must not keep the process alive once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Err(err @ Error::NothingHere(_)) = &result {
        eprintln!("fleetmig: {err}");
    } else if let Err(err) = &result {
        if !exit::is_closed_output(err) {
            eprintln!("error: {}", crate::error::render(err));
        }
    }
    std::process::ExitCode::from(exit::code(&result))
}

/// Runs a parsed command line, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let g = &cli.global;
    refuse_misuse(&cli)?;
    match &cli.command {
        Command::New { name } => local::new(g, name, out),
        Command::History { verbose } => local::history(g, *verbose, out),
        Command::Sql {
            from,
            to,
            engine,
            schema,
        } => local::sql(g, *from, *to, *engine, schema.as_deref(), out).await,
        Command::Plan {
            to,
            canary,
            waves,
            verbose,
        } => fleet::plan(g, *to, canary, waves, *verbose, out).await,
        Command::Status { .. } => fleet::status(g, &cli.command, out).await,
        Command::Wait { to, timeout, interval } => {
            let wait = WaitOptions {
                timeout: *timeout,
                interval: *interval,
            };
            fleet::wait(g, *to, &wait, out).await
        }
        Command::Up {
            to,
            resume: None,
            rollout,
            together,
            check_migrations,
            lint,
        } if together.is_shared() => shared::up(g, *to, rollout, together, *check_migrations, *lint, out).await,
        Command::Up {
            resume: Some(run),
            rollout,
            ..
        } => resume::up(g, run, rollout, out).await,
        Command::Up {
            to,
            resume: None,
            rollout,
            check_migrations,
            lint,
            ..
        } => execute::up(g, *to, rollout, *check_migrations, *lint, out).await,
        Command::Runs { limit } => past::runs(g, *limit, out).await,
        Command::Report { run, all, html } => past::report(g, run, *all, html.as_deref(), out).await,
        Command::Down { to, steps, rollout } => execute::down(g, *to, *steps, rollout, out).await,
        Command::Stamp { version, checksums } => execute::stamp(g, *version, *checksums, out).await,
        Command::Adopt { from, map, dry_run } => {
            MapMisuse::check(*from, map.is_some()).map_err(|e| Error::Usage(e.to_string()))?;
            match dry_run {
                false => execute::adopt(g, *from, map.as_deref(), out).await,
                true => fleet::adopt_plan(g, *from, map.as_deref(), out).await,
            }
        }
        Command::Check {
            engine,
            from,
            to,
            scratch,
            strict,
        } => {
            let args = check::Args {
                engine: engine.map(Into::into),
                from: *from,
                to: *to,
                scratch,
                strict: *strict,
            };
            check::check(g, &args, out).await
        }
        Command::Completions { shell } => local::completions(*shell, out),
        Command::Man { command } => local::man(command.as_deref(), out),
        Command::Lint { .. } => lint::lint(g, &cli.command, out).await,
        Command::Drift { reference, scratch } => drift::drift(g, reference.as_deref(), scratch, out).await,
    }
}

/// Global flags no command can use: `-j 0`; `--format github` but for `lint`,
/// `--format openmetrics` but for `status`.
fn refuse_misuse(cli: &Cli) -> Result<(), Error> {
    if cli.global.concurrency == 0 {
        return Err(Error::Usage("--concurrency must be at least 1".into()));
    }
    lint::refuse_format(cli)
}

/// The library's options from the global flags: selection, concurrency, time limits, and
/// the version to reach (`None`: head).
fn options(g: &Global, to: Option<Version>) -> Options {
    Options {
        to,
        select: g.select.clone(),
        concurrency: g.concurrency,
        limits: Limits {
            connect_timeout: g.connect_timeout,
            lock_wait: g.lock_wait,
            lock_budget: g.lock_wait,
            lock_timeout: g.lock_timeout,
            statement_timeout: g.statement_timeout,
        },
    }
}

/// The fleet: the file's tenants, then those its `discover:` query finds. A registry that
/// cannot answer is a setup error, like a bad fleet file.
/// The migrations folder and its layout: `--migrations` (and `--layout`,
/// `--out-of-order`), else the fleet file's `migrations:`, else `migrations/`; the layout
/// detected when none is named.
fn migrations_source(g: &Global) -> Result<MigrationsSource, Error> {
    let entry = match g.migrations {
        Some(_) => None,
        None => load::fleet::migrations_entry(&g.fleet)?,
    };
    Ok(resolve_source(g, entry.as_ref()))
}

/// `--migrations`, `--layout` and `--out-of-order` over the fleet file's `migrations:`.
fn resolve_source(g: &Global, entry: Option<&MigrationsSource>) -> MigrationsSource {
    match (&g.migrations, entry) {
        (Some(dir), _) => MigrationsSource {
            path: dir.clone(),
            layout: g.layout,
            out_of_order: g.out_of_order,
            engines: Vec::new(),
        },
        (None, Some(source)) => MigrationsSource {
            path: source.path.clone(),
            layout: g.layout.or(source.layout),
            out_of_order: g.out_of_order || source.out_of_order,
            engines: source.engines.clone(),
        },
        (None, None) => MigrationsSource {
            path: "migrations".into(),
            layout: g.layout,
            out_of_order: g.out_of_order,
            engines: Vec::new(),
        },
    }
}

/// The migration set a run applies, for the ledger: its fingerprint, and the git commit of
/// the migrations folder when it is in a work tree.
fn run_source(g: &Global, fleet: &Fleet, sets: &Sets) -> crate::model::record::RunSource {
    let dir = resolve_source(g, fleet.migrations.as_ref()).path;
    let git = load::source::git_commit(&dir);
    crate::model::record::RunSource {
        fingerprint: sets.fingerprint(),
        git_dirty: git.as_ref().is_some_and(|(_, dirty)| *dirty),
        git_commit: git.map(|(commit, _)| commit),
    }
}

/// The migration sets of a command that has loaded the fleet: its `migrations:` as read
/// with it, the fleet file not read a second time; with a set per engine, those of the
/// selected tenants' engines. A selected tenant whose engine has no folder is an error,
/// before anything runs.
fn load_set_of(g: &Global, fleet: &Fleet) -> Result<Sets, Error> {
    let sets = load_from(resolve_source(g, fleet.migrations.as_ref()))?;
    if sets.single().is_some() {
        return Ok(sets);
    }
    let tenants = api::selected(fleet, &g.select)?;
    sets.covers(tenants.iter().copied())
        .map_err(|e| Error::Usage(e.to_string()))?;
    Ok(sets.narrowed(tenants.into_iter()))
}

/// The sets `source` names: its folder (of migrations, or of a folder per engine), or the
/// fleet file's folder per engine.
fn load_from(source: MigrationsSource) -> Result<Sets, Error> {
    let folder_error = |dir: &Path| {
        let dir = dir.display().to_string();
        move |source| Error::Migrations { dir, source }
    };
    let sets = if source.engines.is_empty() {
        load::migrations::load_sets(&source.path, source.layout).map_err(folder_error(&source.path))?
    } else {
        let mut map = std::collections::BTreeMap::new();
        for (engine, dir, layout) in &source.engines {
            let set = load::migrations::load_in(dir, source.layout.or(*layout)).map_err(folder_error(dir))?;
            map.insert(*engine, set);
        }
        Sets::PerEngine(map)
    };
    Ok(sets.with_out_of_order(source.out_of_order))
}

/// `adopt --map FILE`'s revision map, its versions read in the set's style; `None` without
/// `--map` (checked against `--from` before anything is loaded).
fn revision_map(map: Option<&Path>, sets: &Sets) -> Result<Option<RevisionMap>, Error> {
    let Some(path) = map else { return Ok(None) };
    // One style reads the map: with a folder per engine, theirs must agree.
    let mut styles: Vec<_> = sets.iter().map(|(_, s)| s.style()).collect();
    styles.dedup();
    let [style] = styles[..] else {
        return Err(Error::Usage(format!(
            "--map: the selected tenants' engine folders write versions differently ({sets}); select one engine's tenants"
        )));
    };
    Ok(Some(load::fleet::revision_map(path, style)?))
}

/// What `adopt` reads: `tool`'s table, through `map` for Alembic.
fn adoption(tool: Tool, map: Option<&RevisionMap>) -> Result<Adoption<'_>, Error> {
    Adoption::new(tool, map).map_err(|e| Error::Usage(e.to_string()))
}

/// The fleet file, with only `--partition`'s share of its tenants when one is given.
async fn load_fleet(g: &Global) -> Result<Fleet, Error> {
    let mut fleet = load_whole_fleet(g).await?;
    if let Some(partition) = g.partition {
        let all = fleet.tenants.len();
        fleet.tenants.retain(|t| partition.holds(t));
        if fleet.tenants.is_empty() {
            return Err(Error::NothingHere(format!(
                "--partition {partition}: this share holds none of the fleet's {all} tenant(s); nothing to do"
            )));
        }
    }
    Ok(fleet)
}

/// The fleet file with all its tenants, whatever `--partition` says.
async fn load_whole_fleet(g: &Global) -> Result<Fleet, Error> {
    api::load_fleet(&g.fleet, g.connect_timeout).await
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
