//! `check`: which engines, on which scratch servers, then the walk and its report.

use std::io::Write;
use std::path::Path;

use super::exit::Outcome;
use crate::cli::{Format, Global};
use crate::error::Error;
use crate::exec::check::{CheckOptions, Scratch};
use crate::model::fleet::{Engine, Fleet, Tenant};
use crate::model::migration::Version;
use crate::model::secret::DbUrl;
use crate::model::sets::Sets;

/// `check`'s own arguments.
pub(super) struct Args<'a> {
    pub engine: Option<Engine>,
    pub from: Option<Version>,
    pub to: Option<Version>,
    /// `--scratch` URLs, as given.
    pub scratch: &'a [String],
    pub strict: bool,
}

/// `check`: walks each engine's migrations on a scratch target and reports the verdicts.
pub(super) async fn check(g: &Global, args: &Args<'_>, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    // A fresh clone with only migrations and `--engine` needs no fleet file.
    let fleet = match (args.engine, g.fleet.exists()) {
        (Some(_), false) => None,
        _ => Some(super::load_fleet(g).await?),
    };
    let sets = super::load_from(super::resolve_source(
        g,
        fleet.as_ref().and_then(|f| f.migrations.as_ref()),
    ))?;
    let tenants: Vec<&Tenant> = match &fleet {
        Some(f) => crate::api::selected(f, &g.select)?,
        None => Vec::new(),
    };
    let servers = servers(args.scratch, fleet.as_ref())?;
    let scratches = scratch_of(engines(args.engine, &tenants, &sets)?, &servers, &tenants);
    let options = CheckOptions {
        from: args.from,
        to: args.to,
        strict: args.strict,
        limits: super::options(g, None).limits,
    };
    let (mut interrupts, _listening) = super::signals::listen();
    let report = crate::exec::check::check(&scratches, &sets, &options, &mut interrupts).await;
    match g.format {
        Format::Json => writeln!(out, "{}", crate::report::check::json(&report))?,
        Format::Text | Format::Github | Format::Openmetrics => write!(out, "{}", crate::report::check::text(&report))?,
    }
    Ok(Outcome::Fleet {
        all_well: report.passes(),
    })
}

/// `up --check-migrations` (or `rollout: check_migrations: true`): `check` over the
/// pending migrations of the selected tenants' engines, from the lowest version any of
/// them is at up to the run's target, on the fleet file's `scratch:` servers. A failure
/// refuses the run before any tenant is touched.
pub(super) async fn before_up(
    g: &Global,
    fleet: &Fleet,
    sets: &Sets,
    tenants: &[&Tenant],
    states: &[crate::exec::run::Inspected<'_>],
    to: Version,
) -> Result<(), Error> {
    let opts = super::options(g, None);
    let mut failures = Vec::new();
    let (mut interrupts, _listening) = super::signals::listen();
    for engine in engines(None, tenants, sets)? {
        let lowest = states
            .iter()
            .filter(|(t, _)| t.engine == engine)
            .map(|(_, rows)| match rows {
                Ok(rows) => rows.iter().map(|r| r.version).max().unwrap_or(Version::ZERO),
                Err(_) => Version::ZERO,
            })
            .min()
            .unwrap_or(Version::ZERO);
        let scratch = scratch_of([engine], &fleet.scratch, tenants).remove(0);
        let options = CheckOptions {
            from: Some(lowest),
            to: Some(sets.resolve(engine, to)),
            strict: false,
            limits: opts.limits.clone(),
        };
        let report = crate::exec::check::check(&[scratch], sets, &options, &mut interrupts).await;
        failures.extend(crate::report::check::failures(&report));
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(Error::Refused(format!(
            "--check-migrations: {} (`fleetmig check` shows the whole report)",
            failures.join("; ")
        ))),
    }
}

/// The engines to check: `--engine`, else those of the selected tenants, else those with
/// a folder of their own, else SQLite (which needs no server).
fn engines(engine: Option<Engine>, tenants: &[&Tenant], sets: &Sets) -> Result<Vec<Engine>, Error> {
    if let Some(engine) = engine {
        if sets.get(engine).is_none() {
            return Err(Error::Usage(format!(
                "--engine {engine}: the migrations have no {engine} folder"
            )));
        }
        return Ok(vec![engine]);
    }
    let mut out: Vec<Engine> = tenants.iter().map(|t| t.engine).collect();
    if out.is_empty() {
        out = sets.iter().filter_map(|(e, _)| e).collect();
    }
    if out.is_empty() {
        out.push(Engine::Sqlite);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The scratch servers: `--scratch` URLs, else the fleet file's `scratch:`.
pub(super) fn servers(given: &[String], fleet: Option<&Fleet>) -> Result<Vec<(Engine, DbUrl)>, Error> {
    if given.is_empty() {
        return Ok(fleet.map(|f| f.scratch.clone()).unwrap_or_default());
    }
    given
        .iter()
        .map(|text| {
            crate::load::fleet::scratch_url(text, Path::new(".")).map_err(|e| Error::Usage(format!("--scratch: {e}")))
        })
        .collect()
}

/// Where each of `engines` is checked: its server among `servers`, and the first of
/// `tenants` on it as the template (session setup, schema).
pub(super) fn scratch_of(
    engines: impl IntoIterator<Item = Engine>,
    servers: &[(Engine, DbUrl)],
    tenants: &[&Tenant],
) -> Vec<Scratch> {
    engines
        .into_iter()
        .map(|engine| Scratch {
            engine,
            server: servers.iter().find(|(e, _)| *e == engine).map(|(_, u)| u.clone()),
            template: tenants.iter().find(|t| t.engine == engine).map(|t| (*t).clone()),
        })
        .collect()
}
