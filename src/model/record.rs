//! What the run ledger records, as reports and runners read it: a run's line in `runs`, a
//! tenant's last error, and the state a tenant's row is in, with its one spelling.

use serde::{Deserialize, Serialize};

use crate::model::run::{Outcome, Status};

/// One line of `fleetmig runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub command: String,
    /// The version tenants were taken to; `null` for a `down --steps` run.
    pub target: Option<crate::model::migration::Version>,
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
    /// The migration set the run applied; absent in runs recorded before it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
}

/// The migration set a run applied, as `runs` and `report` show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RunSource {
    /// [`crate::model::sets::Sets::fingerprint`]: a hash of every migration's checksum.
    pub fingerprint: String,
    /// The commit (`git rev-parse HEAD`) of the work tree holding the migrations folder,
    /// when it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The folder had changes not committed (`git status --porcelain` printed some).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub git_dirty: bool,
}

/// The last failure the ledger saw for a tenant, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub run_id: String,
    pub at_ms: i64,
    pub error: String,
}

/// Where a tenant's row of a run stands (its `state` column): not reached yet, in a
/// runner's hands (or left so by a runner that died), or ended with a final status, spelt
/// as the reports spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantState {
    /// `pending`: the run has not reached it (or a runner handed it back).
    Pending,
    /// `started`: written before its first statement; its outcome is not recorded yet.
    Started,
    /// Its outcome or, after the run's end, its final status.
    Ended(Status),
}

/// Every final status, for reading one back from its name.
const STATUSES: [Status; 7] = [
    Status::Succeeded,
    Status::Failed,
    Status::RolledBack,
    Status::RollbackFailed,
    Status::NotStarted,
    Status::Skipped,
    Status::Stopped,
];

impl TenantState {
    /// The state a tenant's outcome leaves its row in.
    pub fn of(outcome: &Outcome) -> TenantState {
        TenantState::Ended(match outcome {
            Outcome::Succeeded => Status::Succeeded,
            Outcome::Failed { .. } => Status::Failed,
            Outcome::Skipped { .. } => Status::Skipped,
            Outcome::NotStarted => Status::NotStarted,
            Outcome::Stopped => Status::Stopped,
        })
    }

    /// The state column's text: `pending`, `started`, or the status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Pending => "pending",
            TenantState::Started => "started",
            TenantState::Ended(status) => status.name(),
        }
    }

    /// Reads a state column's text back; `None` for text no fleetmig writes.
    pub fn parse(text: &str) -> Option<TenantState> {
        match text {
            "pending" => Some(TenantState::Pending),
            "started" => Some(TenantState::Started),
            _ => STATUSES.into_iter().find(|s| s.name() == text).map(TenantState::Ended),
        }
    }

    /// Not ended: no outcome recorded yet.
    pub fn is_open(self) -> bool {
        matches!(self, TenantState::Pending | TenantState::Started)
    }
}

impl std::fmt::Display for TenantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_text() {
        let all = [TenantState::Pending, TenantState::Started]
            .into_iter()
            .chain(STATUSES.into_iter().map(TenantState::Ended));
        for state in all {
            assert_eq!(TenantState::parse(state.as_str()), Some(state), "{state}");
        }
        assert_eq!(TenantState::parse("done"), None);
    }

    #[test]
    fn ended_states_are_spelt_as_the_reports_spell_statuses() {
        for status in STATUSES {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, TenantState::Ended(status).as_str());
        }
    }
}
