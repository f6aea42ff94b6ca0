//! Given the migration set and a tenant's history rows: its state, and what to run.

use serde::Serialize;

use crate::model::migration::{Applied, Direction, Migration, MigrationSet, Version};
use crate::model::refusal::Refusal;

/// Where a command wants tenants to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Apply pending migrations up to and including `to`.
    Up { to: Version },
    /// Revert applied migrations above `to`, newest first.
    Down { to: Version },
    /// Revert the newest `steps` applied migrations.
    DownSteps { steps: usize },
}

impl Target {
    /// This target with its version mapped by `f`: per tenant, `head` made its set's head.
    pub fn map(self, f: impl FnOnce(Version) -> Version) -> Target {
        match self {
            Target::Up { to } => Target::Up { to: f(to) },
            Target::Down { to } => Target::Down { to: f(to) },
            steps @ Target::DownSteps { .. } => steps,
        }
    }
}

/// One migration to run, one way.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub migration: &'a Migration,
    pub direction: Direction,
    /// The tenant's history holds this migration's row marked dirty, and its script says it
    /// may be run again (`rerun-if-dirty`): it runs again over that row.
    pub rerun: bool,
}

/// What to run on one tenant.
#[derive(Debug, Clone)]
pub struct TenantPlan<'a> {
    /// The tenant's version now: the highest applied version, 0 if none.
    pub from: Version,
    /// Its version once every step ran.
    pub to: Version,
    pub steps: Vec<Step<'a>>,
}

/// A tenant's state against the migration set, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Current,
    Behind {
        pending: usize,
    },
    /// Applied versions newer than any file: migrated by newer code.
    Ahead {
        newest: Version,
    },
    Drifted {
        reason: Refusal,
    },
    Dirty {
        version: Version,
    },
}

impl State {
    /// The condition word for this state, without its particulars.
    pub fn condition(&self) -> Condition {
        match self {
            State::Current => Condition::Current,
            State::Behind { .. } => Condition::Behind,
            State::Ahead { .. } => Condition::Ahead,
            State::Drifted { .. } => Condition::Drifted,
            State::Dirty { .. } => Condition::Dirty,
        }
    }
}

/// A tenant's condition, as `status` names it: a `State` without its particulars, or
/// `unreachable` when its history could not be read. Each word is spelt here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Current,
    Behind,
    /// Applied versions newer than the target (or than any file).
    Ahead,
    /// An edited or unknown applied migration.
    Drifted,
    /// A migration failed part way.
    Dirty,
    /// Its history could not be read.
    Unreachable,
    /// Its history is in order, but its catalog is not what its version says (`status
    /// --drift`, see `drift`).
    SchemaDrift,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Current => "current",
            Condition::Behind => "behind",
            Condition::Ahead => "ahead",
            Condition::Drifted => "drifted",
            Condition::Dirty => "dirty",
            Condition::Unreachable => "unreachable",
            Condition::SchemaDrift => "schema_drift",
        }
    }
}

/// The highest version the rows hold cleanly, dirty ones left out; 0 if none. A dirty row
/// is a migration that failed part way: the tenant did not reach it (see [`dirty_of`]).
pub fn version_of(applied: &[Applied]) -> Version {
    applied
        .iter()
        .filter(|a| !a.dirty)
        .map(|a| a.version)
        .max()
        .unwrap_or(Version::ZERO)
}

/// The migration a tenant is dirty at, if any.
pub fn dirty_of(applied: &[Applied]) -> Option<Version> {
    applied.iter().find(|a| a.dirty).map(|a| a.version)
}

/// Checks applied rows against the files: dirty rows, edited migrations, unknown versions.
/// Returns the tenant's current version when all is well.
pub fn verify(set: &MigrationSet, applied: &[Applied]) -> Result<Version, Refusal> {
    if let Some(row) = applied.iter().find(|a| a.dirty) {
        return Err(Refusal::Dirty { version: row.version });
    }
    for row in applied {
        match set.get(row.version) {
            None => {
                return Err(renumbered(set, row).unwrap_or_else(|| Refusal::Unknown {
                    version: row.version,
                    name: row.name.clone(),
                }));
            }
            Some(m) if m.checksum.to_hex() != row.checksum => {
                return Err(renumbered(set, row).unwrap_or_else(|| Refusal::Modified {
                    version: row.version,
                    path: m.path.clone(),
                    recorded: row.checksum.clone(),
                    file_checksum: m.checksum.to_hex(),
                }));
            }
            Some(_) => {}
        }
    }
    Ok(version_of(applied))
}

/// For a row whose file is not at its version (missing, or another file there): a file
/// with its checksum at another version, when there is one: renumbered, not edited.
fn renumbered(set: &MigrationSet, row: &Applied) -> Option<Refusal> {
    let m = set
        .iter()
        .find(|m| m.version != row.version && m.checksum.to_hex() == row.checksum)?;
    Some(Refusal::Renumbered {
        recorded: row.version,
        name: row.name.clone(),
        version: m.version,
        path: m.path.clone(),
    })
}

/// The tenant's state, measured against `target` (head, or a `--to`).
pub fn state(set: &MigrationSet, applied: &[Applied], target: Version) -> State {
    match verify(set, applied) {
        Ok(current) => {
            let pending = set
                .iter()
                .filter(|m| m.version <= target && !applied.iter().any(|a| a.version == m.version))
                .count();
            if current > target {
                State::Ahead { newest: current }
            } else if pending == 0 {
                State::Current
            } else {
                State::Behind { pending }
            }
        }
        Err(Refusal::Dirty { version }) => State::Dirty { version },
        Err(Refusal::Unknown { .. }) if version_of(applied) > set.head() && verify_known(set, applied) => {
            State::Ahead {
                newest: version_of(applied),
            }
        }
        Err(reason) => State::Drifted { reason },
    }
}

/// True when every applied row at or below head matches its file: the only problem is newer rows.
fn verify_known(set: &MigrationSet, applied: &[Applied]) -> bool {
    let head = set.head();
    let known: Vec<Applied> = applied.iter().filter(|a| a.version <= head).cloned().collect();
    verify(set, &known).is_ok()
}

/// True when a dirty row may be run again going `direction`: its migration's script there
/// says `rerun-if-dirty`, and the file is the one that was applied.
pub fn rerunnable(set: &MigrationSet, row: &Applied, direction: Direction) -> bool {
    set.get(row.version)
        .is_some_and(|m| m.checksum.to_hex() == row.checksum && m.script(direction).is_some_and(|s| s.rerun_if_dirty))
}

/// What to run on a tenant to reach `target`, or why nothing may run.
pub fn plan<'a>(set: &'a MigrationSet, applied: &[Applied], target: Target) -> Result<TenantPlan<'a>, Refusal> {
    let direction = match target {
        Target::Up { .. } => Direction::Up,
        Target::Down { .. } | Target::DownSteps { .. } => Direction::Down,
    };
    let (rerun, applied) = clear_reruns(set, applied, direction);
    let from = verify(set, &applied)?;
    let (migrations, to) = match target {
        Target::Up { to } => pending_up_to(set, &applied, from, to)?,
        Target::Down { to } => reverting(set, &applied, newest_applied(set, &applied).filter(|m| m.version > to))?,
        Target::DownSteps { steps } => reverting(set, &applied, newest_applied(set, &applied).take(steps))?,
    };
    let steps = migrations
        .into_iter()
        .map(|m| Step {
            migration: m,
            direction,
            rerun: rerun.contains(&m.version),
        })
        .collect();
    Ok(TenantPlan { from, to, steps })
}

/// Dirty rows whose script may run again going `direction`, and the history as the plan
/// reads it: going up, they are pending again (left out); going down, they are applied and
/// revert again (kept, not dirty). Any other dirty row stays, and refuses the tenant.
fn clear_reruns<'r>(
    set: &MigrationSet,
    applied: &'r [Applied],
    direction: Direction,
) -> (Vec<Version>, std::borrow::Cow<'r, [Applied]>) {
    let rerun: Vec<Version> = applied
        .iter()
        .filter(|a| a.dirty && rerunnable(set, a, direction))
        .map(|a| a.version)
        .collect();
    if rerun.is_empty() {
        return (rerun, applied.into());
    }
    let cleared = applied
        .iter()
        .filter(|a| direction == Direction::Down || !rerun.contains(&a.version))
        .map(|a| Applied {
            dirty: a.dirty && !rerun.contains(&a.version),
            ..a.clone()
        })
        .collect();
    (rerun, cleared)
}

fn is_applied(applied: &[Applied], v: Version) -> bool {
    applied.iter().any(|a| a.version == v)
}

/// The migrations up to `to` not applied, oldest first, and the version they reach; one
/// older than the tenant's version `from` refuses the tenant (out of order) unless the set
/// lets it run.
fn pending_up_to<'a>(
    set: &'a MigrationSet,
    applied: &[Applied],
    from: Version,
    to: Version,
) -> Result<(Vec<&'a Migration>, Version), Refusal> {
    let pending: Vec<&Migration> = set
        .iter()
        .filter(|m| m.version <= to && !is_applied(applied, m.version))
        .collect();
    if let Some(old) = pending
        .iter()
        .find(|m| m.version < from)
        .filter(|_| !set.out_of_order())
    {
        return Err(Refusal::OutOfOrder {
            version: old.version,
            path: old.path.clone(),
            newest: from,
        });
    }
    // Out of order, the older ones run first; the tenant ends at its newest either way.
    let to = pending.last().map_or(from, |m| m.version.max(from));
    Ok((pending, to))
}

/// The tenant's applied migrations, newest first.
fn newest_applied<'a, 'r>(set: &'a MigrationSet, applied: &'r [Applied]) -> impl Iterator<Item = &'a Migration> + 'r
where
    'a: 'r,
{
    set.iter().rev().filter(|m| is_applied(applied, m.version))
}

/// The migrations to revert (newest first), and the version left once they are; one
/// without a down script refuses the tenant.
fn reverting<'a>(
    set: &'a MigrationSet,
    applied: &[Applied],
    revert: impl Iterator<Item = &'a Migration>,
) -> Result<(Vec<&'a Migration>, Version), Refusal> {
    let revert: Vec<&Migration> = revert.collect();
    if let Some(m) = revert.iter().find(|m| !m.is_reversible()) {
        return Err(m.irreversible());
    }
    let to = set
        .iter()
        .rev()
        .filter(|m| is_applied(applied, m.version) && !revert.iter().any(|r| r.version == m.version))
        .map(|m| m.version)
        .next()
        .unwrap_or(Version::ZERO);
    Ok((revert, to))
}

/// The history a `stamp` to `to` leaves: exactly the migrations up to `to`, with the files'
/// checksums. Returns the rows to keep or write.
pub fn stamp(set: &MigrationSet, to: Version) -> Vec<Applied> {
    set.iter().filter(|m| m.version <= to).map(Migration::applied).collect()
}

/// The history a `stamp --checksums` leaves: the same migrations, each (or only `only`)
/// with its file's name and checksum now. A dirty tenant is refused (its state needs a
/// person first), and so is one with a migration to realign that has no file (no checksum
/// to take).
pub fn with_checksums(set: &MigrationSet, applied: &[Applied], only: Option<Version>) -> Result<Vec<Applied>, Refusal> {
    if let Some(row) = applied.iter().find(|a| a.dirty) {
        return Err(Refusal::Dirty { version: row.version });
    }
    applied
        .iter()
        .map(|a| match set.get(a.version) {
            _ if only.is_some_and(|v| v != a.version) => Ok(a.clone()),
            Some(m) => Ok(m.applied()),
            None => Err(Refusal::Unknown {
                version: a.version,
                name: a.name.clone(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(reversible: &[bool]) -> MigrationSet {
        crate::model::migration::test_set(reversible)
    }

    #[test]
    fn a_migration_applied_under_another_version_is_renumbered_not_edited() {
        let s = set(&[true, true, true]);
        // Recorded as 4, its file now 3 (and 3 was never applied).
        let mut rows = applied(&s, &[1, 3]);
        rows[1].version = Version::int(4);
        assert_eq!(
            verify(&s, &rows).unwrap_err(),
            Refusal::Renumbered {
                recorded: Version::int(4),
                name: "m3".into(),
                version: Version::int(3),
                path: s.get(Version::int(3)).unwrap().path.clone(),
            }
        );
        // Two files swapped their versions: the first row whose file moved names it.
        let mut rows = applied(&s, &[1, 2, 3]);
        rows[1].checksum = s.get(Version::int(3)).unwrap().checksum.to_hex();
        rows[2].checksum = s.get(Version::int(2)).unwrap().checksum.to_hex();
        let err = verify(&s, &rows).unwrap_err();
        assert_eq!(err.tag(), "migration 2 renumbered to 3", "{err}");
        // A real edit, whose old text no file has, stays an edit.
        let mut rows = applied(&s, &[1, 2]);
        rows[1].checksum = "00".repeat(32);
        assert!(matches!(verify(&s, &rows), Err(Refusal::Modified { .. })));
    }

    fn applied(set: &MigrationSet, versions: &[i64]) -> Vec<Applied> {
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

    fn versions(plan: &TenantPlan) -> Vec<i64> {
        plan.steps
            .iter()
            .map(|s| s.migration.version.as_int().unwrap())
            .collect()
    }

    #[test]
    fn with_checksums_realigns_edited_rows_keeps_the_version_and_refuses_dirty_or_unknown() {
        let set = set(&[false, false, false]);
        let mut rows = applied(&set, &[1, 2]);
        rows[0].checksum = "old1".into();
        rows[1].checksum = "old2".into();
        rows[1].name = "renamed".into();
        let all = with_checksums(&set, &rows, None).unwrap();
        assert_eq!(
            all,
            applied(&set, &[1, 2]),
            "every row takes its file's checksum and name"
        );
        let only = with_checksums(&set, &rows, Some(Version::int(2))).unwrap();
        assert_eq!(only[0].checksum, "old1", "migration 1 is left as recorded");
        assert_eq!(only[1], applied(&set, &[2])[0]);
        assert_eq!(
            with_checksums(&set, &rows, Some(Version::int(3))).unwrap(),
            rows,
            "a tenant without the migration is left alone"
        );
        let mut dirty = rows.clone();
        dirty[1].dirty = true;
        for only in [None, Some(Version::int(1))] {
            assert_eq!(
                with_checksums(&set, &dirty, only),
                Err(Refusal::Dirty {
                    version: Version::int(2)
                })
            );
        }
        let mut unknown = applied(&set, &[1]);
        unknown.push(Applied {
            version: Version::int(9),
            name: "gone".into(),
            checksum: "x".into(),
            dirty: false,
        });
        assert_eq!(
            with_checksums(&set, &unknown, None),
            Err(Refusal::Unknown {
                version: Version::int(9),
                name: "gone".into()
            })
        );
        assert_eq!(
            with_checksums(&set, &unknown, Some(Version::int(1))).unwrap(),
            unknown,
            "=VERSION looks only at that migration"
        );
    }

    #[test]
    fn up_runs_pending_up_to_the_target() {
        let s = set(&[true; 5]);
        let p = plan(&s, &applied(&s, &[1, 2]), Target::Up { to: s.head() }).unwrap();
        assert_eq!(
            (versions(&p), p.from, p.to),
            (vec![3, 4, 5], Version::int(2), Version::int(5))
        );
        let p = plan(&s, &applied(&s, &[1, 2]), Target::Up { to: Version::int(3) }).unwrap();
        assert_eq!(versions(&p), [3]);
        let p = plan(&s, &applied(&s, &[1, 2, 3, 4, 5]), Target::Up { to: s.head() }).unwrap();
        assert!(p.steps.is_empty());
        assert_eq!(p.to, Version::int(5));
    }

    #[test]
    fn down_reverts_newest_first() {
        let s = set(&[true; 4]);
        let all = applied(&s, &[1, 2, 3, 4]);
        let p = plan(&s, &all, Target::DownSteps { steps: 2 }).unwrap();
        assert_eq!((versions(&p), p.to), (vec![4, 3], Version::int(2)));
        let p = plan(&s, &all, Target::Down { to: Version::ZERO }).unwrap();
        assert_eq!((versions(&p), p.to), (vec![4, 3, 2, 1], Version::ZERO));
        let p = plan(&s, &all, Target::DownSteps { steps: 9 }).unwrap();
        assert_eq!(p.steps.len(), 4);
    }

    #[test]
    fn down_past_an_irreversible_migration_is_refused() {
        let s = set(&[true, false, true]);
        let err = plan(&s, &applied(&s, &[1, 2, 3]), Target::Down { to: Version::int(1) }).unwrap_err();
        assert_eq!(
            err,
            Refusal::Irreversible {
                version: Version::int(2),
                path: "migrations/0002_m2.up.sql".into(),
                empty: false,
            }
        );
        assert!(plan(&s, &applied(&s, &[1, 2, 3]), Target::DownSteps { steps: 1 }).is_ok());
        // A down script with only comments says so.
        let blank = Migration::new(
            Version::int(1),
            "a".into(),
            "select 1".into(),
            Some("-- nothing\n".into()),
            "a".into(),
        );
        assert_eq!(
            blank.irreversible().to_string(),
            "migration 1 has an empty down script, only comments or white space (`a`): it cannot be reverted"
        );
        assert_eq!(blank.irreversible().tag(), "migration 1 has an empty down script");
    }

    #[test]
    fn edited_unknown_dirty_and_out_of_order_are_refused() {
        let s = set(&[true; 3]);
        let mut rows = applied(&s, &[1, 2]);
        rows[1].checksum = "00".repeat(32);
        let err = plan(&s, &rows, Target::Up { to: s.head() }).unwrap_err();
        assert!(matches!(
            err,
            Refusal::Modified {
                version,
                ..
            } if version == Version::int(2)
        ));
        assert!(
            err.to_string()
                .contains("migration 2 was edited after it was applied: `migrations/0002_m2.up.sql`")
        );

        let mut rows = applied(&s, &[1]);
        rows.push(Applied {
            version: Version::int(9),
            name: "future".into(),
            checksum: "x".into(),
            dirty: false,
        });
        let err = plan(&s, &rows, Target::Up { to: s.head() }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "applied migration 9 (`future`) has no file in the migrations folder"
        );
        assert_eq!(
            state(&s, &rows, s.head()),
            State::Ahead {
                newest: Version::int(9)
            }
        );

        let mut rows = applied(&s, &[1, 2]);
        rows[1].dirty = true;
        assert_eq!(
            plan(&s, &rows, Target::Up { to: s.head() }).unwrap_err(),
            Refusal::Dirty {
                version: Version::int(2)
            }
        );
        assert_eq!(
            state(&s, &rows, s.head()),
            State::Dirty {
                version: Version::int(2)
            }
        );

        let rows = applied(&s, &[1, 3]);
        assert!(matches!(
            plan(&s, &rows, Target::Up { to: s.head() }),
            Err(Refusal::OutOfOrder {
                version,
                ..
            }) if version == Version::int(2)
        ));
        // Allowed, the older one runs and the tenant stays at its newest, 3.
        let lax = s.clone().with_out_of_order(true);
        let p = plan(&lax, &rows, Target::Up { to: lax.head() }).unwrap();
        assert_eq!(versions(&p), [2]);
        assert_eq!((p.from, p.to), (Version::int(3), Version::int(3)));
        let p = plan(&lax, &rows, Target::Up { to: Version::int(2) }).unwrap();
        assert_eq!(versions(&p), [2]);
    }

    #[test]
    fn a_dirty_migration_that_may_run_again_is_run_again_and_others_are_refused() {
        let rerun =
            "-- fleetmig: no-transaction, rerun-if-dirty\ncreate index concurrently if not exists i on t1 (id);";
        let s = MigrationSet::new(vec![
            Migration::new(
                Version::int(1),
                "a".into(),
                "create table t1 (id int);".into(),
                None,
                "1.up.sql".into(),
            ),
            Migration::new(
                Version::int(2),
                "idx".into(),
                rerun.into(),
                Some(format!(
                    "{}\ndrop index concurrently if exists i;",
                    rerun.lines().next().unwrap()
                )),
                "2.up.sql".into(),
            ),
            Migration::new(
                Version::int(3),
                "c".into(),
                "create table t3 (id int);".into(),
                None,
                "3.up.sql".into(),
            ),
        ])
        .unwrap();
        let mut rows = applied(&s, &[1, 2]);
        rows[1].dirty = true;
        let p = plan(&s, &rows, Target::Up { to: s.head() }).unwrap();
        assert_eq!(
            (versions(&p), p.from, p.to),
            (vec![2, 3], Version::int(1), Version::int(3))
        );
        assert!(p.steps[0].rerun && !p.steps[1].rerun);
        let p = plan(&s, &rows, Target::Down { to: Version::int(1) }).unwrap();
        assert_eq!(versions(&p), [2]);
        assert!(p.steps[0].rerun);
        // Going down past it needs its down script to say so too; an edited file is refused.
        let p = plan(&s, &rows, Target::Down { to: Version::ZERO });
        assert!(
            matches!(
                p,
                Err(Refusal::Irreversible {
                    version,
                    ..
                }) if version == Version::int(1)
            ),
            "{p:?}"
        );
        rows[1].checksum = "00".repeat(32);
        assert!(matches!(
            plan(&s, &rows, Target::Up { to: s.head() }),
            Err(Refusal::Dirty { .. })
        ));

        let plain = set(&[true; 3]);
        let mut rows = applied(&plain, &[1, 2]);
        rows[1].dirty = true;
        assert!(matches!(
            plan(&plain, &rows, Target::Up { to: plain.head() }),
            Err(Refusal::Dirty { .. })
        ));
    }

    #[test]
    fn states() {
        let s = set(&[true; 3]);
        assert_eq!(state(&s, &[], s.head()), State::Behind { pending: 3 });
        assert_eq!(state(&s, &applied(&s, &[1, 2, 3]), s.head()), State::Current);
        assert_eq!(state(&s, &applied(&s, &[1]), Version::int(1)), State::Current);
        assert_eq!(
            state(&s, &applied(&s, &[1, 2]), Version::int(1)),
            State::Ahead {
                newest: Version::int(2)
            }
        );
        let mut rows = applied(&s, &[1]);
        rows.push(Applied {
            version: Version::int(2),
            name: "gone".into(),
            checksum: "x".into(),
            dirty: false,
        });
        rows[1].checksum = "y".into();
        assert!(matches!(state(&s, &rows, s.head()), State::Drifted { .. }));
    }
}
