//! Refusals before a run touches anything: a `--report` file that cannot be written, a
//! `--tx per-tenant` that cannot hold, a `down` past a migration without a down script or
//! to version 0 unconfirmed, a `history_compat` tool that cannot record the set's versions.

use std::path::{Path, PathBuf};

use super::prompt::{ask_yes, can_confirm};
use crate::api::{self, Options};
use crate::error::Error;
use crate::exec::run::Inspected;
use crate::exec::tenant::Action;
use crate::model::fleet::{Fleet, Tenant};
use crate::model::migration::{Applied, Direction, Migration, Version, VersionStyle};
use crate::model::refusal::Refusal;
use crate::model::sets::Sets;
use crate::plan::tenant::{self as plan, Target};

/// What every check reads: the migrations, the fleet, the options and the tenants.
pub(super) struct Scope<'a, 'f> {
    pub sets: &'a Sets,
    pub fleet: &'f Fleet,
    pub opts: &'a Options,
    pub tenants: &'a [&'f Tenant],
}

impl Scope<'_, '_> {
    /// What `target` would run on tenant `t`, whose history is `rows`.
    fn plan<'s>(&'s self, t: &Tenant, rows: &[Applied], target: Target) -> Result<plan::TenantPlan<'s>, Refusal> {
        let target = target.map(|v| self.sets.resolve(t.engine, v));
        plan::plan(self.sets.of(t.engine), rows, target)
    }
}

/// `--report FILE` is checked before anything runs, so a run is refused rather than found
/// unreportable after its work. A file the check had to create is removed again.
pub(super) fn check_report_path(path: &Path) -> Result<(), Error> {
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

/// `history_compat: sqlx` and `golang-migrate` record whole-number versions: a set of
/// dotted or text versions is refused before anything runs, naming the first tenant.
pub(super) fn check_history_compat(sets: &Sets, fleet: &Fleet, tenants: &[&Tenant]) -> Result<(), Error> {
    let Some((tenant, tool, style)) = tenants.iter().find_map(|t| {
        let style = sets.of(t.engine).style();
        t.history_compat
            .filter(|tool| tool.whole_numbers() && style != VersionStyle::Integer)
            .map(|tool| (t, tool, style))
    }) else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "fleet file `{}`: tenant `{}` history_compat: {tool} records whole-number versions only, and the migrations' versions are {style}",
        fleet.path.display(),
        tenant.id,
    )))
}

/// `--tx per-tenant` needs transactional DDL, and no step a tenant would run marked
/// `no-transaction`. Only steps still to run matter: a no-transaction migration a tenant
/// applied long ago does not stand in the way. When the set has such a migration within
/// reach, each tenant's history is read to tell; the first tenant that would run one is
/// named, with the migration, and nothing runs.
pub(super) async fn check_per_tenant_tx(s: &Scope<'_, '_>, action: Action<'_>) -> Result<(), Error> {
    if let Some(t) = s.tenants.iter().find(|t| !t.engine.has_transactional_ddl()) {
        return Err(Error::Usage(format!(
            "--tx per-tenant: tenant `{}` is on MySQL, which commits DDL implicitly; use PostgreSQL or SQLite tenants, or --tx per-migration",
            t.id
        )));
    }
    let Action::Migrate(target) = action else { return Ok(()) };
    let in_reach = match target {
        Target::Up { to } => s.sets.iter().any(|(engine, set)| {
            let to = engine.map_or(to, |e| s.sets.resolve(e, to));
            set.iter().any(|m| m.version <= to && !m.up.transactional)
        }),
        Target::Down { .. } | Target::DownSteps { .. } => s
            .sets
            .any_migration(|_, m| m.down.as_ref().is_some_and(|d| !d.transactional)),
    };
    if !in_reach {
        return Ok(());
    }
    // A tenant that cannot be read or is refused is skipped by the run; should it come
    // back in between, its one transaction refuses the step (see `exec::tenant`).
    for (tenant, rows) in api::inspect(s.fleet, s.sets, s.opts, s.tenants).await {
        let Ok(rows) = rows else { continue };
        let Ok(p) = s.plan(tenant, &rows, target) else {
            continue;
        };
        let step = p.steps.iter().find(|step| {
            step.migration
                .script(step.direction)
                .is_some_and(|script| !script.transactional)
        });
        if let Some(step) = step {
            return Err(Error::Usage(format!(
                "--tx per-tenant: tenant `{}` would run migration {} (`{}`), which is marked `-- fleetmig: no-transaction` and cannot join a tenant's transaction; use --tx per-migration, or take that tenant past it first",
                tenant.id,
                step.migration.version,
                script_path(step.migration, step.direction).display()
            )));
        }
    }
    Ok(())
}

/// The file of a migration's script in `direction`: its down script sits beside its up
/// script, named alike.
fn script_path(m: &Migration, direction: Direction) -> PathBuf {
    let up = &m.path;
    match (direction, up.file_name().and_then(|n| n.to_str())) {
        (Direction::Down, Some(name)) => match name.strip_suffix(".up.sql") {
            Some(stem) => up.with_file_name(format!("{stem}.down.sql")),
            None => up.clone(),
        },
        _ => up.clone(),
    }
}

/// The tenants' histories `down`'s checks need, read once for both: none when `--to`
/// with `--yes` (the set alone says what is irreversible, and nothing is asked).
pub(super) async fn read_for_down<'t>(s: &Scope<'_, 't>, target: Target, yes: bool) -> Vec<Inspected<'t>> {
    if matches!(target, Target::Down { .. }) && yes {
        return Vec::new();
    }
    api::inspect(s.fleet, s.sets, s.opts, s.tenants).await
}

/// `down --to` refuses before anything is read when a migration past `to` has no down
/// script (in any engine's set).
pub(super) fn refuse_irreversible_past(sets: &Sets, target: Target) -> Result<(), Error> {
    let Target::Down { to } = target else { return Ok(()) };
    for (engine, set) in sets.iter() {
        let to = engine.map_or(to, |e| sets.resolve(e, to));
        if let Some(m) = set.iter().find(|m| m.version > to && !m.is_reversible()) {
            let refusal = m.irreversible();
            return Err(Error::Refused(format!("down --to {to}: {refusal}")));
        }
    }
    Ok(())
}

/// `down --steps` refuses before anything runs when any tenant would pass a migration
/// without a down script; `states`: the tenants' histories (see [`read_for_down`]).
pub(super) fn refuse_irreversible(s: &Scope<'_, '_>, target: Target, states: &[Inspected<'_>]) -> Result<(), Error> {
    if !matches!(target, Target::DownSteps { .. }) {
        return Ok(());
    }
    for (tenant, rows) in states {
        if let Ok(rows) = rows {
            if let Err(r @ Refusal::Irreversible { .. }) = s.plan(tenant, rows, target) {
                return Err(Error::Refused(format!("tenant `{}`: {r}", tenant.id)));
            }
        }
    }
    Ok(())
}

/// A `down` that would revert every migration a tenant has (to version 0) goes on only when
/// the operator says so: asked on a terminal, else with `--yes`. Refused otherwise, naming
/// the tenants, before anything runs.
pub(super) async fn confirm_down_to_zero(
    s: &Scope<'_, '_>,
    target: Target,
    yes: bool,
    states: &[Inspected<'_>],
) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    let to_zero: Vec<String> = states
        .iter()
        .filter(|(t, rows)| match rows {
            Ok(rows) => s
                .plan(t, rows, target)
                .is_ok_and(|p| p.to == Version::ZERO && !p.steps.is_empty()),
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
    if ask_yes(format!("{what}. Go on? [y/N] ")).await {
        Ok(())
    } else {
        Err(Error::Refused("down to version 0 not confirmed".into()))
    }
}
