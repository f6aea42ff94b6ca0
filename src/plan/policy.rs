//! Run policies: when to stop, what to roll back, and why a run stopped.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `--max-failures`: how many failed tenants stop the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFailures {
    /// Stop once this many tenants failed.
    Count(usize),
    /// Stop once this share (1-100) of the selected tenants failed.
    Percent(u32),
    /// Never stop for failures.
    Unlimited,
}

impl Default for MaxFailures {
    fn default() -> Self {
        MaxFailures::Count(1)
    }
}

impl MaxFailures {
    /// The number of failures that stops a run of `total` tenants, if any.
    pub fn limit(self, total: usize) -> Option<usize> {
        match self {
            MaxFailures::Count(n) => Some(n),
            MaxFailures::Percent(p) => Some((total * p as usize).div_ceil(100).max(1)),
            MaxFailures::Unlimited => None,
        }
    }

    pub fn is_exceeded(self, failed: usize, total: usize) -> bool {
        self.limit(total).is_some_and(|limit| failed >= limit)
    }
}

impl FromStr for MaxFailures {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a failure limit: a count (3), a percentage (10%) or `all`");
        if s == "all" {
            return Ok(MaxFailures::Unlimited);
        }
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxFailures::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(MaxFailures::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for MaxFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxFailures::Count(n) => write!(f, "{n}"),
            MaxFailures::Percent(p) => write!(f, "{p}%"),
            MaxFailures::Unlimited => f.write_str("all"),
        }
    }
}

/// `--rollback`: which tenants go back to their start version when a run stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RollbackPolicy {
    /// Tenants that failed or stopped part way.
    #[default]
    Failed,
    /// Every tenant of the wave in which the run stopped.
    Wave,
    /// Every tenant the run changed.
    Run,
    /// Nothing: leave every tenant where it stopped.
    None,
}

/// Why a run stopped. Ordered by severity: a reason only ever escalates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// Every wave ran.
    Completed,
    /// `--pause-after` reached.
    Paused { wave: usize },
    /// A gate between waves failed.
    GateFailed { wave: usize, detail: String },
    /// The failure limit was reached.
    MaxFailures { failed: usize, limit: usize },
    /// Ctrl-C: stopped at safe points.
    Interrupted,
    /// Ctrl-C twice: in-flight work abandoned.
    Abandoned,
}

impl StopReason {
    /// True for reasons that end a run early (anything but `Completed`).
    pub fn is_early(&self) -> bool {
        !matches!(self, StopReason::Completed)
    }

    /// True for reasons that call for a rollback (a pause or a completed run do not).
    pub fn is_failure(&self) -> bool {
        !matches!(self, StopReason::Completed | StopReason::Paused { .. })
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Completed => f.write_str("completed"),
            StopReason::Paused { wave } => write!(f, "paused after wave {wave} (--pause-after)"),
            StopReason::GateFailed { wave, detail } => write!(f, "gate after wave {wave} failed: {detail}"),
            StopReason::MaxFailures { failed, limit } => write!(f, "{failed} tenant(s) failed, limit {limit}"),
            StopReason::Interrupted => f.write_str("interrupted (Ctrl-C): stopped at safe points"),
            StopReason::Abandoned => f.write_str("interrupted twice (Ctrl-C): in-flight work abandoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(MaxFailures::Count(1).is_exceeded(1, 100));
        assert!(!MaxFailures::Count(3).is_exceeded(2, 100));
        let ten: MaxFailures = "10%".parse().unwrap();
        assert_eq!(ten.limit(50), Some(5));
        assert_eq!(ten.limit(5), Some(1));
        assert!(!"all".parse::<MaxFailures>().unwrap().is_exceeded(1000, 1000));
        assert!("0".parse::<MaxFailures>().is_err());
    }

    #[test]
    fn reasons_escalate_by_severity() {
        assert!(StopReason::Completed < StopReason::Paused { wave: 1 });
        assert!(StopReason::MaxFailures { failed: 1, limit: 1 } < StopReason::Interrupted);
        assert!(StopReason::Interrupted < StopReason::Abandoned);
    }
}
