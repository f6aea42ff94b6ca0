//! Commands on the migrations folder alone: `new`, `history`, `sql`. Only `sql` may read
//! the fleet file, to learn the selected tenants' engine; none connects to a tenant.

use std::io::Write;
use std::time::SystemTime;

use super::exit::Outcome;
use crate::api;
use crate::cli::{EngineArg, Format, Global};
use crate::driver::offline;
use crate::error::Error;
use crate::load::migrations::{self, MigrationsError};
use crate::model::fleet::{Engine, Ident};
use crate::model::migration::{Layout, MigrationSet, Version};
use crate::model::sets::Sets;
use crate::report::tables;

/// `new NAME`: writes the next migration's up and down files, creating the folder.
pub(super) fn new(g: &Global, name: &str, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let source = super::migrations_source(g)?;
    let dir = &source.path;
    let folder_error = |source| Error::Migrations {
        dir: dir.display().to_string(),
        source,
    };
    if !source.engines.is_empty()
        || !crate::load::layouts::engine_folders(dir)
            .map_err(folder_error)?
            .is_empty()
    {
        return Err(Error::Usage(format!(
            "`{}` has a folder per engine: name the one to add to with --migrations",
            dir.display()
        )));
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|source| {
            folder_error(MigrationsError::Write {
                path: dir.clone(),
                source,
            })
        })?;
    }
    let layout = match source.layout {
        Some(layout) => layout,
        None => crate::load::layouts::detect(dir).map_err(folder_error)?,
    };
    if layout != Layout::Fleetmig {
        return Err(folder_error(MigrationsError::ForeignLayout { layout }));
    }
    let set = migrations::load_unwritten(dir).map_err(folder_error)?;
    let (up, down) = migrations::create(dir, &set, name, SystemTime::now()).map_err(folder_error)?;
    writeln!(out, "{}\n{}", up.display(), down.display())?;
    Ok(Outcome::Done)
}

/// `history`: the migration set; the entries that are not migrations counted, or with
/// `verbose` listed one a line (JSON lists them always).
pub(super) fn history(g: &Global, verbose: bool, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let sets = super::load_from(super::migrations_source(g)?)?;
    match (g.format, &sets) {
        (Format::Json, Sets::One(set)) => writeln!(out, "{}", history_json(set))?,
        (Format::Json, Sets::PerEngine(map)) => {
            let engines: serde_json::Map<String, serde_json::Value> =
                map.iter().map(|(e, set)| (e.to_string(), history_json(set))).collect();
            writeln!(out, "{}", serde_json::json!({ "engines": engines }))?
        }
        (Format::Text | Format::Github | Format::Openmetrics, Sets::One(set)) => history_text(set, verbose, out)?,
        (Format::Text | Format::Github | Format::Openmetrics, Sets::PerEngine(map)) => {
            for (k, (engine, set)) in map.iter().enumerate() {
                let dir = set
                    .iter()
                    .next()
                    .and_then(|m| m.path.parent().map(|p| p.display().to_string()));
                let sep = if k > 0 { "\n" } else { "" };
                writeln!(
                    out,
                    "{sep}{engine} ({}):",
                    dir.unwrap_or_else(|| "no migrations".into())
                )?;
                history_text(set, verbose, out)?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// One set's `history --format json`.
fn history_json(set: &MigrationSet) -> serde_json::Value {
    let ignored: Vec<String> = set.ignored().iter().map(|p| p.display().to_string()).collect();
    let repeatables: Vec<serde_json::Value> = set
        .repeatables()
        .iter()
        .map(|r| serde_json::json!({ "name": r.name, "checksum": r.checksum.to_hex(), "path": r.path }))
        .collect();
    serde_json::json!({
        "layout": set.layout(),
        "style": set.style(),
        "migrations": tables::history_rows(set),
        "repeatables": repeatables,
        "ignored": ignored,
    })
}

/// One set's `history` for people; `verbose` lists the entries left alone.
fn history_text(set: &MigrationSet, verbose: bool, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    let ignored: Vec<String> = set.ignored().iter().map(|p| p.display().to_string()).collect();
    write!(out, "{}", tables::history_text(&tables::history_rows(set)))?;
    for r in set.repeatables() {
        writeln!(
            out,
            "Repeatable: {} (`{}`), run again whenever it changes",
            r.name,
            r.path.display()
        )?;
    }
    if set.layout() != Layout::Fleetmig {
        writeln!(out, "Layout: {} (versions: {})", set.layout(), set.style())?;
    }
    match (ignored.len(), verbose) {
        (0, _) => {}
        (_, true) => {
            writeln!(out, "Not migrations, left alone:")?;
            for path in &ignored {
                writeln!(out, "  {path}")?;
            }
        }
        (1, false) => writeln!(out, "1 entry ignored (history --verbose lists it)")?,
        (n, false) => writeln!(out, "{n} entries ignored (history --verbose lists them)")?,
    }
    Ok(())
}

/// `sql`: the script an offline DBA would run from `from` to `to` (else head).
pub(super) async fn sql(
    g: &Global,
    from: Version,
    to: Option<Version>,
    engine: Option<EngineArg>,
    schema: Option<&str>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let sets = super::load_from(super::migrations_source(g)?)?;
    let engine = match engine {
        Some(e) => Engine::from(e),
        None => fleet_engine(g).await?,
    };
    let Some(set) = sets.get(engine) else {
        return Err(Error::Usage(format!("the migrations have no {engine} folder ({sets})")));
    };
    let from = api::check_target(set, from, "--from")?;
    let to = api::check_target(set, to.unwrap_or(Version::HEAD), "--to")?;
    let namespace = schema
        .map(|s| Ident::new(s).map_err(|m| Error::Usage(format!("--schema: {m}"))))
        .transpose()?;
    let script =
        offline::script(engine, set, from, to, namespace.as_ref()).map_err(|r| Error::Refused(r.to_string()))?;
    write!(out, "{script}")?;
    Ok(Outcome::Done)
}

/// The one engine the selected tenants use; several are an error.
async fn fleet_engine(g: &Global) -> Result<Engine, Error> {
    let fleet = super::load_fleet(g).await?;
    let mut engines: Vec<Engine> = api::selected(&fleet, &g.select)?.iter().map(|t| t.engine).collect();
    engines.sort();
    engines.dedup();
    match engines.as_slice() {
        [one] => Ok(*one),
        _ => Err(Error::Usage(
            "the selected tenants use several engines: give --engine".into(),
        )),
    }
}

/// `man`: fleetmig's man page, or with a command name that command's (`fleetmig-up`), as
/// roff on `out`. An unknown command is a usage error naming the known ones.
pub(super) fn man(command: Option<&str>, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    use clap::CommandFactory;
    let mut cli = crate::cli::Cli::command();
    // Global options reach each command's page only once the tree is built.
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub.clone().name(format!("fleetmig-{name}")),
            None => {
                let known: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                return Err(Error::Usage(format!(
                    "man {name}: no such command (known: {})",
                    known.join(", ")
                )));
            }
        },
    };
    clap_mangen::Man::new(page).render(out)?;
    Ok(Outcome::Done)
}

/// `completions`: the shell's completion script on `out`. Written whole from a buffer, so
/// an output closed early (`| head`) is the usual quiet exit, not clap_complete's panic.
pub(super) fn completions(shell: clap_complete::Shell, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::Cli::command(), "fleetmig", &mut script);
    out.write_all(&script)?;
    Ok(Outcome::Done)
}
