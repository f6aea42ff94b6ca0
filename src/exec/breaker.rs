//! The breaker for dead or sick hosts (`--host-failures K`): after K connection attempts
//! in a row to one host failed (refused, timed out, no route; each attempt of a tenant's
//! own retries counts), the host's tenants that have not started are skipped as
//! `unreachable` without being tried, and its tenants in flight stop retrying, so a dead
//! host costs about K connect timeouts, not every one of its tenants' retry budgets. An
//! attempt that connects (whatever the tenant then does) resets the count. An open breaker lets one tenant through as a probe once [`COOL_DOWN`] has passed
//! since it opened, or at the next wave, whichever comes first: while the probe runs, the
//! host's other tenants wait for it; if it connects the breaker closes and they start, if
//! not it opens again and they are skipped. SQL errors, lock waits and refusals are the
//! database answering: they never count.
//!
//! Tenant tasks feed it each connection attempt ([`Breakers::attempt_failed`],
//! [`Breakers::reached`]) and ask it before they start ([`Breakers::admit`]) and before they
//! retry ([`Breakers::is_cut_off`]); the dispatcher feeds it each tenant's outcome
//! ([`Breakers::observe`]). A host is `Tenant::server_key`, the key
//! the per-host caps use; it holds no credentials.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::db_error::DbError;
use crate::model::run::{HostCutOff, Outcome, SkipReason, TenantReport};

/// How long an open breaker skips its host's tenants before it lets one probe through.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

/// What a tenant about to start is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Start.
    Go,
    /// Start, as the probe of an open breaker.
    Probe,
    /// A probe of the host is in flight: wait for its outcome.
    Wait,
    /// Do not: the host is cut off; the tenant's report, untouched.
    Skip(DbError),
}

/// A change the dispatcher announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The host is cut off (again, when a probe failed).
    CutOff { host: String, failures: u32, error: String },
    /// A tenant of a cut-off host connected: its tenants start again.
    Restored { host: String },
}

#[derive(Debug, Clone)]
enum State {
    /// Tenants start; `failures` connection attempts in a row failed.
    Closed { failures: u32 },
    /// Its tenants are skipped; one probe may go from `probe_at` on.
    Open { probe_at: Instant },
    /// One probe is in flight; its other tenants wait for it.
    Probing,
}

/// One breaker per host of a run.
#[derive(Debug)]
pub struct Breakers {
    /// `--host-failures`: 0 never trips.
    trip_after: u32,
    hosts: Mutex<HashMap<String, Host>>,
    /// How many hosts are cut off (open or probing): while none is, a tenant is admitted
    /// without taking the lock.
    open: AtomicUsize,
    /// The run's start, from which the report says when a host was cut off.
    began: Instant,
    /// Woken when a host is cut off: every tenant still waiting for its turn waits on it,
    /// where 100,000 of them polling every 50 ms kept the runtime busy with timers.
    cut: Notify,
}

#[derive(Debug)]
struct Host {
    state: State,
    /// What the report says of it, once it was cut off.
    record: Option<HostCutOff>,
    /// The order its first tenant ended in, for the report.
    order: usize,
}

impl Breakers {
    pub fn new(trip_after: u32) -> Self {
        Breakers {
            trip_after,
            hosts: Mutex::default(),
            open: AtomicUsize::new(0),
            began: Instant::now(),
            cut: Notify::new(),
        }
    }

    /// Resolves, with the error to report, once `host` is cut off: a tenant waiting for its
    /// turn is skipped at once rather than when its host's slot frees.
    pub async fn cut_off(&self, host: &str) -> DbError {
        loop {
            let notified = self.cut.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a cut in between is not missed.
            notified.as_mut().enable();
            if let Admit::Skip(error) = self.admit(host, false) {
                return error;
            }
            notified.await;
        }
    }

    /// Whether a tenant of `host` may start now. `may_probe`: the tenant holds its turn and
    /// would start at once, so it may be an open breaker's probe; one still waiting for its
    /// turn is only told to skip, or to go on waiting ([`Admit::Go`] or [`Admit::Wait`]).
    pub fn admit(&self, host: &str, may_probe: bool) -> Admit {
        if self.trip_after == 0 || self.open.load(Ordering::SeqCst) == 0 {
            return Admit::Go;
        }
        let mut hosts = self.hosts.lock().expect("not poisoned");
        let Some(h) = hosts.get_mut(host) else { return Admit::Go };
        match h.state {
            State::Closed { .. } => return Admit::Go,
            State::Open { probe_at } if probe_at <= Instant::now() => {
                if may_probe {
                    h.state = State::Probing;
                    return Admit::Probe;
                }
                return Admit::Go;
            }
            State::Probing => return Admit::Wait,
            State::Open { .. } => {}
        }
        let record = h.record.as_mut().expect("an open breaker has its record");
        record.skipped += 1;
        Admit::Skip(DbError::host_cut_off(
            host,
            format!(
                "not tried: {} connection attempt(s) in a row to the host failed (--host-failures), the last: {}",
                record.failures, record.error
            ),
        ))
    }

    /// A new wave begins: every open breaker may be probed by its next tenant.
    pub fn new_wave(&self) {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        for h in hosts.values_mut() {
            if let State::Open { .. } = h.state {
                h.state = State::Open {
                    probe_at: Instant::now(),
                };
            }
        }
    }

    /// Whether `host` is cut off now (open, or its probe in flight): a tenant in flight
    /// stops retrying its connection.
    pub fn is_cut_off(&self, host: &str) -> bool {
        if self.trip_after == 0 || self.open.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let hosts = self.hosts.lock().expect("not poisoned");
        hosts
            .get(host)
            .is_some_and(|h| !matches!(h.state, State::Closed { .. }))
    }

    /// An attempt of a tenant in flight reached `host`: the count of failures in a row
    /// starts again (a cut-off host is restored by the tenant's outcome, see
    /// [`Breakers::observe`]).
    pub fn reached(&self, host: &str) {
        if self.trip_after == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().expect("not poisoned");
        if let Some(h) = hosts.get_mut(host).filter(|h| matches!(h.state, State::Closed { .. })) {
            h.state = State::Closed { failures: 0 };
        }
    }

    /// One attempt of a tenant in flight could not connect to `host`: each attempt, a
    /// tenant's retries included, counts toward K. Returns the change to announce.
    pub fn attempt_failed(&self, host: &str, error: &DbError) -> Option<Change> {
        if self.trip_after == 0 || error.answered() || error.op != "connecting" {
            return None;
        }
        let mut hosts = self.hosts.lock().expect("not poisoned");
        self.failed(&mut hosts, host, error)
    }

    /// A connection failure on `host`, counted.
    fn failed(&self, hosts: &mut HashMap<String, Host>, host: &str, error: &DbError) -> Option<Change> {
        let h = entry(hosts, host);
        match h.state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures < self.trip_after {
                    h.state = State::Closed { failures };
                    return None;
                }
                self.open.fetch_add(1, Ordering::SeqCst);
                self.cut.notify_waiters();
                Some(h.cut_off(host, failures, error, self.began))
            }
            State::Probing => {
                let failures = h.record.as_ref().map_or(0, |r| r.failures) + 1;
                self.cut.notify_waiters();
                Some(h.cut_off(host, failures, error, self.began))
            }
            // One in flight when the host was cut off: nothing new.
            State::Open { .. } => None,
        }
    }

    /// Notes the outcome of a tenant of `host` that was tried (not one [`Breakers::admit`]
    /// skipped); returns the change to announce, if any. `counted`: its failed attempts were
    /// each counted already ([`Breakers::attempt_failed`]), so its outcome does not count again.
    pub fn observe(&self, host: &str, report: &TenantReport, counted: bool) -> Option<Change> {
        if self.trip_after == 0 {
            return None;
        }
        self.change(host, report, counted)
    }

    fn change(&self, host: &str, report: &TenantReport, counted: bool) -> Option<Change> {
        let mut hosts = self.hosts.lock().expect("not poisoned");
        let down = match connection_failure(report) {
            Some(_) if counted => return None,
            Some(error) => Some(error),
            None if connected(report) => None,
            None => {
                // A probe that never got to connect (the run stopped): the next tenant probes.
                if let Some(h) = hosts.get_mut(host).filter(|h| matches!(h.state, State::Probing)) {
                    h.state = State::Open {
                        probe_at: Instant::now(),
                    };
                }
                return None;
            }
        };
        if let Some(error) = down {
            return self.failed(&mut hosts, host, error);
        }
        let h = entry(&mut hosts, host);
        match h.state {
            State::Closed { .. } => {
                h.state = State::Closed { failures: 0 };
                None
            }
            State::Open { .. } | State::Probing => {
                h.state = State::Closed { failures: 0 };
                self.open.fetch_sub(1, Ordering::SeqCst);
                if let Some(record) = h.record.as_mut() {
                    record.restored = true;
                }
                Some(Change::Restored { host: host.to_owned() })
            }
        }
    }

    /// The hosts cut off in this run, in the order their first tenants ended.
    pub fn report(&self) -> Vec<HostCutOff> {
        let hosts = self.hosts.lock().expect("not poisoned");
        let mut cut: Vec<(usize, HostCutOff)> = hosts
            .values()
            .filter_map(|h| h.record.clone().map(|r| (h.order, r)))
            .collect();
        cut.sort_by_key(|(order, _)| *order);
        cut.into_iter().map(|(_, r)| r).collect()
    }
}

/// `host`'s entry, closed with no failures when it is new; entries keep the order hosts
/// were first seen in.
fn entry<'h>(hosts: &'h mut HashMap<String, Host>, host: &str) -> &'h mut Host {
    let order = hosts.len();
    hosts.entry(host.to_owned()).or_insert(Host {
        state: State::Closed { failures: 0 },
        record: None,
        order,
    })
}

impl Host {
    fn cut_off(&mut self, host: &str, failures: u32, error: &DbError, began: Instant) -> Change {
        self.state = State::Open {
            probe_at: Instant::now() + COOL_DOWN,
        };
        let error = error.to_string();
        let record = self.record.get_or_insert_with(|| HostCutOff {
            host: host.to_owned(),
            at_ms: Some(Instant::now().saturating_duration_since(began).as_millis() as u64),
            failures,
            error: error.clone(),
            skipped: 0,
            restored: false,
        });
        record.failures = failures;
        record.error = error.clone();
        record.restored = false;
        Change::CutOff {
            host: host.to_owned(),
            failures,
            error,
        }
    }
}

/// The error of a tenant that could not connect to its server at all: refused, timed out,
/// no route. An error the server gave (a code: bad password, too many connections, no
/// such database) is the server answering, and does not count.
fn connection_failure(report: &TenantReport) -> Option<&DbError> {
    let error = match &report.outcome {
        Outcome::Skipped {
            reason: SkipReason::Unreachable { error },
        } => error,
        Outcome::Failed {
            error,
            during: crate::model::run::Phase::Connecting,
            ..
        } => error,
        _ => return None,
    };
    (!error.answered() && error.op == "connecting").then_some(error)
}

/// Whether a tenant that was tried reached its host (see [`connection_failure`]): an
/// error the server gave counts, a stop before it connected does not.
pub fn reached(report: &TenantReport) -> bool {
    connection_failure(report).is_none() && !matches!(report.outcome, Outcome::NotStarted)
}

/// The tenant reached its server: whatever came after, the host is alive.
fn connected(report: &TenantReport) -> bool {
    match &report.outcome {
        Outcome::Succeeded | Outcome::Stopped => true,
        Outcome::Failed { .. } => true,
        Outcome::Skipped { reason } => !matches!(reason, SkipReason::Unreachable { .. }),
        Outcome::NotStarted => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::db_error::ErrorKind;
    use crate::model::fleet::TenantId;

    fn report(outcome: Outcome) -> TenantReport {
        TenantReport {
            id: TenantId::new("t").unwrap(),
            outcome,
            start_version: None,
            final_version: None,
            steps: vec![],
        }
    }

    fn refused() -> TenantReport {
        let error = DbError::new(
            ErrorKind::Unreachable,
            "connecting",
            "Connection refused (os error 111)",
        );
        report(Outcome::Skipped {
            reason: SkipReason::Unreachable { error },
        })
    }

    #[tokio::test(start_paused = true)]
    async fn k_failures_in_a_row_trip_it_and_a_connection_between_resets_the_count() {
        let b = Breakers::new(3);
        assert_eq!(b.observe("h", &refused(), false), None);
        assert_eq!(b.observe("h", &refused(), false), None);
        assert_eq!(b.observe("h", &report(Outcome::Succeeded), false), None);
        assert_eq!(b.observe("h", &refused(), false), None);
        assert_eq!(b.observe("h", &refused(), false), None);
        assert_eq!(b.admit("h", true), Admit::Go);
        assert!(matches!(
            b.observe("h", &refused(), false),
            Some(Change::CutOff { failures: 3, .. })
        ));
        assert!(matches!(b.admit("h", true), Admit::Skip(_)));
        assert_eq!(b.admit("other", true), Admit::Go, "another host is not touched");
        assert_eq!(b.report()[0].skipped, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_answers_with_an_error_does_not_count() {
        let b = Breakers::new(1);
        let mut auth = DbError::new(ErrorKind::Unreachable, "connecting", "password authentication failed");
        auth.code = Some("28P01".into());
        let answered = report(Outcome::Skipped {
            reason: SkipReason::Unreachable { error: auth },
        });
        assert_eq!(b.observe("h", &answered, false), None);
        assert_eq!(b.admit("h", true), Admit::Go);
        let zero = Breakers::new(0);
        assert_eq!(zero.observe("h", &refused(), false), None, "0 never trips");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_goes_and_closes_or_reopens_it() {
        let b = Breakers::new(1);
        assert!(b.observe("h", &refused(), false).is_some());
        tokio::time::advance(COOL_DOWN).await;
        assert_eq!(b.admit("h", false), Admit::Go, "a tenant without its turn waits");
        assert_eq!(b.admit("h", true), Admit::Probe);
        assert_eq!(b.admit("h", true), Admit::Wait, "one probe at a time");
        assert!(matches!(
            b.observe("h", &refused(), false),
            Some(Change::CutOff { failures: 2, .. })
        ));
        assert!(matches!(b.admit("h", true), Admit::Skip(_)));
        b.new_wave();
        assert_eq!(
            b.admit("h", true),
            Admit::Probe,
            "a new wave may probe before the cool-down"
        );
        assert_eq!(
            b.observe("h", &report(Outcome::Succeeded), false),
            Some(Change::Restored { host: "h".into() })
        );
        assert_eq!(b.admit("h", true), Admit::Go);
        assert!(b.report()[0].restored);
    }

    #[tokio::test(start_paused = true)]
    async fn each_failed_attempt_counts_and_the_outcome_of_a_counted_tenant_does_not_count_again() {
        let b = Breakers::new(3);
        let error = DbError::new(
            ErrorKind::Unreachable,
            "connecting",
            "Connection refused (os error 111)",
        );
        assert_eq!(b.attempt_failed("h", &error), None);
        assert_eq!(b.attempt_failed("h", &error), None);
        assert_eq!(b.observe("h", &refused(), true), None, "its attempts were counted");
        assert!(!b.is_cut_off("h"));
        b.reached("h");
        assert_eq!(
            b.attempt_failed("h", &error),
            None,
            "a connection started the count again"
        );
        assert_eq!(b.attempt_failed("h", &error), None);
        assert!(matches!(
            b.attempt_failed("h", &error),
            Some(Change::CutOff { failures: 3, .. })
        ));
        assert!(b.is_cut_off("h"), "a tenant in flight stops retrying");
        assert!(!b.is_cut_off("other"));
        assert_eq!(b.report()[0].at_ms, Some(0));
    }
}
