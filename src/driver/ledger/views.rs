//! Read views of the ledger: past runs, a run's report, plan and tenants, each tenant's
//! last error.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::error::LedgerError;
use super::handle::Ledger;
use super::records::RunPlan;
use crate::model::run::RunReport;

/// One line of `fleetmig runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub command: String,
    /// The version tenants were taken to; `null` for a `down --steps` run.
    pub target: Option<i64>,
    /// `down --steps N`: the migrations each tenant reverts. Left out for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    pub runner: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub stop_reason: Option<String>,
    pub tenants: i64,
    /// Tenants per final status, the same counts as the run's `summary`.
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
    pub rollback_failed: i64,
    pub skipped: i64,
    pub not_started: i64,
    pub stopped: i64,
}

/// The last failure the ledger saw for a tenant, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub run_id: String,
    pub at_ms: i64,
    pub error: String,
}

/// The `--steps` a run's recorded plan holds; `None` for other runs, old runs, and a plan
/// that does not read.
fn steps_of(plan: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Steps {
        #[serde(default)]
        steps: Option<usize>,
    }
    serde_json::from_str::<Steps>(plan).ok().and_then(|p| p.steps)
}

impl Ledger {
    /// Past runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>, LedgerError> {
        self.bounded("listing runs", async {
            let rows = sqlx::query(
                "SELECT r.run_id, r.command, r.target, r.runner, r.started_ms, r.finished_ms, r.stop_reason, \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'succeeded'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'failed'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'rolled_back'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'rollback_failed'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'skipped'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'not_started'), \
             (SELECT COUNT(*) FROM fleetmig_run_tenants t WHERE t.run_id = r.run_id AND t.state = 'stopped'), \
             r.plan \
             FROM fleetmig_runs r ORDER BY r.started_ms DESC, r.run_id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("listing runs", e))?;
            rows.iter()
                .map(|r| {
                    let steps = steps_of(&r.try_get::<String, _>(15)?);
                    let command: String = r.try_get(1)?;
                    // `stamp --checksums` keeps each tenant's version: the run has no target.
                    let untargeted = steps.is_some() || command.starts_with("stamp --checksums");
                    Ok(RunRow {
                        run_id: r.try_get(0)?,
                        target: if untargeted { None } else { r.try_get(2)? },
                        command,
                        steps,
                        runner: r.try_get(3)?,
                        started_ms: r.try_get(4)?,
                        finished_ms: r.try_get(5)?,
                        stop_reason: r.try_get(6)?,
                        tenants: r.try_get(7)?,
                        succeeded: r.try_get(8)?,
                        failed: r.try_get(9)?,
                        rolled_back: r.try_get(10)?,
                        rollback_failed: r.try_get(11)?,
                        skipped: r.try_get(12)?,
                        not_started: r.try_get(13)?,
                        stopped: r.try_get(14)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("listing runs", e))
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
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| self.fail("reading a run's report", sqlx::Error::Decode(Box::new(e))))
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
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| self.fail("reading a run's plan", sqlx::Error::Decode(Box::new(e))))
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

    /// Per tenant, the last error any run recorded for it (and not cleared by a later success).
    pub async fn last_errors(&self) -> Result<Vec<(String, LastError)>, LedgerError> {
        self.bounded("reading last errors", async {
            let rows = sqlx::query(
                "SELECT t.tenant, t.run_id, t.updated_ms, t.error FROM fleetmig_run_tenants t \
             WHERE t.error IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fleetmig_run_tenants u WHERE u.tenant = t.tenant \
             AND u.updated_ms > t.updated_ms AND (u.state = 'succeeded' OR u.error IS NOT NULL)) ORDER BY t.tenant",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("reading last errors", e))?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        LastError {
                            run_id: r.try_get(1)?,
                            at_ms: r.try_get(2)?,
                            error: r.try_get(3)?,
                        },
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("reading last errors", e))
        })
        .await
    }

    /// Every tenant row of a run: (tenant, state, final version).
    pub async fn tenants(&self, run_id: &str) -> Result<Vec<(String, String, Option<i64>)>, LedgerError> {
        self.bounded("reading a run's tenants", async {
            let rows = sqlx::query(
                "SELECT tenant, state, final_version FROM fleetmig_run_tenants WHERE run_id = $1 ORDER BY wave, tenant",
            )
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail("reading a run's tenants", e))?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| self.fail("reading a run's tenants", e))
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
        assert_eq!(steps_of(old), None);
        assert_eq!(
            steps_of(r#"{"command":"down","target":0,"waves":[],"canary_waves":[],"steps":2}"#),
            Some(2)
        );
    }
}
