//! `up --resume`: a run goes on under the rollout policy it was started with, kept in the
//! ledger; a flag that disagrees with it is refused, never silently dropped or obeyed.

use std::io::Write;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::ValueEnum;

use super::execute::{Record, Resume, RunArgs, execute};
use super::exit::Outcome;
use super::open_ledger_if_any;
use crate::api;
use crate::cli::{Global, Rollout, TxMode};
use crate::driver::ledger::{Ledger, RecordedPolicy, RunPlan};
use crate::error::Error;
use crate::exec::dispatch::Policy;
use crate::exec::tenant::Action;
use crate::model::fleet::Fleet;
use crate::model::policy::{BadPolicy, MaxFailures, MaxSkipped, RollbackPolicy, WaveSpec, WaveStep};
use crate::plan::tenant::Target;

/// The `--waves` a command line gives, as one spec.
pub(super) fn wave_spec(r: &Rollout) -> Result<Option<WaveSpec>, Error> {
    WaveSpec::joined(&r.waves).map_err(|e| Error::Usage(format!("--waves: {e}")))
}

/// How the ledger keeps a spec: sizes alone as the text `--waves` takes (`1,10%,100%`),
/// as it always did; a spec with selectors or `*` step by step, each one a `--waves`
/// value, since a selector's own commas join its terms.
fn recorded_spec(spec: Option<&WaveSpec>) -> (Option<String>, Vec<String>) {
    match spec {
        Some(spec) if spec.has_selectors() || spec.0.contains(&WaveStep::Rest) => (None, spec.steps_text()),
        Some(spec) => (Some(spec.to_string()), Vec::new()),
        None => (None, Vec::new()),
    }
}

/// The spec the ledger kept (see [`recorded_spec`]).
fn spec_of(rec: &RecordedPolicy) -> Result<Option<WaveSpec>, BadPolicy> {
    if !rec.wave_steps.is_empty() {
        return WaveSpec::from_parts(&rec.wave_steps).map(Some);
    }
    rec.waves.as_deref().map(str::parse).transpose()
}

fn value_name<V: ValueEnum>(v: V) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// What the ledger keeps of a new run's rollout: the values in force, flags or the fleet
/// file's `rollout:` defaults.
pub(super) fn record(fleet: &Fleet, r: &Rollout, policy: &Policy, out_of_order: bool) -> Result<RecordedPolicy, Error> {
    let given = wave_spec(r)?;
    let (waves, wave_steps) = recorded_spec(given.as_ref().or(fleet.rollout.waves.as_ref()));
    Ok(RecordedPolicy {
        waves,
        wave_steps,
        canary: r.canary.iter().map(|s| s.to_string()).collect(),
        max_failures: policy.max_failures.to_string(),
        max_skipped: policy.max_skipped.to_string(),
        rollback: value_name(policy.rollback),
        bake_ms: policy.gates.bake.map(|d| d.as_millis() as u64),
        window: policy.window.as_ref().map(|w| w.window.to_string()),
        check: policy.gates.check.clone(),
        rate: policy.rate.map(|r| r.per_second.get()),
        burst: policy.rate.map(|r| r.burst.get()),
        tx: value_name(r.tx_mode()),
        retry_for_ms: Some(r.retry_within().as_millis() as u64),
        retries: r.retries,
        host_failures: Some(policy.host_failures),
        out_of_order,
    })
}

/// `up --resume [RUN]`: the newest unfinished run, or RUN, goes on with its own target,
/// waves and policy.
pub(super) async fn up(
    g: &Global,
    run: &str,
    rollout: &Rollout,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, Error> {
    let mut fleet = super::load_fleet(g).await?;
    let mut sets = super::load_set_of(g, &fleet)?;
    if !g.select.is_empty() {
        return Err(Error::Usage(
            "--resume runs the run's own tenants: drop --select".into(),
        ));
    }
    let (ledger, run_id, plan) = recorded_run(g, &fleet, run).await?;
    // Runs recorded before the ledger kept the policy go on under today's flags.
    let kept;
    let rollout = match &plan.policy {
        Some(recorded) => {
            kept = resumed(&run_id, recorded, rollout)?;
            // A run started with --out-of-order goes on with it.
            if recorded.out_of_order {
                sets = sets.with_out_of_order(true);
            }
            // The recorded policy is whole: a bake or check added to the fleet
            // file since the run started is not this run's.
            fleet.rollout = Default::default();
            &kept
        }
        None => rollout,
    };
    let to = api::check_targets(&sets, plan.target, "--resume: the run's target")?;
    let waves = api::recorded_waves(&fleet, &plan, |id| {
        Error::Usage(format!(
            "run `{run_id}` included tenant `{id}`, which the fleet file no longer lists"
        ))
    })?;
    let args = RunArgs {
        tenants: waves.iter().flat_map(|w| w.tenants.iter().copied()).collect(),
        action: Action::Migrate(Target::Up { to }),
        command: "up",
        rollout: Some(rollout),
        record: Record::Taken(Resume {
            run_id,
            waves,
            ledger,
            shared: None,
        }),
    };
    execute(g, &fleet, &sets, args, out).await
}

/// The run to resume, as the ledger holds it: `run`, or (empty) the newest unfinished one;
/// only an `up` resumes.
async fn recorded_run(g: &Global, fleet: &Fleet, run: &str) -> Result<(Ledger, String, RunPlan), Error> {
    let Some(ledger) = open_ledger_if_any(g, fleet).await? else {
        return Err(Error::Usage(
            "there is no ledger yet, so no run to resume (no run has been recorded)".into(),
        ));
    };
    let run_id = match run {
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
    Ok((ledger, run_id, plan))
}

/// The rollout of a resumed run: the recorded policy, with what belongs to this invocation
/// (`--pause-after`, `--confirm`, `--yes`, `--report`) from the command line. A policy flag
/// given with another value than the recorded one is refused, naming both.
pub(super) fn resumed(run_id: &str, rec: &RecordedPolicy, given: &Rollout) -> Result<Rollout, Error> {
    refuse_changed(run_id, rec, given)?;
    let unreadable = |what: &str, e: &dyn std::fmt::Display| {
        Error::Usage(format!(
            "run `{run_id}`: the ledger's recorded {what} cannot be read: {e}"
        ))
    };
    let mut r = given.clone();
    r.waves = spec_of(rec).map_err(|e| unreadable("waves", &e))?.into_iter().collect();
    r.canary = rec
        .canary
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable("canary", &e))?;
    r.max_failures = Some(
        rec.max_failures
            .parse::<MaxFailures>()
            .map_err(|e| unreadable("failure limit", &e))?,
    );
    r.max_skipped = Some(match rec.max_skipped.as_str() {
        "canary" | "" => MaxSkipped::Canary,
        s => s.parse().map_err(|e| unreadable("skip limit", &e))?,
    });
    r.rollback = Some(
        rec.rollback
            .parse::<RollbackPolicy>()
            .map_err(|e| unreadable("rollback", &e))?,
    );
    r.bake = rec.bake_ms.map(Duration::from_millis);
    r.check = rec.check.clone();
    r.window = (rec.window.as_deref().map(str::parse))
        .transpose()
        .map_err(|e| unreadable("window", &e))?;
    r.rate = rec.rate.and_then(NonZeroU32::new);
    r.burst = rec.burst.and_then(NonZeroU32::new);
    r.tx = Some(TxMode::from_str(&rec.tx, false).map_err(|e| unreadable("--tx", &e))?);
    r.retry_for = rec.retry_for_ms.map(Duration::from_millis).or(given.retry_for);
    r.retries = rec.retries;
    r.host_failures = rec.host_failures.or(given.host_failures);
    Ok(r)
}

/// Refuses a policy flag given with another value than the run was started with. Values
/// are compared as the flags write them (`shown` durations, `quoted` queries).
fn refuse_changed(run_id: &str, rec: &RecordedPolicy, given: &Rollout) -> Result<(), Error> {
    let refuse = |flag: &str, given: String, recorded: Option<String>| {
        let was = match recorded {
            Some(v) => format!("with {flag} {v}"),
            None => format!("without {flag}"),
        };
        Err(Error::Usage(format!(
            "{flag} {given}: run `{run_id}` was started {was}, and --resume keeps the run's policy; \
             drop {flag} (or give the recorded value), or start a new run"
        )))
    };
    let differs = |flag: &str, given: Option<String>, recorded: Option<String>| match given {
        Some(given) if Some(&given) != recorded.as_ref() => refuse(flag, given, recorded),
        _ => Ok(()),
    };
    let shown = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    let quoted = |s: &String| format!("\"{s}\"");
    let text = |n: u32| n.to_string();
    let recorded = spec_of(rec).ok().flatten();
    if let Some(spec) = wave_spec(given)? {
        if Some(&spec) != recorded.as_ref() {
            return refuse("--waves", spec.to_string(), recorded.map(|r| r.to_string()));
        }
    }
    let canary: Vec<String> = given.canary.iter().map(|s| s.to_string()).collect();
    if !canary.is_empty() && canary != rec.canary {
        let recorded = (!rec.canary.is_empty()).then(|| rec.canary.join(" --canary "));
        return refuse("--canary", canary.join(" --canary "), recorded);
    }
    let max_failures = given.max_failures.map(|m| m.to_string());
    differs("--max-failures", max_failures, Some(rec.max_failures.clone()))?;
    let max_skipped = given.max_skipped.map(|m| m.to_string());
    differs("--max-skipped", max_skipped, Some(rec.max_skipped.clone()))?;
    differs("--rollback", given.rollback.map(value_name), Some(rec.rollback.clone()))?;
    let bake = given.bake.map(|b| shown(b.as_millis() as u64));
    differs("--bake", bake, rec.bake_ms.map(shown))?;
    differs(
        "--window",
        given.window.as_ref().map(|w| quoted(&w.to_string())),
        rec.window.as_ref().map(quoted),
    )?;
    differs(
        "--check",
        given.check.as_ref().map(quoted),
        rec.check.as_ref().map(quoted),
    )?;
    differs("--rate", given.rate.map(|r| text(r.get())), rec.rate.map(text))?;
    differs("--burst", given.burst.map(|b| text(b.get())), rec.burst.map(text))?;
    differs("--tx", given.tx.map(value_name), Some(rec.tx.clone()))?;
    // A run recorded before --retry-for was kept takes today's.
    if rec.retry_for_ms.is_some() {
        let retry_for = given.retry_for.map(|d| shown(d.as_millis() as u64));
        differs("--retry-for", retry_for, rec.retry_for_ms.map(shown))?;
    }
    // Likewise --host-failures.
    if rec.host_failures.is_some() {
        differs(
            "--host-failures",
            given.host_failures.map(text),
            rec.host_failures.map(text),
        )?;
    }
    differs("--retries", given.retries.map(text), rec.retries.map(text))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn rollout(flags: &[&str]) -> Rollout {
        let cli = Cli::try_parse_from([&["fleetmig", "up"], flags].concat()).unwrap();
        match cli.command {
            Command::Up { rollout, .. } => rollout,
            other => panic!("not up: {other:?}"),
        }
    }

    fn recorded() -> RecordedPolicy {
        RecordedPolicy {
            max_failures: "1".into(),
            max_skipped: "canary".into(),
            rollback: "failed".into(),
            tx: "per-migration".into(),
            rate: Some(5),
            bake_ms: Some(1500),
            ..RecordedPolicy::default()
        }
    }

    fn refusal(flags: &[&str]) -> Option<String> {
        refuse_changed("r1", &recorded(), &rollout(flags))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn the_recorded_values_and_no_flags_go_on() {
        assert_eq!(refusal(&[]), None);
        assert_eq!(
            refusal(&["--rate", "5", "--bake", "1500ms", "--max-failures", "1"]),
            None
        );
        // Not recorded (a run from before it was kept): today's value is taken.
        assert_eq!(refusal(&["--retry-for", "5s"]), None);
    }

    #[test]
    fn a_flag_with_another_value_is_refused_naming_both() {
        let rate = refusal(&["--rate", "7"]).unwrap();
        assert!(
            rate.starts_with("--rate 7: run `r1` was started with --rate 5"),
            "{rate}"
        );
        let bake = refusal(&["--bake", "2s"]).unwrap();
        assert!(
            bake.contains("--bake 2s: run `r1` was started with --bake 1s 500ms"),
            "{bake}"
        );
        let burst = refusal(&["--rate", "5", "--burst", "9"]).unwrap();
        assert!(burst.contains("was started without --burst"), "{burst}");
        let canary = refusal(&["--canary", "id=a"]).unwrap();
        assert!(
            canary.contains("--canary id=a: run `r1` was started without --canary"),
            "{canary}"
        );
    }

    #[test]
    fn the_resumed_rollout_takes_the_recorded_policy() {
        let r = resumed("r1", &recorded(), &rollout(&["--pause-after", "2"])).unwrap();
        assert_eq!(r.rate.map(NonZeroU32::get), Some(5));
        assert_eq!(r.bake, Some(Duration::from_millis(1500)));
        assert_eq!(r.pause_after, Some(2));
        assert_eq!(r.tx, Some(TxMode::PerMigration));
        assert_eq!(r.host_failures, None, "a run recorded before it was kept takes today's");
        let kept = RecordedPolicy {
            host_failures: Some(0),
            ..recorded()
        };
        assert_eq!(resumed("r1", &kept, &rollout(&[])).unwrap().host_failures, Some(0));
        let refused = refuse_changed("r1", &kept, &rollout(&["--host-failures", "5"])).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("--host-failures 5: run `r1` was started with --host-failures 0"),
            "{refused}"
        );
    }
}
