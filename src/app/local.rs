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
use crate::model::migration::Version;
use crate::report::tables;

/// `new NAME`: writes the next migration's up and down files, creating the folder.
pub(super) fn new(g: &Global, name: &str, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let folder_error = |source| Error::Migrations {
        dir: g.migrations.display().to_string(),
        source,
    };
    if !g.migrations.exists() {
        std::fs::create_dir_all(&g.migrations).map_err(|source| {
            folder_error(MigrationsError::Write {
                path: g.migrations.clone(),
                source,
            })
        })?;
    }
    let set = migrations::load_unwritten(&g.migrations).map_err(folder_error)?;
    let (up, down) = migrations::create(&g.migrations, &set, name, SystemTime::now()).map_err(folder_error)?;
    writeln!(out, "{}\n{}", up.display(), down.display())?;
    Ok(Outcome::Done)
}

/// `history`: the migration set.
pub(super) fn history(g: &Global, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let set = api::load_migrations(&g.migrations)?;
    let rows = tables::history_rows(&set);
    match g.format {
        Format::Json => writeln!(out, "{}", serde_json::json!({ "migrations": rows }))?,
        Format::Text => write!(out, "{}", tables::history_text(&rows))?,
    }
    Ok(Outcome::Done)
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
    let set = api::load_migrations(&g.migrations)?;
    let from = api::check_target(&set, from, "--from")?;
    let to = api::target(&set, to)?;
    let engine = match engine {
        Some(e) => Engine::from(e),
        None => fleet_engine(g).await?,
    };
    let namespace = schema
        .map(|s| Ident::new(s).map_err(|m| Error::Usage(format!("--schema: {m}"))))
        .transpose()?;
    let script =
        offline::script(engine, &set, from, to, namespace.as_ref()).map_err(|r| Error::Refused(r.to_string()))?;
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
