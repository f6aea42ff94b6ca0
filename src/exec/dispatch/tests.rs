//! The dispatcher's decisions, without a database: a [`Work`] that plays each tenant's
//! part from a script, a tenant source of waves or of fake claims, and tokio's paused
//! clock, so bakes and lease polls take no real time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::driver::ledger::Claimed;
use crate::exec::events::Stamped;
use crate::exec::work::Unread;
use crate::model::db_error::{DbError, ErrorKind};
use crate::model::fleet::{Engine, Fleet, TenantId};
use crate::model::migration::{Applied, Version};
use crate::model::sets::Sets;

/// How the fake plays a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Reaches the target.
    Succeeds,
    /// Applies the first migration, then fails on the second.
    FailsAfterMoving,
    /// Never returns (until a second interrupt drops it).
    Hangs,
    /// Fails after moving, and its rollback finds its lock taken.
    FailsAndRollbackLocked,
    /// Its server refuses the connection (after its retries).
    Refused,
    /// Its server refuses the connection at once, while others take `takes` to.
    RefusedAtOnce,
}

/// The per-tenant work, played from a script.
struct Fake {
    parts: HashMap<String, Part>,
    /// How long each tenant's run takes (paused time).
    takes: Duration,
    /// Tenants whose `--check` returns false.
    check_false: HashSet<String>,
    /// When this tenant starts, this many interrupts are sent.
    interrupt_at: Option<(String, usize)>,
    interrupts: mpsc::UnboundedSender<()>,
    /// What ran past its first safe point, in order: the tenant and its migration target
    /// (these tests run migrations only).
    ran: Mutex<Vec<(String, Target)>>,
    checked: Mutex<Vec<String>>,
    /// Per tenant-name prefix (its letters), the tenants running now and the most at once.
    in_flight: Mutex<HashMap<String, (usize, usize)>>,
    /// Tenants the survey finds at the head of [`set`], and those it was asked about.
    at_head: HashSet<String>,
    surveyed: Mutex<Vec<String>>,
}

impl Fake {
    fn new(interrupts: mpsc::UnboundedSender<()>) -> Self {
        Fake {
            parts: HashMap::new(),
            takes: Duration::from_millis(100),
            check_false: HashSet::new(),
            interrupt_at: None,
            interrupts,
            ran: Mutex::default(),
            checked: Mutex::default(),
            in_flight: Mutex::default(),
            at_head: HashSet::new(),
            surveyed: Mutex::default(),
        }
    }

    fn part(mut self, tenant: &str, part: Part) -> Self {
        self.parts.insert(tenant.to_owned(), part);
        self
    }

    /// Notes a tenant of `group` starting (`up`) or ending its work.
    fn flying(&self, group: &str, up: bool) {
        let mut in_flight = self.in_flight.lock().unwrap();
        let (now, most) = in_flight.entry(group.to_owned()).or_insert((0, 0));
        if up {
            *now += 1;
            *most = (*most).max(*now);
        } else {
            *now -= 1;
        }
    }

    /// The most tenants of `group` that ran at once.
    fn most_at_once(&self, group: &str) -> usize {
        self.in_flight.lock().unwrap().get(group).map_or(0, |g| g.1)
    }

    /// The tenants that ran `up`, in order.
    fn ups(&self) -> Vec<String> {
        let ran = self.ran.lock().unwrap();
        ran.iter()
            .filter(|(_, a)| matches!(a, Target::Up { .. }))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The tenants rolled back, in order.
    fn downs(&self) -> Vec<String> {
        let mut downs: Vec<String> = (self.ran.lock().unwrap().iter())
            .filter(|(_, a)| matches!(a, Target::Down { .. }))
            .map(|(t, _)| t.clone())
            .collect();
        downs.sort();
        downs
    }
}

fn report(t: &Tenant, outcome: Outcome, start: i64, end: i64) -> TenantReport {
    TenantReport {
        id: t.id.clone(),
        outcome,
        start_version: Some(Version::int(start)),
        final_version: Some(Version::int(end)),
        steps: vec![],
    }
}

impl Work for Fake {
    async fn run(&self, t: &Tenant, job: Job<'_>) -> TenantReport {
        if let Some((at, presses)) = &self.interrupt_at {
            if at == t.id.as_str() {
                for _ in 0..*presses {
                    self.interrupts.send(()).unwrap();
                }
            }
        }
        if job.stop.load(Ordering::SeqCst) {
            return TenantReport {
                start_version: None,
                final_version: None,
                ..report(t, Outcome::NotStarted, 0, 0)
            };
        }
        // Only what really ran: a tenant that sees the stop at its first safe point did not.
        if let Action::Migrate(target) = job.action {
            self.ran.lock().unwrap().push((t.id.to_string(), target));
        }
        let part = self.parts.get(t.id.as_str()).copied().unwrap_or(Part::Succeeds);
        if part == Part::Hangs {
            std::future::pending::<()>().await;
        }
        // A tenant that reaches its server does so at once; a refused one after `takes`.
        let refused = matches!(part, Part::Refused | Part::RefusedAtOnce);
        if let (Some(host), false) = (job.host, refused) {
            host.reached();
        }
        let group: String = t.id.as_str().chars().take_while(char::is_ascii_alphabetic).collect();
        self.flying(&group, true);
        if part != Part::RefusedAtOnce {
            tokio::time::sleep(self.takes).await;
        }
        self.flying(&group, false);
        if refused {
            let error = DbError::new(
                ErrorKind::Unreachable,
                "connecting",
                "Connection refused (os error 111)",
            );
            // As a real attempt: the breaker and the ramp hear of it before the tenant ends.
            if let Some(host) = job.host {
                host.unreached(&error);
            }
            let reason = crate::model::run::SkipReason::Unreachable { error };
            return TenantReport {
                start_version: None,
                final_version: None,
                ..report(t, Outcome::Skipped { reason }, 0, 0)
            };
        }
        match job.action {
            Action::Migrate(Target::Up { to })
                if matches!(part, Part::FailsAfterMoving | Part::FailsAndRollbackLocked) =>
            {
                let outcome = Outcome::Failed {
                    version: Some(Version::int(2)),
                    during: Phase::Migrating,
                    error: DbError::new(ErrorKind::Sql, "migrating", "relation \"x\" already exists"),
                    dirty: false,
                };
                assert_eq!(to, Version::int(2));
                report(t, outcome, 0, 1)
            }
            Action::Migrate(Target::Up { to }) => report(t, Outcome::Succeeded, 0, to.as_int().unwrap()),
            Action::Migrate(Target::Down { .. }) if part == Part::FailsAndRollbackLocked => {
                let error = DbError::new(ErrorKind::Locked, "locking", "still held after 1s");
                let reason = crate::model::run::SkipReason::Locked { error };
                TenantReport {
                    start_version: None,
                    final_version: None,
                    ..report(t, Outcome::Skipped { reason }, 0, 0)
                }
            }
            Action::Migrate(Target::Down { to }) => report(t, Outcome::Succeeded, 2, to.as_int().unwrap()),
            other => panic!("the dispatcher's tests run only up and its rollbacks, not {other:?}"),
        }
    }

    async fn survey(&self, tenants: &[&Tenant]) -> HashMap<TenantId, Vec<Applied>> {
        let head: Vec<Applied> = set().of(Engine::Sqlite).iter().map(|m| m.applied()).collect();
        let mut asked = self.surveyed.lock().unwrap();
        asked.extend(tenants.iter().map(|t| t.id.to_string()));
        tenants
            .iter()
            .filter(|t| self.at_head.contains(t.id.as_str()))
            .map(|t| (t.id.clone(), head.clone()))
            .collect()
    }

    async fn check(&self, t: &Tenant, _: &str) -> Result<bool, DbError> {
        self.checked.lock().unwrap().push(t.id.to_string());
        Ok(!self.check_false.contains(t.id.as_str()))
    }

    async fn settled(&self, tenants: &[&Tenant], _: Duration) -> Vec<Result<Vec<Applied>, Unread>> {
        tenants.iter().map(|_| Ok(vec![])).collect()
    }

    async fn read(&self, tenants: &[&Tenant]) -> Vec<Result<Vec<Applied>, DbError>> {
        tenants.iter().map(|_| Ok(vec![])).collect()
    }
}

fn fleet(ids: &[&str]) -> Fleet {
    let mut yaml = String::from("defaults:\n  url: \"sqlite://data/{id}.db\"\ntenants:\n");
    for id in ids {
        yaml.push_str(&format!("  - {{ id: {id} }}\n"));
    }
    crate::load::fleet::parse(Path::new("/nowhere/tenants.yaml"), &yaml, &|_| None).unwrap()
}

fn set() -> Sets {
    crate::model::migration::test_set(&[false, false]).into()
}

fn context<'a>(fleet: &'a Fleet, sets: &'a Sets, concurrency: usize) -> RunContext<'a> {
    RunContext {
        fleet,
        sets,
        connector: crate::driver::connect::Connector::new(fleet, Default::default()),
        concurrency,
        per_tenant_tx: false,
        retry: tenant::Retry::default(),
        ledger: None,
        run_id: "test-run".into(),
    }
}

/// Waves of the fleet's tenants, `sizes` tenants each, in order.
fn waves<'a>(fleet: &'a Fleet, sizes: &[usize]) -> Vec<Wave<'a>> {
    let mut tenants = fleet.tenants.iter();
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| Wave {
            number: k + 1,
            canary: false,
            tenants: tenants.by_ref().take(n).collect(),
        })
        .collect()
}

const UP: Action = Action::Migrate(Target::Up { to: Version::int(2) });

/// Runs `waves` under `policy` with `work`, this runner's own (`claims`: `None`) or
/// claimed from a shared run's ledger; returns the report and every event.
async fn run_with(
    ctx: &RunContext<'_>,
    (waves, policy): (&[Wave<'_>], &Policy),
    work: &Fake,
    claims: Option<&FakeClaims>,
    interrupts: Interrupts,
) -> (RunReport, Vec<Event>) {
    let (events, mut rx) = Events::channel();
    let spec = RunSpec {
        ctx,
        waves,
        action: UP,
        policy,
        command: "up",
        events: &events,
        source: Source::Waves,
    };
    let report = run(spec, work, claims, interrupts).await;
    drop(events);
    let mut seen = vec![];
    while let Some(Stamped { event, .. }) = rx.recv().await {
        seen.push(event);
    }
    (report, seen)
}

async fn run_waves(
    ctx: &RunContext<'_>,
    waves: &[Wave<'_>],
    policy: &Policy,
    work: &Fake,
    interrupts: Interrupts,
) -> (RunReport, Vec<Event>) {
    run_with(ctx, (waves, policy), work, None, interrupts).await
}

fn statuses(report: &RunReport) -> Vec<(String, Status)> {
    report.tenants.iter().map(|t| (t.id.clone(), t.status)).collect()
}

fn status_of(report: &RunReport, id: &str) -> Status {
    report.tenants.iter().find(|t| t.id == id).unwrap().status
}

fn policy(max_failures: MaxFailures, rollback: RollbackPolicy) -> Policy {
    Policy {
        max_failures,
        rollback,
        ..Policy::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_count_limit_stops_dispatch_once_reached() {
    let fleet = fleet(&["a", "b", "c", "d", "e", "f"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx)
        .part("b", Part::FailsAfterMoving)
        .part("c", Part::FailsAfterMoving);
    let policy = policy(MaxFailures::Count(2), RollbackPolicy::None);
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[6]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::MaxFailures { failed: 2, limit: 2 });
    assert_eq!(work.ups(), ["a", "b", "c"], "nothing starts once the limit is reached");
    assert_eq!(status_of(&report, "a"), Status::Succeeded);
    assert_eq!(status_of(&report, "c"), Status::Failed);
    for id in ["d", "e", "f"] {
        assert_eq!(status_of(&report, id), Status::NotStarted);
    }
    let stopping = events.iter().filter(|e| matches!(e, Event::Stopping { .. })).count();
    assert_eq!(stopping, 1, "the stop is announced once");
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::TenantFinished { .. }))
        .count();
    assert_eq!(finished, 6, "every tenant the run counts is named by an event");
    assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_failure_percentage_limit_counts_against_the_whole_run() {
    let ids: Vec<String> = (1..=10).map(|n| format!("t{n:02}")).collect();
    let fleet = fleet(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx)
        .part("t02", Part::FailsAfterMoving)
        .part("t05", Part::FailsAfterMoving);
    // 20% of 10 tenants: the second failure stops the run.
    let policy = policy(MaxFailures::Percent(20), RollbackPolicy::None);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[10]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::MaxFailures { failed: 2, limit: 2 });
    assert_eq!(work.ups(), ["t01", "t02", "t03", "t04", "t05"]);

    // 30%: two failures are within the limit, and the run goes on to its end.
    let (tx, rx) = mpsc::unbounded_channel();
    let work = Fake::new(tx)
        .part("t02", Part::FailsAfterMoving)
        .part("t05", Part::FailsAfterMoving);
    let policy = super::tests::policy(MaxFailures::Percent(30), RollbackPolicy::None);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[10]), &policy, &work, rx).await;
    assert_eq!(work.ups().len(), 10);
    assert!(!report.stop_reason.is_early(), "{:?}", report.stop_reason);
}

/// Two waves of two; `d`, the last tenant of wave 2, fails after moving. Each rollback
/// policy names its own tenants.
#[tokio::test(start_paused = true)]
async fn each_rollback_policy_rolls_back_its_own_tenants() {
    let fleet = fleet(&["a", "b", "c", "d"]);
    let set = set();
    let ctx = context(&fleet, &set, 1);
    let cases = [
        (RollbackPolicy::None, vec![]),
        (RollbackPolicy::Failed, vec!["d"]),
        (RollbackPolicy::Wave, vec!["c", "d"]),
        (RollbackPolicy::Run, vec!["a", "b", "c", "d"]),
    ];
    for (rollback, expected) in cases {
        let (tx, rx) = mpsc::unbounded_channel();
        let work = Fake::new(tx).part("d", Part::FailsAfterMoving);
        let policy = policy(MaxFailures::Count(1), rollback);
        let (report, events) = run_waves(&ctx, &waves(&fleet, &[2, 2]), &policy, &work, rx).await;
        assert_eq!(work.downs(), expected, "{rollback:?}");
        for t in &report.tenants {
            let rolled = expected.contains(&t.id.as_str());
            let want = match (rolled, t.id.as_str()) {
                (true, _) => Status::RolledBack,
                (false, "d") => Status::Failed,
                (false, _) => Status::Succeeded,
            };
            assert_eq!(t.status, want, "{rollback:?}: {}", t.id);
            if rolled {
                assert_eq!(
                    t.final_version,
                    Some(Version::int(0)),
                    "{rollback:?}: back where it started"
                );
                // On the timeline, the rollback (100 ms of fake work) after the run's last tenant.
                let [from, to] = t.rollback_ms.expect("a rollback's span");
                assert_eq!(to - from, 100, "{rollback:?}: {}", t.id);
                assert!(report.tenants.iter().all(|u| u.finished_ms <= Some(from)));
            } else {
                assert_eq!(t.rollback_ms, None);
            }
        }
        let announced = events.iter().find_map(|e| match e {
            Event::RollbackStarted { tenants } => Some(*tenants),
            _ => None,
        });
        assert_eq!(
            announced,
            (!expected.is_empty()).then_some(expected.len()),
            "{rollback:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_gate_stops_before_the_next_wave_and_checks_only_succeeded_tenants() {
    let fleet = fleet(&["a", "b", "c", "d", "e"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    let mut work = Fake::new(tx).part("b", Part::FailsAfterMoving);
    work.check_false.insert("c".into());
    let mut policy = policy(MaxFailures::Unlimited, RollbackPolicy::None);
    policy.gates.check = Some("SELECT count(*) > 0 FROM users".into());
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[3, 2]), &policy, &work, rx).await;
    assert_eq!(*work.checked.lock().unwrap(), ["a", "c"], "b failed: it is not checked");
    let StopReason::GateFailed { wave: 1, detail } = &report.stop_reason else {
        panic!("{:?}", report.stop_reason)
    };
    assert_eq!(detail, "check returned false on tenant `c`");
    assert_eq!(work.ups(), ["a", "b", "c"]);
    assert_eq!(status_of(&report, "d"), Status::NotStarted);
    let gate = events.iter().find_map(|e| match e {
        Event::GateFinished { passed, detail, .. } => Some((*passed, detail.clone())),
        _ => None,
    });
    assert_eq!(gate, Some((false, Some(detail.clone()))));
}

#[tokio::test(start_paused = true)]
async fn pause_after_stops_cleanly_after_its_wave_and_rolls_nothing_back() {
    let fleet = fleet(&["a", "b", "c", "d"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    let work = Fake::new(tx);
    let mut policy = policy(MaxFailures::Count(1), RollbackPolicy::Run);
    policy.pause_after = Some(1);
    policy.gates.bake = Some(Duration::from_secs(3600));
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[2, 2]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Paused { wave: 1 });
    assert_eq!(work.ups(), ["a", "b"]);
    assert!(
        work.downs().is_empty(),
        "a pause is not a failure: nothing is rolled back"
    );
    assert_eq!(
        statuses(&report),
        [
            ("a".into(), Status::Succeeded),
            ("b".into(), Status::Succeeded),
            ("c".into(), Status::NotStarted),
            ("d".into(), Status::NotStarted),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_bake_runs_between_waves_on_the_clock() {
    let fleet = fleet(&["a", "b"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx);
    let mut policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
    policy.gates.bake = Some(Duration::from_secs(240));
    let began = tokio::time::Instant::now();
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[1, 1]), &policy, &work, rx).await;
    assert!(began.elapsed() >= Duration::from_secs(240), "{:?}", began.elapsed());
    assert_eq!(work.ups(), ["a", "b"]);
    assert_eq!(report.stop_reason, StopReason::Completed);
    // The report's timeline, on the same clock: a, the bake, then b.
    let span = |t: &FinalTenant| (t.started_ms.unwrap(), t.finished_ms.unwrap());
    let (a, b) = (span(&report.tenants[0]), span(&report.tenants[1]));
    assert!(a.0 < 50 && (100..150).contains(&(a.1 - a.0)), "{a:?}");
    let bake = &report.waves[0].gates[..];
    assert_eq!(bake.len(), 1, "{bake:?}");
    assert_eq!((bake[0].gate, bake[0].passed), (crate::model::run::Gate::Bake, true));
    assert_eq!(bake[0].finished_ms - bake[0].started_ms, 240_000);
    assert!(
        bake[0].started_ms >= a.1 && b.0 >= bake[0].finished_ms,
        "{a:?} {bake:?} {b:?}"
    );
    assert!(report.waves[1].gates.is_empty());
    let wave_2 = (
        report.waves[1].started_ms.unwrap(),
        report.waves[1].finished_ms.unwrap(),
    );
    assert!(wave_2.0 <= b.0 && b.1 <= wave_2.1, "{wave_2:?} {b:?}");
}

#[tokio::test(start_paused = true)]
async fn one_interrupt_lets_tenants_in_flight_finish_and_starts_no_other() {
    let fleet = fleet(&["a", "b", "c", "d"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let mut work = Fake::new(tx);
    work.interrupt_at = Some(("b".into(), 1));
    let policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[4]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert_eq!(work.ups(), ["a", "b"]);
    assert_eq!(status_of(&report, "b"), Status::Succeeded, "in flight: it finished");
    assert_eq!(status_of(&report, "c"), Status::NotStarted);
    assert_eq!(
        report.tenants.iter().find(|t| t.id == "c").unwrap().final_version,
        Some(Version::int(0))
    );
    assert!(
        work.downs().is_empty(),
        "the failed policy rolls back only failed tenants"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_abandons_tenants_in_flight_and_reports_their_read_versions() {
    let fleet = fleet(&["a", "b", "c"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    let mut work = Fake::new(tx).part("b", Part::Hangs);
    work.interrupt_at = Some(("b".into(), 2));
    let policy = policy(MaxFailures::Count(1), RollbackPolicy::Run);
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[3]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Abandoned);
    assert!(work.downs().is_empty(), "no rollback after an abandon");
    let b = report.tenants.iter().find(|t| t.id == "b").unwrap();
    assert_eq!(b.status, Status::Failed);
    assert_eq!(
        b.final_version,
        Some(Version::int(0)),
        "the version its history shows, read once it ended"
    );
    let error = b.error.as_deref().unwrap();
    assert!(error.contains("abandoned by a second interrupt"), "{error}");
    assert_eq!(status_of(&report, "c"), Status::NotStarted);
    let finished: Vec<&str> = (events.iter())
        .filter_map(|e| match e {
            Event::TenantFinished { report, .. } => Some(report.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 3, "each tenant named once: {finished:?}");
}

/// SIGTERM reaches the dispatcher on the interrupt channel (`app::signals`): during a bake
/// it ends the bake and stops the run before the next wave.
#[tokio::test(start_paused = true)]
async fn sigterm_during_a_bake_ends_it_and_starts_no_next_wave() {
    let fleet = fleet(&["a", "b"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx.clone());
    let mut policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
    policy.gates.bake = Some(Duration::from_secs(3600));
    let signal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        tx.send(()).unwrap();
    });
    let began = tokio::time::Instant::now();
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[1, 1]), &policy, &work, rx).await;
    signal.await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(120), "{:?}", began.elapsed());
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert_eq!(work.ups(), ["a"]);
    let bake = events.iter().find_map(|e| match e {
        Event::GateFinished { passed, detail, .. } => Some((*passed, detail.clone())),
        _ => None,
    });
    assert_eq!(bake, Some((false, Some("interrupted".into()))));
}

#[derive(Debug)]
struct Prompted(bool, Mutex<Vec<usize>>);

impl Prompt for Prompted {
    fn confirm(&self, next: &NextWave) -> bool {
        self.1.lock().unwrap().push(next.next_wave);
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn confirm_asks_before_each_next_wave_and_a_no_stops_the_run() {
    let fleet = fleet(&["a", "b", "c"]);
    let set = set();
    let ctx = context(&fleet, &set, 1);
    for yes in [true, false] {
        let (tx, rx) = mpsc::unbounded_channel();
        let work = Fake::new(tx);
        let prompt = Arc::new(Prompted(yes, Mutex::default()));
        let mut policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
        policy.gates.confirm = true;
        policy.gates.prompt = Some(prompt.clone());
        let (report, _) = run_waves(&ctx, &waves(&fleet, &[1, 1, 1]), &policy, &work, rx).await;
        if yes {
            assert_eq!(*prompt.1.lock().unwrap(), [2, 3]);
            assert_eq!(work.ups(), ["a", "b", "c"]);
            assert_eq!(report.stop_reason, StopReason::Completed);
        } else {
            assert_eq!(*prompt.1.lock().unwrap(), [2]);
            assert_eq!(work.ups(), ["a"]);
            let detail = "not confirmed".to_owned();
            assert_eq!(report.stop_reason, StopReason::GateFailed { wave: 1, detail });
        }
    }
    // No one to ask: the run stops at the first question.
    let (tx, rx) = mpsc::unbounded_channel();
    let work = Fake::new(tx);
    let mut policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
    policy.gates.confirm = true;
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[1, 2]), &policy, &work, rx).await;
    let detail = "not confirmed: there is no one to ask".to_owned();
    assert_eq!(report.stop_reason, StopReason::GateFailed { wave: 1, detail });
}

/// A shared run's ledger, played from a queue of tenants; another runner sets the stop
/// marker once `marker_after` tenants have finished.
struct FakeClaims {
    queue: Mutex<VecDeque<(String, usize)>>,
    total: usize,
    finished: Mutex<Vec<(String, bool)>>,
    marker_after: usize,
    marker: StopReason,
    concluded: Mutex<Option<(StopReason, usize)>>,
}

impl FakeClaims {
    fn new(ids: &[&str], marker_after: usize, marker: StopReason) -> Self {
        FakeClaims {
            queue: Mutex::new(ids.iter().map(|id| (id.to_string(), 1)).collect()),
            total: ids.len(),
            finished: Mutex::default(),
            marker_after,
            marker,
            concluded: Mutex::default(),
        }
    }
}

impl Claims for FakeClaims {
    fn total(&self) -> usize {
        self.total
    }

    async fn claim(&self) -> Result<Claimed, LedgerError> {
        Ok(match self.queue.lock().unwrap().pop_front() {
            Some((id, wave)) => Claimed::Tenant { id, wave, from: None },
            None => Claimed::Done,
        })
    }

    async fn finish(&self, report: &TenantReport, release: bool) -> Result<Option<StopReason>, LedgerError> {
        self.finished.lock().unwrap().push((report.id.to_string(), release));
        Ok(None)
    }

    async fn stop_marker(&self) -> Result<Option<StopReason>, LedgerError> {
        let set = self.finished.lock().unwrap().len() >= self.marker_after;
        Ok(set.then(|| self.marker.clone()))
    }

    fn keep_alive(&self) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    async fn conclude(&self, report: &RunReport, own: &StopReason) -> Result<(), LedgerError> {
        *self.concluded.lock().unwrap() = Some((own.clone(), report.tenants.len()));
        Ok(())
    }

    fn gave_up_on_end(&self, why: String) {
        panic!("the fake ledger always answers: {why}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_shared_runs_stop_marker_stops_this_runner_and_its_failed_policy_applies() {
    let fleet = fleet(&["a", "b", "c", "d", "e"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let waves = waves(&fleet, &[5]);
    let marker = StopReason::MaxFailures { failed: 3, limit: 3 };
    let claims = FakeClaims::new(&["a", "b", "c", "d", "e"], 2, marker.clone());
    let mut work = Fake::new(tx);
    // Each tenant outlasts a few polls of the marker.
    work.takes = Duration::from_secs(1);
    let policy = policy(MaxFailures::Count(1), RollbackPolicy::Run);
    let (report, _) = run_with(&ctx, (&waves, &policy), &work, Some(&claims), rx).await;
    assert_eq!(report.stop_reason, marker);
    let ran = work.ups();
    assert!(
        ran.len() <= 3,
        "this runner stops within one poll of the marker: {ran:?}"
    );
    assert!(!claims.queue.lock().unwrap().is_empty(), "tenants are left for no one");
    // Its own tenants: those it ran, and one it claimed as the marker came, which saw the
    // stop at its first safe point (which comes first depends on select!'s fair order).
    for t in &report.tenants {
        let want = if ran.contains(&t.id) {
            Status::RolledBack
        } else {
            Status::NotStarted
        };
        assert_eq!(t.status, want, "{}", t.id);
    }
    assert!(report.tenants.len() <= ran.len() + 1, "{:?}", statuses(&report));
    // The marker is a failure: the run policy rolls back this runner's own tenants.
    assert_eq!(work.downs(), {
        let mut r = ran.clone();
        r.sort();
        r
    });
    let concluded = claims.concluded.lock().unwrap().clone();
    assert_eq!(concluded, Some((marker, report.tenants.len())));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_in_a_shared_run_releases_unstarted_tenants_and_rolls_back_nothing() {
    let fleet = fleet(&["a", "b", "c"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let waves = waves(&fleet, &[3]);
    let claims = FakeClaims::new(&["a", "b", "c"], usize::MAX, StopReason::Completed);
    let mut work = Fake::new(tx).part("a", Part::FailsAfterMoving);
    work.interrupt_at = Some(("b".into(), 1));
    let policy = policy(MaxFailures::Unlimited, RollbackPolicy::Run);
    let (report, _) = run_with(&ctx, (&waves, &policy), &work, Some(&claims), rx).await;
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert!(
        work.downs().is_empty(),
        "other runners may carry on: no rollback after a local Ctrl-C"
    );
    let finished = claims.finished.lock().unwrap().clone();
    assert_eq!(finished[0], ("a".to_owned(), false));
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert_eq!(claims.queue.lock().unwrap().len(), 1, "c was never claimed");
}

/// A rollback that never reached its tenant (its lock taken) leaves it where the run did:
/// the report and the rollback's event say that version, not "unknown".
#[tokio::test(start_paused = true)]
async fn a_rollback_that_finds_the_lock_taken_reports_where_the_run_left_the_tenant() {
    let fleet = fleet(&["a", "b"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx).part("b", Part::FailsAndRollbackLocked);
    let policy = policy(MaxFailures::Count(1), RollbackPolicy::Failed);
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[2]), &policy, &work, rx).await;
    let b = report.tenants.iter().find(|t| t.id == "b").unwrap();
    assert_eq!(b.status, Status::RollbackFailed);
    assert_eq!(b.final_version, Some(Version::int(1)));
    assert_eq!(b.rollback, Some([Some(Version::int(1)), Some(Version::int(1))]));
    let rolled = events.iter().find_map(|e| match e {
        Event::TenantRolledBack { to, error, .. } => Some((*to, error.is_some())),
        _ => None,
    });
    assert_eq!(rolled, Some((Some(Version::int(1)), true)));
}

/// A policy with `window` read on a clock that starts at `at` and runs with paused time.
fn in_window(window: &str, at: &str) -> Policy {
    let clock = crate::exec::window::TokioClock::starting_at(at.parse().unwrap());
    Policy {
        window: Some(ChangeWindow::new(window.parse().unwrap(), Arc::new(clock))),
        ..Policy::default()
    }
}

fn window_waits(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::WindowWait { opens_at_ms, .. } => Some(*opens_at_ms),
            _ => None,
        })
        .collect()
}

fn ms(at: &str) -> u64 {
    at.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

const WEEKDAYS: &str = "Mon-Fri 02:00-05:00 Europe/Copenhagen";

#[tokio::test(start_paused = true)]
async fn a_run_begun_outside_its_window_waits_for_it_then_goes_on() {
    let fleet = fleet(&["a", "b"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    let work = Fake::new(tx);
    // Wed 14 Jan 2026, 01:59 CET: the window opens at 02:00 CET (01:00Z).
    let policy = in_window(WEEKDAYS, "2026-01-14T00:59:00Z");
    let began = tokio::time::Instant::now();
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[2]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Completed);
    assert_eq!(
        window_waits(&events),
        [ms("2026-01-14T01:00:00Z")],
        "one wait, said once"
    );
    assert!(began.elapsed() >= Duration::from_secs(60), "{:?}", began.elapsed());
    let waited = events
        .iter()
        .position(|e| matches!(e, Event::WindowWait { .. }))
        .unwrap();
    let first_start = events
        .iter()
        .position(|e| matches!(e, Event::TenantStarted { .. }))
        .unwrap();
    assert!(waited < first_start, "no tenant starts before the window opens");
    assert_eq!(work.ups(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_window_that_closes_lets_tenants_in_flight_finish_and_holds_the_rest() {
    let fleet = fleet(&["a", "b", "c"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let work = Fake::new(tx);
    // 150 ms before the day's window closes (23:59); each tenant takes 100 ms: a and b
    // start inside it, b ends after it closed, c waits for the next day's, a minute on.
    let policy = in_window("00:00-23:59 UTC", "2026-01-14T23:58:59.850Z");
    let began = tokio::time::Instant::now();
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[3]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Completed);
    assert_eq!(window_waits(&events), [ms("2026-01-15T00:00:00Z")]);
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::TenantStarted { tenant, .. } => Some(format!("start {tenant}")),
            Event::TenantFinished { report, .. } => Some(format!("end {}", report.id)),
            Event::WindowWait { .. } => Some("wait".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["start a", "end a", "start b", "end b", "wait", "start c", "end c"]
    );
    assert!(began.elapsed() >= Duration::from_secs(60), "{:?}", began.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_waiting_for_the_window_stops_the_run_at_once() {
    let fleet = fleet(&["a", "b", "c"]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    let work = Fake::new(tx.clone());
    // Saturday: the window opens on Monday.
    let policy = in_window(WEEKDAYS, "2026-01-17T12:00:00Z");
    let began = tokio::time::Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(600)).await;
        tx.send(()).unwrap();
    });
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[1, 2]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert!(began.elapsed() < Duration::from_secs(601), "{:?}", began.elapsed());
    assert_eq!(window_waits(&events), [ms("2026-01-19T01:00:00Z")]);
    for id in ["a", "b", "c"] {
        assert_eq!(status_of(&report, id), Status::NotStarted);
    }
    assert!(work.ups().is_empty());
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::TenantFinished { .. }))
        .count();
    assert_eq!(finished, 3, "the events account for every tenant");
}

/// Two hosts: `a` (one session) with its tenants listed first, `b` (four sessions).
/// Starts go by each host's work left per session, but waves keep their order and a
/// failure limit stops every host's starts.
#[tokio::test(start_paused = true)]
async fn starts_by_work_left_keep_wave_order_and_the_failure_limit() {
    let mut yaml = String::from(concat!(
        "hosts:\n",
        "  a: { url: \"postgres://u@127.0.0.1:1/x\", max_connections: 1 }\n",
        "  b: { url: \"postgres://u@127.0.0.1:2/x\", max_connections: 4 }\n",
        "tenants:\n"
    ));
    let ids: Vec<String> = (0..3)
        .map(|i| format!("a{i}"))
        .chain((0..12).map(|i| format!("b{i:02}")))
        .collect();
    for id in &ids {
        yaml.push_str(&format!("  - {{ id: {id}, host: {}, schema: s_{id} }}\n", &id[..1]));
    }
    let fleet = crate::load::fleet::parse(Path::new("/nowhere/tenants.yaml"), &yaml, &|_| None).unwrap();
    let set = set();
    let ctx = context(&fleet, &set, 1);
    // Wave 1: a0..a2 and b00..b05; wave 2: b06..b11.
    let (tx, rx) = mpsc::unbounded_channel();
    let work = Fake::new(tx);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[9, 6]), &Policy::default(), &work, rx).await;
    assert!(!report.stop_reason.is_early(), "{:?}", report.stop_reason);
    let ups = work.ups();
    // With -j 1, b (6 tenants over 4 sessions) and a (3 over 1) take turns by work left:
    // a has more per session, so a0 goes first; every wave 1 tenant before any of wave 2.
    assert_eq!(ups[0], "a0", "{ups:?}");
    let last_of_wave_1 = ups.iter().rposition(|id| id.as_str() < "b06").unwrap();
    let first_of_wave_2 = ups.iter().position(|id| id.as_str() >= "b06").unwrap();
    assert!(last_of_wave_1 < first_of_wave_2, "{ups:?}");
    assert_eq!(ups.len(), 15);

    // One wave: a0 first (as much work per session, listed first), then b, whose work left
    // is now the most; b00 fails, and with a limit of one failure nothing starts after it.
    let (tx, rx) = mpsc::unbounded_channel();
    let work = Fake::new(tx).part("b00", Part::FailsAfterMoving);
    let policy = policy(MaxFailures::Count(1), RollbackPolicy::None);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[15]), &policy, &work, rx).await;
    assert_eq!(report.stop_reason, StopReason::MaxFailures { failed: 1, limit: 1 });
    let ups = work.ups();
    assert_eq!(
        ups.last().map(String::as_str),
        Some("b00"),
        "nothing starts after the failure: {ups:?}"
    );
    assert_eq!(ups, ["a0", "b00"]);
}

/// A fleet of PostgreSQL tenants, `(id, server)` each, on servers that are never reached.
fn fleet_on(tenants: &[(&str, &str)]) -> Fleet {
    let mut yaml = String::from("tenants:\n");
    for (id, server) in tenants {
        yaml.push_str(&format!(
            "  - {{ id: {id}, url: \"postgres://u:secret@{server}:5432/{id}\" }}\n"
        ));
    }
    crate::load::fleet::parse(Path::new("/nowhere/tenants.yaml"), &yaml, &|_| None).unwrap()
}

fn breaker(k: u32) -> Policy {
    Policy {
        max_failures: MaxFailures::Unlimited,
        max_skipped: MaxSkipped::Limit(MaxFailures::Unlimited),
        host_failures: k,
        ..Policy::default()
    }
}

fn cut_offs(events: &[Event]) -> Vec<(String, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::HostCutOff { host, failures, .. } => Some((host.clone(), *failures)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_breaker_trips_after_k_and_skips_the_rest_of_its_host_untried() {
    let mut tenants: Vec<(String, &str)> = (1..=8).map(|n| (format!("dead{n}"), "dead")).collect();
    tenants.extend((1..=4).map(|n| (format!("live{n}"), "live")));
    let refs: Vec<(&str, &str)> = tenants.iter().map(|(id, h)| (id.as_str(), *h)).collect();
    let fleet = fleet_on(&refs);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    // One at a time, so that no other tenant of the dead host is in flight when it trips.
    let ctx = context(&fleet, &set, 1);
    let mut work = Fake::new(tx);
    for n in 1..=8 {
        work = work.part(&format!("dead{n}"), Part::Refused);
    }
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[12]), &breaker(3), &work, rx).await;
    let tried: Vec<String> = work.ups().into_iter().filter(|t| t.starts_with("dead")).collect();
    assert_eq!(tried.len(), 3, "only the tenants that tripped it were tried: {tried:?}");
    assert_eq!(cut_offs(&events), [("postgres://dead:5432".to_owned(), 3)]);
    for t in &report.tenants {
        let want = if t.id.starts_with("live") {
            Status::Succeeded
        } else {
            Status::Skipped
        };
        assert_eq!(t.status, want, "{}", t.id);
    }
    let untried: Vec<&FinalTenant> = (report.tenants.iter())
        .filter(|t| t.id.starts_with("dead") && !tried.contains(&t.id))
        .collect();
    assert_eq!(untried.len(), 5);
    for t in untried {
        let error = t.error.as_deref().unwrap();
        assert!(
            error.starts_with("unreachable: host `postgres://dead:5432` cut off: not tried"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        assert_eq!((t.start_version, t.final_version, t.started_ms), (None, None, None));
    }
    let cut = &report.hosts_cut_off;
    assert_eq!(cut.len(), 1);
    assert_eq!((cut[0].failures, cut[0].skipped, cut[0].restored), (3, 5, false));
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::TenantFinished { .. }))
        .count();
    assert_eq!(finished, 12, "every tenant skipped untried is named by an event");
    assert_eq!(report.summary.skipped, 8);
}

#[tokio::test(start_paused = true)]
async fn the_skipped_tenants_of_a_cut_off_host_count_against_max_skipped() {
    let ids: Vec<String> = (1..=6).map(|n| format!("d{n}")).collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "dead")).collect();
    let fleet = fleet_on(&refs);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 1);
    let mut work = Fake::new(tx);
    for id in &ids {
        work = work.part(id, Part::Refused);
    }
    let mut policy = breaker(2);
    policy.max_skipped = MaxSkipped::Limit(MaxFailures::Count(3));
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[6]), &policy, &work, rx).await;
    assert!(
        matches!(report.stop_reason, StopReason::MaxSkipped { .. }),
        "{:?}",
        report.stop_reason
    );
    assert_eq!(work.ups(), ["d1", "d2"]);
}

#[tokio::test(start_paused = true)]
async fn a_probe_at_the_next_wave_keeps_it_open_when_it_fails_and_closes_it_when_it_connects() {
    let fleet = fleet_on(&[
        ("a", "h"),
        ("b", "h"),
        ("c", "h"),
        ("d", "h"),
        ("e", "h"),
        ("x", "other"),
    ]);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 2);
    // The host is down through wave 2's probe (b), and back for wave 3's (d).
    let work = Fake::new(tx).part("a", Part::Refused).part("b", Part::Refused);
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[1, 2, 3]), &breaker(1), &work, rx).await;
    let mut ups = work.ups();
    ups.sort();
    assert_eq!(
        ups,
        ["a", "b", "d", "e", "x"],
        "c waited for b's probe, and was skipped"
    );
    assert_eq!(
        statuses(&report),
        [
            ("a".into(), Status::Skipped),
            ("b".into(), Status::Skipped),
            ("c".into(), Status::Skipped),
            ("d".into(), Status::Succeeded),
            ("e".into(), Status::Succeeded),
            ("x".into(), Status::Succeeded),
        ]
    );
    let host = "postgres://h:5432".to_owned();
    assert_eq!(cut_offs(&events), [(host.clone(), 1), (host.clone(), 2)]);
    let restored = events
        .iter()
        .position(|e| matches!(e, Event::HostRestored { host: h } if *h == host));
    let e_started = events
        .iter()
        .position(|e| matches!(e, Event::TenantStarted { tenant, .. } if tenant.as_str() == "e"));
    assert!(
        restored.unwrap() < e_started.unwrap(),
        "e waited for the probe's outcome"
    );
    let cut = &report.hosts_cut_off;
    assert_eq!((cut.len(), cut[0].skipped, cut[0].restored), (1, 1, true));
}

#[tokio::test(start_paused = true)]
async fn a_dead_host_has_k_tenants_tried_in_all_when_one_fails_sooner_than_the_others() {
    // dead1 is refused at once, the others after `takes`: its failure must not free a
    // place for a fourth tenant, which would then be tried (and reported as tried) after
    // the host was cut off by the other two.
    let tenants: Vec<String> = (1..=8).map(|n| format!("dead{n}")).collect();
    let refs: Vec<(&str, &str)> = tenants.iter().map(|id| (id.as_str(), "dead")).collect();
    let fleet = fleet_on(&refs);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 8);
    let mut work = Fake::new(tx).part("dead1", Part::RefusedAtOnce);
    for n in 2..=8 {
        work = work.part(&format!("dead{n}"), Part::Refused);
    }
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[8]), &breaker(3), &work, rx).await;
    let tried: Vec<String> = work.ups();
    assert_eq!(tried, ["dead1", "dead2", "dead3"], "K tenants tried, no more");
    assert_eq!(cut_offs(&events), [("postgres://dead:5432".to_owned(), 3)]);
    assert_eq!(report.hosts_cut_off[0].skipped, 5);
}

#[tokio::test(start_paused = true)]
async fn an_unproven_host_has_k_tenants_in_flight_and_its_waiting_tenants_hold_no_slot() {
    // The dead host is listed first with the most tenants: without the ramp it took all
    // four slots at once; with it, K = 3 (the failed attempts that cut it off).
    let mut tenants: Vec<(String, &str)> = (1..=8).map(|n| (format!("dead{n}"), "dead")).collect();
    tenants.extend((1..=8).map(|n| (format!("live{n}"), "live")));
    let refs: Vec<(&str, &str)> = tenants.iter().map(|(id, h)| (id.as_str(), *h)).collect();
    let fleet = fleet_on(&refs);
    let (set, (tx, rx)) = (set(), mpsc::unbounded_channel());
    let ctx = context(&fleet, &set, 4);
    let mut work = Fake::new(tx);
    for n in 1..=8 {
        work = work.part(&format!("dead{n}"), Part::Refused);
    }
    let (report, events) = run_waves(&ctx, &waves(&fleet, &[16]), &breaker(3), &work, rx).await;
    let dead = work.most_at_once("dead");
    assert!(
        (1..=3).contains(&dead),
        "the dead host never had more than K tenants in flight: {dead}"
    );
    let live_started = events
        .iter()
        .position(|e| matches!(e, Event::TenantStarted { tenant, .. } if tenant.as_str().starts_with("live")));
    let cut = events.iter().position(|e| matches!(e, Event::HostCutOff { .. }));
    assert!(
        live_started.unwrap() < cut.unwrap(),
        "the dead host's waiting tenants held no slot: a live tenant started before the cut-off"
    );
    assert_eq!(cut_offs(&events), [("postgres://dead:5432".to_owned(), 3)]);
    assert_eq!((report.summary.succeeded, report.summary.skipped), (8, 8));

    // A host that answers gets its whole cap as soon as its first tenant connected, long
    // before that tenant ends.
    let fleet = fleet_on(&refs[8..]);
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = context(&fleet, &set, 4);
    let work = Fake::new(tx);
    let (report, _) = run_waves(&ctx, &waves(&fleet, &[8]), &breaker(3), &work, rx).await;
    assert_eq!(work.most_at_once("live"), 4);
    assert_eq!(report.summary.succeeded, 8);
}

#[tokio::test(start_paused = true)]
async fn sqlite_files_are_surveyed_a_chunk_at_a_time_until_one_finds_most_of_them_behind() {
    let ids: Vec<String> = (0..2_500).map(|n| format!("f{n:04}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let fleet = fleet(&refs);
    let set = set();
    // (tenants at the head, first ones in fleet order; tenants surveyed; tenants that ran)
    for (at_head, asked, ran) in [(0, 1_000, 2_500), (1_200, 2_000, 1_300), (2_500, 2_500, 0)] {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = context(&fleet, &set, 8);
        let mut work = Fake::new(tx);
        work.takes = Duration::from_millis(1);
        work.at_head = ids[..at_head].iter().cloned().collect();
        let (report, _) = run_waves(&ctx, &waves(&fleet, &[2_500]), &Policy::default(), &work, rx).await;
        assert_eq!(work.surveyed.lock().unwrap().len(), asked, "{at_head} at the head");
        assert_eq!(work.ups().len(), ran, "{at_head} at the head");
        assert_eq!(report.summary.succeeded, 2_500);
    }
}
