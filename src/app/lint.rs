//! `lint`: which files (the fleet's pending migrations, or FILES), the survey that counts
//! where each finding will run, and the report; and the lint `plan` and `up` run first.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::exit::Outcome;
use crate::cli::{Cli, Command, Format, Global};
use crate::error::Error;
use crate::exec::run::Inspected;
use crate::model::fleet::{Engine, Fleet, Tenant};
use crate::model::lint::{LintMode, LintReport, Linted, Reach, Severity};
use crate::model::migration::{Script, Version};
use crate::model::sets::Sets;
use crate::plan::lint::{self, Context, Source, Surveyed};

/// `lint`'s own arguments.
struct Args<'a> {
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub engine: Option<Engine>,
    pub deny_warnings: bool,
    pub files: &'a [PathBuf],
}

/// `--format github` is `lint`'s alone, `--format openmetrics` `status`'s.
pub(super) fn refuse_format(cli: &Cli) -> Result<(), Error> {
    match (cli.global.format, &cli.command) {
        (Format::Github, Command::Lint { .. })
        | (Format::Openmetrics, Command::Status { .. })
        | (Format::Text | Format::Json, _) => Ok(()),
        (Format::Github, _) => Err(Error::Usage(
            "--format github: only `lint` writes GitHub annotations".into(),
        )),
        (Format::Openmetrics, _) => Err(Error::Usage(
            "--format openmetrics: only `status` writes OpenMetrics (`up` and `down` have --metrics-file)".into(),
        )),
    }
}

/// `lint`: the findings, and exit 1 when one fails the lint.
pub(super) async fn lint(g: &Global, command: &Command, out: &mut (dyn Write + Send)) -> Result<Outcome, Error> {
    let Command::Lint {
        from,
        to,
        engine,
        deny_warnings,
        files: paths,
    } = command
    else {
        return Ok(Outcome::Done);
    };
    let args = &Args {
        from: *from,
        to: *to,
        engine: engine.map(Into::into),
        deny_warnings: *deny_warnings,
        files: paths,
    };
    let report = match args.files.is_empty() {
        true => pending(g, args).await?,
        false => files(g, args).await?,
    };
    match g.format {
        Format::Text | Format::Openmetrics => write!(out, "{}", crate::report::lint::text(&report))?,
        Format::Json => writeln!(out, "{}", crate::report::lint::json(&report))?,
        Format::Github => write!(out, "{}", crate::report::lint::github(&report))?,
    }
    Ok(Outcome::Fleet {
        all_well: report.passes(args.deny_warnings),
    })
}

/// Without FILES: the selected tenants' pending migrations (or all above `--from`).
async fn pending(g: &Global, args: &Args<'_>) -> Result<LintReport, Error> {
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    let tenants = crate::api::selected(&fleet, &g.select)?;
    let to = crate::api::target(&sets, args.to)?;
    let states = crate::api::inspect(&fleet, &sets, &super::options(g, None), &tenants).await;
    let range = Range { from: args.from, to };
    Ok(lint_pending(g, &fleet, &sets, &states, range))
}

/// Which migrations to lint: above `from` when given, else those a tenant lacks (any, for
/// a tenant whose history could not be read); up to `to`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub from: Option<Version>,
    pub to: Version,
}

/// The lint of the migrations in `range` of each selected engine's set, each finding
/// counted against the survey `states`.
pub(super) fn lint_pending(
    g: &Global,
    fleet: &Fleet,
    sets: &Sets,
    states: &[Inspected<'_>],
    range: Range,
) -> LintReport {
    let surveyed = surveyed(states);
    let mut engines: Vec<Engine> = states.iter().map(|(t, _)| t.engine).collect();
    engines.sort();
    engines.dedup();
    let mut report = LintReport {
        unsurveyed: surveyed.iter().filter(|s| s.applied.is_none()).count(),
        ..LintReport::default()
    };
    for engine in engines {
        let Some(set) = sets.get(engine) else { continue };
        let to = sets.resolve(engine, range.to);
        let of_engine = |s: &&Surveyed<'_>| s.tenant.engine == engine;
        let lacking = |v: Version| {
            surveyed
                .iter()
                .filter(of_engine)
                .any(|s| s.applied.as_ref().is_none_or(|a| !a.contains(&v)))
        };
        let wanted = |v: Version| v <= to && range.from.map_or_else(|| lacking(v), |from| v > from);
        report.files += set.iter().filter(|m| wanted(m.version)).count();
        for finding in lint::lint_set(engine, set, wanted) {
            let version = finding.version.unwrap_or(Version::ZERO);
            let reach = lint::reach(Some(engine), version, &surveyed, g.concurrency, &fleet.hosts);
            report.findings.push(Linted { finding, reach });
        }
    }
    report
}

/// With FILES: those files, for `--engine` or the fleet's one engine. A file that is one
/// of the fleet's migrations is linted as `lint` lints pending ones (against the set
/// before it, with its tenants counted); any other against the files given before it,
/// with no counts.
async fn files(g: &Global, args: &Args<'_>) -> Result<LintReport, Error> {
    let fleet = match g.fleet.exists() {
        true => Some(super::load_fleet(g).await?),
        false => None,
    };
    let engine = match (args.engine, &fleet) {
        (Some(engine), _) => engine,
        (None, Some(fleet)) => fleet_engine(g, fleet)?,
        (None, None) => {
            return Err(Error::Usage(format!(
                "lint FILES: give --engine postgres, mysql or sqlite (no fleet file `{}` to take it from)",
                g.fleet.display()
            )));
        }
    };
    let (mut report, known) = match &fleet {
        Some(fleet) => known_files(g, fleet, engine, args.files).await?,
        None => (LintReport::default(), Vec::new()),
    };
    let why = match fleet {
        Some(_) => "not one of the fleet's migrations",
        None => "no fleet file: the fleet was not surveyed",
    };
    let mut context = Context::default();
    for path in args.files.iter().filter(|p| !is_migration(&known, p)) {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("reading `{}`: {e}", path.display())))?;
        let script = Script::new(text);
        let source = Source {
            path,
            version: None,
            text: &script.sql,
            transactional: script.transactional,
        };
        report.files += 1;
        for finding in lint::lint_file(engine, &source, &mut context) {
            let reach = Reach::Unknown { why: why.into() };
            report.findings.push(Linted { finding, reach });
        }
    }
    Ok(report)
}

/// The lint of the FILES that are `engine`'s migrations in the fleet's folder, counted
/// against a survey of the selected tenants, and the paths of those migrations.
async fn known_files(
    g: &Global,
    fleet: &Fleet,
    engine: Engine,
    paths: &[PathBuf],
) -> Result<(LintReport, Vec<PathBuf>), Error> {
    let none = || Ok((LintReport::default(), Vec::new()));
    let source = super::resolve_source(g, fleet.migrations.as_ref());
    if !source.path.is_dir() && source.engines.is_empty() {
        return none();
    }
    let sets = super::load_set_of(g, fleet)?;
    let Some(set) = sets.get(engine) else { return none() };
    let given: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let versions: Vec<Version> = set
        .iter()
        .filter(|m| m.path.canonicalize().is_ok_and(|c| given.contains(&c)))
        .map(|m| m.version)
        .collect();
    if versions.is_empty() {
        return none();
    }
    let tenants: Vec<&Tenant> = crate::api::selected(fleet, &g.select)?
        .into_iter()
        .filter(|t| t.engine == engine)
        .collect();
    let states = crate::api::inspect(fleet, &sets, &super::options(g, None), &tenants).await;
    let surveyed = surveyed(&states);
    let mut report = LintReport {
        files: versions.len(),
        unsurveyed: surveyed.iter().filter(|s| s.applied.is_none()).count(),
        ..LintReport::default()
    };
    for finding in lint::lint_set(engine, set, |v| versions.contains(&v)) {
        let version = finding.version.unwrap_or(Version::ZERO);
        let reach = lint::reach(Some(engine), version, &surveyed, g.concurrency, &fleet.hosts);
        report.findings.push(Linted { finding, reach });
    }
    let known = set
        .iter()
        .filter(|m| versions.contains(&m.version))
        .map(|m| m.path.clone())
        .collect();
    Ok((report, known))
}

fn is_migration(known: &[PathBuf], path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else { return false };
    known.iter().any(|k| k.canonicalize().is_ok_and(|k| k == path))
}

fn surveyed<'t>(states: &[Inspected<'t>]) -> Vec<Surveyed<'t>> {
    states
        .iter()
        .map(|(t, rows)| Surveyed {
            tenant: t,
            applied: rows.as_ref().ok().map(|r| r.iter().map(|a| a.version).collect()),
        })
        .collect()
}

/// The one engine of the selected tenants, else an error that names the choice.
fn fleet_engine(g: &Global, fleet: &Fleet) -> Result<Engine, Error> {
    let mut engines: Vec<Engine> = crate::api::selected(fleet, &g.select)?
        .iter()
        .map(|t| t.engine)
        .collect();
    engines.sort();
    engines.dedup();
    match engines[..] {
        [one] => Ok(one),
        _ => Err(Error::Usage(format!(
            "lint FILES: the selected tenants run {}: give --engine (postgres, mysql or sqlite), or --select one engine's tenants",
            engines.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

/// `plan`'s and `up`'s lint of what they will run, for people: the findings not allowed
/// (with `off`, only the errors, which refuse the run whatever the mode).
pub(super) fn show(report: &LintReport, mode: LintMode, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let shown: Vec<&Linted> = report
        .findings
        .iter()
        .filter(|l| l.finding.is_live())
        .filter(|l| mode != LintMode::Off || l.finding.rule.severity() == Severity::Error)
        .collect();
    for l in &shown {
        write!(out, "{}", crate::report::lint::finding_text(l))?;
    }
    if !shown.is_empty() {
        writeln!(out, "{}", crate::report::lint::summary(report))?;
    }
    Ok(())
}

/// Refuses `command` when an error-severity finding is not allowed (whatever `mode`: it
/// would fail on every tenant), or, with `deny`, when any finding is not allowed.
pub(super) fn refuse(report: &LintReport, mode: LintMode, command: &str) -> Result<(), Error> {
    let errors: Vec<String> = report
        .errors()
        .map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.rule.id()))
        .collect();
    if !errors.is_empty() {
        return Err(Error::Refused(format!(
            "{command}: lint error(s) that would fail on every tenant: {} (fix them, or allow one with `-- fleetmig: allow <rule-id> <reason>`)",
            errors.join(", ")
        )));
    }
    let live = report.live().count();
    if mode == LintMode::Deny && live > 0 {
        return Err(Error::Refused(format!(
            "{command} --lint deny: {live} lint finding(s) not allowed (`fleetmig lint` lists them)"
        )));
    }
    Ok(())
}

/// Whether linting every migration up to `to` of the tenants' engines finds anything not
/// allowed. When it does not, linting only the pending ones (a subset, linted in the same
/// context) shows and refuses nothing either, so `up` need not read every tenant's history
/// for it: at 100,000 SQLite tenants that read was a second pass over every file.
pub(super) fn any_live(sets: &Sets, tenants: &[&Tenant], to: Version) -> bool {
    let mut engines: Vec<Engine> = tenants.iter().map(|t| t.engine).collect();
    engines.sort();
    engines.dedup();
    engines.into_iter().any(|engine| {
        let Some(set) = sets.get(engine) else { return false };
        let to = sets.resolve(engine, to);
        lint::lint_set(engine, set, |v| v <= to).iter().any(|f| f.is_live())
    })
}

/// `up`'s lint before wave 1, over the selected tenants' pending migrations up to `to`:
/// shown on stderr, then [`refuse`]d.
pub(super) fn before_up(
    g: &Global,
    fleet: &Fleet,
    sets: &Sets,
    states: &[Inspected<'_>],
    to: Version,
    mode: LintMode,
) -> Result<(), Error> {
    let report = lint_pending(g, fleet, sets, states, Range { from: None, to });
    // Standard output is the run's (its lines, or JSON Lines): the findings go to stderr.
    show(&report, mode, &mut std::io::stderr())?;
    refuse(&report, mode, "up")
}
