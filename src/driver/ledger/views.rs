//! Read views of the ledger: past runs, a run's report, plan and tenants, each tenant's
//! last error.

use serde::Deserialize;
use sqlx::Row;

use sqlx::any::AnyRow;

use super::error::{Cause, LedgerError, decode, version};
use super::handle::Ledger;
use super::lease::read_state;
use super::records::RunPlan;
use crate::model::record::{RunRow, RunSource, TenantState};
use crate::model::run::{RunReport, Status};

/// The `--steps` a run's recorded plan holds; `None` for other runs and old runs. A plan
/// that does not read is an error naming the run.
fn steps_of(run_id: &str, plan: &str) -> Result<(Option<usize>, Option<RunSource>), Cause> {
    #[derive(Deserialize)]
    struct Extras {
        #[serde(default)]
        steps: Option<usize>,
        #[serde(default)]
        source: Option<RunSource>,
    }
    let extras = decode::<Extras>(run_id, "plan", plan)?;
    Ok((extras.steps, extras.source))
}

/// Runs, newest first, with their tenants' counts per state.
const RUNS: &str = "SELECT r.run_id, r.command, r.target, r.runner, r.started_ms, r.finished_ms, r.stop_reason, \
     r.plan FROM fleetmig_runs r ORDER BY r.started_ms DESC, r.run_id DESC LIMIT $1";
const COUNTS: &str = "SELECT run_id, state, COUNT(*) FROM fleetmig_run_tenants WHERE run_id IN \
     (SELECT run_id FROM fleetmig_runs ORDER BY started_ms DESC, run_id DESC LIMIT $1) GROUP BY run_id, state";

/// One run's line, its counts still zero.
fn run_row(r: &AnyRow) -> Result<RunRow, Cause> {
    let run_id: String = r.try_get(0)?;
    let (steps, source) = steps_of(&run_id, &r.try_get::<String, _>(7)?)?;
    let command: String = r.try_get(1)?;
    // `stamp --checksums` keeps each tenant's version, and `adopt` takes each to what its
    // other tool recorded: the run has no target.
    let untargeted = steps.is_some() || command.starts_with("stamp --checksums") || command.starts_with("adopt");
    Ok(RunRow {
        target: if untargeted {
            None
        } else {
            version(&run_id, "target", r.try_get(2)?)?
        },
        run_id,
        command,
        steps,
        runner: r.try_get(3)?,
        started_ms: r.try_get(4)?,
        finished_ms: r.try_get(5)?,
        stop_reason: r.try_get(6)?,
        tenants: 0,
        succeeded: 0,
        failed: 0,
        rolled_back: 0,
        rollback_failed: 0,
        skipped: 0,
        not_started: 0,
        stopped: 0,
        source,
    })
}

/// Adds `n` tenants in `state` to a run's counts.
fn count(row: &mut RunRow, state: TenantState, n: i64) {
    row.tenants += n;
    let Some(status) = (match state {
        TenantState::Ended(status) => Some(status),
        TenantState::Pending | TenantState::Started => None,
    }) else {
        return;
    };
    *match status {
        Status::Succeeded => &mut row.succeeded,
        Status::Failed => &mut row.failed,
        Status::RolledBack => &mut row.rolled_back,
        Status::RollbackFailed => &mut row.rollback_failed,
        Status::Skipped => &mut row.skipped,
        Status::NotStarted => &mut row.not_started,
        Status::Stopped => &mut row.stopped,
    } += n;
}

impl Ledger {
    /// Past runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>, LedgerError> {
        let op = "listing runs";
        self.bounded(op, async {
            let runs = async {
                let rows = sqlx::query(RUNS).bind(limit).fetch_all(&self.pool).await?;
                let mut runs = rows.iter().map(run_row).collect::<Result<Vec<_>, Cause>>()?;
                let counts = sqlx::query(COUNTS).bind(limit).fetch_all(&self.pool).await?;
                for c in &counts {
                    let run_id: String = c.try_get(0)?;
                    let state = read_state(&run_id, "tenants' states", &c.try_get::<String, _>(1)?)?;
                    if let Some(run) = runs.iter_mut().find(|r| r.run_id == run_id) {
                        count(run, state, c.try_get(2)?);
                    }
                }
                Ok::<_, Cause>(runs)
            };
            runs.await.map_err(|c| self.fault(op, c))
        })
        .await
    }

    /// A run's final report, if it finished.
    pub async fn report(&self, run_id: &str) -> Result<Option<RunReport>, LedgerError> {
        self.bounded("reading a run", async {
            let text: Option<Option<String>> = sqlx::query_scalar("SELECT report FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail("reading a run", e))?;
            text.flatten()
                .map(|t| decode(run_id, "report", &t))
                .transpose()
                .map_err(|c| self.fault("reading a run's report", c))
        })
        .await
    }

    /// A run's plan; `None` when no run has that id.
    pub async fn plan(&self, run_id: &str) -> Result<Option<RunPlan>, LedgerError> {
        self.bounded("reading a run", async {
            let text: Option<String> = sqlx::query_scalar("SELECT plan FROM fleetmig_runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail("reading a run", e))?;
            text.map(|t| decode(run_id, "plan", &t))
                .transpose()
                .map_err(|c| self.fault("reading a run's plan", c))
        })
        .await
    }

    /// The newest `up` or `down` run that did not finish, or stopped early.
    pub async fn last_unfinished(&self) -> Result<Option<String>, LedgerError> {
        self.bounded("looking for an unfinished run", async {
            sqlx::query_scalar(
                "SELECT run_id FROM fleetmig_runs WHERE command IN ('up', 'down') \
             AND (finished_ms IS NULL OR stop_reason <> 'completed') ORDER BY started_ms DESC, run_id DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail("looking for an unfinished run", e))
        })
        .await
    }

    /// Every tenant row of a run: (tenant, state, final version).
    #[cfg(test)]
    pub async fn tenants(&self, run_id: &str) -> Result<Vec<(String, TenantState, Option<i64>)>, LedgerError> {
        let op = "reading a run's tenants";
        self.bounded(op, async {
            let read = async {
                let rows = sqlx::query(
                    "SELECT tenant, state, final_version FROM fleetmig_run_tenants WHERE run_id = $1 ORDER BY wave, tenant",
                )
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let tenant: String = r.try_get(0)?;
                        let state = read_state(run_id, &format!("tenant `{tenant}`'s state"), &r.try_get::<String, _>(1)?)?;
                        Ok((tenant, state, r.try_get(2)?))
                    })
                    .collect::<Result<_, Cause>>()
            };
            read.await.map_err(|c| self.fault(op, c))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_recorded_before_the_policy_was_kept_still_read() {
        let old = r#"{"command":"up","target":3,"waves":[["a"],["b","c"]],"canary_waves":[1]}"#;
        let plan: RunPlan = serde_json::from_str(old).unwrap();
        assert_eq!(plan.policy, None);
        assert_eq!(plan.waves.len(), 2);
        let partial = r#"{"command":"up","target":3,"waves":[],"canary_waves":[],"policy":{"retries":4}}"#;
        let plan: RunPlan = serde_json::from_str(partial).unwrap();
        assert_eq!(plan.policy.unwrap().retries, Some(4));
        assert_eq!(plan.steps, None);
        assert_eq!(steps_of("r", old).unwrap(), (None, None));
        assert_eq!(
            steps_of(
                "r",
                r#"{"command":"down","target":0,"waves":[],"canary_waves":[],"steps":2}"#
            )
            .unwrap(),
            (Some(2), None)
        );
        let sourced = r#"{"command":"up","target":3,"waves":[],"canary_waves":[],"source":{"fingerprint":"ab","git_commit":"c0"}}"#;
        let source = steps_of("r", sourced).unwrap().1.unwrap();
        assert_eq!(
            (
                source.fingerprint.as_str(),
                source.git_commit.as_deref(),
                source.git_dirty
            ),
            ("ab", Some("c0"), false)
        );
    }
}
