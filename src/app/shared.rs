//! `up --shared` and `up --join RUN`: set up a run several runners work on together (the
//! claim loop itself is `exec::join`).

use std::io::Write;
use std::time::Duration;

use super::checks::check_report_path;
use super::execute::{Record, Resume, RunArgs, execute};
use super::exit::Outcome;
use super::open_ledger;
use crate::api;
use crate::cli::{Global, Rollout, Together};
use crate::driver::ledger::{Ledger, runner};
use crate::error::Error;
use crate::exec::join::Shared;
use crate::exec::tenant::Action;
use crate::model::fleet::Fleet;
use crate::model::lint::LintMode;
use crate::model::migration::Version;
use crate::model::policy::MaxFailures;
use crate::model::sets::Sets;
use crate::plan::tenant::Target;
use crate::plan::waves::Wave;

/// Gates that need one runner to stand between waves; a shared run refuses them.
fn refuse_gates(r: &Rollout) -> Result<(), Error> {
    let given = [
        (r.check.is_some(), "--check"),
        (r.bake.is_some(), "--bake"),
        (r.confirm, "--confirm"),
        (r.pause_after.is_some(), "--pause-after"),
    ];
    match given.iter().find(|(on, _)| *on) {
        Some((_, flag)) => Err(Error::Usage(format!(
            "{flag} is not supported with --shared or --join: several runners have no one point between waves to hold it"
        ))),
        None => Ok(()),
    }
}

/// The fleet file's gates, refused as the flags are: `--shared` reads the file's `rollout:`
/// defaults like any run, and a joining runner must not hold a gate its peers skip.
fn refuse_file_gates(fleet: &Fleet) -> Result<(), Error> {
    let given = [
        (fleet.rollout.check.is_some(), "check"),
        (fleet.rollout.bake.is_some(), "bake"),
    ];
    match given.iter().find(|(on, _)| *on) {
        Some((_, key)) => Err(Error::Usage(format!(
            "the fleet file `{}` sets rollout.{key}, which is not supported with --shared or --join: \
             several runners have no one point between waves to hold it; remove it from the file \
             for shared runs, or run without --shared",
            fleet.path.display()
        ))),
        None => Ok(()),
    }
}

/// A shared run as this runner takes part in it.
struct Taken<'f> {
    run_id: String,
    waves: Vec<Wave<'f>>,
    to: Version,
    max_failures: MaxFailures,
}

/// `up --shared` or `up --join RUN`: creates the shared run, or joins it, then claims its
/// tenants from the ledger until none is left.
pub(super) async fn up(
    g: &Global,
    to: Option<Version>,
    rollout: &Rollout,
    together: &Together,
    check_migrations: bool,
    lint: Option<LintMode>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    refuse_gates(rollout)?;
    if let Some(path) = &rollout.report {
        check_report_path(path)?;
    }
    if together.lease < Duration::from_secs(1) {
        return Err(Error::Usage("--lease must be at least 1s".into()));
    }
    let fleet = super::load_fleet(g).await?;
    let sets = super::load_set_of(g, &fleet)?;
    refuse_file_gates(&fleet)?;
    let ledger = open_ledger(g, &fleet).await?;
    ledger.prepare_sharing().await?;
    let (tenants, to, record) = match &together.join {
        Some(run_id) => {
            let taken = join(g, &sets, &fleet, &ledger, run_id).await?;
            let tenants: Vec<_> = taken.waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
            let shared = Shared {
                lease: together.lease,
                max_failures: taken.max_failures,
                total: tenants.len(),
                owner: runner(),
            };
            let resume = Resume {
                run_id: taken.run_id,
                waves: taken.waves,
                ledger,
                shared: Some(shared),
            };
            (tenants, taken.to, Record::Taken(resume))
        }
        // Planned and checked as `up` plans a run, then recorded for every runner.
        None => {
            let tenants = api::selected(&fleet, &g.select)?;
            let to = api::target(&sets, to)?;
            let lint = lint.or(fleet.rollout.lint).unwrap_or_default();
            super::execute::before_wave_1(g, &fleet, &sets, &tenants, to, lint, check_migrations).await?;
            let lease = together.lease;
            (tenants, to, Record::NewShared { ledger, lease })
        }
    };
    let args = RunArgs {
        tenants,
        action: Action::Migrate(Target::Up { to }),
        command: "up",
        rollout: Some(rollout),
        record,
    };
    execute(g, &fleet, &sets, args, out).await
}

/// `--join RUN`: the shared run's target, waves and failure limit, as its creator recorded them.
async fn join<'f>(
    g: &Global,
    sets: &Sets,
    fleet: &'f Fleet,
    ledger: &Ledger,
    run_id: &str,
) -> Result<Taken<'f>, Error> {
    if !g.select.is_empty() {
        return Err(Error::Usage(
            "--join works on the run's own tenants: drop --select".into(),
        ));
    }
    let plan = ledger
        .plan(run_id)
        .await?
        .ok_or_else(|| Error::Usage(format!("the ledger holds no run `{run_id}`")))?;
    let Some(limit) = ledger.shared_limit(run_id).await? else {
        return Err(Error::Usage(format!(
            "run `{run_id}` was not started with --shared; continue it with `up --resume {run_id}`"
        )));
    };
    if plan.command != "up" {
        return Err(Error::Usage(format!(
            "run `{run_id}` was a `{}`; only `up` runs are shared",
            plan.command
        )));
    }
    let max_failures = limit.parse::<MaxFailures>().map_err(|e| Error::Usage(e.to_string()))?;
    let to = api::check_targets(sets, plan.target, "--join: the run's target")?;
    let waves = api::recorded_waves(fleet, &plan, |id| {
        Error::Usage(format!(
            "run `{run_id}` includes tenant `{id}`, which the fleet file does not list"
        ))
    })?;
    Ok(Taken {
        run_id: run_id.to_owned(),
        waves,
        to,
        max_failures,
    })
}
