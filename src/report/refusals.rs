//! Tenants with the same problem, told once: the problem with short checksums, how many
//! tenants and a few of their ids, and what to do. For `status`, `plan` and a run's report;
//! JSON keeps every tenant's own, with whole checksums.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::migration::{MigrationSet, Version};
use crate::model::refusal::{Refusal, short_checksum};
use crate::model::run::RunReport;
use crate::model::sets::Sets;

/// How many ids a group names before it counts the rest.
const SHOWN: usize = 3;

/// Up to `shown` ids, then how many more: `acme, beta, gamma and 9 more`.
pub fn few(ids: &[&str], shown: usize) -> String {
    if ids.len() <= shown + 1 {
        return ids.join(", ");
    }
    format!("{} and {} more", ids[..shown].join(", "), ids.len() - shown)
}

/// One refused tenant.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub id: &'a str,
    pub refusal: &'a Refusal,
    /// Its version (highest migration held cleanly), when known.
    pub at: Option<Version>,
}

/// The tenants that share one problem.
struct Group<'a> {
    refusal: &'a Refusal,
    tenants: Vec<(&'a str, Option<Version>)>,
}

/// Groups by problem, in the order each problem first shows up.
fn groups<'a>(items: &[Refused<'a>]) -> Vec<Group<'a>> {
    let mut out: Vec<Group<'a>> = Vec::new();
    for r in items {
        match out.iter_mut().find(|g| g.refusal == r.refusal) {
            Some(g) => g.tenants.push((r.id, r.at)),
            None => out.push(Group {
                refusal: r.refusal,
                tenants: vec![(r.id, r.at)],
            }),
        }
    }
    out
}

/// `fleetmig stamp V` for the tenants of a group, one command per version they are at:
/// stamp makes a tenant's history exactly the files up to V, so V must be where it is.
fn stamp_at(tenants: &[(&str, Option<Version>)], to: Option<Version>) -> Vec<String> {
    let mut by_version: BTreeMap<Option<Version>, Vec<&str>> = BTreeMap::new();
    for (id, at) in tenants {
        by_version.entry(to.or(*at)).or_default().push(id);
    }
    by_version
        .into_iter()
        .map(|(v, ids)| {
            let v = v.map_or("VERSION".to_owned(), |v| v.to_string());
            if ids.len() <= SHOWN {
                let selects: Vec<String> = ids.iter().map(|id| format!("--select id={id}")).collect();
                format!("`fleetmig stamp {v} {}`", selects.join(" "))
            } else {
                format!(
                    "`fleetmig stamp {v} --select id=TENANT` for each of the {} tenants at {v}",
                    ids.len()
                )
            }
        })
        .collect()
}

fn headline(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Modified {
            version,
            path,
            recorded,
            file_checksum,
        } => format!(
            "migration {version} was edited after it was applied: `{}` is {} now, was {} when applied",
            path.display(),
            short_checksum(file_checksum),
            short_checksum(recorded)
        ),
        other => other.brief(),
    }
}

/// The set a group's advice is read from: with a set per engine, the first that has the
/// migration the refusal names.
fn set_for<'s>(sets: &'s Sets, refusal: &Refusal) -> &'s MigrationSet {
    let version = match refusal {
        Refusal::Dirty { version } | Refusal::Modified { version, .. } => Some(*version),
        _ => None,
    };
    let named = version.and_then(|v| sets.iter().map(|(_, s)| s).find(|s| s.get(v).is_some()));
    named
        .or_else(|| sets.iter().next().map(|(_, s)| s))
        .expect("a fleet has a set")
}

fn advice(sets: &Sets, g: &Group<'_>) -> Vec<String> {
    let set = set_for(sets, g.refusal);
    let before = |version: Version| {
        set.iter()
            .map(|m| m.version)
            .filter(|v| *v < version)
            .max()
            .unwrap_or(Version::ZERO)
    };
    match g.refusal {
        // One command for the whole group, at whatever versions its tenants are: it records
        // the file's checksum for that migration only, named tenants or every one that has it.
        Refusal::Modified { version, path, .. } => {
            let command = if g.tenants.len() <= SHOWN {
                let selects: Vec<String> = g.tenants.iter().map(|(id, _)| format!("--select id={id}")).collect();
                format!("`fleetmig stamp --checksums={version} {}`", selects.join(" "))
            } else {
                format!("`fleetmig stamp --checksums={version}` (every tenant that has migration {version})")
            };
            vec![
                format!(
                    "an edit by mistake: restore the file, `git checkout -- {}`",
                    path.display()
                ),
                format!("a deliberate change: record the file as applied, {command}"),
            ]
        }
        Refusal::Dirty { version } => {
            if set.get(*version).is_some_and(|m| m.up.rerun_if_dirty) {
                return vec!["it is marked rerun-if-dirty: the next `up` runs it again".to_owned()];
            }
            vec![
                format!(
                    "check by hand whether it took effect; if it did: {}",
                    stamp_at(&g.tenants, Some(*version)).join("; ")
                ),
                format!(
                    "if it did not: {}",
                    stamp_at(&g.tenants, Some(before(*version))).join("; ")
                ),
            ]
        }
        Refusal::Unknown { .. } => {
            let dir = set
                .iter()
                .next()
                .and_then(|m| m.path.parent())
                .map_or("migrations".to_owned(), |d| d.display().to_string());
            vec![format!(
                "its file was deleted or renamed: bring it back (`git log --diff-filter=DR --name-status -- {dir}` shows when), or run the fleetmig checkout that has it"
            )]
        }
        Refusal::OutOfOrder { newest, .. } => vec![
            format!("it should run: give it a version above {newest} (rename the file)"),
            format!(
                "its change is already in place: {}",
                stamp_at(&g.tenants, Some(*newest)).join("; ")
            ),
        ],
        Refusal::Irreversible { path, .. } => vec![format!(
            "write its down script beside `{}`, or stop the down above it",
            path.display()
        )],
        // Alembic's heads, and the map that gives them their versions.
        Refusal::Foreign { tool, .. } if tool == crate::model::foreign::Tool::Alembic.name() => vec![
            "merge its heads with alembic, or give its revision a version in the map file, then \
             `fleetmig adopt --from alembic --map FILE` again; `--dry-run` shows what would be recorded"
                .to_owned(),
        ],
        Refusal::Foreign { tool, .. } => vec![format!(
            "fix it with {tool} (or by hand) first, then `fleetmig adopt --from {tool}` again; `--dry-run` shows what would be recorded"
        )],
        Refusal::Renumbered { recorded, path, .. } => vec![format!(
            "give `{}` its recorded version {recorded} back: the tenants that applied it know it by that version",
            path.display()
        )],
    }
}

/// The refused tenants, one paragraph per problem; empty when there are none.
pub fn grouped(sets: &Sets, items: &[Refused<'_>]) -> String {
    let mut out = String::new();
    for (k, g) in groups(items).into_iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        let ids: Vec<&str> = g.tenants.iter().map(|(id, _)| *id).collect();
        let n = ids.len();
        // A history row's name and checksum are the database's: shown, never obeyed.
        let _ = writeln!(out, "{}", crate::model::text::printable(&headline(g.refusal)));
        let _ = writeln!(
            out,
            "  {n} tenant{}: {}",
            if n == 1 { "" } else { "s" },
            few(&ids, SHOWN)
        );
        for line in advice(sets, &g) {
            let _ = writeln!(out, "  - {}", crate::model::text::printable(&line));
        }
    }
    out
}

/// The refused tenants of a run, grouped, under its report; empty when there are none.
pub fn run_text(sets: &Sets, report: &RunReport) -> String {
    let refused: Vec<Refused> = report
        .tenants
        .iter()
        .filter_map(|t| {
            t.refusal.as_ref().map(|refusal| Refused {
                id: &t.id,
                refusal,
                at: t.start_version,
            })
        })
        .collect();
    if refused.is_empty() {
        return String::new();
    }
    format!(
        "\nLeft alone until their problem is solved:\n{}",
        grouped(sets, &refused)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_names_a_few_and_counts_the_rest() {
        assert_eq!(few(&["a"], 3), "a");
        assert_eq!(few(&["a", "b", "c", "d"], 3), "a, b, c, d");
        assert_eq!(few(&["a", "b", "c", "d", "e"], 3), "a, b, c and 2 more");
    }

    fn set() -> MigrationSet {
        crate::model::migration::test_set(&[false; 7])
    }

    #[test]
    fn a_history_rows_name_cannot_drive_the_terminal() {
        let unknown = Refusal::Unknown {
            version: Version::int(4),
            name: "gone\x1b[2J\nnext".into(),
        };
        let items = [Refused {
            id: "t1",
            refusal: &unknown,
            at: Some(Version::int(4)),
        }];
        let out = grouped(&set().into(), &items);
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.contains("(`gone\\u{1b}[2J next`)"), "{out}");
    }

    #[test]
    fn tenants_with_the_same_problem_are_told_once() {
        let edited = Refusal::Modified {
            version: Version::int(3),
            path: "migrations/0003_m3.up.sql".into(),
            recorded: "9f8e7d6c5b4a".repeat(5) + "0123",
            file_checksum: "1a2b3c4d5e6f".repeat(5) + "4567",
        };
        let other_edit = Refusal::Modified {
            version: Version::int(3),
            path: "migrations/0003_m3.up.sql".into(),
            recorded: "77".repeat(32),
            file_checksum: "1a2b3c4d5e6f".repeat(5) + "4567",
        };
        let dirty = Refusal::Dirty {
            version: Version::int(5),
        };
        let unknown = Refusal::Unknown {
            version: Version::int(4),
            name: "gone".into(),
        };
        let late = Refusal::OutOfOrder {
            version: Version::int(2),
            path: "migrations/0002_m2.up.sql".into(),
            newest: Version::int(6),
        };
        let ids: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        let mut items: Vec<Refused> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Refused {
                id,
                refusal: &edited,
                at: Some(Version::int(if i < 10 { 7 } else { 5 })),
            })
            .collect();
        items.insert(
            2,
            Refused {
                id: "odd",
                refusal: &other_edit,
                at: Some(Version::int(7)),
            },
        );
        items.push(Refused {
            id: "d1",
            refusal: &dirty,
            at: Some(Version::int(4)),
        });
        items.push(Refused {
            id: "d2",
            refusal: &dirty,
            at: Some(Version::int(4)),
        });
        items.push(Refused {
            id: "u1",
            refusal: &unknown,
            at: Some(Version::int(7)),
        });
        items.push(Refused {
            id: "o1",
            refusal: &late,
            at: Some(Version::int(6)),
        });
        insta::assert_snapshot!(grouped(&set().into(), &items), @r"
            migration 3 was edited after it was applied: `migrations/0003_m3.up.sql` is 1a2b3c4d5e6f now, was 9f8e7d6c5b4a when applied
              12 tenants: t00, t01, t02 and 9 more
              - an edit by mistake: restore the file, `git checkout -- migrations/0003_m3.up.sql`
              - a deliberate change: record the file as applied, `fleetmig stamp --checksums=3` (every tenant that has migration 3)

            migration 3 was edited after it was applied: `migrations/0003_m3.up.sql` is 1a2b3c4d5e6f now, was 777777777777 when applied
              1 tenant: odd
              - an edit by mistake: restore the file, `git checkout -- migrations/0003_m3.up.sql`
              - a deliberate change: record the file as applied, `fleetmig stamp --checksums=3 --select id=odd`

            migration 5 is dirty (it failed part way)
              2 tenants: d1, d2
              - check by hand whether it took effect; if it did: `fleetmig stamp 5 --select id=d1 --select id=d2`
              - if it did not: `fleetmig stamp 4 --select id=d1 --select id=d2`

            applied migration 4 (`gone`) has no file in the migrations folder
              1 tenant: u1
              - its file was deleted or renamed: bring it back (`git log --diff-filter=DR --name-status -- migrations` shows when), or run the fleetmig checkout that has it

            migration 2 (`migrations/0002_m2.up.sql`) is pending but older than applied migration 6
              1 tenant: o1
              - it should run: give it a version above 6 (rename the file)
              - its change is already in place: `fleetmig stamp 6 --select id=o1`
        ");
    }
}
