//! `up --shared` and `up --join RUN`: set up a run several runners work on together (the
//! claim loop itself is `exec::join`).

use std::io::Write;
use std::time::Duration;

use super::{
    Resume, check_per_tenant_tx, check_target, execute, load_migrations, new_run_id, open_ledger, rollout_plan,
    selected,
};
use crate::cli::{Global, Rollout, Together};
use crate::driver::ledger::{RunPlan, runner};
use crate::error::Error;
use crate::exec::join::Shared;
use crate::exec::tenant::Action;
use crate::model::fleet::{Fleet, Tenant};
use crate::model::migration::Version;
use crate::model::policy::MaxFailures;
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

pub(super) async fn up(
    g: &Global,
    to: Option<Version>,
    rollout: &Rollout,
    together: &Together,
    out: &mut (dyn Write + Send),
) -> Result<super::exit::Outcome, Error> {
    refuse_gates(rollout)?;
    if let Some(path) = &rollout.report {
        super::check_report_path(path)?;
    }
    if together.lease < Duration::from_secs(1) {
        return Err(Error::Usage("--lease must be at least 1s".into()));
    }
    let set = load_migrations(&g.migrations)?;
    let fleet = super::load_fleet(g).await?;
    refuse_file_gates(&fleet)?;
    let ledger = open_ledger(g, &fleet).await?;
    ledger.prepare_sharing().await?;
    let (run_id, waves, max_failures) = match &together.join {
        Some(run_id) => {
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
            let max_failures: MaxFailures = limit.parse().map_err(Error::Usage)?;
            check_target(&set, Version(plan.target), "--join: the run's target")?;
            let mut waves = Vec::new();
            for (k, ids) in plan.waves.iter().enumerate() {
                let tenants = ids
                    .iter()
                    .map(|id| {
                        fleet.tenant(id).ok_or_else(|| {
                            Error::Usage(format!(
                                "run `{run_id}` includes tenant `{id}`, which the fleet file does not list"
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
            (run_id.clone(), (waves, Version(plan.target)), max_failures)
        }
        None => {
            let tenants = selected(&fleet, g)?;
            let to = check_target(&set, to.unwrap_or(set.head()), "--to")?;
            let (waves, policy) = rollout_plan(&fleet, &tenants, Some(rollout))?;
            // Refused here, before the run exists in the ledger, not by `execute` after.
            if rollout.tx_mode() == crate::cli::TxMode::PerTenant {
                check_per_tenant_tx(g, &fleet, &set, &tenants, Action::Migrate(Target::Up { to })).await?;
            }
            let run_id = new_run_id();
            let plan = RunPlan {
                command: "up".to_owned(),
                target: to.0,
                waves: waves
                    .iter()
                    .map(|w| w.tenants.iter().map(|t| t.id.to_string()).collect())
                    .collect(),
                canary_waves: waves.iter().filter(|w| w.canary).map(|w| w.number).collect(),
                policy: Some(super::resume::record(&fleet, rollout, &policy)),
                steps: None,
            };
            let limit = policy.max_failures.to_string();
            ledger
                .begin_shared_run(&run_id, &fleet.path.display().to_string(), &plan, &limit)
                .await?;
            (run_id, (waves, to), policy.max_failures)
        }
    };
    let (waves, to) = waves;
    let tenants: Vec<&Tenant> = waves.iter().flat_map(|w| w.tenants.iter().copied()).collect();
    let shared = Shared {
        lease: together.lease,
        max_failures,
        total: tenants.len(),
        owner: runner(),
    };
    let resume = Resume {
        run_id,
        waves,
        ledger,
        shared: Some(shared),
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
    Ok(super::exit::Outcome::Run(Box::new(report)))
}
