//! Where a fleet stands against a target: each tenant's condition and how many migrations
//! it lags, how many tenants sit at each version, and whether every tenant has arrived.
//! Also, from a ledger's rows, since when a tenant has been left short and its last error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::model::fleet::Engine;
use crate::model::migration::{Applied, Direction, MigrationSet, Version};
use crate::model::record::TenantState;
use crate::model::refusal::Refusal;
use crate::model::run::Status;
use crate::model::sets::Sets;
use crate::plan::tenant::{self as plan, State};

pub use crate::plan::tenant::Condition;

/// The last error the ledger holds for a tenant, not cleared by a later success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub run_id: String,
    /// When the ledger recorded it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub error: String,
}

/// What the ledger adds to a tenant's standing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerNote {
    /// When a run first left the tenant short of its target, counting only runs since its
    /// last success (milliseconds since the Unix epoch).
    pub since_ms: Option<i64>,
    pub last_error: Option<Failure>,
    /// The run whose newest row holds the tenant `started`: in flight in that run now, or
    /// left so by a run that died.
    pub in_flight: Option<String>,
}

/// One tenant's row of one run, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub tenant: String,
    pub run_id: String,
    pub state: TenantState,
    pub error: Option<String>,
    pub updated_ms: i64,
}

const SUCCEEDED: TenantState = TenantState::Ended(Status::Succeeded);

/// Per tenant: the rows after its last `succeeded` one make its streak of runs that left
/// it short; the oldest says since when, the newest with an error gives the last error.
pub fn ledger_notes(rows: &[LedgerRow]) -> HashMap<String, LedgerNote> {
    let mut last_ok: HashMap<&str, i64> = HashMap::new();
    for r in rows.iter().filter(|r| r.state == SUCCEEDED) {
        let at = last_ok.entry(&r.tenant).or_insert(r.updated_ms);
        *at = (*at).max(r.updated_ms);
    }
    let mut newest: HashMap<&str, &LedgerRow> = HashMap::new();
    for r in rows {
        let at = newest.entry(&r.tenant).or_insert(r);
        if r.updated_ms >= at.updated_ms {
            *at = r;
        }
    }
    let mut notes: HashMap<String, LedgerNote> = HashMap::new();
    for r in rows {
        if r.state == SUCCEEDED || last_ok.get(r.tenant.as_str()).is_some_and(|ok| r.updated_ms <= *ok) {
            continue;
        }
        let note = notes.entry(r.tenant.clone()).or_default();
        note.since_ms = Some(note.since_ms.map_or(r.updated_ms, |s| s.min(r.updated_ms)));
        if let Some(error) = &r.error {
            if note.last_error.as_ref().is_none_or(|e| e.at_ms <= r.updated_ms) {
                note.last_error = Some(Failure {
                    run_id: r.run_id.clone(),
                    at_ms: r.updated_ms,
                    error: error.clone(),
                });
            }
        }
        if std::ptr::eq(newest[r.tenant.as_str()], r) && r.state == TenantState::Started {
            note.in_flight = Some(r.run_id.clone());
        }
    }
    notes
}

/// What a dirty tenant needs: nothing when its migration may run again, else a look by hand
/// and a `stamp` to the version it turns out to be at.
fn dirty_advice(set: &MigrationSet, rows: &[Applied], version: Version, id: &str) -> String {
    let row = rows.iter().find(|r| r.dirty && r.version == version);
    if row.is_some_and(|r| plan::rerunnable(set, r, Direction::Up)) {
        return format!(
            "migration {version} failed part way; it is marked rerun-if-dirty, so the next `up` runs it again"
        );
    }
    let before = set
        .iter()
        .map(|m| m.version)
        .filter(|v| *v < version)
        .max()
        .unwrap_or(Version::ZERO);
    format!(
        "migration {version} failed part way: check by hand whether it took effect, then `fleetmig stamp {version} --select id={id}` (it did) or `fleetmig stamp {before} --select id={id}` (it did not)"
    )
}

/// One tenant's standing against the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub id: String,
    pub condition: Condition,
    /// Its highest applied version not left dirty; `None` when it could not be read.
    pub version: Option<Version>,
    /// Migrations up to the target it has not applied cleanly; `None` when unreadable.
    pub behind_by: Option<usize>,
    /// The migration it is dirty at (failed part way), if any.
    pub dirty: Option<Version>,
    /// Why it is drifted, dirty, ahead or unreachable.
    pub detail: Option<String>,
    /// What keeps a drifted or dirty tenant from being migrated, for grouping tenants with
    /// the same problem; `None` for a dirty tenant a run holds in flight (its own detail says why).
    pub refusal: Option<Refusal>,
    pub note: LedgerNote,
    /// The engine whose set, and the head of it, the tenant is measured against, when
    /// the fleet's engines have a set each.
    pub against: Option<(Engine, Version)>,
}

impl Standing {
    /// Reads a tenant's history rows (or why they could not be read: any error, shown as
    /// the tenant's detail) against `target`.
    pub fn of<E: fmt::Display>(
        set: &MigrationSet,
        target: Version,
        id: String,
        rows: Result<&[Applied], E>,
    ) -> Standing {
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                return Standing {
                    id,
                    condition: Condition::Unreachable,
                    version: None,
                    behind_by: None,
                    dirty: None,
                    detail: Some(error.to_string()),
                    refusal: None,
                    note: LedgerNote::default(),
                    against: None,
                };
            }
        };
        let clean: Vec<&Applied> = rows.iter().filter(|r| !r.dirty).collect();
        let behind_by = set
            .iter()
            .filter(|m| m.version <= target && !clean.iter().any(|a| a.version == m.version))
            .count();
        let state = plan::state(set, rows, target);
        let detail = match &state {
            State::Current | State::Behind { .. } => None,
            State::Ahead { newest } => Some(format!("applied {newest} is newer than the target")),
            State::Drifted { reason } => Some(reason.to_string()),
            State::Dirty { version } => Some(dirty_advice(set, rows, *version, &id)),
        };
        Standing {
            id,
            condition: state.condition(),
            version: Some(plan::version_of(rows)),
            behind_by: Some(behind_by),
            dirty: plan::dirty_of(rows),
            detail,
            refusal: match state {
                State::Drifted { reason } => Some(reason),
                State::Dirty { version } => Some(Refusal::Dirty { version }),
                _ => None,
            },
            note: LedgerNote::default(),
            against: None,
        }
    }

    pub fn is_current(&self) -> bool {
        self.condition == Condition::Current
    }

    /// True when the tenant holds every migration up to the target, cleanly: current, or
    /// ahead of it with nothing missing below it. What `wait` waits for.
    pub fn has_arrived(&self) -> bool {
        match self.condition {
            Condition::Current => true,
            Condition::Ahead => self.behind_by == Some(0),
            _ => false,
        }
    }

    /// Pending migrations of a `behind` tenant, 0 for every other: `status`'s `pending`.
    pub fn pending(&self) -> usize {
        match self.condition {
            Condition::Behind => self.behind_by.unwrap_or(0),
            _ => 0,
        }
    }
}

/// Every selected tenant's standing, in fleet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStatus {
    /// The set's head; [`Version::HEAD`] when each engine has its own set (see `heads`).
    pub head: Version,
    /// Each engine's head, when each engine has its own set.
    pub heads: BTreeMap<Engine, Version>,
    pub target: Version,
    pub tenants: Vec<Standing>,
}

impl FleetStatus {
    /// Each tenant's history rows, or why they could not be read, against `target`.
    pub fn assess<I, E>(set: &MigrationSet, target: Version, tenants: I) -> FleetStatus
    where
        I: IntoIterator<Item = (String, Result<Vec<Applied>, E>)>,
        E: fmt::Display,
    {
        FleetStatus {
            head: set.head(),
            heads: BTreeMap::new(),
            target,
            tenants: tenants
                .into_iter()
                .map(|(id, rows)| Standing::of(set, target, id, rows.as_deref()))
                .collect(),
        }
    }

    /// [`FleetStatus::assess`] for a fleet's sets: each tenant (with its engine) against
    /// `target` as its engine's set reads it ([`Version::HEAD`]: that set's head).
    pub fn assess_sets<I, E>(sets: &Sets, target: Version, tenants: I) -> FleetStatus
    where
        I: IntoIterator<Item = (String, Engine, Result<Vec<Applied>, E>)>,
        E: fmt::Display,
    {
        let per_engine = sets.single().is_none();
        FleetStatus {
            head: sets.head(),
            heads: match sets {
                Sets::One(_) => BTreeMap::new(),
                Sets::PerEngine(map) => map.iter().map(|(e, s)| (*e, s.head())).collect(),
            },
            target,
            tenants: tenants
                .into_iter()
                .map(|(id, engine, rows)| {
                    let set = sets.of(engine);
                    let mut standing = Standing::of(set, sets.resolve(engine, target), id, rows.as_deref());
                    standing.against = per_engine.then(|| (engine, set.head()));
                    standing
                })
                .collect(),
        }
    }

    /// Tenants at the target whose repeatable migrations (named in `stale`, by tenant)
    /// changed since they ran them: behind by that many, until `up` runs them again.
    pub fn note_repeatables(&mut self, stale: &HashMap<String, Vec<String>>) {
        for t in &mut self.tenants {
            let Some(names) = stale.get(&t.id) else { continue };
            if t.condition == Condition::Current {
                t.condition = Condition::Behind;
                t.behind_by = Some(names.len());
                t.detail = Some(format!(
                    "repeatable migration(s) changed or never run: {}",
                    names.join(", ")
                ));
            }
        }
    }

    /// Attaches what the ledger knows to the tenants that are not current.
    pub fn annotate(&mut self, notes: &HashMap<String, LedgerNote>) {
        for t in self.tenants.iter_mut().filter(|t| !t.is_current()) {
            if let Some(note) = notes.get(&t.id) {
                t.note = note.clone();
                // A dirty mark is also what a no-transaction step in progress looks like:
                // no advice to stamp without saying so.
                if let (Some(run), Some(version), Some(advice)) = (&note.in_flight, t.dirty, &t.detail) {
                    t.refusal = None;
                    t.detail = Some(format!(
                        "run `{run}` holds this tenant in flight (its ledger row says started): while that run goes on \
                         (`fleetmig runs` shows it unfinished), migration {version} may be running now and its dirty mark \
                         is that step's, so change nothing; if that run died: {advice}"
                    ));
                }
            }
        }
    }

    /// How many readable tenants sit at each version (of every engine's set together:
    /// see [`FleetStatus::histograms`]).
    pub fn histogram(&self) -> BTreeMap<Version, usize> {
        let mut bars = BTreeMap::new();
        for v in self.tenants.iter().filter_map(|t| t.version) {
            *bars.entry(v).or_insert(0) += 1;
        }
        bars
    }

    /// How many readable tenants sit at each version of each engine's set, when each
    /// engine has its own; empty otherwise.
    pub fn histograms(&self) -> BTreeMap<Engine, BTreeMap<Version, usize>> {
        let mut bars: BTreeMap<Engine, BTreeMap<Version, usize>> = BTreeMap::new();
        for t in &self.tenants {
            if let (Some(v), Some((engine, _))) = (t.version, t.against) {
                *bars.entry(engine).or_default().entry(v).or_insert(0) += 1;
            }
        }
        bars
    }

    /// How many tenants are in each condition (conditions with none left out).
    pub fn counts(&self) -> BTreeMap<Condition, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.tenants {
            *counts.entry(t.condition).or_insert(0) += 1;
        }
        counts
    }

    /// Marks `schema_drift` each tenant `drifted` names (tenant, then how its catalog
    /// differs), unless its history already gives it a worse condition (drifted, dirty,
    /// unreachable): what `status --drift` shows.
    pub fn mark_schema_drift(&mut self, drifted: &HashMap<String, String>) {
        for t in &mut self.tenants {
            let Some(how) = drifted.get(&t.id) else { continue };
            if matches!(t.condition, Condition::Current | Condition::Behind | Condition::Ahead) {
                t.condition = Condition::SchemaDrift;
                t.detail = Some(format!("its catalog is not what its version says: {how}"));
            }
        }
    }

    pub fn count(&self, condition: Condition) -> usize {
        self.tenants.iter().filter(|t| t.condition == condition).count()
    }

    pub fn all_current(&self) -> bool {
        self.tenants.iter().all(Standing::is_current)
    }

    /// The tenants that need attention: every one that is not current.
    pub fn lagging(&self) -> impl Iterator<Item = &Standing> {
        self.tenants.iter().filter(|t| !t.is_current())
    }

    /// True when every tenant has arrived at the target (see [`Standing::has_arrived`]).
    pub fn has_arrived(&self) -> bool {
        self.tenants.iter().all(Standing::has_arrived)
    }

    /// The tenants that have not arrived.
    pub fn laggards(&self) -> impl Iterator<Item = &Standing> {
        self.tenants.iter().filter(|t| !t.has_arrived())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: i64) -> MigrationSet {
        crate::model::migration::test_set(&vec![false; n as usize])
    }

    fn rows(set: &MigrationSet, versions: &[i64]) -> Vec<Applied> {
        versions
            .iter()
            .map(|v| {
                let m = set.get(Version::int(*v)).unwrap();
                Applied {
                    version: m.version,
                    name: m.name.clone(),
                    checksum: m.checksum.to_hex(),
                    dirty: false,
                }
            })
            .collect()
    }

    fn fleet(set: &MigrationSet, target: i64) -> FleetStatus {
        let mut drifted = rows(set, &[1, 2]);
        drifted[1].checksum = "0".repeat(64);
        let mut dirty = rows(set, &[1, 2, 3]);
        dirty[2].dirty = true;
        let mut unknown_newer = rows(set, &[1, 2, 3, 4, 5]);
        unknown_newer.push(Applied {
            version: Version::int(9),
            name: "from_newer_code".into(),
            checksum: "f".repeat(64),
            dirty: false,
        });
        FleetStatus::assess(
            set,
            Version::int(target),
            [
                ("a".to_owned(), Ok(rows(set, &[1, 2, 3, 4, 5]))),
                ("b".to_owned(), Ok(rows(set, &[1, 2, 3, 4, 5]))),
                ("c".to_owned(), Ok(rows(set, &[1, 2, 3]))),
                ("d".to_owned(), Ok(vec![])),
                ("e".to_owned(), Ok(drifted)),
                ("f".to_owned(), Ok(dirty)),
                ("g".to_owned(), Err("connecting: refused".to_owned())),
                ("h".to_owned(), Ok(unknown_newer)),
            ],
        )
    }

    fn summary(s: &FleetStatus) -> Vec<(String, &'static str, Option<i64>, Option<usize>)> {
        s.tenants
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    t.condition.name(),
                    t.version.map(|v| v.as_int().unwrap()),
                    t.behind_by,
                )
            })
            .collect()
    }

    #[test]
    fn mixed_fleet_at_head() {
        let set = set(5);
        let s = fleet(&set, 5);
        let want: Vec<(String, &str, Option<i64>, Option<usize>)> = vec![
            ("a".into(), "current", Some(5), Some(0)),
            ("b".into(), "current", Some(5), Some(0)),
            ("c".into(), "behind", Some(3), Some(2)),
            ("d".into(), "behind", Some(0), Some(5)),
            ("e".into(), "drifted", Some(2), Some(3)),
            ("f".into(), "dirty", Some(2), Some(3)),
            ("g".into(), "unreachable", None, None),
            ("h".into(), "ahead", Some(9), Some(0)),
        ];
        assert_eq!(summary(&s), want);
        let hist: Vec<(i64, usize)> = s
            .histogram()
            .into_iter()
            .map(|(v, n)| (v.as_int().unwrap(), n))
            .collect();
        assert_eq!(hist, [(0, 1), (2, 2), (3, 1), (5, 2), (9, 1)]);
        assert_eq!(s.count(Condition::Behind), 2);
        assert_eq!(s.count(Condition::Unreachable), 1);
        assert!(!s.all_current());
        assert!(!s.has_arrived());
        let lagging: Vec<&str> = s.lagging().map(|t| t.id.as_str()).collect();
        assert_eq!(lagging, ["c", "d", "e", "f", "g", "h"]);
        let laggards: Vec<&str> = s.laggards().map(|t| t.id.as_str()).collect();
        assert_eq!(laggards, ["c", "d", "e", "f", "g"], "a tenant ahead has arrived");
        assert_eq!(s.tenants[2].pending(), 2);
        assert_eq!(s.tenants[4].pending(), 0, "pending counts for behind tenants only");
        assert_eq!(
            s.tenants[5].detail.as_deref(),
            Some(
                "migration 3 failed part way: check by hand whether it took effect, then `fleetmig stamp 3 --select id=f` (it did) or `fleetmig stamp 2 --select id=f` (it did not)"
            )
        );
    }

    #[test]
    fn a_lower_target_counts_tenants_past_it_as_arrived() {
        let set = set(5);
        let s = fleet(&set, 3);
        let arrived: Vec<&str> = s
            .tenants
            .iter()
            .filter(|t| t.has_arrived())
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(arrived, ["a", "b", "c", "h"]);
        assert_eq!(s.tenants[0].condition, Condition::Ahead);
        assert_eq!(s.tenants[2].condition, Condition::Current);
    }

    fn row(tenant: &str, run: &str, state: &str, error: Option<&str>, at: i64) -> LedgerRow {
        LedgerRow {
            tenant: tenant.into(),
            run_id: run.into(),
            state: TenantState::parse(state).expect("a state fleetmig writes"),
            error: error.map(Into::into),
            updated_ms: at,
        }
    }

    #[test]
    fn ledger_notes_count_only_runs_since_the_last_success() {
        let rows = [
            row("a", "r1", "failed", Some("old error"), 100),
            row("a", "r2", "succeeded", None, 200),
            row("a", "r3", "not_started", None, 300),
            row("a", "r4", "failed", Some("syntax error"), 400),
            row("a", "r5", "skipped", None, 500),
            row("b", "r4", "succeeded", None, 400),
            row("c", "r1", "skipped", Some("unreachable: connecting"), 100),
            row("c", "r4", "failed", Some("lock timeout"), 400),
        ];
        let notes = ledger_notes(&rows);
        assert_eq!(
            notes["a"],
            LedgerNote {
                since_ms: Some(300),
                last_error: Some(Failure {
                    run_id: "r4".into(),
                    at_ms: 400,
                    error: "syntax error".into()
                }),
                in_flight: None,
            }
        );
        assert!(!notes.contains_key("b"));
        assert_eq!(notes["c"].since_ms, Some(100));
        assert_eq!(notes["c"].last_error.as_ref().unwrap().error, "lock timeout");
    }

    #[test]
    fn a_tenant_whose_newest_ledger_row_is_started_is_in_flight() {
        let rows = [
            row("a", "r1", "failed", Some("old error"), 100),
            row("a", "r2", "started", None, 200),
            row("b", "r1", "started", None, 100),
            row("b", "r2", "failed", Some("x"), 200),
        ];
        let notes = ledger_notes(&rows);
        assert_eq!(notes["a"].in_flight.as_deref(), Some("r2"));
        assert_eq!(notes["b"].in_flight, None);
    }

    #[test]
    fn annotate_leaves_current_tenants_alone() {
        let set = set(5);
        let mut s = fleet(&set, 5);
        let note = LedgerNote {
            since_ms: Some(1),
            ..LedgerNote::default()
        };
        let notes: HashMap<String, LedgerNote> =
            [("a".to_owned(), note.clone()), ("c".to_owned(), note.clone())].into();
        s.annotate(&notes);
        assert_eq!(s.tenants[0].note, LedgerNote::default());
        assert_eq!(s.tenants[2].note, note);
    }
}
