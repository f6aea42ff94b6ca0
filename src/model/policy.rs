//! Run policies: wave sizes, when to stop, what to roll back, and why a run stopped.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::selector::{BadSelector, Selector};

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

/// A policy word that does not parse (`--max-failures`, `--rollback`, `--waves` and the
/// fleet file's `rollout:`), saying what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPolicy {
    #[error("`{0}` is not a failure limit: a count (3), a percentage (10%) or `all`")]
    FailureLimit(String),
    #[error("`{0}` is not a skip limit: a count (3), a percentage (10%), `all`, or `canary` (the default)")]
    SkipLimit(String),
    #[error("`{0}` is not one of failed, wave, run, none")]
    Rollback(String),
    #[error(
        "wave `{0}` is not a size (a count such as 10, or a percentage from 1% to 100%), a selector (`region=eu`) or `*`"
    )]
    WaveSize(String),
    #[error("wave sizes `{spec}` are cumulative: `{size}` cannot be smaller than the size before it")]
    Shrinking { spec: String, size: WaveSize },
    #[error("wave sizes `{0}`: nothing can follow `100%`")]
    AfterAll(String),
    #[error("waves `{0}`: nothing can follow `*`, which takes every tenant not placed yet")]
    AfterRest(String),
    #[error("wave `{0}` is not a selector (`key=value`, `key!=value`, comma-joined), a size or `*`: {1}")]
    WaveSelector(String, BadSelector),
}

impl FromStr for MaxFailures {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPolicy::FailureLimit(s.to_owned());
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

/// `--max-skipped`: how many skipped tenants (drifted, dirty, locked, unreachable) stop the
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxSkipped {
    /// A skipped canary stops the run: a canary is there to prove the rollout on real
    /// tenants, and one left alone proves nothing. Other skipped tenants do not stop it.
    #[default]
    Canary,
    /// Stop once this many (or this share) of the selected tenants were skipped, canaries
    /// or not; `all`: never.
    Limit(MaxFailures),
}

impl MaxSkipped {
    /// The stop reason once `skipped` tenants (of `total`) were skipped, the last one `tenant`
    /// (a canary when `canary`), if that stops the run.
    pub fn stop(self, skipped: usize, total: usize, tenant: &str, canary: bool, why: &str) -> Option<StopReason> {
        match self {
            MaxSkipped::Canary if canary => Some(StopReason::CanarySkipped {
                tenant: tenant.to_owned(),
                why: why.to_owned(),
            }),
            MaxSkipped::Canary => None,
            MaxSkipped::Limit(limit) if limit.is_exceeded(skipped, total) => Some(StopReason::MaxSkipped {
                skipped,
                limit: limit.limit(total).unwrap_or(0),
            }),
            MaxSkipped::Limit(_) => None,
        }
    }
}

impl FromStr for MaxSkipped {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "canary" {
            return Ok(MaxSkipped::Canary);
        }
        s.parse()
            .map(MaxSkipped::Limit)
            .map_err(|_| BadPolicy::SkipLimit(s.to_owned()))
    }
}

impl fmt::Display for MaxSkipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxSkipped::Canary => f.write_str("canary"),
            MaxSkipped::Limit(limit) => limit.fmt(f),
        }
    }
}

/// `--rollback`: which tenants go back to their start version when a run stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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

impl RollbackPolicy {
    pub const ALL: [RollbackPolicy; 4] = [
        RollbackPolicy::Failed,
        RollbackPolicy::Wave,
        RollbackPolicy::Run,
        RollbackPolicy::None,
    ];

    /// What each choice does, for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            RollbackPolicy::Failed => "Tenants that failed or stopped part way",
            RollbackPolicy::Wave => "Every tenant of the wave in which the run stopped",
            RollbackPolicy::Run => "Every tenant the run changed",
            RollbackPolicy::None => "Nothing: leave every tenant where it stopped",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RollbackPolicy::Failed => "failed",
            RollbackPolicy::Wave => "wave",
            RollbackPolicy::Run => "run",
            RollbackPolicy::None => "none",
        }
    }
}

/// The fleet file's `rollout.rollback` and the ledger's record of a run: the words
/// `--rollback` takes.
impl FromStr for RollbackPolicy {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RollbackPolicy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| BadPolicy::Rollback(s.to_owned()))
    }
}

/// Why a run stopped. Ordered by severity: a reason only ever escalates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// Every wave ran and every selected tenant reached the target.
    Completed,
    /// Every wave ran, but `short` selected tenants did not reach the target: `failed`
    /// failed (rolled back or not) and `skipped` were skipped, under limits that let the
    /// run go on. Set once, at the end, in place of `Completed`.
    Incomplete {
        short: usize,
        failed: usize,
        skipped: usize,
    },
    /// `--pause-after` reached.
    Paused { wave: usize },
    /// A gate between waves failed.
    GateFailed { wave: usize, detail: String },
    /// A canary was skipped (the default `--max-skipped`).
    CanarySkipped { tenant: String, why: String },
    /// The skip limit (`--max-skipped`) was reached.
    MaxSkipped { skipped: usize, limit: usize },
    /// The failure limit was reached.
    MaxFailures { failed: usize, limit: usize },
    /// The ledger could not record the run (unreachable after retries, its file deleted or
    /// replaced, the run's rows gone): no tenant may start unrecorded, so the run stops at
    /// safe points. Not a failure of the migrations: nothing beyond the failed and stopped
    /// tenants is rolled back for it.
    LedgerUnavailable { detail: String },
    /// Ctrl-C or SIGTERM: stopped at safe points.
    Interrupted,
    /// Ctrl-C or SIGTERM twice: in-flight work abandoned.
    Abandoned,
}

impl StopReason {
    /// True for reasons that end a run early (anything but a run whose every wave ran).
    pub fn is_early(&self) -> bool {
        !matches!(self, StopReason::Completed | StopReason::Incomplete { .. })
    }

    /// True for reasons that call for a rollback (a pause or a run whose every wave ran do not).
    pub fn is_failure(&self) -> bool {
        self.is_early() && !matches!(self, StopReason::Paused { .. } | StopReason::LedgerUnavailable { .. })
    }

    /// The reason a run ends with, once it is known that `short` selected tenants did not
    /// reach the target (`failed` of them failed, `skipped` were skipped): never `Completed`
    /// while one did not.
    pub fn settle(self, short: usize, failed: usize, skipped: usize) -> StopReason {
        if self != StopReason::Completed || short == 0 {
            return self;
        }
        StopReason::Incomplete { short, failed, skipped }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Completed => f.write_str("completed"),
            StopReason::Incomplete { short, failed, skipped } => {
                write!(
                    f,
                    "incomplete: every wave ran, but {short} tenant(s) did not reach the target"
                )?;
                let mut parts = Vec::new();
                if *failed > 0 {
                    parts.push(format!("{failed} failed"));
                }
                if *skipped > 0 {
                    parts.push(format!("{skipped} skipped"));
                }
                if !parts.is_empty() {
                    write!(f, " ({})", parts.join(", "))?;
                }
                Ok(())
            }
            StopReason::CanarySkipped { tenant, why } => {
                write!(
                    f,
                    "canary `{tenant}` was skipped ({why}); a skipped canary stops the run (--max-skipped)"
                )
            }
            StopReason::MaxSkipped { skipped, limit } => {
                write!(f, "{skipped} tenant(s) skipped, limit {limit} (--max-skipped)")
            }
            StopReason::Paused { wave } => write!(f, "paused after wave {wave} (--pause-after)"),
            StopReason::GateFailed { wave, detail } => write!(f, "gate after wave {wave} failed: {detail}"),
            StopReason::MaxFailures { failed, limit } => write!(f, "{failed} tenant(s) failed, limit {limit}"),
            StopReason::LedgerUnavailable { detail } => {
                write!(
                    f,
                    "the ledger could not record the run, stopped at safe points: {detail}"
                )
            }
            StopReason::Interrupted => f.write_str("interrupted (Ctrl-C or SIGTERM): stopped at safe points"),
            StopReason::Abandoned => f.write_str("interrupted twice (Ctrl-C or SIGTERM): in-flight work abandoned"),
        }
    }
}

/// One cumulative wave size: a count of tenants or a share of those left after the canaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WaveSize {
    Count(usize),
    Percent(u32),
}

impl WaveSize {
    /// The cumulative number of tenants this size reaches, of `total`.
    pub fn reach(self, total: usize) -> usize {
        match self {
            WaveSize::Count(n) => n.min(total),
            WaveSize::Percent(p) => (total * p as usize).div_ceil(100).min(total),
        }
    }
}

impl FromStr for WaveSize {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || BadPolicy::WaveSize(s.to_owned());
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(WaveSize::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(WaveSize::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One step of a wave spec: a cumulative size, or the tenants a selector picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaveStep {
    /// The wave brings the tenants placed after the canary wave up to this size.
    Size(WaveSize),
    /// The tenants not placed yet that match (`region=eu,tier!=enterprise`).
    Select(Selector),
    /// `*`: every tenant not placed yet.
    Rest,
}

impl WaveStep {
    /// One step as a flag or the fleet file writes it.
    fn parse(text: &str) -> Result<WaveStep, BadPolicy> {
        let text = text.trim();
        if text == "*" {
            return Ok(WaveStep::Rest);
        }
        if !text.contains('=') {
            return text.parse().map(WaveStep::Size);
        }
        text.parse()
            .map(WaveStep::Select)
            .map_err(|e| BadPolicy::WaveSelector(text.to_owned(), e))
    }
}

impl fmt::Display for WaveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveStep::Size(size) => size.fmt(f),
            WaveStep::Select(selector) => selector.fmt(f),
            WaveStep::Rest => f.write_str("*"),
        }
    }
}

/// The waves after the canaries, in order: cumulative sizes (`1,10%,50%,100%`), selectors
/// (`region=eu`), `*`, or a mix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WaveSpec(pub Vec<WaveStep>);

impl WaveSpec {
    /// A spec from its parts in order, each one as a `--waves` value or a `waves:` list
    /// item gives it: sizes (`5,50%`), one selector (`region=eu,tier!=enterprise`: its
    /// commas join terms), or `*`.
    pub fn from_parts<S: AsRef<str>>(parts: &[S]) -> Result<WaveSpec, BadPolicy> {
        let mut steps = Vec::new();
        for part in parts {
            steps.extend(WaveSpec::part(part.as_ref())?);
        }
        let text = parts.iter().map(|p| p.as_ref().trim()).collect::<Vec<_>>().join(" ");
        WaveSpec::checked(steps, &text)
    }

    /// One part: sizes when it holds no `=`, else one selector.
    fn part(text: &str) -> Result<Vec<WaveStep>, BadPolicy> {
        if text.contains('=') {
            return WaveStep::parse(text).map(|step| vec![step]);
        }
        text.split(',').map(WaveStep::parse).collect()
    }

    /// The spec several `--waves` give together, checked as one (`None` when none is given).
    pub fn joined(parts: &[WaveSpec]) -> Result<Option<WaveSpec>, BadPolicy> {
        if parts.is_empty() {
            return Ok(None);
        }
        let steps: Vec<String> = parts.iter().flat_map(WaveSpec::steps_text).collect();
        WaveSpec::from_parts(&steps).map(Some)
    }

    /// Whether any step is a selector: such a spec must place every tenant itself.
    pub fn has_selectors(&self) -> bool {
        self.0.iter().any(|s| matches!(s, WaveStep::Select(_)))
    }

    /// Each step as its own `--waves` value, as the ledger keeps them.
    pub fn steps_text(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Sizes are cumulative, so none may be smaller than the one before it of its kind
    /// (`5,2` or `50%,20%` is a mistake, not two waves), and nothing may follow `100%` or
    /// `*`, which leave nothing to place.
    fn checked(steps: Vec<WaveStep>, text: &str) -> Result<WaveSpec, BadPolicy> {
        let (mut count, mut percent) = (None, None);
        for (i, step) in steps.iter().enumerate() {
            let last = i + 1 == steps.len();
            let size = match step {
                WaveStep::Rest if !last => return Err(BadPolicy::AfterRest(text.to_owned())),
                WaveStep::Size(size) => *size,
                _ => continue,
            };
            let (before, value) = match size {
                WaveSize::Count(n) => (&mut count, n),
                WaveSize::Percent(p) => (&mut percent, p as usize),
            };
            if before.is_some_and(|before| value < before) {
                return Err(BadPolicy::Shrinking {
                    spec: text.to_owned(),
                    size,
                });
            }
            *before = Some(value);
            if percent == Some(100) && !last {
                return Err(BadPolicy::AfterAll(text.to_owned()));
            }
        }
        Ok(WaveSpec(steps))
    }
}

/// One `--waves` value: `1,10%,50%,100%`, one selector, or `*`.
impl FromStr for WaveSpec {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WaveSpec::from_parts(&[s])
    }
}

/// Sizes alone as they were always written (`1,10%,100%`); with selectors, one step
/// after another (`canary=true; 5%; region=eu; *`).
impl fmt::Display for WaveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.has_selectors() || self.0.contains(&WaveStep::Rest) {
            "; "
        } else {
            ","
        };
        f.write_str(&self.steps_text().join(sep))
    }
}

/// `--host-failures` when neither the command line nor the fleet file's `rollout:` says:
/// three tenants of one host in a row that could not connect cut the host off.
pub const DEFAULT_HOST_FAILURES: u32 = 3;

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
    fn skip_limits_read_back_what_they_print() {
        for text in ["canary", "3", "10%", "all"] {
            assert_eq!(text.parse::<MaxSkipped>().unwrap().to_string(), text);
        }
        assert!("0".parse::<MaxSkipped>().is_err());
        let canary = MaxSkipped::Canary;
        assert!(canary.stop(1, 10, "c", true, "drifted").is_some());
        assert!(canary.stop(5, 10, "a", false, "drifted").is_none());
        let two = MaxSkipped::Limit(MaxFailures::Count(2));
        assert!(two.stop(1, 10, "c", true, "drifted").is_none());
        assert_eq!(
            two.stop(2, 10, "a", false, "locked"),
            Some(StopReason::MaxSkipped { skipped: 2, limit: 2 })
        );
    }

    #[test]
    fn reasons_escalate_by_severity() {
        assert!(StopReason::Completed < StopReason::Paused { wave: 1 });
        let incomplete = StopReason::Incomplete {
            short: 1,
            failed: 0,
            skipped: 1,
        };
        assert!(StopReason::Completed < incomplete && incomplete < StopReason::Paused { wave: 1 });
        let skipped = StopReason::MaxSkipped { skipped: 1, limit: 1 };
        assert!(
            StopReason::GateFailed {
                wave: 9,
                detail: "x".into()
            } < skipped
        );
        assert!(skipped < StopReason::MaxFailures { failed: 1, limit: 1 });
        assert!(StopReason::MaxFailures { failed: 1, limit: 1 } < StopReason::Interrupted);
        assert!(StopReason::Interrupted < StopReason::Abandoned);
        let ledger = StopReason::LedgerUnavailable { detail: "x".into() };
        assert!(StopReason::MaxFailures { failed: 1, limit: 1 } < ledger);
        assert!(ledger < StopReason::Interrupted);
        assert!(!ledger.is_failure() && ledger.is_early());
    }
}
