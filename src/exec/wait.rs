//! `wait`: reads the selected tenants' standing again and again until every one has
//! arrived at the target, or the time is up. Only reads; a read still running at the
//! deadline is dropped.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::exec::run::{RunContext, inspect_all};
use crate::model::fleet::Tenant;
use crate::model::migration::Version;
use crate::plan::status::{Condition, FleetStatus, LedgerNote, Standing};

/// How long to wait, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between the start of one read of the fleet and the next.
    pub interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(1),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    /// Every tenant arrived before the timeout.
    pub arrived: bool,
    pub waited: Duration,
    /// Reads of the fleet that finished.
    pub polls: usize,
    /// The last finished read; when none finished in time, every tenant as unreachable.
    pub status: FleetStatus,
}

impl WaitOutcome {
    /// The tenants that had not arrived at the last read.
    pub fn laggards(&self) -> impl Iterator<Item = &Standing> {
        self.status.laggards()
    }
}

/// Calls `probe` every `interval` until a status has arrived or `timeout` passes. The
/// first probe may take `first_read` when that is longer, so that even `--timeout 0s`
/// reads the fleet once. Returns whether it arrived, the time taken, the number of
/// finished probes and the last status. `on_read` sees every status read.
pub async fn poll<F, Fut>(
    mut probe: F,
    opts: WaitOptions,
    first_read: Duration,
    on_read: &mut (dyn FnMut(&FleetStatus) + Send),
) -> (bool, Duration, usize, Option<FleetStatus>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = FleetStatus>,
{
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut last = None;
    let mut polls = 0;
    loop {
        let began = Instant::now();
        let limit = if polls == 0 {
            deadline.max(start + first_read)
        } else {
            deadline
        };
        let Ok(status) = tokio::time::timeout_at(limit, probe()).await else {
            break;
        };
        polls += 1;
        on_read(&status);
        let arrived = status.has_arrived();
        last = Some(status);
        if arrived {
            return (true, start.elapsed(), polls, last);
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until((began + opts.interval).min(deadline)).await;
    }
    (false, start.elapsed(), polls, last)
}

/// Waits for `tenants` to arrive at `target`, reading them as `status` does. `on_read`
/// sees each reading, for progress.
pub async fn wait(
    ctx: &RunContext<'_>,
    tenants: &[&Tenant],
    target: Version,
    opts: WaitOptions,
    on_read: &mut (dyn FnMut(&FleetStatus) + Send),
) -> WaitOutcome {
    let probe = || async {
        let states = inspect_all(ctx, tenants).await;
        FleetStatus::assess_sets(
            ctx.sets,
            target,
            states
                .into_iter()
                .map(|(t, rows)| (t.id.to_string(), t.engine, rows.map_err(|e| e.to_string()))),
        )
    };
    let (arrived, waited, polls, last) = poll(probe, opts, ctx.connector.limits.connect_timeout, on_read).await;
    let status = last.unwrap_or_else(|| FleetStatus {
        head: ctx.sets.head(),
        heads: std::collections::BTreeMap::new(),
        target,
        tenants: tenants
            .iter()
            .map(|t| Standing {
                id: t.id.to_string(),
                condition: Condition::Unreachable,
                version: None,
                behind_by: None,
                dirty: None,
                detail: Some(format!("no answer within {}", humantime::format_duration(waited))),
                refusal: None,
                note: LedgerNote::default(),
                against: None,
            })
            .collect(),
    });
    WaitOutcome {
        arrived,
        waited,
        polls,
        status,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::model::migration::{Applied, Migration, MigrationSet};

    fn set() -> MigrationSet {
        MigrationSet::new(
            (1..=3)
                .map(|v| {
                    Migration::new(
                        Version::int(v),
                        format!("m{v}"),
                        format!("select {v};"),
                        None,
                        format!("{v:04}_m{v}.up.sql").into(),
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    /// A fleet of one tenant at `version`.
    fn at(set: &MigrationSet, version: i64) -> FleetStatus {
        let rows: Vec<Applied> = set
            .iter()
            .filter(|m| m.version <= Version::int(version))
            .map(crate::model::migration::Migration::applied)
            .collect();
        FleetStatus::assess(set, set.head(), [("t".to_owned(), Ok::<_, String>(rows))])
    }

    const OPTS: WaitOptions = WaitOptions {
        timeout: Duration::from_secs(10),
        interval: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn returns_at_the_first_read_that_finds_the_fleet_arrived() {
        let set = set();
        let versions = Mutex::new(vec![3, 2, 1, 1]);
        let probe = || async { at(&set, versions.lock().unwrap().pop().unwrap()) };
        let (arrived, waited, polls, last) = poll(probe, OPTS, Duration::ZERO, &mut |_| {}).await;
        assert!(arrived);
        assert_eq!(polls, 4);
        assert_eq!(waited, Duration::from_secs(3));
        assert!(last.unwrap().has_arrived());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_read() {
        let set = set();
        let probe = || async { at(&set, 2) };
        let (arrived, waited, polls, last) = poll(probe, OPTS, Duration::ZERO, &mut |_| {}).await;
        assert!(!arrived);
        assert_eq!(waited, Duration::from_secs(10));
        assert_eq!(polls, 11, "reads at 0s, 1s, ... and one at the deadline");
        let last = last.unwrap();
        let laggards: Vec<(&str, Option<usize>)> = last.laggards().map(|t| (t.id.as_str(), t.behind_by)).collect();
        assert_eq!(laggards, [("t", Some(1))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_hangs_past_the_deadline_is_dropped() {
        let set = set();
        let probe = || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            at(&set, 3)
        };
        let (arrived, waited, polls, last) = poll(probe, OPTS, Duration::ZERO, &mut |_| {}).await;
        assert!(!arrived);
        assert_eq!(waited, Duration::from_secs(10));
        assert_eq!(polls, 0);
        assert!(last.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_read_may_take_the_connect_timeout() {
        let set = set();
        let once = WaitOptions {
            timeout: Duration::ZERO,
            interval: Duration::from_secs(1),
        };
        let probe = || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            at(&set, 2)
        };
        let (arrived, waited, polls, last) = poll(probe, once, Duration::from_secs(10), &mut |_| {}).await;
        assert_eq!((arrived, waited, polls), (false, Duration::from_secs(2), 1));
        assert!(!last.unwrap().has_arrived());
        let probe = || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            at(&set, 3)
        };
        let (arrived, waited, polls, _) = poll(probe, once, Duration::from_secs(10), &mut |_| {}).await;
        assert_eq!((arrived, waited, polls), (false, Duration::from_secs(10), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_reads_are_not_followed_by_a_full_interval() {
        let set = set();
        let count = Mutex::new(0);
        let probe = || async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let mut n = count.lock().unwrap();
            *n += 1;
            at(&set, if *n == 3 { 3 } else { 1 })
        };
        let (arrived, waited, polls, _) = poll(probe, OPTS, Duration::ZERO, &mut |_| {}).await;
        assert!(arrived);
        assert_eq!(polls, 3);
        assert_eq!(waited, Duration::from_millis(2700), "reads start at 0s, 1s and 2s");
    }
}
